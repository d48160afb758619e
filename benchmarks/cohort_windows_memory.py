"""Peak memory of the per-window cohort tables at two numbers of windows 4x apart: writing them
(`interp.embed.cohort.WindowTable`, the embed_cohort stage) and ranking them (`interp.rank_inputs.window_family`
+ `interp.rank.rank_phenotype`, the rank stage), each against the whole-matrix way it was done before.

Run: `python benchmarks/cohort_windows_memory.py [n_samples] [d] [n_windows]` (default 1,000 samples, d 64,
400 windows, so the windows table is 102 MB of float32 at 1x and 410 MB at 4x). Synthetic cohort: each
window has 10 distinct haplotype vectors, each sample two of them; a binary phenotype (30% cases) with PCs.
Each measurement runs in a fresh process and reports its peak RSS (VmHWM):

- `write`: the streamed writer (window blocks of `POOL_CHUNK_BYTES`) vs `whole-write`, the former way:
  `mat[seq_index].mean(axis=2)` for all windows at once, then one AnnData write;
- `rank`: the window family read from disk by column blocks (`COLUMN_CHUNK`) vs `whole-rank`, the former
  way: the table's X loaded whole as float64, then ranked in memory;
- `regions`: the per-region sample tables of `audit.by_region` (`interp.embed.cohort.region_sample_tables`,
  window blocks read from disk; regions of `REGION_WINDOWS` windows, so 4x the windows is 4x the regions)
  vs `whole-regions`: X loaded whole, then each region's mean taken from it.

It prints each peak, the 4x/1x ratio per way, and the new/old ratio at 4x. Nothing is asserted. Streaming
means a 4x/1x ratio near 1 in the table's share of memory; loading means about 4.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_HAP = 10  # distinct haplotype vectors per window
REGION_WINDOWS = 50  # windows per region (a gene of 25 kb in windows of 500 bases)


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB). Not ru_maxrss: Linux carries a process's ru_maxrss across exec, so
    a child started by subprocess would report the parent's peak whenever it is larger than its own."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def inputs(n_s: int, d: int, n_w: int, seed: int = 0):
    """pooled [n_w * N_HAP, d] float32, seq_index [n_s, n_w, 2], obs, pcs, windows (polars)."""
    import pandas as pd
    import polars as pl

    rng = np.random.default_rng(seed)
    pooled = rng.standard_normal((n_w * N_HAP, d)).astype(np.float32)
    seq_index = (np.arange(n_w)[None, :, None] * N_HAP + rng.integers(0, N_HAP, size=(n_s, n_w, 2))).astype(np.int64)
    pcs = rng.standard_normal((n_s, 3))
    y = (rng.random(n_s) < 0.3).astype(float)
    obs = pd.DataFrame({"pheno": y}, index=[f"s{i}" for i in range(n_s)])
    starts = np.arange(n_w) * 500
    windows = pl.DataFrame({"window_index": np.arange(n_w), "window_id": [f"chr1:{s}-{s + 500}" for s in starts],
                            "region": [f"G{i // REGION_WINDOWS}" for i in range(n_w)], "contig": ["chr1"] * n_w, "start": starts, "end": starts + 500})
    return pooled, seq_index, obs, pcs, windows


def child(mode: str, n_s: int, d: int, n_w: int, folder: str) -> None:
    import anndata as ad

    from interp.embed.cohort import cohort_tables
    from interp.rank import Family, RankConfig, rank_phenotype
    from interp.rank_inputs import window_family

    t0 = time.perf_counter()
    path = Path(folder) / f"w{n_w}.windows.h5ad"
    if mode in ("write", "whole-write"):
        pooled, seq_index, obs, pcs, windows = inputs(n_s, d, n_w)
        tables = dict(cohort_tables({"block1": pooled}, seq_index, obs, pcs, windows, "m", "block1"))
        table = tables["block1.windows.h5ad"]
        if mode == "write":
            table.write_h5ad(path)
        else:
            x = pooled[seq_index].mean(axis=2).reshape(n_s, -1)
            whole = ad.AnnData(X=x, obs=table.obs, var=table.var)
            whole.obsm["X_pca"] = table.pcs
            whole.uns.update(table.uns)
            whole.write_h5ad(Path(folder) / f"whole{n_w}.h5ad")
    elif mode in ("regions", "whole-regions"):
        from interp.embed.cohort import region_sample_tables

        meta = ad.read_h5ad(path, backed="r")
        samples = ad.AnnData(X=np.zeros((meta.n_obs, d), dtype=np.float32), obs=meta.obs.copy())
        samples.obsm["X_pca"] = np.asarray(meta.obsm["X_pca"])
        samples.uns.update({k: meta.uns[k] for k in ("model", "layer", "kind")})
        region = meta.var["region"].astype(str).to_numpy()
        meta.file.close()
        if mode == "regions":
            n_tables = sum(1 for _ in region_sample_tables(samples, path))
        else:
            x = ad.read_h5ad(path).X.reshape(n_s, n_w, d)
            window_region = region[::d]
            n_tables = len([x[:, window_region == g].mean(axis=1) for g in dict.fromkeys(window_region)])
        assert n_tables == -(-n_w // REGION_WINDOWS)
    else:
        meta = ad.read_h5ad(path, backed="r")
        y = meta.obs["pheno"].to_numpy(dtype=float)
        pcs = np.asarray(meta.obsm["X_pca"])
        order = meta.obs_names.tolist()
        meta.file.close()
        if mode == "rank":
            fam = window_family(path, order)
        else:
            loaded = ad.read_h5ad(path)
            fam = window_family(loaded, order)
            fam.matrix = np.asarray(fam.matrix, dtype=np.float64)  # the former rank held the family as float64
        rng = np.random.default_rng(1)
        g = rng.binomial(2, 0.3, size=(n_s, 20)).astype(float)
        variants = Family(name="variant", kind="variant", matrix=g, features=[f"v{j}" for j in range(20)],
                          short_names=[f"v{j}" for j in range(20)], contig=np.array(["chr1"] * 20),
                          start=np.arange(20) * 500 + 10, end=np.arange(20) * 500 + 11)
        cfg = RankConfig(resamples=5, refit_top=5)
        rank_phenotype("pheno", y, pcs, variants, [fam], cfg)
    peak_mb = peak_rss_mib()
    print(json.dumps({"peak_mb": round(peak_mb, 1), "seconds": round(time.perf_counter() - t0, 2)}))


def run(mode: str, n_s: int, d: int, n_w: int, folder: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(n_s), str(d), str(n_w), folder],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n_s = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    d = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    n_w = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    sizes = (n_w, 4 * n_w)
    print(f"{n_s} samples, d {d}, windows {sizes[0]} and {sizes[1]} "
          f"(table {n_s * sizes[0] * d * 4 / 1e6:.0f} MB and {n_s * sizes[1] * d * 4 / 1e6:.0f} MB of float32)")
    with tempfile.TemporaryDirectory() as folder:
        res = {}
        for mode in ("write", "whole-write", "rank", "whole-rank", "regions", "whole-regions"):
            for size in sizes:
                res[mode, size] = run(mode, n_s, d, size, folder)
                print(f"{mode:12s} windows {size:6d}: peak RSS {res[mode, size]['peak_mb']:8.1f} MB, "
                      f"{res[mode, size]['seconds']:7.2f} s", flush=True)
    print()
    for new, old in (("write", "whole-write"), ("rank", "whole-rank"), ("regions", "whole-regions")):
        r_new = res[new, sizes[1]]["peak_mb"] / res[new, sizes[0]]["peak_mb"]
        r_old = res[old, sizes[1]]["peak_mb"] / res[old, sizes[0]]["peak_mb"]
        print(f"{new:7s}: 4x/1x peak RSS {r_new:.2f} (the former way {r_old:.2f}); at 4x, new/former "
              f"{res[new, sizes[1]]['peak_mb'] / res[old, sizes[1]]['peak_mb']:.2f} of the memory, "
              f"{res[new, sizes[1]]['seconds'] / res[old, sizes[1]]['seconds']:.2f} of the time")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        main()
