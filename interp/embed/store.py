"""Per-token activation store (zarr v3), written and read in row chunks.

Layout of one store (one model, one layer):
    activations      float32 [n_tokens, d], chunked by rows
    window_index     int32   [n_tokens]  the window (row of windows.parquet) of each token
    base_start       int32   [n_tokens]  first base of the token within its window
    labels/<name>    uint8   [n_tokens]  1 if any base the token covers carries the label
    attrs: model, layer, d, label_names, complete (True only once closed)

Activations can be far larger than memory, so writers append chunk by chunk and readers
iterate chunk by chunk; nothing here loads the whole matrix unless asked.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr


class TokenStoreWriter:
    """Append-only writer; the store only appears at `path` once `close()` succeeds."""

    def __init__(self, path: str | Path, d: int, label_names: list[str], model: str, layer: str,
                 chunk_rows: int = 16384) -> None:
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
        self.arrays["activations"].append(np.asarray(activations, dtype=np.float32), axis=0)
        self.arrays["window_index"].append(np.asarray(window_index, dtype=np.int32))
        self.arrays["base_start"].append(np.asarray(base_start, dtype=np.int32))
        for name in self.label_names:
            self.arrays[f"labels/{name}"].append(np.asarray(labels[name], dtype=np.uint8))
        self.n += m

    def close(self) -> None:
        """Mark complete and move into place (replacing an older store)."""
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

    def iter_chunks(self, rows: int = 16384) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (row slice, float32 [m, d] activations) over the whole store, in order."""
        for start in range(0, self.n_tokens, rows):
            sl = slice(start, min(start + rows, self.n_tokens))
            yield sl, self.activations[sl]
