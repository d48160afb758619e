"""Peak memory (VmHWM over the process's RSS before the step) and CPU time of two cohort-side steps, each
against the former way, in fresh processes, on synthetic inputs (nothing asserted):

- `ve` / `ve-former`: `interp.rank_inputs.variant_effect_family` (each window's positive-weight columns
  imputed as summed) vs the former whole-matrix float64 `mean_impute` copy;
- `pca`: `interp.cohort.ancestry.genotype_pca` without a panel, for the record (its peak is scanpy's PCA);
- `index` / `index-former`: embed_cohort's `sequence_index` from a haplotypes.parquet (a batch of rows at a
  time, as codes) vs the former table read whole as strings, then mapped.

Run: `python benchmarks/cohort_side_memory.py [n_samples] [n_variants] [n_windows]` (default 2,000 samples,
10,000 variants, 1,200 windows: 7.2 M assignment rows at 3,000 samples). Inputs are written to a temporary
folder and removed.

`python benchmarks/cohort_side_memory.py --index [n_windows ...]` (default 300 1200): `sequence_index` alone,
batched (`index`) vs all rows' codes collected at once (`index-all-rows`, the version before batching, copied
below), at 3,000 samples x each number of windows, and whether both give the same index and windows.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss(key: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":")) / 1024


def geno_inputs(n_s: int, n_v: int, seed: int = 0):
    import anndata as ad
    import pandas as pd
    import polars as pl

    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.5, n_v)
    dosage = rng.binomial(2, p, size=(n_s, n_v)).astype(np.float32)
    dosage[rng.random((n_s, n_v)) < 0.02] = np.nan
    pos = 1 + np.sort(rng.choice(n_v * 100, n_v, replace=False))
    ids = [f"chr1:{x}:A:G" for x in pos]
    called = ~np.isnan(dosage)
    alt = np.nansum(dosage, axis=0) / (2 * called.sum(axis=0))
    var = pd.DataFrame({"contig": "chr1", "pos": pos, "maf": np.minimum(alt, 1 - alt),
                        "missing_rate": 1 - called.mean(axis=0)}, index=ids)
    geno = ad.AnnData(X=dosage, var=var, obs=pd.DataFrame(index=[f"s{i}" for i in range(n_s)]))
    scores = pl.DataFrame({"variant_id": ids, "score": rng.normal(size=n_v), "model": ["m"] * n_v})
    starts = np.arange(0, n_v * 100, 1000)
    windows = pl.DataFrame({"contig": ["chr1"] * starts.size, "start": starts, "end": starts + 2000})
    return geno, scores, windows


def write_assignments(folder: Path, n_s: int, n_w: int, n_hap: int = 30) -> None:
    import polars as pl

    rng = np.random.default_rng(0)
    hashes = [hashlib.sha1(f"{w}:{k}".encode()).hexdigest() for w in range(n_w) for k in range(n_hap)]
    seq = (np.arange(n_w)[None, :, None] * n_hap + rng.integers(0, n_hap, size=(n_s, n_w, 2))).transpose(0, 2, 1)
    w = np.tile(np.arange(n_w), 2 * n_s)
    start = (np.arange(n_w) % 60) * 500 + (np.arange(n_w) // 60) * 100_000
    df = pl.DataFrame({"sample": pl.Series([f"HG{i:05d}" for i in range(n_s)]).gather(np.repeat(np.arange(n_s), 2 * n_w)),
                       "hap": np.tile(np.repeat(np.array([1, 2], dtype=np.int8), n_w), n_s),
                       "region": pl.Series([f"GENE{i // 60}" for i in range(n_w)]).gather(w),
                       "start": start[w], "end": start[w] + 500, "seq_hash": pl.Series(hashes).gather(seq.ravel())})
    df = df.with_columns(pl.lit("chr1").alias("contig"), pl.Series("window_index", w.astype(np.int64)))
    df = df.with_columns(pl.format("{}:{}-{}", "contig", "start", "end").alias("window_id"))
    df.write_parquet(folder / "haplotypes.parquet")
    pl.DataFrame({"seq_hash": sorted(hashes)}).write_parquet(folder / "sequences.parquet")


def sequence_index_all_rows(assignments, samples: list[str], seq_hashes: list[str]):
    """`interp.embed.cohort.sequence_index` before it read the rows in batches (2026-12-05): a lazy scan, the
    codes of every row (sample and hash as pl.Enum codes, window, hap) collected at once, then scattered."""
    import polars as pl

    lazy = assignments.lazy()
    windows = (lazy.select("window_index", "window_id", "region", "contig", "start", "end").unique()
               .sort("window_index").collect(engine="streaming"))
    n_s, n_w = len(samples), windows.height
    dtype = np.int32 if len(seq_hashes) < np.iinfo(np.int32).max else np.int64
    seq_index = np.full((n_s, n_w, 2), -1, dtype=dtype)
    s_pos = {s: i for i, s in enumerate(samples)}
    sample_cats = list(s_pos)
    position_of_code = np.array([s_pos[s] for s in sample_cats], dtype=np.int64)
    codes = (lazy.filter(pl.col("sample").is_in(sample_cats))
             .select(pl.col("sample").cast(pl.Enum(sample_cats)).to_physical().alias("s"),
                     pl.col("window_index").cast(pl.Int64).alias("w"), pl.col("hap").cast(pl.Int8).alias("h"),
                     pl.col("seq_hash").cast(pl.Enum(seq_hashes), strict=False).to_physical().alias("q"))
             .collect(engine="streaming"))
    if codes["q"].null_count():
        raise ValueError("unknown hashes")
    seq_index[position_of_code[codes["s"].to_numpy()], codes["w"].to_numpy(), codes["h"].to_numpy() - 1] = (
        codes["q"].to_numpy())
    del codes
    if (seq_index < 0).any():
        raise ValueError("holes")
    return seq_index, windows


def child(mode: str, n_s: int, n_v: int, folder: str) -> None:
    import polars as pl

    if mode in ("ve", "ve-former", "pca"):
        geno, scores, windows = geno_inputs(n_s, n_v)
    else:
        hashes = pl.read_parquet(Path(folder) / "sequences.parquet")["seq_hash"].to_list()
        samples = [f"HG{i:05d}" for i in range(3000)]
    base, t0 = rss(), time.process_time()
    if mode == "ve":
        from interp.rank_inputs import variant_effect_family
        variant_effect_family(geno, scores, windows)
    elif mode == "ve-former":
        from interp.rank import mean_impute
        weight = np.maximum(-scores["score"].to_numpy(), 0.0)
        dosage = mean_impute(np.asarray(geno.X, dtype=np.float64))
        pos0 = geno.var["pos"].to_numpy() - 1
        cols = []
        for _, s, e in windows.iter_rows():
            inside = np.flatnonzero((pos0 >= s) & (pos0 < e) & (weight > 0))
            if inside.size:
                cols.append(dosage[:, inside] @ weight[inside])
        np.column_stack(cols).astype(np.float32)
    elif mode == "pca":
        from interp.cohort.ancestry import genotype_pca
        genotype_pca(geno, umap_and_clusters=False)
    elif mode in ("index", "index-all-rows"):
        from interp.embed.cohort import sequence_index
        if mode == "index":
            index, windows = sequence_index(Path(folder) / "haplotypes.parquet", samples, hashes)
        else:
            index, windows = sequence_index_all_rows(pl.scan_parquet(Path(folder) / "haplotypes.parquet"),
                                                     samples, hashes)
        peak, cpu = rss("VmHWM") - base, time.process_time() - t0
        np.save(Path(folder) / f"{mode}.npy", index)
        windows.write_parquet(Path(folder) / f"{mode}.windows.parquet")
        print(f"{mode}: peak {peak:.0f} MiB over the start, CPU {cpu:.1f} s")
        return
    elif mode == "index-former":
        a = pl.read_parquet(Path(folder) / "haplotypes.parquet")
        print(f"  whole table as read: {a.estimated_size() / a.height:.0f} B/row (estimated_size), "
              f"{(rss() - base) * 2**20 / a.height:.0f} B/row (RSS)")
        # the former sequence_index: int64 index, rows filtered, sample and hash mapped to Int64 by dict
        windows = a.select("window_index", "window_id", "region", "contig", "start", "end").unique()
        seq_index = np.full((len(samples), windows.height, 2), -1, dtype=np.int64)
        a = a.filter(pl.col("sample").is_in(samples))
        a.filter(~pl.col("seq_hash").is_in(hashes))["seq_hash"].unique()
        seq_index[a["sample"].replace_strict({s: i for i, s in enumerate(samples)}, return_dtype=pl.Int64).to_numpy(),
                  a["window_index"].to_numpy(), a["hap"].to_numpy() - 1] = (
            a["seq_hash"].replace_strict({h: i for i, h in enumerate(hashes)}, return_dtype=pl.Int64).to_numpy())
    print(f"{mode}: peak {rss('VmHWM') - base:.0f} MiB over the start, CPU {time.process_time() - t0:.1f} s")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    if sys.argv[1:2] == ["--index"]:
        index_only([int(x) for x in sys.argv[2:]] or [300, 1200])
        return
    n_s, n_v, n_w = (int(x) for x in (sys.argv[1:] + ["2000", "10000", "1200"][len(sys.argv) - 1:]))
    with tempfile.TemporaryDirectory() as folder:
        write_assignments(Path(folder), 3000, n_w)
        for mode in ("ve", "ve-former", "pca", "index", "index-former"):
            subprocess.run([sys.executable, __file__, "--child", mode, str(n_s), str(n_v), folder], check=True)


def index_only(window_counts: list[int]) -> None:
    """`sequence_index` batched vs all rows at once, fresh process each, at 3,000 samples x each number of
    windows; prints each peak and CPU time, the ratios, and whether both give the same index and windows."""
    import polars as pl

    peaks: dict[str, list[float]] = {"index": [], "index-all-rows": []}
    for n_w in window_counts:
        with tempfile.TemporaryDirectory() as folder:
            write_assignments(Path(folder), 3000, n_w)
            print(f"3,000 samples x {n_w} windows: {3000 * n_w * 2:,} rows, "
                  f"{(Path(folder) / 'haplotypes.parquet').stat().st_size / 2**20:.0f} MiB of parquet, the index "
                  f"{3000 * n_w * 2 * 4 / 2**20:.0f} MiB")
            for mode in peaks:
                out = subprocess.run([sys.executable, __file__, "--child", mode, "0", "0", folder], check=True,
                                     stdout=subprocess.PIPE, text=True).stdout
                print(" ", out.strip())
                peaks[mode].append(float(out.split("peak ")[1].split()[0]))
            same = (np.array_equal(np.load(Path(folder) / "index.npy"), np.load(Path(folder) / "index-all-rows.npy"))
                    and pl.read_parquet(Path(folder) / "index.windows.parquet").equals(
                        pl.read_parquet(Path(folder) / "index-all-rows.windows.parquet")))
            print(f"  batched / all rows: peak {peaks['index'][-1] / peaks['index-all-rows'][-1]:.2f}x; "
                  f"same index and windows: {same}")
    for mode, p in peaks.items():
        print(f"{mode}: peak x{p[-1] / p[0]:.2f} from {window_counts[0]} to {window_counts[-1]} windows")


if __name__ == "__main__":
    main()
