"""The per-token store: chunks sized in bytes whatever the width, each chunk written once, contents intact."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from interp.embed.store import CHUNK_BYTES, TokenStore, TokenStoreWriter, chunk_rows_for, read_ahead


class AppendSpy:
    """Stands in for a zarr array and records (first row, rows) of every append."""

    def __init__(self, array) -> None:
        self.array, self.calls = array, []

    def append(self, values, axis=0):
        self.calls.append((int(self.array.shape[0]), int(values.shape[0])))
        return self.array.append(values, axis=axis)


@pytest.mark.parametrize("d", [64, 512, 4096])
def test_chunks_hold_at_most_32_mib_at_any_width(tmp_path, d):
    writer = TokenStoreWriter(tmp_path / "s.zarr", d, [], "m", "l")
    rows = writer.arrays["activations"].chunks[0]
    assert rows == chunk_rows_for(d)
    assert rows * d * 4 <= CHUNK_BYTES  # 32 MiB, not 256 MiB at 4,096
    # up to width 512 the former 16,384 tokens (SAE training reads a chunk at a time: same batches as before)
    assert rows == (16384 if d <= 512 else CHUNK_BYTES // (4 * d))


def test_small_batches_are_written_a_whole_chunk_at_a_time(tmp_path):
    d, chunk, rng = 8, 50, np.random.default_rng(0)
    writer = TokenStoreWriter(tmp_path / "s.zarr", d, ["exon"], "m", "l", chunk_rows=chunk)
    spies = {key: AppendSpy(arr) for key, arr in writer.arrays.items()}
    writer.arrays.update(spies)
    parts = []
    for m in [7, 30, 1, 64, 0, 13, 120, 9]:  # 244 rows in batches that never match the chunk
        x = rng.standard_normal((m, d)).astype(np.float32)
        parts.append(x)
        start = sum(p.shape[0] for p in parts[:-1])
        writer.append(x, np.arange(start, start + m) // 10, np.arange(start, start + m) % 10,
                      {"exon": (np.arange(start, start + m) % 3 == 0)})
    writer.close()
    for spy in spies.values():
        # every append starts on a chunk boundary and, but the last, fills whole chunks: no chunk is rewritten
        assert all(first % chunk == 0 for first, _ in spy.calls), spy.calls
        assert all(rows % chunk == 0 for _, rows in spy.calls[:-1]), spy.calls
        assert sum(rows for _, rows in spy.calls) == 244
    store = TokenStore(tmp_path / "s.zarr")
    x = np.concatenate(parts)
    assert store.n_tokens == 244 and store.group.attrs["n_tokens"] == 244
    np.testing.assert_array_equal(store.activations[:], x)
    np.testing.assert_array_equal(store.window_index[:], np.arange(244) // 10)
    np.testing.assert_array_equal(store.base_start[:], np.arange(244) % 10)
    np.testing.assert_array_equal(store.labels("exon"), (np.arange(244) % 3 == 0).astype(np.uint8))
    # reads default to one stored chunk
    slices = [sl for sl, _ in store.iter_chunks()]
    assert slices[0] == slice(0, chunk) and slices[-1] == slice(200, 244)


def test_rows_are_copied_when_appended(tmp_path):
    """The writer holds rows until a chunk fills: a caller reusing its buffer must not change them."""
    writer = TokenStoreWriter(tmp_path / "s.zarr", 2, [], "m", "l", chunk_rows=100)
    buf = np.ones((3, 2), np.float32)
    writer.append(buf, np.zeros(3), np.zeros(3), {})
    buf[:] = 5
    writer.close()
    np.testing.assert_array_equal(TokenStore(tmp_path / "s.zarr").activations[:], np.ones((3, 2)))


def test_rows_of_unequal_length_are_refused(tmp_path):
    writer = TokenStoreWriter(tmp_path / "s.zarr", 2, [], "m", "l")
    with pytest.raises(ValueError, match="window_index: 2 rows for 3"):
        writer.append(np.ones((3, 2)), np.zeros(2), np.zeros(3), {})


def small_store(path, n: int, seed: int) -> tuple[TokenStore, np.ndarray]:
    """A store of n random float32 rows of width 3 in chunks of 16 (7 tokens per window), and its rows."""
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    w = TokenStoreWriter(path, 3, [], "m", "l", chunk_rows=16)
    w.append(x, np.arange(n) // 7, np.arange(n) % 7, {})
    w.close()
    return TokenStore(path), x


def test_chunk_reader_returns_what_the_array_holds_and_decompresses_each_chunk_once(tmp_path):
    store, x = small_store(tmp_path / "s.zarr", 100, 1)
    acts, index = store.reader("activations"), store.reader("window_index")
    got = [acts[a:min(a + 5, 100)] for a in range(0, 100, 5)]  # in order, 5 rows at a time
    np.testing.assert_array_equal(np.concatenate(got), x)
    assert acts.n_reads == 7  # ceil(100 / 16): each chunk once
    for key in (slice(10, 40), slice(95, 200), slice(30, 30), slice(0, 100), slice(-5, None)):
        np.testing.assert_array_equal(store.reader()[key], x[key])
    assert int(index[99]) == 99 // 7 and int(index[-1]) == 99 // 7 and int(index[16]) == 16 // 7
    part = acts[0:3]
    part[:] = 0  # a copy: the kept chunk is not changed
    np.testing.assert_array_equal(acts[0:3], x[0:3])
    with pytest.raises(IndexError):
        index[100]
    with pytest.raises(ValueError, match="contiguous"):
        acts[0:10:2]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_read_ahead_yields_in_order_and_loads_at_most_workers_ahead(tmp_path, workers):
    """Chunks read by threads come back in order and equal to a plain read; no more than `workers` are loaded
    beyond the one being consumed (memory stays bounded however long the store), and 1 worker runs no thread."""
    store, x = small_store(tmp_path / "s.zarr", 200, 2)
    started, threads, lock = [], set(), threading.Lock()

    def load(start):
        with lock:
            started.append(start)
            threads.add(threading.get_ident())
        time.sleep(0.002 * (start % 3))  # uneven read times: later chunks may finish first
        return start, np.asarray(store.activations[start:start + 16])

    starts = list(range(0, 200, 16))
    for consumed, (start, rows) in enumerate(read_ahead(load, starts, workers), start=1):
        np.testing.assert_array_equal(rows, x[start:start + 16])
        assert start == starts[consumed - 1]
        with lock:
            assert len(started) <= consumed + (workers if workers > 1 else 0)
    assert sorted(started) == starts
    assert (threads == {threading.get_ident()}) == (workers == 1)
