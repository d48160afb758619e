"""Cohort regions in shards: haplotypes and embeddings run per shard (one Snakemake job each), then are
gathered into the tables the one-job run writes (the same rows; the embeddings byte for byte).

A shard is `cohort.shard_genes` consecutive regions of the cohort's region list (the genes of
`cohort.genes` in their order, then the BED's records in file order); 0 puts every region in one shard.
Shard `i` is named `s<i, 4 digits>`, so names sort in region order.

Gathering is deterministic (the same bytes on rerun) and gives the unsharded run's rows, written one shard at
a time, never holding a whole cohort table: the haplotype windows table (`gathered_haplotypes`) has the same rows,
each window numbered by `interp.cohort.haplotypes.window_numbering` over every shard's (region, start) pairs, in
shard order, each shard's rows sorted by (sample, hap, window_index), where the unsharded table is sorted by
(sample, hap, window_index) throughout (with one shard the orders agree); the distinct-sequence table has the same
rows (one per hash, counts summed over the shards, each sequence and gc from the first shard holding it) but in
shard order, each shard's rows sorted by hash, where the unsharded table is sorted by hash throughout
(`gathered_sequences`). Consumers do not depend on either order (`interp.embed.cohort.sequence_index` places rows
by their sample, window and haplotype; the sequences are sorted by hash), so the embedding tables built from the
gathered tables equal the unsharded run's byte for byte. Each distinct sequence's vectors come from the first
shard holding it (the model gives one sequence the same vector whichever shard embeds it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from interp.cohort.haplotypes import (
    SEQUENCE_SCHEMA,
    check_sequence_columns,
    read_sequences,
    window_indices,
    window_numbering,
)
from interp.errors import InputError


def shard_count(n_regions: int, shard_genes: int) -> int:
    """How many shards `n_regions` regions make at `shard_genes` regions a shard (0: one shard)."""
    if n_regions < 1:
        raise InputError("cohort: no regions to shard")
    if shard_genes < 0:
        raise InputError(f"cohort.shard_genes must be >= 0, got {shard_genes}")
    return 1 if shard_genes == 0 else math.ceil(n_regions / shard_genes)


def shard_names(n_regions: int, shard_genes: int) -> list[str]:
    """['s0000', 's0001', ...], one per shard."""
    return [shard_name(i) for i in range(shard_count(n_regions, shard_genes))]


def shard_name(index: int) -> str:
    return f"s{index:04d}"


def shard_index(name: str) -> int:
    """The index of a shard named by `shard_name`; InputError otherwise."""
    if len(name) != 5 or not name.startswith("s") or not name[1:].isdigit():
        raise InputError(f"shard name {name!r} is not s<4 digits>")
    return int(name[1:])


def shard_slice(n_regions: int, shard_genes: int, index: int) -> slice:
    """The regions (a slice of the region list) of shard `index`."""
    n = shard_count(n_regions, shard_genes)
    if not 0 <= index < n:
        raise InputError(f"shard {index} does not exist: {n_regions} regions make {n} shard(s) "
                         f"at cohort.shard_genes = {shard_genes}")
    if shard_genes == 0:
        return slice(0, n_regions)
    return slice(index * shard_genes, min((index + 1) * shard_genes, n_regions))


def count_bed_regions(path: str | Path, source: str | None = None) -> int:
    """Records of a BED file, counted as `interp.genome.regions.read_bed` reads them (blank, `#`, `track` and
    `browser` lines skipped), without opening the FASTA: for planning shards before any job runs. A file that is
    not plain text (a gzipped BED) raises InputError naming it (`source`, else the path)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return sum(1 for line in handle
                       if line.strip() and not line.startswith(("#", "track", "browser")))
    except UnicodeDecodeError:
        raise InputError(f"{source or path}: not a plain-text BED file (gzipped? give it uncompressed)") from None


def count_cohort_regions(genes: list[str], bed: str | Path | None) -> int:
    """Regions of a cohort config: its genes plus its BED's records."""
    return len(genes) + (count_bed_regions(bed) if bed else 0)


