"""Per-haplotype sequences of a region, and their windows in reference coordinates.

`haplotype_sequences` follows `bcftools consensus -H 1|2 -s SAMPLE` (records applied in
position order; a record is skipped when the haplotype carries REF; a record whose first base
lies at or before the last base of an already applied record is skipped and counted, but for
bcftools' one exception: an indel (as htslib classifies it, REF and ALT sharing their first base) whose
first base is that last base, unless the record applied before it was an insertion, is applied after
its anchor base, which keeps what the earlier record wrote: a SNV then an insertion or a deletion at the
same POS, or an insertion on the last base of a deletion or MNP, as `bcftools norm -m -any` writes them).
Differences from bcftools, by design:
- records are read where their first base lies in the region (bcftools on the region's FASTA ignores the others
  too): a deletion from before the region leaves the region's first bases reference. A deletion (ALT a prefix of
  REF) that runs past the region's end deletes the region's bases it covers, as bcftools does on the region's
  FASTA; any other record crossing the end is skipped (and counted);
- unphased heterozygous calls follow the `unphased` policy ("ref" keeps REF, "N" masks REF's
  span), where `bcftools -H 1` would take the first allele whatever the phasing;
- missing calls follow `missing`: "ref" equals bcftools' default; "N" writes N over REF's whole
  span and the masked record then blocks overlapping records. This equals `--missing N` for SNVs;
  for multi-base REF alleles bcftools 1.16 writes a single N over REF's first base only and keeps
  the rest of REF (tested in tests/test_haplotypes.py).
- half-missing calls (one copy '.'; a multi-allelic './2' is split first, into './0' and './1'): a phased one
  ('.|1', '1|.') keeps each allele on its haplotype, the missing one under `missing`, as bcftools does. An
  unphased one ('./1', '1/.') is an unphased call: the ALT's haplotype is as unknown, relative to the
  neighbouring heterozygous sites, as a '0/1''s. Under missing "ref" the missing copy reads as REF before the
  phase is judged, so './1' is '0/1' (both haplotypes follow `unphased`: REF and REF, or N and N) and './0' is
  '0/0'. Under missing "N" the missing copy is N on the haplotype the GT names, and the called copy, which differs
  from it, follows `unphased` on the other ('./1' and './0': N and REF under unphased "ref", N and N under "N").
  `validate_cohort` counts the unphased ones with an ALT among the unphased calls (n_unphased_half_missing, in
  unphased_het_rate), so check_cohort refuses unphased "ref" when they would erase most variants.
Output is upper case (bcftools keeps the FASTA's case).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from interp.cohort.vcf import Genotypes
from interp.errors import InputError
from interp.genome.regions import positions_by_contig

if TYPE_CHECKING:
    from interp.genome.regions import Region

_POLICIES = ("ref", "N")

Edit = tuple[int, int, str]  # (0-based reference start, REF length, replacement sequence)

#: the distinct-sequence table (`sequences.parquet`) of `haplotype_windows` and every table made from it
SEQUENCE_SCHEMA = {"seq_hash": pl.String, "sequence": pl.String, "n_haplotypes": pl.Int64, "gc": pl.Float64}


def gc_fraction(seq: str) -> float:
    """(G + C) / (A + C + G + T) of an upper-case sequence; other letters (N) are not counted; 0 when no
    base is A, C, G or T."""
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else 0.0


def read_sequences(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """`columns` (default: all of `SEQUENCE_SCHEMA`) of a distinct-sequence table written by the haplotypes
    stages; only those columns are read. A table lacking one (`gc` is absent from tables written before it was
    added) raises InputError naming the file."""
    columns = list(SEQUENCE_SCHEMA) if columns is None else columns
    check_sequence_columns(pl.read_parquet_schema(path), str(path), columns)
    return pl.read_parquet(path, columns=columns)


def check_sequence_columns(names, source: str, columns: list[str] | None = None) -> None:
    """InputError naming `source` when the column names `names` lack one of `columns` (default: all of
    `SEQUENCE_SCHEMA`)."""
    missing = [c for c in (list(SEQUENCE_SCHEMA) if columns is None else columns) if c not in names]
    if missing:
        raise InputError(f"{source}: the distinct-sequence table has no column {', '.join(missing)} (written by an "
                         f"older version of the haplotypes stage? delete it and rerun haplotypes)")


class HaplotypeSet(Mapping[tuple[str, int], str]):
    """Mapping (sample, hap) -> sequence, plus what was applied.

    Holds the region's reference bases once and each haplotype's edits; a haplotype's sequence is built
    from them when it is read (O(region length) each time), so memory is the edits, never
    samples x 2 x region length of sequence (3,000 samples over a 500 kb gene would be 3 GB).
    edits: (sample, hap) -> list of (0-based start, REF length, replacement) actually applied.
    n_overlapping_skipped: (sample, hap) -> records skipped for overlapping an applied one.
    n_outside_skipped: records whose REF span crosses the region's start or end (skipped for everyone).
    """

    def __init__(self, region: Region, local: str = "") -> None:
        self.region = region
        self.local = local  # the region's reference bases (local[0] is reference base region.start)
        self.edits: dict[tuple[str, int], list[Edit]] = {}
        self.n_overlapping_skipped: dict[tuple[str, int], int] = {}
        self.n_outside_skipped = 0

    def __getitem__(self, key: tuple[str, int]) -> str:
        return _apply(self.local, self.region, self.edits[key])

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.edits)

    def __len__(self) -> int:
        return len(self.edits)


class RecordIndex:
    """The records of a `Genotypes` by contig, sorted by start, with their REF lengths: built once, so that
    finding one region's records costs a search in its contig's starts, not a pass over every record (a job of
    many regions was regions x records)."""

    def __init__(self, genotypes: Genotypes) -> None:
        ref_len = np.fromiter((len(r) for r in genotypes.ref), dtype=np.int64, count=len(genotypes.ref))
        self.by_contig: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}
        for contig, (starts, rows) in positions_by_contig(genotypes.contig, genotypes.pos - 1).items():
            self.by_contig[contig] = (rows, starts, ref_len[rows], int(ref_len[rows].max()))

    def near(self, region: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(records, their 0-based starts, REF lengths) of `region`'s contig that start inside it or could
        cross its start (start at most the contig's longest REF before it), in start order."""
        rows, starts, lengths, longest = self.by_contig.get(region.contig, (np.empty(0, np.int64),) * 3 + (0,))
        lo, hi = np.searchsorted(starts, [region.start - longest, region.end])
        return rows[lo:hi], starts[lo:hi], lengths[lo:hi]


