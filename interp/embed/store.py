"""Per-token activation store (zarr v3), written and read in row chunks.

Layout of one store (one model, one layer):
    activations      float32 [n_tokens, d], chunked by rows
    window_index     int32   [n_tokens]  the window (row of windows.parquet) of each token
    base_start       int32   [n_tokens]  first base of the token within its window
    labels/<name>    uint8   [n_tokens]  1 if any base the token covers carries the label
    attrs: model, layer, d, label_names, complete (True only once closed)

Activations can be far larger than memory, so writers append chunk by chunk and readers
iterate chunk by chunk; nothing here loads the whole matrix unless asked.

A chunk holds at most `CHUNK_BYTES` of activations whatever the model's width (`chunk_rows_for`: 2,048 tokens
at d 4,096, 8,192 at d 1,024, and 16,384, the former fixed size, at d 512 and below, so that narrower stores, and
the SAE training that reads them a chunk at a time, are as before), and the writer buffers rows until a chunk is full, so every
chunk is compressed and written once: appending a batch to a part-filled chunk would read, decompress and
rewrite the whole chunk each time.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import zarr

#: bytes of float32 activations per store chunk (16,384 tokens at width 512)
CHUNK_BYTES = 32 * 2**20
#: bounds on the rows of one chunk: a very wide model; 16,384 rows (4 MiB at d 64) for narrow ones
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 256, 16384


T = TypeVar("T")
R = TypeVar("R")


def read_ahead(load: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """Yield load(item) for each item, in order; with `workers` >= 2, up to `workers` items are loaded ahead in
    as many threads (store reads: zarr decompresses chunks outside the GIL, so two threads read a store about
    three times as fast as one, `benchmarks/sae_vs_saelens.py`). Holds at most `workers` loaded items beyond the
    one being consumed; workers <= 1: a plain loop, nothing ahead."""
    if workers <= 1:
        yield from map(load, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(load, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def chunk_rows_for(d: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows of one store chunk for activations of width d: `chunk_bytes` of float32, at most 16,384 rows."""
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, chunk_bytes // (4 * max(int(d), 1)))))


class TokenStoreWriter:
    """Append-only writer; the store only appears at `path` once `close()` succeeds.

    chunk_rows: rows per chunk (default `chunk_rows_for(d)`). Appended rows are copied into a one-chunk buffer
    and written a whole chunk at a time; the last, partial chunk is written by `close()`.
    """

    def __init__(self, path: str | Path, d: int, label_names: list[str], model: str, layer: str,
                 chunk_rows: int | None = None) -> None:
        chunk_rows = chunk_rows_for(d) if chunk_rows is None else int(chunk_rows)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.chunk_rows = chunk_rows
        self.n_pending = 0
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.group = zarr.open_group(str(self.tmp), mode="w")
        self.label_names = list(label_names)
        self.d = d
        self.n = 0
        self.arrays = {
            "activations": self.group.create_array("activations", shape=(0, d), chunks=(chunk_rows, d),
                                                   dtype="float32"),
            "window_index": self.group.create_array("window_index", shape=(0,), chunks=(chunk_rows,),
                                                    dtype="int32"),
            "base_start": self.group.create_array("base_start", shape=(0,), chunks=(chunk_rows,),
                                                  dtype="int32"),
        }
        labels = self.group.create_group("labels")
        for name in self.label_names:
            self.arrays[f"labels/{name}"] = labels.create_array(name, shape=(0,), chunks=(chunk_rows,),
                                                                dtype="uint8")
        # one chunk of rows waiting to be written, per array
        self.buffers = {key: np.empty((chunk_rows, *arr.shape[1:]), dtype=arr.dtype) for key, arr in self.arrays.items()}
        self.group.attrs.update({"model": model, "layer": layer, "d": d,
                                 "label_names": self.label_names, "complete": False})

    def append(self, activations: np.ndarray, window_index: np.ndarray, base_start: np.ndarray,
               labels: dict[str, np.ndarray]) -> None:
        """Append rows: activations [m, d], window_index [m], base_start [m], labels {name: [m]}."""
        m = activations.shape[0]
        if activations.shape[1] != self.d:
            raise ValueError(f"expected activations of width {self.d}, got {activations.shape[1]}")
        missing = set(self.label_names) - set(labels)
        if missing:
            raise ValueError(f"labels missing: {sorted(missing)}")
        rows = {"activations": np.asarray(activations), "window_index": np.asarray(window_index),
                "base_start": np.asarray(base_start),
                **{f"labels/{name}": np.asarray(labels[name]) for name in self.label_names}}
        for key, values in rows.items():
            if values.shape[0] != m:
                raise ValueError(f"{key}: {values.shape[0]} rows for {m} rows of activations")
        done = 0
        while done < m:  # copy into the chunk buffers, writing each one as it fills
            take = min(m - done, self.chunk_rows - self.n_pending)
            for key, values in rows.items():
                self.buffers[key][self.n_pending:self.n_pending + take] = values[done:done + take]
            self.n_pending += take
            done += take
            if self.n_pending == self.chunk_rows:
                self._flush()
        self.n += m

    def _flush(self) -> None:
        """Write the buffered rows (a whole chunk, or the last part of one at close) and empty the buffers."""
        if self.n_pending:
            for key, array in self.arrays.items():
                array.append(self.buffers[key][:self.n_pending], axis=0)
        self.n_pending = 0

    def close(self) -> None:
        """Write the held rows, mark complete and move into place (replacing an older store)."""
        self._flush()
        self.group.attrs["complete"] = True
        self.group.attrs["n_tokens"] = self.n
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)


