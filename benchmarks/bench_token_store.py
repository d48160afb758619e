"""Peak memory and time of streaming a per-token activation store versus loading it whole.

Run: `python benchmarks/bench_token_store.py [n_tokens] [d]`. Prints the ratio of peak traced memory
(streamed / whole) and of wall time, both measured in this run; nothing is asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from interp.embed.store import TokenStore, TokenStoreWriter


def write_store(path: Path, n_tokens: int, d: int, chunk: int = 16384) -> None:
    rng = np.random.default_rng(0)
    writer = TokenStoreWriter(path, d, ["exon"], model="bench", layer="bench", chunk_rows=chunk)
    for start in range(0, n_tokens, chunk):
        m = min(chunk, n_tokens - start)
        writer.append(rng.standard_normal((m, d), dtype=np.float32), np.arange(start, start + m) // 200,
                      np.arange(m) % 200, {"exon": rng.integers(0, 2, m)})
    writer.close()


def column_means_streamed(store: TokenStore) -> np.ndarray:
    total = np.zeros(store.d)
    for _, chunk in store.iter_chunks():
        total += chunk.sum(axis=0, dtype=np.float64)
    return total / store.n_tokens


def column_means_whole(store: TokenStore) -> np.ndarray:
    return store.activations[:].mean(axis=0, dtype=np.float64)


def measure(fn, store: TokenStore) -> tuple[np.ndarray, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(store)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    n_tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
    d = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        write_store(path, n_tokens, d)
        store = TokenStore(path)
        whole, t_whole, m_whole = measure(column_means_whole, store)
        streamed, t_stream, m_stream = measure(column_means_streamed, store)
        assert np.allclose(whole, streamed, atol=1e-5)
        size_mb = n_tokens * d * 4 / 1e6
        print(f"store: {n_tokens} tokens x {d} dims ({size_mb:.0f} MB float32)")
        print(f"whole:    {t_whole:6.2f} s, peak {m_whole / 1e6:8.1f} MB")
        print(f"streamed: {t_stream:6.2f} s, peak {m_stream / 1e6:8.1f} MB")
        print(f"ratio streamed/whole: time {t_stream / t_whole:.2f}x, peak memory {m_stream / m_whole:.3f}x")


if __name__ == "__main__":
    main()