def haplotype_stats(assignments: pl.DataFrame, n_distinct: int, n_samples: int, regions: list[str],
                    missing: str, unphased: str) -> dict:
    """The haplotypes stage's counts (`haplotypes.stats.json`); n_distinct: rows of its distinct-sequence table."""
    return _stats(assignments.height, assignments["window_index"].n_unique(), n_distinct, n_samples, regions,
                  missing, unphased)


def _stats(n_rows: int, n_windows: int, n_distinct: int, n_samples: int, regions: list[str], missing: str,
           unphased: str) -> dict:
    return {"n_haplotype_windows": n_rows, "n_windows": n_windows,
            "n_distinct": n_distinct, "dedup_ratio": n_rows / max(n_distinct, 1),
            "missing_policy": missing, "unphased_policy": unphased, "n_samples": n_samples,
            "regions": list(regions)}


def _check_shards(n_assignments: int, n_distinct: int, stats: list[dict]) -> None:
    if not n_assignments or n_assignments != n_distinct or n_distinct != len(stats):
        raise ValueError("gather_haplotypes: give one assignments, distinct and stats per shard")
    first = stats[0]
    for s in stats[1:]:
        for key in ("n_samples", "missing_policy", "unphased_policy"):
            if s[key] != first[key]:
                raise ValueError(f"gather_haplotypes: shards disagree on {key} ({first[key]!r} vs {s[key]!r})")


def _gathered_stats(n_rows: int, n_windows: int, n_distinct: int, stats: list[dict]) -> dict:
    first = stats[0]
    return _stats(n_rows, n_windows, n_distinct, first["n_samples"], [r for s in stats for r in s["regions"]],
                  first["missing_policy"], first["unphased_policy"])


def _columns(part: pl.DataFrame | str | Path, columns: list[str]) -> pl.DataFrame:
    return pl.read_parquet(part, columns=columns) if isinstance(part, (str, Path)) else part.select(columns)


def gathered_sequences(distinct: list[pl.DataFrame | str | Path]) -> Iterator[pl.DataFrame]:
    """The cohort's distinct-sequence table from the shards' (frames or parquet files, in shard order), yielded
    one shard's part at a time, never every sequence at once.

    Two passes: the first reads only seq_hash and n_haplotypes of every shard (a hash is 40 characters, a
    window sequence 1 kb or more) to sum each hash's counts over the shards and find the first shard holding
    it; the second reads one shard's table at a time and yields its rows whose hash it holds first, with the
    summed counts (`interp.cohort.haplotypes.SEQUENCE_SCHEMA`). Rows come in shard order, each shard's rows
    in its table's order (sorted by hash): the same rows as the unsharded table, which is sorted by hash
    throughout; consumers sort by hash. A shard's table lacking a column (gc, in tables of runs before it was
    added) raises InputError naming its file before anything is read.
    """
    for i, part in enumerate(distinct):
        names = pl.read_parquet_schema(part) if isinstance(part, (str, Path)) else part.columns
        check_sequence_columns(names, str(part) if isinstance(part, (str, Path)) else f"shard {i}")
    keys = pl.concat([_columns(part, ["seq_hash", "n_haplotypes"]).with_row_index("row")
                      .with_columns(pl.lit(i, pl.Int64).alias("shard")) for i, part in enumerate(distinct)])
    # groups in order of first appearance: by shard, then by row within the shard
    first = (keys.group_by("seq_hash", maintain_order=True)
             .agg(pl.col("shard").first(), pl.col("row").first(), pl.col("n_haplotypes").sum())
             .drop("seq_hash"))
    del keys
    rows_of = first.partition_by("shard", as_dict=True, include_key=False)
    del first
    for i, part in enumerate(distinct):
        mine = rows_of.pop((i,), None)
        if mine is None:
            continue
        table = _columns(part, list(SEQUENCE_SCHEMA)).cast(SEQUENCE_SCHEMA)
        yield table.gather(mine["row"]).with_columns(mine["n_haplotypes"].cast(pl.Int64))
        del table


