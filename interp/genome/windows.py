"""Fixed-width windows over regions, with per-window summaries and per-base labels.

Per-base labels come from the FASTA (case = soft-masked repeats, G/C, CpG) and from the
annotation (exon / intron / intergenic, transcript strand, exon number in transcript direction,
splice donor / acceptor sites of each transcript's introns).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from interp.errors import InputError
from interp.genome.annotation import to_contigs
from interp.genome.regions import Region
from interp.io import atomic_path

# Per-base boolean label columns, in output order.
BOOL_LABELS = ("repeat", "exon", "intron", "intergenic", "splice_donor", "splice_acceptor", "gc", "cpg")
# Splice-site widths in bases, in transcript direction: a donor is the last DONOR_EXON exonic and the
# first DONOR_INTRON intronic bases at an intron's 5' end (GT), an acceptor the last ACCEPTOR_INTRON
# intronic and the first ACCEPTOR_EXON exonic bases at its 3' end (AG).
DONOR_EXON, DONOR_INTRON = 3, 6
ACCEPTOR_INTRON, ACCEPTOR_EXON = 12, 2


def tile(region: Region, width: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` of exactly `width` bases inside `region`, every `stride` bases.

    Bases after the last full window are not covered.
    """
    if width <= 0 or stride <= 0:
        raise InputError(f"window width and stride must be positive, got width {width}, stride {stride}")
    if width > region.length:
        raise InputError(f"window width {width} is wider than region {region}")
    return [(start, start + width) for start in range(region.start, region.end - width + 1, stride)]