class TokenStore:
    """Read side of a store written by `TokenStoreWriter`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.group = zarr.open_group(str(self.path), mode="r")
        if not self.group.attrs.get("complete", False):
            raise ValueError(f"{self.path}: token store is incomplete (writer did not finish)")
        self.activations = self.group["activations"]
        self.window_index = self.group["window_index"]
        self.base_start = self.group["base_start"]
        self.label_names: list[str] = list(self.group.attrs["label_names"])
        self.model: str = self.group.attrs["model"]
        self.layer: str = self.group.attrs["layer"]

    @property
    def n_tokens(self) -> int:
        return int(self.activations.shape[0])

    @property
    def d(self) -> int:
        return int(self.activations.shape[1])

    def labels(self, name: str, rows: slice | None = None) -> np.ndarray:
        """uint8 [n] label of each token (or of a row slice)."""
        arr = self.group["labels"][name]
        return arr[rows] if rows is not None else arr[:]

    @property
    def chunk_rows(self) -> int:
        """Rows of one stored chunk (reads of whole chunks decompress nothing twice)."""
        return int(self.activations.chunks[0])

    def reader(self, name: str = "activations") -> ChunkReader:
        """A `ChunkReader` of one array of the store ("activations", "window_index", "base_start")."""
        return ChunkReader(self.group[name])

    def iter_chunks(self, rows: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (row slice, float32 [m, d] activations) over the whole store, in order; `rows` per read
        (default: one stored chunk)."""
        rows = self.chunk_rows if rows is None else int(rows)
        for start in range(0, self.n_tokens, rows):
            sl = slice(start, min(start + rows, self.n_tokens))
            yield sl, self.activations[sl]


class ChunkReader:
    """Row ranges of a row-chunked zarr array, read through its stored chunks: the last chunk read is kept
    decompressed, so reading the array in order, in ranges of any size, decompresses each chunk once (a
    plain `array[a:b]` decompresses every chunk it touches on every call: with ranges 16 times smaller than a
    chunk, each chunk 16 times). Holds one decompressed chunk (two while a range straddles them)."""

    def __init__(self, array) -> None:
        self.array = array
        self.n = int(array.shape[0])
        self.rows = int(array.chunks[0])
        self.index = -1
        self.data: np.ndarray | None = None
        #: chunks decompressed so far
        self.n_reads = 0

    def chunk(self, i: int) -> np.ndarray:
        """Stored chunk i (rows i * rows .. (i + 1) * rows - 1), decompressed once while it is the latest."""
        if i != self.index:
            self.data = None  # let the previous chunk go before the next is decompressed
            self.data = np.asarray(self.array[i * self.rows:min((i + 1) * self.rows, self.n)])
            self.index = i
            self.n_reads += 1
        return self.data

    def __getitem__(self, key: int | slice) -> np.ndarray:
        """Rows `key` (a slice of step 1, or one row: a scalar) as a new array, equal to `array[key]`."""
        if not isinstance(key, slice):
            row = int(key)
            row = row + self.n if row < 0 else row
            if not 0 <= row < self.n:
                raise IndexError(f"row {key} out of range for {self.n} rows")
            return self.chunk(row // self.rows)[row % self.rows].copy()
        start, stop, step = key.indices(self.n)
        if step != 1:
            raise ValueError("ChunkReader reads contiguous row ranges only")
        if stop <= start:
            return np.asarray(self.array[start:start])
        parts = [self.chunk(i)[max(start - i * self.rows, 0):min(stop - i * self.rows, self.rows)]
                 for i in range(start // self.rows, (stop - 1) // self.rows + 1)]
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