def _region_records(local: str, genotypes: Genotypes, region: Region, index: RecordIndex | None = None,
                    ) -> tuple[np.ndarray, int, dict[int, int]]:
    """Indices of records inside `region` sorted by position, how many cross its start or end and are skipped
    (a deletion that begins before the region and ends inside it counts; its bases inside the region stay
    reference), and {record: its REF length inside the region} for the deletions that begin inside and run
    past the end (ALT a prefix of REF): they delete the region's bases they cover, as bcftools consensus does
    on the region's FASTA; any other record crossing the end is skipped and counted.

    local: the reference bases of the region (local[0] is reference base region.start). index: the
    genotypes' `RecordIndex` (built here when None).

    Raises InputError if a record's REF disagrees with the reference (case-insensitive; a reference N
    matches any base).
    """
    rows, pos0_near, ref_len = (index or RecordIndex(genotypes)).near(region)
    n_outside = int(((pos0_near < region.start) & (pos0_near + ref_len > region.start)).sum())
    pos0 = genotypes.pos - 1
    keep, clipped = [], {}
    for i in rows[pos0_near >= region.start]:
        ref = genotypes.ref[i]
        inside = min(len(ref), region.end - pos0[i])
        if inside < len(ref):
            if not ref.upper().startswith(genotypes.alt[i].upper()):
                n_outside += 1  # not a deletion after its anchor: no part of it is the region's alone
                continue
            clipped[int(i)] = int(inside)
        offset = pos0[i] - region.start
        found = local[offset: offset + inside].upper()
        # a reference N (or an IUPAC code, read as N) does not know the base: not a mismatch, as in validation
        if any(a != b and b != "N" for a, b in zip(ref[:inside].upper(), found, strict=True)):
            raise InputError(
                f"VCF record {region.contig}:{genotypes.pos[i]} has REF={ref} but the reference has {found}"
                + (" (within the region)" if inside < len(ref) else "")
            )
        keep.append(i)
    keep = np.array(keep, dtype=np.int64)
    order = np.argsort(genotypes.pos[keep], kind="stable")
    return keep[order], n_outside, clipped


