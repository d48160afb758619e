"""Memory and CPU of the SAE side at a wide dictionary (32,768 features), new way against the former, each in a
fresh process (peak RSS: VmHWM).

Run: `python benchmarks/sae_wide_memory.py [--tokens 196608] [--features 32768] [--keep 0.25] [--samples 3000]
[--out DIR] [--modes concepts,probe,pool] [--keep-haplotypes]`. Writes a token store (d 256, windows of 200
tokens, 16,384-token chunks, about 200 MB at the default) and a random TopK SAE under --out (deleted at the end unless --keep-files), then times:

- `concepts`: `feature_table`'s two passes of reads (window_index, base_start, activations) at its default
  1,024 tokens per read: the former way (each read from zarr, so every 16,384-token chunk is decompressed 16
  times per pass) against `ChunkReader` (once). Reads only: the encoding, the same either way, is left out.
- `probe`: `interp.sae.probe_compare.window_features` for a share `--keep` of the windows: the former function
  (16,384 tokens per read, dense codes, a float64 copy of them) against the current one.
- `pool`: the cohort's sample table of SAE codes (`cohort_tables`' X [samples, F] float32, the mean over
  windows and haplotypes) for `--samples` samples, 4 windows: the former way, the whole [samples, 2, F] float64
  total (1.5 GB at 3,000 x 32,768), its mean over windows (another 1.5 GB) and the haplotypes' mean (786 MB)
  held at once, against `_sample_means` (blocks of samples, float64 within `POOL_CHUNK_BYTES`).
  `--keep-haplotypes` adds hap1 / hap2. The token store is not written when `--modes pool`.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

D, PER_WINDOW, K = 256, 200, 32


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make(folder: Path, n_tokens: int, n_features: int) -> None:
    import torch

    from interp.embed.store import TokenStoreWriter
    from interp.sae.topk import TopKSAE
    from interp.sae.train import save_sae

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_sae(TopKSAE(D, n_features, K), folder / "sae.safetensors")
    rng = np.random.default_rng(0)
    writer = TokenStoreWriter(folder / "tokens.zarr", D, [], "bench", "bench", chunk_rows=16384)
    for start in range(0, n_tokens, 16384):
        rows = np.arange(start, min(start + 16384, n_tokens))
        writer.append(rng.standard_normal((rows.size, D)).astype(np.float32), rows // PER_WINDOW,
                      rows % PER_WINDOW, {})
    writer.close()


def former_window_features(store_path, sae, window_index, chunk_rows=16384):
    """`window_features` before bounded code blocks (verbatim but for the name)."""
    import torch
    from scipy import sparse

    from interp.embed.store import TokenStore

    store = TokenStore(store_path)
    ids = np.asarray(window_index, dtype=np.int64)
    n = ids.shape[0]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    sums_x = np.zeros((n, store.d))
    sums_f = np.zeros((n, int(sae.n_features)))
    counts = np.zeros(n)
    for sl, acts in store.iter_chunks(chunk_rows):
        w = np.asarray(store.window_index[sl], dtype=np.int64)
        at = np.clip(np.searchsorted(sorted_ids, w), 0, max(n - 1, 0))
        keep = (sorted_ids[at] == w) if n else np.zeros(w.shape[0], dtype=bool)
        rows, cols = order[at[keep]], np.flatnonzero(keep)
        with torch.inference_mode():
            feats = sae.encode(torch.from_numpy(np.ascontiguousarray(acts[keep], dtype=np.float32))).numpy()
        member = sparse.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))), shape=(n, rows.size))
        sums_x += member @ np.asarray(acts, dtype=np.float64)[cols]
        sums_f += member @ feats.astype(np.float64)
        counts += np.bincount(rows, minlength=n)
    return sums_x / counts[:, None], sums_f / counts[:, None]


def run(mode: str, way: str, folder: Path, args) -> dict:
    from interp.embed.store import TokenStore
    from interp.sae.concepts import token_rows_for

    out: dict = {}
    if mode == "concepts":
        store = TokenStore(folder / "tokens.zarr")
        rows = token_rows_for(args.features, store.d)
        t0 = cpu_s()
        for _ in range(2):  # the two passes
            if way == "former":
                index, starts, acts = store.window_index, store.base_start, store.activations
            else:
                index, starts, acts = store.reader("window_index"), store.reader("base_start"), store.reader()
            total = 0.0
            for start in range(0, store.n_tokens, rows):
                sl = slice(start, min(start + rows, store.n_tokens))
                w, bs = np.asarray(index[sl]), np.asarray(starts[sl])
                if sl.stop < store.n_tokens:
                    int(index[sl.stop]), int(starts[sl.stop])
                total += float(np.asarray(acts[sl])[:, 0].sum()) + float(w[0] + bs[0])
        out.update(cpu_s=cpu_s() - t0, rows=rows, checksum=total)
    elif mode == "probe":
        from interp.sae.probe_compare import window_features
        from interp.sae.train import load_sae

        sae = load_sae(folder / "sae.safetensors")
        n_windows = -(-args.tokens // PER_WINDOW)
        wanted = np.random.default_rng(1).choice(n_windows, int(n_windows * args.keep), replace=False)
        t0 = cpu_s()
        fn = former_window_features if way == "former" else window_features
        X, F = fn(folder / "tokens.zarr", sae, wanted)
        out.update(cpu_s=cpu_s() - t0)
        np.save(folder / f"probe_{way}_X.npy", X)
        np.save(folder / f"probe_{way}_F.npy", F)
    elif mode == "pool":
        from interp.embed import cohort

        rng = np.random.default_rng(2)
        n_s, n_w, F = args.samples, 4, args.features
        mat = (rng.random((64, F)) < 0.05).astype(np.float32) * rng.random((64, F), dtype=np.float32)
        seq_index = rng.integers(0, 64, (n_s, n_w, 2))
        base_rss = peak_rss_mib()
        t0 = cpu_s()
        if way == "former":  # cohort_tables' sample table before _sample_means
            total = np.zeros((n_s, 2, F), dtype=np.float64)
            for rows, sl in cohort._window_chunks(n_s, n_w, F):
                total[rows] += mat[seq_index[rows, sl]].sum(axis=1, dtype=np.float64)
            per_hap = total / max(n_w, 1)
            x = per_hap.mean(axis=1).astype(np.float32)
            haps = (per_hap[:, 0].astype(mat.dtype), per_hap[:, 1].astype(mat.dtype)) if args.keep_haplotypes else ()
        else:
            x, haps = cohort._sample_means(mat, seq_index, args.keep_haplotypes)
            haps = haps or ()
        out.update(cpu_s=cpu_s() - t0, inputs_peak_rss_mib=base_rss)
        import hashlib

        # the outputs' bits, hashed in place (no copy of them adds to the peak)
        out["sha256"] = [hashlib.sha256(a.data).hexdigest() for a in (x, *haps)]
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=196608)
    ap.add_argument("--features", type=int, default=32768)
    ap.add_argument("--keep", type=float, default=0.25)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/sae_wide"))
    ap.add_argument("--modes", default="concepts,probe,pool")
    ap.add_argument("--keep-files", action="store_true")
    ap.add_argument("--keep-haplotypes", action="store_true")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args.child[0], args.child[1], args.out, args)))
        return
    if args.modes != "pool" and not (args.out / "tokens.zarr").exists():
        make(args.out, args.tokens, args.features)
    args.out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, __file__, "--tokens", str(args.tokens), "--features", str(args.features), "--keep",
            str(args.keep), "--samples", str(args.samples), "--out", str(args.out)]
    base += ["--keep-haplotypes"] if args.keep_haplotypes else []
    try:
        for mode in args.modes.split(","):
            got = {}
            for way in ("former", "new"):
                t0 = time.perf_counter()
                res = subprocess.run(base + ["--child", mode, way], capture_output=True, text=True, check=True)
                got[way] = {**json.loads(res.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - t0}
            f, n = got["former"], got["new"]
            print(f"{mode}: former {f['cpu_s']:.1f} s CPU, {f['peak_rss_mib']:.0f} MiB peak; new {n['cpu_s']:.1f} s "
                  f"CPU, {n['peak_rss_mib']:.0f} MiB peak (CPU new/former {n['cpu_s'] / f['cpu_s']:.2f}, peak "
                  f"{n['peak_rss_mib'] / f['peak_rss_mib']:.2f})", flush=True)
            if mode == "probe":
                for name in ("X", "F"):
                    a, b = (np.load(args.out / f"probe_{w}_{name}.npy") for w in ("former", "new"))
                    print(f"  {name}: max relative difference {float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))):.2e}, "
                          f"identical {np.array_equal(a, b)}")
            if mode == "pool":
                print(f"  identical {f['sha256'] == n['sha256']}; peak before pooling (inputs) "
                      f"{f['inputs_peak_rss_mib']:.0f} / {n['inputs_peak_rss_mib']:.0f} MiB")
    finally:
        if not args.keep_files:
            shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
