"""Peak memory of the haplotypes gather (rule `haplotypes`: `interp.stages.haplotypes`, which calls
`interp.cohort.shards.gather_haplotypes`) on synthetic shards, against the former way, and whether both write
the same bytes.

Run: `python benchmarks/haplotypes_gather_memory.py [n_samples] [n_windows] [n_shards]` (default 3,000 samples,
300 windows in regions of 10 windows, 10 shards: 1.8 M assignment rows). Each shard's tables are made by the
library's own `merge_region_windows` from per-region frames shaped as `haplotype_windows` returns them (10
distinct haplotypes per window). Each way runs in a fresh process and reports its peak RSS (VmHWM); the script
prints both peaks, their ratio, the written table's size in memory (`estimated_size`), and whether the written
files are byte-identical. Nothing is asserted.

- `old`: the former gather, kept here: every shard's assignments read whole (`pl.read_parquet`), concatenated,
  renumbered by a join on (region, start) and sorted (`renumber_windows` as it was, copied here);
- `new`: the current `interp.stages.haplotypes` (`interp.cohort.haplotypes.renumber_windows`: column by column
  from the files).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

N_HAP = 10  # distinct haplotype sequences per window
REGION_WINDOWS = 10  # windows per region


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB); not ru_maxrss, which Linux carries across exec."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def make_shards(folder: Path, n_samples: int, n_windows: int, n_shards: int, seed: int = 0) -> dict:
    """The shards' assignments, sequences and stats files; returns the gather rule's input paths."""
    import polars as pl

    from interp.cohort.haplotypes import merge_region_windows
    from interp.cohort.shards import haplotype_stats

    rng = np.random.default_rng(seed)
    samples = [f"HG{i:05d}" for i in range(n_samples)]
    n_regions = n_windows // REGION_WINDOWS
    per_shard = -(-n_regions // n_shards)
    paths: dict[str, list[str]] = {"shard_assignments": [], "shard_sequences": [], "shard_stats": []}
    for s in range(n_shards):
        a_parts, d_parts, names, contig_of = [], [], [], {}
        for r in range(s * per_shard, min((s + 1) * per_shard, n_regions)):
            name, start0 = f"GENE{r:05d}", 1_000_000 + r * 50_000
            contig_of[name] = "chr17"
            names.append(f"{name}=chr17:{start0}-{start0 + REGION_WINDOWS * 500}")
            seqs = [["".join(rng.choice(list("ACGT"), 40)) + f"{name}{w}{h}" for h in range(N_HAP)]
                    for w in range(REGION_WINDOWS)]
            hashes = [[hashlib.sha1(x.encode()).hexdigest() for x in row] for row in seqs]
            pick = rng.integers(0, N_HAP, size=(n_samples, 2, REGION_WINDOWS))
            w = np.tile(np.arange(REGION_WINDOWS, dtype=np.int32), 2 * n_samples)
            a_parts.append(pl.DataFrame({
                "sample": np.repeat(samples, 2 * REGION_WINDOWS),
                "hap": np.tile(np.repeat(np.array([1, 2], np.int8), REGION_WINDOWS), n_samples),
                "region": [name] * w.size, "window_index": w,
                "window_id": [f"{name}:{i}" for i in w], "start": start0 + w.astype(np.int64) * 500,
                "end": start0 + w.astype(np.int64) * 500 + 500,
                "seq_hash": [hashes[i][j] for i, j in zip(w, pick.reshape(-1), strict=True)]},
                schema={"sample": pl.String, "hap": pl.Int8, "region": pl.String, "window_index": pl.Int32,
                        "window_id": pl.String, "start": pl.Int64, "end": pl.Int64, "seq_hash": pl.String}))
            counts = np.zeros((REGION_WINDOWS, N_HAP), np.int64)
            np.add.at(counts, (w, pick.reshape(-1)), 1)
            d_parts.append(pl.DataFrame({"seq_hash": [h for row in hashes for h in row],
                                         "sequence": [x for row in seqs for x in row],
                                         "n_haplotypes": counts.reshape(-1)}).filter(pl.col("n_haplotypes") > 0))
        assign, dist = merge_region_windows(a_parts, d_parts, contig_of)
        out = folder / f"s{s:04d}"
        out.mkdir()
        assign.write_parquet(out / "haplotypes.parquet")
        dist.write_parquet(out / "sequences.parquet")
        (out / "haplotypes.stats.json").write_text(json.dumps(haplotype_stats(assign, dist.height, n_samples, names,
                                                                              "ref", "ref")))
        for key, file in (("shard_assignments", "haplotypes.parquet"), ("shard_sequences", "sequences.parquet"),
                          ("shard_stats", "haplotypes.stats.json")):
            paths[key].append(str(out / file))
    return paths


def old_gather(inputs: dict, out: Path) -> None:
    """The gather as it was: every shard's tables read whole, then gathered in memory."""
    import polars as pl

    from interp.stages import write_table

    assignments = pl.concat([pl.read_parquet(a) for a in inputs["shard_assignments"]])
    order = (assignments.select("region", "start").unique().sort(["region", "start"])
             .with_row_index("cohort_window").with_columns(pl.col("cohort_window").cast(pl.Int64)))
    assign = (assignments.join(order, on=["region", "start"]).drop("window_index")
              .rename({"cohort_window": "window_index"}).sort(["sample", "hap", "window_index"])).rechunk()
    dist = (pl.concat([pl.read_parquet(d) for d in inputs["shard_sequences"]]).group_by("seq_hash")
            .agg(pl.col("sequence").first(), pl.col("n_haplotypes").sum()).sort("seq_hash").rechunk())
    write_table(assign, out / "haplotypes.parquet")
    write_table(dist, out / "sequences.parquet")
    print(json.dumps({"table_mib": assign.estimated_size() / 2**20}), file=sys.stderr)


def new_gather(inputs: dict, out: Path) -> None:
    from interp import stages

    stages.haplotypes(stages.Job(input=inputs, output={"assignments": str(out / "haplotypes.parquet"),
                                                       "sequences": str(out / "sequences.parquet"),
                                                       "stats": str(out / "haplotypes.stats.json")}))


def child(way: str, inputs_json: str, out: str) -> None:
    Path(out).mkdir()
    (old_gather if way == "old" else new_gather)(json.loads(Path(inputs_json).read_text()), Path(out))
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return
    n_samples, n_windows, n_shards = (int(a) for a in (sys.argv[1:] + ["3000", "300", "10"][len(sys.argv) - 1:]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = make_shards(folder, n_samples, n_windows, n_shards)
        (folder / "inputs.json").write_text(json.dumps(inputs))
        peaks = {}
        for way in ("old", "new"):
            res = subprocess.run([sys.executable, __file__, "--child", way, str(folder / "inputs.json"),
                                  str(folder / way)], capture_output=True, text=True, check=True)
            peaks[way] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
            if way == "old":
                table = json.loads(res.stderr.strip().splitlines()[-1])["table_mib"]
        same = all((folder / "old" / f).read_bytes() == (folder / "new" / f).read_bytes()
                   for f in ("haplotypes.parquet", "sequences.parquet"))
        rows = n_samples * 2 * (n_windows // REGION_WINDOWS * REGION_WINDOWS)
        print(f"{n_samples} samples x {n_windows} windows, {n_shards} shards: {rows:,} assignment rows, "
              f"gathered table {table:.0f} MiB in memory")
        print(f"peak RSS old {peaks['old']:.0f} MiB, new {peaks['new']:.0f} MiB, new/old {peaks['new'] / peaks['old']:.2f}; "
              f"outputs byte-identical: {same}")


if __name__ == "__main__":
    main()