def _acting_records(genotypes: Genotypes, records: np.ndarray, missing: str, unphased: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Which of `records` write over their REF span, for every haplotype at once.

    Returns (acts [n_samples, 2, k] bool: haplotype (sample, hap 1|2) writes record records[j];
    masks [n_samples, 2, k] bool: what it writes is N over REF's span, else the ALT allele). A missing
    allele writes N under missing "N"; otherwise an unphased call whose two copies differ writes N on both
    haplotypes under unphased "N" (REF under "ref"); otherwise an ALT allele writes ALT; anything else leaves REF.
    Under missing "ref" a missing copy reads as REF (allele 0) before the copies are compared, so an unphased
    './1' is '0/1' and './0' is '0/0'; under missing "N" it differs from every allele (see the module docstring).
    """
    gt = genotypes.gt[records].transpose(1, 2, 0)  # [n_samples, 2, k]
    is_missing = gt < 0
    called = np.where(is_missing, 0, gt) if missing == "ref" else gt  # a missing copy as REF under missing: ref
    unphased_het = (~genotypes.phased[records].T & (called[:, 0] != called[:, 1]))[:, None, :]  # [n_samples, 1, k]
    masked = is_missing & (missing == "N")
    acts = np.where(masked, True, np.where(unphased_het, unphased == "N", called > 0))
    return acts, masked | unphased_het


def _apply(local: str, region: Region, edits: list[Edit]) -> str:
    """The region's reference bases (`local`) with `edits` (reference coordinates) applied."""
    pieces, cursor = [], 0
    for start, ref_len, replacement in edits:
        pieces.append(local[cursor:start - region.start])
        pieces.append(replacement)
        cursor = start - region.start + ref_len
    pieces.append(local[cursor:])
    return "".join(pieces).upper()


def haplotype_sequences(
    ref_seq_by_contig: dict[str, str],
    genotypes: Genotypes,
    region: Region,
    missing: str = "ref",
    unphased: str = "ref",
    index: RecordIndex | None = None,
) -> HaplotypeSet:
    """Sequences of both haplotypes of every sample over `region` (0-based half-open).

    Returns a HaplotypeSet (a mapping (sample, hap 1|2) -> upper-case sequence, each built when read) with the
    applied edits, so windows can be mapped back to reference coordinates. `ref_seq_by_contig` may be a dict of
    str or an indexed `Reference` (only the region's bases are fetched). Lengths differ from
    region.end - region.start where indels were applied. See the module docstring for the
    bcftools-compatible rules and the two policies ("ref" or "N"). index: the genotypes' `RecordIndex`, for a
    caller building many regions from one `Genotypes` (built here when None).
    """
    for name, policy in (("missing", missing), ("unphased", unphased)):
        if policy not in _POLICIES:
            raise InputError(f"haplotype policy {name}='{policy}' is not one of {', '.join(_POLICIES)}")
    if region.contig not in ref_seq_by_contig:
        raise InputError(f"region {region.name}: contig '{region.contig}' is not in the reference")
    ref_seq = ref_seq_by_contig[region.contig]
    if region.end > len(ref_seq) or region.start < 0 or region.start >= region.end:
        raise InputError(f"region {region.name}: {region.contig}:{region.start}-{region.end} is not inside "
                         f"the contig (length {len(ref_seq)})")
    local = ref_seq[region.start:region.end]  # one fetch from an indexed reference; plain str below
    records, n_outside, clipped = _region_records(local, genotypes, region, index)
    result = HaplotypeSet(region, local)
    result.n_outside_skipped = n_outside
    acts, masks = _acting_records(genotypes, records, missing, unphased)
    starts = (genotypes.pos[records] - 1).tolist()
    # a deletion running past the region's end: its REF and ALT cut at the end (ALT is a prefix of REF)
    ref_lens = [clipped.get(int(i), len(genotypes.ref[i])) for i in records]
    alts = [genotypes.alt[i][:clipped[int(i)]] if int(i) in clipped else genotypes.alt[i] for i in records]
    anchored = [_anchored_indel(genotypes.ref[i][:ref_lens[j]], alts[j]) for j, i in enumerate(records)]
    for s, sample in enumerate(genotypes.samples):
        for hap in (1, 2):
            edits: list[Edit] = []
            frozen_until = -1  # last reference base (0-based) covered by an applied record
            inserted = False  # whether the record applied last was an insertion
            n_overlap = 0
            mask = masks[s, hap - 1]
            for j in np.flatnonzero(acts[s, hap - 1]).tolist():  # records in position order
                start, ref_len = starts[j], ref_lens[j]
                replacement = "N" * ref_len if mask[j] else alts[j]
                if start > frozen_until:
                    edits.append((start, ref_len, replacement))
                elif start == frozen_until and anchored[j] and not mask[j] and not inserted:
                    # after the anchor base, which keeps what the earlier record wrote there
                    edits.append((start + 1, ref_len - 1, replacement[1:]))
                else:
                    n_overlap += 1
                    continue
                frozen_until = start + ref_len - 1
                inserted = len(replacement) > ref_len
            result.edits[(sample, hap)] = edits
            result.n_overlapping_skipped[(sample, hap)] = n_overlap
    return result


def _anchored_indel(ref: str, alt: str) -> bool:
    """Whether bcftools consensus may apply the record on the last base of the one before it: htslib calls it
    an indel (`bcf_set_variant_type`: after the common prefix one allele is used up, or after the common
    suffix too what is left of one allele is a single base equal to the other's) and REF and ALT share their
    first base. A length-changing record that htslib calls "other" (GT>GGC) does not qualify."""
    r, a = ref.upper(), alt.upper()
    if not r or not a or r[0] != a[0]:
        return False
    i = 0
    while i < len(r) and i < len(a) and r[i] == a[i]:
        i += 1
    if i == len(r) or i == len(a):
        return len(r) != len(a)
    r_end, a_end = len(r) - 1, len(a) - 1
    while r_end > i and a_end > i and r[r_end] == a[a_end]:
        r_end, a_end = r_end - 1, a_end - 1
    if a_end == i:
        return r_end != i and r[r_end] == a[a_end]
    return r_end == i and r[r_end] == a[a_end]


def _reference_offsets(region: Region, edits: list[Edit], hap_length: int,
                       points: np.ndarray | None = None) -> np.ndarray:
    """int64: where each reference base's bases start in the haplotype, at every base of the region
    ([region length + 1]) or at `points` (0-based offsets into the region, 0 .. region length).

    An edit's replacement is laid over REF's span base by base; bases beyond REF's length
    (insertions) belong to REF's last base, and REF bases beyond the replacement emit nothing.
    Only the edited bases are visited (edits never overlap), so the cost follows the edits and `points`,
    not the region's length.
    """
    where, delta = [], []  # reference offsets whose base emits other than one base, and emitted - 1
    for start, ref_len, replacement in edits:
        k = start - region.start
        for j in range(ref_len - 1):
            if j >= len(replacement):
                where.append(k + j)
                delta.append(-1)
        last = max(len(replacement) - (ref_len - 1), 0) - 1
        if last:
            where.append(k + ref_len - 1)
            delta.append(last)
    length = region.end - region.start
    points = np.arange(length + 1, dtype=np.int64) if points is None else np.asarray(points, dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(np.asarray(delta, dtype=np.int64))])
    shift = cumulative[np.searchsorted(np.asarray(where, dtype=np.int64), points, side="left")]
    if length + int(cumulative[-1]) != hap_length:
        raise ValueError("haplotype length does not match its edits")
    return points + shift


def _tiles(region: Region, width: int, stride: int) -> list[tuple[int, int]]:
    if width <= 0 or stride <= 0:
        raise InputError(f"window width ({width}) and stride ({stride}) must be positive")
    if region.end - region.start < width:
        raise InputError(f"region {region.name} ({region.end - region.start} bp) is shorter than the "
                         f"window width {width}")
    tiles = [(s, s + width) for s in range(region.start, region.end - width + 1, stride)]
    if tiles[-1][1] < region.end:
        # one last window aligned to the region's end, so no base (an exon at a gene's end) is left out
        tiles.append((region.end - width, region.end))
    return tiles


def haplotype_windows(
    hap_seqs: HaplotypeSet,
    region: Region,
    genotypes: Genotypes,
    width: int,
    stride: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cut every haplotype into windows defined in reference coordinates.

    Windows tile `region` as [start, start + width) every `stride` bases (full windows only; a last
    window aligned to the region's end covers any remainder).
    A haplotype's window holds the haplotype bases aligned to that reference interval, so its
    length differs from `width` where indels were applied. A window whose interval a deletion removes
    entirely (no base left) holds instead the `width` haplotype bases centred on the deletion's junction
    (what that haplotype has at the locus), so every window has bases to embed.
    `hap_seqs` must come from `haplotype_sequences` on the same region (its edits give the
    alignment); `genotypes` is used to order samples.
    Returns
      assignments: sample, hap, region, window_index, window_id, start, end (0-based reference
          coordinates), seq_hash (sha1 hex of the window sequence);
      distinct: seq_hash, sequence, n_haplotypes (how many assignment rows carry it), gc (`gc_fraction` of
          the sequence), each distinct sequence once, in order of first appearance (`SEQUENCE_SCHEMA`).
    """
    if not isinstance(hap_seqs, HaplotypeSet):
        raise TypeError("hap_seqs must be the HaplotypeSet returned by haplotype_sequences")
    if (hap_seqs.region.contig, hap_seqs.region.start, hap_seqs.region.end) != (
            region.contig, region.start, region.end):
        raise ValueError("hap_seqs were built for another region")
    tiles = _tiles(region, width, stride)
    n_tiles, samples = len(tiles), list(genotypes.samples)
    tile_start = np.array([a for a, _ in tiles], dtype=np.int64)
    tile_end = np.array([b for _, b in tiles], dtype=np.int64)
    bounds = np.concatenate([tile_start, tile_end]) - region.start
    # the distinct sequences, in order of first appearance, and the row of each (sample, hap, window) among
    # them: one int per row while the loop runs (a row's Python strings took ~6x the finished table)
    row_of: dict[str, int] = {}
    sequences: list[str] = []
    seq_row = np.empty(len(samples) * 2 * n_tiles, dtype=np.int64)
    row = 0
    for sample in samples:
        for hap in (1, 2):
            sequence = hap_seqs[(sample, hap)]
            at = _reference_offsets(region, hap_seqs.edits[(sample, hap)], len(sequence), bounds).tolist()
            for index in range(n_tiles):
                junction = at[index]
                window = sequence[junction: at[n_tiles + index]]
                if not window:  # a deletion removed every base of the interval: embed its junction instead
                    if not sequence:
                        raise InputError(f"haplotype {hap} of sample {sample} has no bases left in region "
                                         f"{region.name}: its deletions remove all of it")
                    lo = max(0, min(junction - width // 2, len(sequence) - width))
                    window = sequence[lo: lo + width]
                k = row_of.get(window)
                if k is None:
                    k = row_of[window] = len(sequences)
                    sequences.append(window)
                seq_row[row] = k
                row += 1
    hashes = pl.Series([hashlib.sha1(w.encode()).hexdigest() for w in sequences], dtype=pl.String)
    window_index = np.tile(np.arange(n_tiles, dtype=np.int32), 2 * len(samples))
    assignments = pl.DataFrame({
        "sample": pl.Series(samples, dtype=pl.String).gather(np.repeat(np.arange(len(samples)), 2 * n_tiles)),
        "hap": np.tile(np.repeat(np.array([1, 2], dtype=np.int8), n_tiles), len(samples)),
        "region": pl.Series([region.name], dtype=pl.String).gather(np.zeros(window_index.size, dtype=np.int64)),
        "window_index": window_index,
        "window_id": pl.Series([f"{region.name}:{i}" for i in range(n_tiles)], dtype=pl.String).gather(window_index),
        "start": tile_start[window_index], "end": tile_end[window_index],
        "seq_hash": hashes.gather(seq_row)},
        schema={"sample": pl.String, "hap": pl.Int8, "region": pl.String, "window_index": pl.Int32,
                "window_id": pl.String, "start": pl.Int64, "end": pl.Int64, "seq_hash": pl.String})
    distinct = pl.DataFrame(
        {"seq_hash": hashes, "sequence": sequences,
         "n_haplotypes": np.bincount(seq_row, minlength=len(sequences)).astype(np.int64),
         "gc": [gc_fraction(w) for w in sequences]},
        schema=SEQUENCE_SCHEMA,
    )
    return assignments, distinct


def window_numbering(windows: pl.DataFrame | pl.LazyFrame | list[pl.DataFrame | pl.LazyFrame]) -> pl.DataFrame:
    """The cohort's window numbering: every distinct (region, start) pair of `windows` (rows with at least region
    and start: one frame or lazy frame, or several taken as concatenated) with its window_index (Int64), the
    pair's rank among the pairs sorted by region name then start, so 0 .. n_windows - 1; rows in that order.

    The one definition of the cohort-wide window_index: `renumber_windows` (one job's regions) and the sharded
    gather (`interp.cohort.shards.gathered_haplotypes`, from each shard's distinct pairs, never its whole table)
    both number windows through it. Each part is reduced to its distinct pairs first (streamed from a lazy scan).
    """
    parts = windows if isinstance(windows, list) else [windows]
    pairs = pl.concat([w.lazy().select("region", "start").unique() for w in parts], how="vertical")
    return (pairs.unique().sort(["region", "start"]).collect(engine="streaming")
            .with_row_index("window_index").with_columns(pl.col("window_index").cast(pl.Int64)))


def window_indices(rows: pl.DataFrame | pl.LazyFrame, numbering: pl.DataFrame) -> pl.Series:
    """Each row's window_index (Int64) under `numbering` (`window_numbering`), in the rows' order; only the rows'
    region and start are read. ValueError when a row's (region, start) is not numbered (a numbering of other
    rows)."""
    out = (rows.lazy().select("region", "start")
           .join(numbering.lazy(), on=["region", "start"], how="left", validate="m:1", maintain_order="left")
           .select("window_index").collect().to_series())
    if out.null_count():
        raise ValueError(f"{out.null_count()} row(s) have a (region, start) the window numbering lacks")
    return out


def renumber_windows(assignments: pl.DataFrame | list[pl.DataFrame | str | Path]) -> pl.DataFrame:
    """Window indices unique across regions, in genome order: one job's table (the unsharded run's,
    `merge_region_windows`); the sharded gather streams instead (`interp.cohort.shards.gathered_haplotypes`).

    assignments: rows of `haplotype_windows` for one or more regions (their `window_index` restarts at 0
    in every region), with at least sample, hap, region, start, window_index: one frame, or several frames or
    parquet files taken as concatenated, read here one column at a time.
    Returns the same rows with `window_index` (Int64, now the last column) replaced by the window's index under
    `window_numbering` (the rank of its (region name, start) among all distinct pairs sorted by region name then
    start, so 0 .. n_windows - 1); rows sorted by sample, hap, window_index (unique keys, so the order does not
    depend on how it is computed).

    Built column by column: the order comes from the window index and integer codes of the sample column, then
    each column is read, put in that order and dropped before the next (a join and a sort of the whole table of
    strings held the input, the joined and the sorted copies at once).
    """
    parts = assignments if isinstance(assignments, list) else [assignments]
    rows = pl.concat([pl.scan_parquet(a) if isinstance(a, (str, Path)) else a.lazy() for a in parts],
                     how="vertical")

    def column(name: str) -> pl.Series:
        return rows.select(name).collect().to_series()

    def codes(name: str) -> pl.Series:
        """Each row's rank among the column's distinct strings in sorted order (no string sort of every row)."""
        levels = rows.select(pl.col(name).unique()).collect().to_series().sort()
        return rows.select(pl.col(name).cast(pl.Enum(levels)).to_physical().cast(pl.Int64)).collect().to_series()

    window = window_indices(rows, window_numbering(rows))
    perm = (pl.DataFrame({"sample": codes("sample"), "hap": column("hap"), "window": window})
            .with_row_index("row").sort(["sample", "hap", "window"])["row"])
    window = window.gather(perm)
    columns = [column(name).gather(perm) for name in rows.collect_schema().names() if name != "window_index"]
    return pl.DataFrame([*columns, window])


def merge_region_windows(
    assignments: list[pl.DataFrame],
    distinct: list[pl.DataFrame],
    contig_of: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One cohort-wide table from the per-region outputs of `haplotype_windows`.

    assignments, distinct: one frame each per region, as returned by `haplotype_windows`.
    contig_of: region name -> contig (every region of `assignments` must be a key).
    Returns
      assignments: the rows of all regions plus `contig` and `window_id` ("contig:start-end", 0-based
          half-open reference coordinates), window_index renumbered across regions (`renumber_windows`);
      distinct: seq_hash, sequence, n_haplotypes (summed over regions), gc, one row per hash, sorted by hash.
    """
    assign = pl.concat(assignments).with_columns(
        pl.col("region").replace_strict(contig_of, return_dtype=pl.String).alias("contig"))
    assign = assign.with_columns(
        (pl.col("contig") + ":" + pl.col("start").cast(pl.String) + "-" + pl.col("end").cast(pl.String))
        .alias("window_id"))
    dist = (pl.concat(distinct).group_by("seq_hash").agg(pl.col("sequence").first(),
                                                         pl.col("n_haplotypes").sum(), pl.col("gc").first())
            .sort("seq_hash"))
    return renumber_windows(assign), dist


def cohort_haplotype_windows(
    ref_seq_by_contig: dict[str, str],
    genotypes: Genotypes,
    regions: list[Region],
    width: int,
    stride: int,
    missing: str = "ref",
    unphased: str = "ref",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every sample's haplotype windows over all `regions`: `haplotype_sequences` and `haplotype_windows`
    per region (windows of `width` bases every `stride` bases), merged by `merge_region_windows`.

    Returns (assignments, distinct) as `merge_region_windows` does.
    """
    assignments, distinct = [], []
    index = RecordIndex(genotypes)
    for region in regions:
        seqs = haplotype_sequences(ref_seq_by_contig, genotypes, region, missing=missing, unphased=unphased,
                                   index=index)
        a, d = haplotype_windows(seqs, region, genotypes, width, stride)
        assignments.append(a)
        distinct.append(d)
    return merge_region_windows(assignments, distinct, {r.name: r.contig for r in regions})
