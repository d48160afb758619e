"""Peak memory of the haplotypes gather (rule `haplotypes`: `interp.stages.haplotypes`, which calls
`interp.cohort.shards.gather_haplotype_files`) on synthetic shards, against the former way, and whether both
write the same rows.

Run: `python benchmarks/haplotypes_gather_memory.py` (two cohorts 4x apart in windows at the same shard size:
3,000 samples x 300 windows in 10 shards, then x 1,200 windows in 40 shards, 1.8 M and 7.2 M assignment rows;
regions of 10 windows, 30 windows a shard) or `python benchmarks/haplotypes_gather_memory.py n_samples n_windows
n_shards` (one cohort). Each shard's tables are made by the library's own `merge_region_windows` from per-region
frames shaped as `haplotype_windows` returns them (10 distinct haplotypes per window). Each way runs in a fresh
process and reports its peak RSS (VmHWM); the script prints both peaks, their ratio, the gathered table's size in
memory (`estimated_size`), whether the written assignments hold the same rows (the new gather keeps the shards'
order, the former sorted by sample throughout: compared sorted) and the distinct-sequence tables the same rows;
with two cohorts, how each way's peak grew from the smaller to the larger. Nothing is asserted.

- `old`: the former gather, kept here: the shards' assignments renumbered and sorted column by column from the
  files (`renumber_windows` as it was, copied here: the whole table held, as strings), written whole;
- `new`: the current `interp.stages.haplotypes` (`write_gathered_haplotypes`: the windows numbered from each
  shard's (region, start) pairs, then one shard's table at a time renumbered and written as row groups). Both
  write the distinct sequences one shard at a time (`write_gathered_sequences`).

`python benchmarks/haplotypes_gather_memory.py --sequences [n_shards] [windows_per_shard] [distinct_per_window]
[width]` (default 20 shards x 50 windows x 200 distinct sequences of 1,000 bases: 200,000 rows, a tenth of each
shard's sequences also in the next shard) measures the distinct-sequence part alone, where the sequences dominate:
- `old`: the former gather of `sequences.parquet`, kept here: every shard's table read whole, concatenated,
  grouped by hash (first sequence and gc, summed counts), sorted by hash, written;
- `new`: `interp.cohort.shards.write_gathered_sequences` (hashes and counts first, then one shard's table at a
  time, written as row groups).
It prints both peaks, their ratio, and whether the two files hold the same rows (sorted by hash: the new file
keeps the shards' order).
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

    from interp.cohort.haplotypes import gc_fraction, merge_region_windows
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
                                         "n_haplotypes": counts.reshape(-1)}).filter(pl.col("n_haplotypes") > 0)
                           .with_columns(gc=pl.col("sequence").map_elements(gc_fraction, return_dtype=pl.Float64)))
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


def _renumber_windows_former(assignments: list[str]):
    """`interp.cohort.haplotypes.renumber_windows` as it was when it gathered sharded runs (until 2026-12-05):
    the concatenated shards' table renumbered and sorted column by column, every column held whole."""
    import polars as pl

    rows = pl.concat([pl.scan_parquet(a) for a in assignments], how="vertical")

    def column(name: str) -> pl.Series:
        return rows.select(name).collect().to_series()

    def codes(name: str) -> pl.Series:
        levels = rows.select(pl.col(name).unique()).collect().to_series().sort()
        return rows.select(pl.col(name).cast(pl.Enum(levels)).to_physical().cast(pl.Int64)).collect().to_series()

    region, start = codes("region"), column("start")
    key = (region * (int(start.max() or 0) + 1) + start).to_numpy()
    del region, start
    window = pl.Series("window_index", np.searchsorted(np.unique(key), key).astype(np.int64))
    del key
    perm = (pl.DataFrame({"sample": codes("sample"), "hap": column("hap"), "window": window})
            .with_row_index("row").sort(["sample", "hap", "window"])["row"])
    window = window.gather(perm)
    columns = [column(name).gather(perm) for name in rows.collect_schema().names() if name != "window_index"]
    return pl.DataFrame([*columns, window])


def old_gather(inputs: dict, out: Path) -> None:
    """The gather as it was: the assignments renumbered and sorted whole (column by column), then written."""
    from interp.stages import write_table

    assign = _renumber_windows_former(inputs["shard_assignments"])
    write_table(assign, out / "haplotypes.parquet")
    new_sequences(inputs, out)
    print(json.dumps({"table_mib": assign.estimated_size() / 2**20}), file=sys.stderr)


def old_sequences(inputs: dict, out: Path) -> None:
    """The former gather of the distinct sequences: every shard's table read whole, concatenated, grouped, sorted."""
    import polars as pl

    from interp.stages import write_table

    dist = (pl.concat([pl.read_parquet(d) for d in inputs["shard_sequences"]]).group_by("seq_hash")
            .agg(pl.col("sequence").first(), pl.col("n_haplotypes").sum(), pl.col("gc").first())
            .sort("seq_hash").rechunk())
    write_table(dist, out / "sequences.parquet")


def new_sequences(inputs: dict, out: Path) -> None:
    from interp.cohort.shards import write_gathered_sequences

    write_gathered_sequences(inputs["shard_sequences"], out / "sequences.parquet")


