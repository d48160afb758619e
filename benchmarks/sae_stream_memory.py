"""Peak memory of SAE training streamed from the token store, at two store sizes 4x apart.

Run: `python benchmarks/sae_stream_memory.py [n_tokens] [d]` (default 100000 tokens, d 128, so the
stores are 51 MB and 205 MB of activations). Each training runs in a fresh process (1 epoch, TopK,
memory_budget_mb 16, so the tokens are streamed through a 16 MB shuffle buffer) and reports its
peak RSS; the script prints both and their ratio (streaming means about 1, loading the store would
mean about 4 in the activations' share). A third process that only imports the stack and opens the
store gives the fixed cost. With `--temporal` the same two trainings run again with the T-SAE temporal loss
(`temporal_fraction` 0.2: batches of adjacent-token pairs) and the script prints their peak RSS ratio and
their tokens/s against the plain runs'. With `--batchtopk` they run again as BatchTopK SAEs, whose inference threshold
is re-estimated after training by a pass over up to 262,144 training tokens (`threshold_calibration_tokens`),
streamed like training: the ratio says whether that pass keeps memory flat too. With `--threads` they run again
with `threads=2` (two torch threads, and two reader threads that read store chunks ahead,
`interp.embed.store.read_ahead`): the ratio says whether reading ahead keeps memory flat. Nothing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from interp.embed.store import TokenStoreWriter

PER_WINDOW = 200


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB). Not ru_maxrss: Linux carries a process's ru_maxrss across exec, so
    a child started by subprocess would report the parent's peak whenever it is larger than its own."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def write_store(path: Path, n_tokens: int, d: int, chunk: int = 16384) -> None:
    """Sparse-dictionary activations (4 of 256 atoms per token), 200 tokens per non-overlapping window."""
    rng = np.random.default_rng(0)
    atoms = rng.standard_normal((256, d)).astype(np.float32)
    writer = TokenStoreWriter(path, d, [], model="bench", layer="bench", chunk_rows=chunk)
    for start in range(0, n_tokens, chunk):
        m = min(chunk, n_tokens - start)
        idx = rng.integers(0, 256, size=(m, 4))
        x = (rng.uniform(0.5, 2, size=(m, 4, 1)).astype(np.float32) * atoms[idx]).sum(axis=1)
        writer.append(x, np.arange(start, start + m) // PER_WINDOW, np.arange(start, start + m) % PER_WINDOW, {})
    writer.close()
    n_windows = -(-n_tokens // PER_WINDOW)
    starts = np.arange(n_windows) * PER_WINDOW
    pl.DataFrame({"window_index": np.arange(n_windows), "window_id": [f"b:{s}" for s in starts],
                  "contig": ["b"] * n_windows, "start": starts, "end": starts + PER_WINDOW}
                 ).write_parquet(path.with_suffix(".windows.parquet"))


def child(store: str, mode: str) -> None:
    """mode: open (import + open the store), train, train-temporal, train-batchtopk or train-threads."""
    from interp.sae import SAEConfig, train_sae
    from interp.sae.train import open_store

    t0 = time.perf_counter()
    if mode.startswith("train"):
        windows = pl.read_parquet(Path(store).with_suffix(".windows.parquet"))
        cfg = SAEConfig(n_features=512, k=16, epochs=1, batch_size=512, memory_budget_mb=16,
                        split_block_bases=20 * PER_WINDOW,
                        temporal_fraction=0.2 if mode == "train-temporal" else 0.0,
                        architecture="batchtopk" if mode == "train-batchtopk" else "topk")
        _, metrics = train_sae(store, cfg, windows, threads=2 if mode == "train-threads" else 1)
        extra = {"n_train_tokens": metrics["n_train_tokens"], "fvu": metrics["fvu"]}
    else:
        open_store(store)
        extra = {}
    print(json.dumps({"peak_rss_mb": peak_rss_mib(),
                      "seconds": time.perf_counter() - t0, **extra}))


def run_child(store: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(store), mode], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    temporal, batchtopk, threads = "--temporal" in sys.argv, "--batchtopk" in sys.argv, "--threads" in sys.argv
    args = [a for a in sys.argv[1:] if a not in ("--temporal", "--batchtopk", "--threads")]
    n = int(args[0]) if len(args) > 0 else 100_000
    d = int(args[1]) if len(args) > 1 else 128
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small.zarr", Path(tmp) / "large.zarr"
        write_store(small, n, d)
        write_store(large, 4 * n, d)
        base = run_child(small, "open")
        a = run_child(small, "train")
        b = run_child(large, "train")
        if temporal:
            ta = run_child(small, "train-temporal")
            tb = run_child(large, "train-temporal")
        if batchtopk:
            ba = run_child(small, "train-batchtopk")
            bb = run_child(large, "train-batchtopk")
        if threads:
            ha = run_child(small, "train-threads")
            hb = run_child(large, "train-threads")
    mb = n * d * 4 / 2**20
    print(f"activations: {mb:.0f} MB vs {4 * mb:.0f} MB (4x); budget 16 MB")
    print(f"fixed cost (import + open store): peak RSS {base['peak_rss_mb']:.0f} MB")
    print(f"train {n} tokens:     peak RSS {a['peak_rss_mb']:.0f} MB, {a['seconds']:.1f} s, "
          f"{a['n_train_tokens'] / a['seconds']:.0f} tokens/s")
    print(f"train {4 * n} tokens: peak RSS {b['peak_rss_mb']:.0f} MB, {b['seconds']:.1f} s, "
          f"{b['n_train_tokens'] / b['seconds']:.0f} tokens/s")
    print(f"peak RSS ratio (4x store / 1x store): {b['peak_rss_mb'] / a['peak_rss_mb']:.3f}")
    if temporal:
        compare("temporal", (ta, tb), (a, b), n)
    if batchtopk:  # its time includes the threshold pass after training
        compare("batchtopk", (ba, bb), (a, b), n)
    if threads:
        compare("threads 2", (ha, hb), (a, b), n)


def compare(name: str, runs: tuple[dict, dict], plain: tuple[dict, dict], n: int) -> None:
    """Print a variant's two trainings against the plain (TopK) ones: peak RSS and tokens/s ratios, and its own
    4x-store / 1x-store peak RSS ratio."""
    for size, base, run in ((n, plain[0], runs[0]), (4 * n, plain[1], runs[1])):
        speed = run["n_train_tokens"] / run["seconds"] / (base["n_train_tokens"] / base["seconds"])
        print(f"{name}, {size} tokens: peak RSS {run['peak_rss_mb']:.0f} MB "
              f"({run['peak_rss_mb'] / base['peak_rss_mb']:.3f}x plain), {run['seconds']:.1f} s, "
              f"tokens/s {speed:.3f}x plain")
    print(f"{name} peak RSS ratio (4x store / 1x store): {runs[1]['peak_rss_mb'] / runs[0]['peak_rss_mb']:.3f}")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