def write_gathered_sequences(distinct: list[pl.DataFrame | str | Path], path: str | Path) -> int:
    """`gathered_sequences` written to `path` (parquet, zstd), one shard's part at a time as row groups through
    a temporary file renamed into place only when complete; returns its rows (distinct sequences).

    Memory: every shard's hashes and counts, plus one shard's table. Gathering 20 shards of 40,000 sequences of
    1,000 bases each (800,000 rows, 724,000 distinct, 690 MiB of sequence) peaked at 466 MiB RSS, where reading
    every shard's table whole, concatenating, grouping and sorting by hash (the former gather) peaked at 1,270 MiB
    (0.37x; `python benchmarks/haplotypes_gather_memory.py --sequences 20 200 200 1000`, 2026-12-05).
    """
    from interp.io import write_parquet_parts

    return write_parquet_parts(path, gathered_sequences(distinct), SEQUENCE_SCHEMA)


#: the row order of a haplotype windows table: of the unsharded one throughout, of a gathered one within each shard
ASSIGNMENT_ORDER = ["sample", "hap", "window_index"]
#: the columns of a shard's haplotype windows table the gather needs (all columns are kept)
_ASSIGNMENT_KEYS = ["sample", "hap", "region", "start", "window_index"]


def _source(part: pl.DataFrame | str | Path, i: int) -> str:
    return str(part) if isinstance(part, (str, Path)) else f"shard {i}"


def assignment_schema(assignments: list[pl.DataFrame | str | Path]) -> dict[str, pl.DataType]:
    """The gathered haplotype windows table's columns and types: the shards' (each shard's table, frame or parquet
    file, must have the same columns in the same order and types, window_index aside), window_index Int64.
    InputError naming the first shard that lacks a needed column or differs from the first shard, before any
    table is read."""
    schemas = [dict(pl.read_parquet_schema(a)) if isinstance(a, (str, Path)) else dict(a.schema)
               for a in assignments]
    first = {**schemas[0], "window_index": pl.Int64}
    for i, (part, schema) in enumerate(zip(assignments, schemas, strict=True)):
        missing = [c for c in _ASSIGNMENT_KEYS if c not in schema]
        if missing:
            raise InputError(f"{_source(part, i)}: the haplotype windows table has no column {', '.join(missing)}")
        if list(schema) != list(first) or {**schema, "window_index": pl.Int64} != first:
            raise InputError(f"{_source(part, i)}: the haplotype windows table's columns "
                             f"{[f'{k}: {v}' for k, v in schema.items()]} differ from the first shard's "
                             f"{[f'{k}: {v}' for k, v in schemas[0].items()]} (shards of different runs?)")
    return first


def shard_window_numbering(assignments: list[pl.DataFrame | str | Path]) -> pl.DataFrame:
    """`window_numbering` over every shard, from each shard's distinct (region, start) pairs (files: those two
    columns scanned, streamed; a few bytes a window, not a table)."""
    return window_numbering([pl.scan_parquet(a) if isinstance(a, (str, Path)) else a.lazy() for a in assignments])


def _in_order(table: pl.DataFrame, keys: list[str]) -> bool:
    """Whether the rows are sorted by `keys` (ties allowed): one pass comparing each row with the one before."""
    later = pl.lit(True)
    for key in reversed(keys):
        col, before = pl.col(key), pl.col(key).shift(1)
        later = (col > before) | ((col == before) & later)
    return bool(table.select(later.fill_null(True).all()).item())


def gathered_haplotypes(assignments: list[pl.DataFrame | str | Path], numbering: pl.DataFrame | None = None,
                        ) -> Iterator[pl.DataFrame]:
    """The cohort's haplotype windows table from the shards' (frames or parquet files, in shard order), yielded
    one shard's table at a time, never the whole cohort's.

    Two passes: the first (`shard_window_numbering`, unless `numbering` is given) reads only the shards' distinct
    (region, start) pairs and numbers the cohort's windows (`window_numbering`, as the unsharded run does); the
    second reads one shard's table at a time and replaces its window_index (per region in the shard's
    regions) by the cohort-wide one (`window_indices`: a join on the small numbering, column position and the
    other columns kept; Int64). Rows come in shard order, each shard's rows sorted by (sample, hap,
    window_index) (`ASSIGNMENT_ORDER`): as the shard wrote them (its own numbering ranks its windows as the
    cohort's does), sorted here only when they are not. The unsharded table has the same rows, sorted by (sample,
    hap, window_index) throughout; with one shard the two agree row for row. Shards whose columns differ raise
    InputError naming the file before anything is read (`assignment_schema`).
    Memory: the numbering (a row per window) plus one shard's table (twice, while a shard out of order is sorted).
    """
    assignment_schema(assignments)
    if numbering is None:
        numbering = shard_window_numbering(assignments)
    for part in assignments:
        table = pl.read_parquet(part) if isinstance(part, (str, Path)) else part
        table = table.with_columns(window_indices(table, numbering))
        if not _in_order(table, ASSIGNMENT_ORDER):
            table = table.sort(ASSIGNMENT_ORDER, maintain_order=True)
        if max(table.n_chunks("all"), default=1) > 1:  # one chunk, so the written pages follow the rows alone
            table = table.rechunk()
        yield table
        del table