def heldout_start(region: Region, heldout_fraction: float) -> int:
    """First base of the held-out tail: the last `heldout_fraction` of the region (rounded to a base)."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise InputError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    return region.end - int(round(heldout_fraction * region.length))


def lm_split(fasta: Mapping[str, str], regions: list[Region], heldout_fraction: float,
             ) -> tuple[list[str], list[str]]:
    """(training sequences, held-out sequences) of the built-in LM: per span, its first bases and its held-out
    tail (`heldout_start`), upper-cased. Overlapping regions of a contig are merged into one span first: split
    one by one, one region's held-out tail lay inside another's training part, so the LM and the Markov
    baselines trained on bases they were then scored on (and a tail inside another's was scored twice)."""
    groups: list[tuple[int, Region]] = []  # (first index in `regions` among its members, merged span)
    for i in sorted(range(len(regions)), key=lambda i: (regions[i].contig, regions[i].start, regions[i].end)):
        region = regions[i]
        if groups and groups[-1][1].contig == region.contig and region.start < groups[-1][1].end:
            first, last = groups[-1]
            groups[-1] = (min(first, i), Region(f"{last.name}+{region.name}", last.contig, last.start,
                                                max(last.end, region.end)))
        else:
            groups.append((i, region))
    spans = [span for _, span in sorted(groups, key=lambda g: g[0])]  # the regions' order: crops draw by it
    train, heldout = [], []
    for span in spans:
        cut = heldout_start(span, heldout_fraction)
        sequence = fasta[span.contig]
        train.append(sequence[span.start:cut].upper())
        heldout.append(sequence[cut:span.end].upper())
    return train, heldout


def splice_intervals(
    exons: list[tuple[int, int]], strand: str
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(donor, acceptor) half-open genome intervals of one transcript's introns.

    exons: the transcript's exons as 0-based half-open (start, end); strand "+" or "-". An intron is a
    gap between consecutive exons (by start). On "+" the donor sits at the intron's left end and the
    acceptor at its right end; on "-" (read right to left) the other way round. Each part is clipped to
    its exon and its intron, so a short exon or intron never lends bases of the next one.
    """
    spans = sorted(exons)
    donors: list[tuple[int, int]] = []
    acceptors: list[tuple[int, int]] = []
    reach = spans[0][1] if spans else 0
    for (prev_start, _), (next_start, next_end) in zip(spans[:-1], spans[1:], strict=True):
        left_exon_start, intron_start, intron_end = prev_start, reach, next_start
        reach = max(reach, next_end)
        if intron_end <= intron_start:  # abutting or overlapping exons: no intron between them
            continue
        if strand == "+":
            donors.append((max(intron_start - DONOR_EXON, left_exon_start),
                           min(intron_start + DONOR_INTRON, intron_end)))
            acceptors.append((max(intron_end - ACCEPTOR_INTRON, intron_start),
                              min(intron_end + ACCEPTOR_EXON, next_end)))
        else:
            donors.append((max(intron_end - DONOR_INTRON, intron_start), min(intron_end + DONOR_EXON, next_end)))
            acceptors.append((max(intron_start - ACCEPTOR_EXON, left_exon_start),
                              min(intron_start + ACCEPTOR_INTRON, intron_end)))
    return donors, acceptors


def _region_tracks(fasta: Mapping[str, str], region: Region, annotation: pl.DataFrame | None) -> dict:
    """Per-base label arrays of one region, each of length ``region.length``."""
    if region.contig not in fasta:
        raise InputError(f"region {region.name} is on contig {region.contig!r}, which is not in the FASTA")
    contig_seq = fasta[region.contig]
    raw = np.frombuffer(contig_seq[region.start:region.end].encode("ascii"), dtype=np.uint8)
    upper = raw & 0xDF  # ASCII upper-case for letters
    # CpG needs one base of context either side, taken from the contig (not clipped at the region).
    left = contig_seq[region.start - 1].upper() if region.start > 0 else "N"
    right = contig_seq[region.end].upper() if region.end < len(contig_seq) else "N"
    padded = np.concatenate([[ord(left)], upper, [ord(right)]]).astype(np.uint8)
    cg_at = (padded[:-1] == ord("C")) & (padded[1:] == ord("G"))  # dinucleotide starting at padded i
    cpg = cg_at[1:] | cg_at[:-1]  # base is the C (pair starts here) or the G (pair started one before)

    n = region.length
    in_exon = np.zeros(n, dtype=bool)
    in_tx = np.zeros(n, dtype=bool)
    strand = np.full(n, ".", dtype="<U1")
    exon_number = np.zeros(n, dtype=np.int32)
    splice = {"splice_donor": np.zeros(n, dtype=bool), "splice_acceptor": np.zeros(n, dtype=bool)}
    if annotation is not None and annotation.height:
        rows = annotation.filter(
            (pl.col("contig") == region.contig) & (pl.col("start") < region.end) & (pl.col("end") > region.start)
        )
        transcripts = rows.filter(pl.col("feature") == "transcript").sort("start", "transcript")
        names = transcripts["transcript"].to_list()
        exons = annotation.filter(
            (pl.col("feature") == "exon") & (pl.col("contig") == region.contig) & pl.col("transcript").is_in(names)
        ).sort("start")
        exons_of = {key[0]: frame for key, frame in exons.partition_by("transcript", as_dict=True).items()}
        # a transcript listed without exon rows (a file cut to transcript lines, CDS-only children) says
        # nothing about its exons: it must not make its whole span intronic
        transcripts = transcripts.filter(pl.col("transcript").is_in(list(exons_of)))
        # Intronic strand: the first transcript (by start) that covers a base claims it.
        for tx in transcripts.iter_rows(named=True):
            lo, hi = max(tx["start"], region.start) - region.start, min(tx["end"], region.end) - region.start
            in_tx[lo:hi] = True
            free = strand[lo:hi] == "."
            strand[lo:hi][free] = tx["strand"]
        # Exonic bases: exon number in transcript direction; the first transcript with an exon there wins
        # and its strand overrides an intronic claim by another transcript.
        for tx in transcripts.iter_rows(named=True):
            tx_exons = exons_of.get(tx["transcript"], exons.clear())
            count = tx_exons.height
            for rank, exon in enumerate(tx_exons.iter_rows(named=True)):
                number = rank + 1 if tx["strand"] == "+" else count - rank
                lo = max(exon["start"], region.start) - region.start
                hi = min(exon["end"], region.end) - region.start
                if lo >= hi:
                    continue
                in_exon[lo:hi] = True
                free = exon_number[lo:hi] == 0
                exon_number[lo:hi][free] = number
                strand[lo:hi][free] = tx["strand"]
            # Splice sites of this transcript's own introns (a union over transcripts).
            spans = list(zip(tx_exons["start"].to_list(), tx_exons["end"].to_list(), strict=True))
            for name, intervals in zip(("splice_donor", "splice_acceptor"),
                                       splice_intervals(spans, tx["strand"]), strict=True):
                for start, end in intervals:
                    lo, hi = max(start, region.start) - region.start, min(end, region.end) - region.start
                    if lo < hi:
                        splice[name][lo:hi] = True
    return {
        "base": upper,
        "repeat": (raw >= ord("a")),
        "exon": in_exon,
        "intron": in_tx & ~in_exon,
        "intergenic": ~in_tx & ~in_exon,
        "strand": strand,
        "exon_number": exon_number,
        **splice,
        "gc": (upper == ord("G")) | (upper == ord("C")),
        "cpg": cpg,
        "cg_start": cg_at[1:],  # a CG dinucleotide starts at this base (its G may lie past the region)
    }


def _resolved(
    fasta: Mapping[str, str], annotation: pl.DataFrame | None, aliases: dict[str, str] | None
) -> pl.DataFrame | None:
    """Annotation with contigs renamed to the FASTA's (rows on contigs the FASTA lacks are dropped)."""
    if annotation is None:
        return None
    return to_contigs(annotation, list(fasta), aliases, drop_missing=True)


def _bases_frame(region: Region, tracks: dict) -> pl.DataFrame:
    return pl.DataFrame({
        "contig": pl.Series([region.contig] * region.length, dtype=pl.String),
        "pos": np.arange(region.start, region.end, dtype=np.int64),
        "region": pl.Series([region.name] * region.length, dtype=pl.String),
        "base": tracks["base"].view("S1").astype("U1"),
        **{name: tracks[name] for name in BOOL_LABELS},
        "strand": tracks["strand"],
        "exon_number": tracks["exon_number"],
    })


def base_labels(
    fasta: Mapping[str, str],
    regions: list[Region],
    annotation: pl.DataFrame | None,
    aliases: dict[str, str] | None = None,
) -> pl.DataFrame:
    """One row per base of every region.

    Columns: contig, pos (0-based), region, base (upper-case), repeat (lower-case in FASTA),
    exon, intron, intergenic, splice_donor, splice_acceptor (within a donor / acceptor site of some
    transcript's intron, see `splice_intervals`), gc, cpg (part of a forward-strand CG), strand ("+",
    "-", "."), exon_number (1-based in transcript direction; 0 where not exonic).
    Where transcripts overlap, an exonic transcript's strand wins over an intronic one; among
    equals the transcript with the lowest start wins. A transcript without exon rows is left out (it would
    make its whole span intronic).
    """
    annotation = _resolved(fasta, annotation, aliases)
    frames = [_bases_frame(region, _region_tracks(fasta, region, annotation)) for region in regions]
    return pl.concat(frames, how="vertical")


def _window_table(
    fasta: Mapping[str, str], regions: list[Region], annotation: pl.DataFrame | None,
    width: int, stride: int, heldout_fraction: float,
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Per-window summaries (unordered, no index/block yet) and per-region base frames."""
    columns: dict[str, list] = {key: [] for key in (
        "region", "contig", "start", "end", "sequence", "gc", "cpg_density", "cpg_oe", "repeat_fraction",
        "exon_fraction", "intron_fraction", "intergenic_fraction", "n_fraction", "heldout")}
    base_frames = []
    for region in regions:
        windows = tile(region, width, stride)
        tracks = _region_tracks(fasta, region, annotation)
        base_frames.append(_bases_frame(region, tracks))
        starts = np.array([s for s, _ in windows], dtype=np.int64)
        offsets = starts - region.start

        def window_sum(values: np.ndarray, span: int = width, offsets=offsets) -> np.ndarray:
            # Sums over [offset, offset + span) via a cumulative sum.
            cumulative = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
            return cumulative[offsets + span] - cumulative[offsets]

        upper = tracks["base"]
        n_c = window_sum(upper == ord("C"))
        n_g = window_sum(upper == ord("G"))
        n_acgt = window_sum(upper != ord("N"))
        n_cg = window_sum(tracks["cg_start"], span=width - 1)  # both bases of the pair inside the window
        expected = n_c * n_g
        held_from = heldout_start(region, heldout_fraction)
        text = bytes(upper).decode("ascii")
        columns["region"] += [region.name] * len(windows)
        columns["contig"] += [region.contig] * len(windows)
        columns["start"] += starts.tolist()
        columns["end"] += (starts + width).tolist()
        columns["sequence"] += [text[o:o + width] for o in offsets]
        # a window of no A/C/G/T (an assembly gap) has no GC fraction: NaN, not 0, so that it stays out of
        # gc_high's cut (counted as 0 it pulled the cut down and made gc_high an N detector)
        columns["gc"] += np.where(n_acgt > 0, (n_c + n_g) / np.maximum(n_acgt, 1), np.nan).tolist()
        columns["cpg_density"] += (n_cg / width).tolist()
        columns["cpg_oe"] += np.where(expected > 0, n_cg * width / np.maximum(expected, 1), 0.0).tolist()
        for name in ("repeat", "exon", "intron", "intergenic"):
            columns[f"{name}_fraction"] += (window_sum(tracks[name]) / width).tolist()
        columns["n_fraction"] += (window_sum(upper == ord("N")) / width).tolist()
        columns["heldout"] += (starts >= held_from).tolist()
    return pl.DataFrame(columns), base_frames


def build_windows(
    fasta: Mapping[str, str],
    regions: list[Region],
    annotation: pl.DataFrame | None,
    width: int,
    stride: int,
    heldout_fraction: float,
    n_blocks: int,
    gc_high_quantile: float = 0.5,
    aliases: dict[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tile `regions` into windows and summarise each; returns ``(windows, bases)``.

    windows, one row per window in genome order (FASTA contig order, then start):
      window_index, window_id ("contig:start-end", 0-based half-open; "contig:start-end@region" where
      overlapping regions tile the same window), region, contig, start, end,
      sequence (upper-case), gc (G+C fraction of ACGT bases; NaN in a window with none), cpg_density (CG pairs per base),
      cpg_oe (n_CG * width / (n_C * n_G), 0 when n_C * n_G == 0), repeat/exon/intron/intergenic/n
      fractions, exon (exon_fraction > 0), repeat (repeat_fraction >= 0.5), intron (intron_fraction >= 0.5), gc_high (gc above the
      `gc_high_quantile` quantile over the windows holding some A/C/G/T; false in the others), heldout (window starts at or after
      `heldout_start` of its region), block (0..n_blocks-1, contiguous runs of ~equal window counts).
    bases is `base_labels` of the same regions. Annotation contigs are mapped onto the FASTA's
    names (`aliases`, then the chr-prefix rule); annotation rows on other contigs are ignored.
    """
    if not regions:
        raise InputError("no regions to tile into windows")
    if not 0.0 <= gc_high_quantile <= 1.0:
        raise InputError(f"gc_high_quantile must be in [0, 1], got {gc_high_quantile}")
    names = [region.name for region in regions]
    if len(set(names)) != len(names):
        raise InputError(f"region names must be unique, got {names}")
    annotation = _resolved(fasta, annotation, aliases)
    table, base_frames = _window_table(fasta, regions, annotation, width, stride, heldout_fraction)
    n = table.height
    if not 1 <= n_blocks <= n:
        raise InputError(f"n_blocks must be between 1 and the number of windows ({n}), got {n_blocks}")
    contig_order = {name: i for i, name in enumerate(fasta)}
    table = (
        table.with_columns(pl.col("contig").replace_strict(contig_order, return_dtype=pl.Int64).alias("_order"))
        .sort("_order", "start", "end", maintain_order=True)
        .drop("_order")
    )
    gc = table["gc"].to_numpy()
    gc = gc[~np.isnan(gc)]
    gc_cut = float(np.quantile(gc, gc_high_quantile)) if gc.size else np.inf
    index = np.arange(n, dtype=np.int64)
    table = table.with_columns(
        window_index=pl.Series(index),
        window_id=pl.format("{}:{}-{}", "contig", "start", "end"),
        exon=pl.col("exon_fraction") > 0,
        repeat=pl.col("repeat_fraction") >= 0.5,
        intron=pl.col("intron_fraction") >= 0.5,
        gc_high=(pl.col("gc") > gc_cut) & pl.col("gc").is_not_nan(),  # polars orders NaN above every number
        block=pl.Series(index * n_blocks // n),
    )
    # overlapping regions tiled on the same grid give one window twice (one per region): named by region there,
    # as the cohort's dimensions are (`interp.embed.cohort`), so that every window_id is unique
    shared = pl.col("window_id").is_duplicated()
    table = table.with_columns(window_id=pl.when(shared).then(pl.format("{}@{}", "window_id", "region"))
                               .otherwise(pl.col("window_id")))
    first = ["window_index", "window_id", "region", "contig", "start", "end", "sequence"]
    table = table.select(first + [c for c in table.columns if c not in first and c != "heldout"]
                         + ["heldout"]).select(pl.exclude("block"), "block")
    return table, pl.concat(base_frames, how="vertical")


def write_windows(
    windows: pl.DataFrame,
    bases: pl.DataFrame,
    windows_parquet: str | Path,
    windows_tsv: str | Path,
    windows_fasta: str | Path,
    bases_parquet: str | Path,
) -> None:
    """Write windows as parquet, TSV (no sequence column) and FASTA, and bases as parquet, atomically."""
    with atomic_path(windows_parquet) as tmp:
        windows.write_parquet(tmp)
    with atomic_path(windows_tsv) as tmp:
        windows.drop("sequence").write_csv(tmp, separator="\t")
    with atomic_path(windows_fasta) as tmp:
        records = (
            SeqRecord(Seq(sequence.upper()), id=window_id, description=f"region={region}")
            for window_id, region, sequence in windows.select("window_id", "region", "sequence").iter_rows()
        )
        with open(tmp, "w") as handle:
            SeqIO.write(records, handle, "fasta")
    with atomic_path(bases_parquet) as tmp:
        bases.write_parquet(tmp)


def window_label_tracks(bases: pl.DataFrame, window: Mapping, names: list[str]) -> dict[str, np.ndarray]:
    """Per-base label arrays ``[end - start]`` for one window (a row with contig, start, end).

    Boolean labels come back as bool arrays; `strand` as str and `exon_number` as int arrays.
    """
    contig, start, end = window["contig"], int(window["start"]), int(window["end"])
    missing = [name for name in names if name not in bases.columns]
    if missing:
        raise InputError(f"unknown base label(s) {missing}; available: {bases.columns}")
    rows = (
        bases.filter((pl.col("contig") == contig) & (pl.col("pos") >= start) & (pl.col("pos") < end))
        .unique(subset="pos", keep="first", maintain_order=True)
        .sort("pos")
    )
    if rows.height != end - start:
        raise InputError(f"window {contig}:{start}-{end} is not fully covered by the base labels "
                         f"({rows.height} of {end - start} bases present)")
    return {name: rows[name].to_numpy() for name in names}

