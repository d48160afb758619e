"""Cost of writing and reading the per-token store: chunks sized in bytes and written once, against the former
fixed 16,384-token chunks appended batch by batch.

Run: `python benchmarks/token_store_chunks.py [--tokens-mib 256] [--batch 1024]`. For widths 512 and 4,096,
writes `--tokens-mib` MiB of float32 activations in batches of `--batch` tokens (what `embed_windows` appends
per model batch) and reads them back in reads of 1,024 tokens (the SAE concept labelling reads about 2**25
values at a time: 1,024 tokens for a 32,768-feature dictionary); each way in a fresh process, printing wall
time, CPU time and peak RSS (VmHWM) and the ratios former / now. The store is written under a temporary folder
and deleted. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FORMER_CHUNK_ROWS = 16384


def vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(way: str, d: int, n: int, batch: int, read_rows: int) -> dict:
    import zarr

    from interp.embed.store import TokenStore, TokenStoreWriter

    x = np.random.default_rng(0).standard_normal((batch, d), dtype=np.float32)
    zeros = np.zeros(batch, np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        t0, c0 = time.perf_counter(), time.process_time()
        if way == "now":
            writer = TokenStoreWriter(path, d, ["exon"], "bench", "bench")
            for _ in range(0, n, batch):
                writer.append(x, zeros, zeros, {"exon": zeros.astype(np.uint8)})
            writer.close()
            acts = TokenStore(path).activations
        else:  # the former writer: fixed-row chunks, every batch appended as it came
            acts = zarr.open_group(str(path), mode="w").create_array(
                "activations", shape=(0, d), chunks=(FORMER_CHUNK_ROWS, d), dtype="float32")
            for _ in range(0, n, batch):
                acts.append(x, axis=0)
        write = (time.perf_counter() - t0, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n, read_rows):
            np.asarray(acts[start:start + read_rows])
        read = (time.perf_counter() - t0, time.process_time() - c0)
        chunk_rows = int(acts.chunks[0])
    return {"write_wall": write[0], "write_cpu": write[1], "read_wall": read[0], "read_cpu": read[1],
            "peak_mib": vmhwm_mib(), "chunk_rows": chunk_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-mib", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--read-rows", type=int, default=1024)
    parser.add_argument("--child", nargs=2, metavar=("WAY", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, d = args.child[0], int(args.child[1])
        n = args.tokens_mib * 2**20 // (4 * d) // args.batch * args.batch
        print(json.dumps(child(way, d, n, args.batch, args.read_rows)))
        return
    root = Path(__file__).resolve().parents[1]
    for d in (512, 4096):
        out = {}
        for way in ("former", "now"):
            res = subprocess.run([sys.executable, __file__, "--child", way, str(d), "--tokens-mib",
                                  str(args.tokens_mib), "--batch", str(args.batch), "--read-rows",
                                  str(args.read_rows)], capture_output=True, text=True, check=True,
                                 env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
            out[way] = json.loads(res.stdout.strip().splitlines()[-1])
            r = out[way]
            print(f"d {d:>5} {way:>6} (chunks of {r['chunk_rows']:>6} tokens, "
                  f"{r['chunk_rows'] * d * 4 / 2**20:.0f} MiB): write {r['write_wall']:.1f} s wall / "
                  f"{r['write_cpu']:.1f} s CPU, read {r['read_wall']:.1f} / {r['read_cpu']:.1f} s, "
                  f"peak RSS {r['peak_mib']:.0f} MiB")
        f, w = out["former"], out["now"]
        print(f"d {d:>5} former / now: write CPU {f['write_cpu'] / w['write_cpu']:.1f}x, read CPU "
              f"{f['read_cpu'] / w['read_cpu']:.1f}x, peak RSS {f['peak_mib'] / w['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