def write_gathered_haplotypes(assignments: list[pl.DataFrame | str | Path], path: str | Path) -> tuple[int, int]:
    """`gathered_haplotypes` written to `path` (parquet, zstd), one shard's table at a time as row groups through a
    temporary file renamed into place only when complete (`interp.io.write_parquet_parts`); returns (rows,
    windows).

    Memory: the window numbering plus one shard's table. Gathering 3,000 samples x 1,200 windows from 40 shards
    (7.2 M rows, a 735 MiB table) peaked at 295 MiB RSS, and 289 MiB at 300 windows in 10 shards (the same shard
    size), where renumbering and sorting the whole table column by column (the former gather) peaked at 1,415 and
    460 MiB (`python benchmarks/haplotypes_gather_memory.py`, 2026-12-05, a shared 2-core machine).
    """
    from interp.io import write_parquet_parts

    schema = assignment_schema(assignments)
    numbering = shard_window_numbering(assignments)
    return write_parquet_parts(path, gathered_haplotypes(assignments, numbering), schema), numbering.height


def gather_haplotypes(assignments: list[pl.DataFrame | str | Path], distinct: list[pl.DataFrame | str | Path],
                      stats: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """One cohort-wide (assignments, distinct, stats) from the shards' outputs, listed in shard order, in memory
    (the rule writes both tables one shard at a time instead, `gather_haplotype_files`; the same rows in the same
    order).

    assignments, distinct: each shard's tables (`interp.cohort.haplotypes.cohort_haplotype_windows` on its
    regions), as frames or parquet files; stats: each shard's `haplotype_stats`. Windows are numbered over
    all shards and rows kept in shard order (`gathered_haplotypes`), sequences shared by shards counted once
    with their haplotype counts summed (`gathered_sequences`, in its row order); the result holds the rows of
    `cohort_haplotype_windows` over all regions at once, and the same stats.
    """
    _check_shards(len(assignments), len(distinct), stats)
    parts = list(gathered_sequences(distinct))
    dist = pl.concat(parts) if parts else pl.DataFrame(schema=SEQUENCE_SCHEMA)
    numbering = shard_window_numbering(assignments)
    assign = pl.concat(list(gathered_haplotypes(assignments, numbering)))
    return assign, dist, _gathered_stats(assign.height, numbering.height, dist.height, stats)


def gather_haplotype_files(assignments: list[str | Path], sequences: list[str | Path], stats: list[dict],
                           assignments_out: str | Path, sequences_out: str | Path) -> dict:
    """The haplotypes gather rule's work: the shards' haplotype windows written to `assignments_out`
    (`write_gathered_haplotypes`) and their distinct sequences to `sequences_out` (`write_gathered_sequences`),
    each one shard at a time; returns the stats, as `gather_haplotypes` gives them."""
    _check_shards(len(assignments), len(sequences), stats)
    n_distinct = write_gathered_sequences(sequences, sequences_out)
    n_rows, n_windows = write_gathered_haplotypes(assignments, assignments_out)
    return _gathered_stats(n_rows, n_windows, n_distinct, stats)


def write_vectors(path: str | Path, seq_hashes: list[str], vectors: dict[str, np.ndarray]) -> None:
    """One shard's per-sequence vectors as .npz: `seq_hash` [n] and one float32 [n, d] array per name."""
    from interp.io import atomic_path

    if "seq_hash" in vectors:
        raise ValueError("a vector set may not be named seq_hash")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, seq_hash=np.asarray(seq_hashes, dtype="U"), **vectors)