def make_sequence_shards(folder: Path, n_shards: int, n_windows: int, n_distinct: int, width: int,
                         seed: int = 0) -> dict:
    """Shards' distinct-sequence tables only (as `haplotype_windows` and `merge_region_windows` write them: sorted
    by hash, with gc): `n_windows` windows per shard of `n_distinct` random sequences of `width` bases; the last
    tenth of each shard's rows is the next shard's first tenth (shared sequences, counts summed)."""
    import polars as pl

    from interp.cohort.haplotypes import SEQUENCE_SCHEMA, gc_fraction

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    n_rows = n_windows * n_distinct
    shared: list[str] = []
    paths: dict[str, list[str]] = {"shard_sequences": []}
    for s in range(n_shards):
        codes = letters[rng.integers(0, 4, size=(n_rows - len(shared), width), dtype=np.uint8)]
        seqs = shared + [row.tobytes().decode() for row in codes]
        del codes
        shared = seqs[-(n_rows // 10):]
        table = pl.DataFrame({"seq_hash": [hashlib.sha1(x.encode()).hexdigest() for x in seqs], "sequence": seqs,
                              "n_haplotypes": rng.integers(1, 50, size=len(seqs)),
                              "gc": [gc_fraction(x) for x in seqs]}, schema=SEQUENCE_SCHEMA).sort("seq_hash")
        del seqs
        path = folder / f"s{s:04d}.sequences.parquet"
        table.write_parquet(path)
        paths["shard_sequences"].append(str(path))
    return paths


def new_gather(inputs: dict, out: Path) -> None:
    from interp import stages

    stages.haplotypes(stages.Job(input=inputs, output={"assignments": str(out / "haplotypes.parquet"),
                                                       "sequences": str(out / "sequences.parquet"),
                                                       "stats": str(out / "haplotypes.stats.json")}))


WAYS = {"old": old_gather, "new": new_gather, "old_sequences": old_sequences, "new_sequences": new_sequences}


def child(way: str, inputs_json: str, out: str) -> None:
    Path(out).mkdir()
    WAYS[way](json.loads(Path(inputs_json).read_text()), Path(out))
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def run_child(way: str, folder: Path, out: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, "--child", way, str(folder / "inputs.json"), str(folder / out)],
                          capture_output=True, text=True, check=True)


def sequences_main(args: list[str]) -> None:
    import time

    import polars as pl

    n_shards, n_windows, n_distinct, width = (int(a) for a in (args + ["20", "50", "200", "1000"][len(args):]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        inputs = make_sequence_shards(folder, n_shards, n_windows, n_distinct, width)
        made = time.perf_counter() - t0
        (folder / "inputs.json").write_text(json.dumps(inputs))
        peaks, seconds = {}, {}
        for way in ("old", "new"):
            t0 = time.perf_counter()
            res = run_child(f"{way}_sequences", folder, way)
            seconds[way] = time.perf_counter() - t0
            peaks[way] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
        old = pl.read_parquet(folder / "old" / "sequences.parquet")
        new = pl.read_parquet(folder / "new" / "sequences.parquet")
        same = new.sort("seq_hash").equals(old)
        n_rows = n_shards * n_windows * n_distinct
        print(f"{n_shards} shards x {n_windows} windows x {n_distinct} distinct sequences of {width} bases: "
              f"{n_rows:,} shard rows, {old.height:,} distinct, sequences {old['sequence'].str.len_bytes().sum() / 2**20:.0f} "
              f"MiB as text (inputs made in {made:.0f} s)")
        print(f"peak RSS old {peaks['old']:.0f} MiB, new {peaks['new']:.0f} MiB, new/old {peaks['new'] / peaks['old']:.2f}; "
              f"wall old {seconds['old']:.1f} s, new {seconds['new']:.1f} s; same rows (sorted by hash): {same}")


def gather_main(n_samples: int, n_windows: int, n_shards: int) -> dict:
    import time

    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        inputs = make_shards(folder, n_samples, n_windows, n_shards)
        made = time.perf_counter() - t0
        (folder / "inputs.json").write_text(json.dumps(inputs))
        peaks, seconds = {}, {}
        for way in ("old", "new"):
            t0 = time.perf_counter()
            res = run_child(way, folder, way)
            seconds[way] = time.perf_counter() - t0
            peaks[way] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
            if way == "old":
                table = json.loads(res.stderr.strip().splitlines()[-1])["table_mib"]
        old = pl.read_parquet(folder / "old" / "haplotypes.parquet")
        new = pl.read_parquet(folder / "new" / "haplotypes.parquet")
        same = new.sort("sample", "hap", "window_index").equals(old)
        del old, new
        # the distinct sequences: the same rows (both gathers keep the shards' order here)
        same_rows = pl.read_parquet(folder / "new" / "sequences.parquet").sort("seq_hash").equals(
            pl.read_parquet(folder / "old" / "sequences.parquet").sort("seq_hash"))
        rows = n_samples * 2 * (n_windows // REGION_WINDOWS * REGION_WINDOWS)
        print(f"{n_samples} samples x {n_windows} windows, {n_shards} shards: {rows:,} assignment rows, "
              f"gathered table {table:.0f} MiB in memory (inputs made in {made:.0f} s)")
        print(f"  peak RSS old {peaks['old']:.0f} MiB, new {peaks['new']:.0f} MiB, new/old "
              f"{peaks['new'] / peaks['old']:.2f}; wall old {seconds['old']:.1f} s, new {seconds['new']:.1f} s; "
              f"assignments the same rows: {same}; sequences the same rows: {same_rows}")
        return peaks


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return
    if sys.argv[1:2] == ["--sequences"]:
        sequences_main(sys.argv[2:])
        return
    if sys.argv[1:]:
        gather_main(*(int(a) for a in (sys.argv[1:] + ["3000", "300", "10"][len(sys.argv) - 1:])))
        return
    small, large = gather_main(3000, 300, 10), gather_main(3000, 1200, 40)
    print(f"4x the windows (same shard size): old peak x{large['old'] / small['old']:.2f}, "
          f"new peak x{large['new'] / small['new']:.2f}")


if __name__ == "__main__":
    main()