def read_vectors(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        return data["seq_hash"].tolist(), {k: data[k] for k in data.files if k != "seq_hash"}


def gather_vectors(parts: list[tuple[list[str], dict[str, np.ndarray]]], seq_hashes: list[str],
                   ) -> dict[str, np.ndarray]:
    """{name: float32 [len(seq_hashes), d]}: row i the vector of seq_hashes[i], from the first part holding it.

    parts: (hashes, {name: [n_part, d]}) per shard, in shard order; every part must have the same names and
    one row per hash (a part whose rows and hashes disagree could pair a hash with another's vector).
    Raises ValueError naming a hash no part holds.
    """
    if not parts:
        raise ValueError("gather_vectors: no shard vectors")
    names = list(parts[0][1])
    where: dict[str, tuple[int, int]] = {}
    for p, (hashes, vecs) in enumerate(parts):
        if list(vecs) != names:
            raise ValueError(f"gather_vectors: shard {p} has vectors {list(vecs)}, shard 0 has {names}")
        for name, mat in vecs.items():
            if np.ndim(mat) != 2 or len(mat) != len(hashes):
                raise ValueError(f"gather_vectors: shard {p} has {len(hashes)} sequence hashes but vectors {name} "
                                 f"of shape {np.shape(mat)}")
        for row, h in enumerate(hashes):
            where.setdefault(h, (p, row))
    absent = [h for h in seq_hashes if h not in where]
    if absent:
        raise ValueError(f"gather_vectors: {len(absent)} sequence(s) in no shard, e.g. {absent[0]}")
    out = {}
    for name in names:
        mats = [np.asarray(v[name], dtype=np.float32) for _, v in parts]
        out[name] = np.stack([mats[p][row] for p, row in (where[h] for h in seq_hashes)]) if seq_hashes else \
            np.zeros((0, mats[0].shape[1]), np.float32)
    return out


def gather_cohort_vectors(sequences: str | Path, vector_paths: str | list[str], stats_paths: str | list[str],
                          ) -> tuple[pl.DataFrame, dict[str, np.ndarray], dict]:
    """The embed_cohort gather's inputs: the cohort's distinct-sequence table, only seq_hash and gc (never the
    sequences; `interp.cohort.haplotypes.read_sequences`, InputError naming a table without gc), sorted by hash,
    with each sequence's vectors gathered from the shards in that order and the shards' stats
    (`gather_shard_files`)."""
    seqs = read_sequences(sequences, ["seq_hash", "gc"]).sort("seq_hash")
    pooled, stats = gather_shard_files(vector_paths, stats_paths, seqs["seq_hash"].to_list())
    return seqs, pooled, stats


def gather_shard_files(vector_paths: str | list[str], stats_paths: str | list[str], seq_hashes: list[str],
                       ) -> tuple[dict[str, np.ndarray], dict]:
    """The distinct windows' vectors gathered from the shards' `.npz` files (`gather_vectors`, rows in
    seq_hashes order) and {n_shards, cache: summed embedding-cache hits and misses, or None, devices: the
    sorted devices the shards embedded on ("unknown" for a shard that did not say)}. A single shard's paths
    may come as plain strings; stats_paths, when given, holds one file per vector file."""
    paths = [vector_paths] if isinstance(vector_paths, str) else list(vector_paths)
    stats_list = [stats_paths] if isinstance(stats_paths, str) else list(stats_paths)
    if stats_list and len(stats_list) != len(paths):
        raise ValueError(f"gather_shard_files: {len(paths)} vector files but {len(stats_list)} stats files")
    pooled = gather_vectors([read_vectors(v) for v in paths], seq_hashes)
    stats = [json.loads(Path(x).read_text()) for x in stats_list]
    caches = [s["cache"] for s in stats if s.get("cache")]
    cache = ({"hits": sum(c["hits"] for c in caches), "misses": sum(c["misses"] for c in caches)}
             if caches else None)
    devices = sorted({d for s in stats for d in (s.get("devices") or ["unknown"])})
    return pooled, {"n_shards": len(paths), "cache": cache, "devices": devices}
