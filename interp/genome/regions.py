"""Genomic regions to embed: from the config, a BED file, or gene spans from an annotation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from interp.errors import InputError, where
from interp.genome.fasta import resolve_contig
from interp.io import atomic_path


@dataclass(frozen=True)
class Region:
    """A named interval on a FASTA contig, 0-based and half-open: bases ``start .. end-1``."""

    name: str
    contig: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.name} ({self.contig}:{self.start}-{self.end}, {self.length} bases)"


def positions_by_contig(contig: np.ndarray, start: np.ndarray, index: np.ndarray | None = None,
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{contig: (starts sorted [k], the items' indices [k] in that order)} of items (variants, records) given by
    contig, 0-based start and index [n] (default 0 .. n-1; ties keep their given order): one sort, after which
    the items in [s, e) of a contig are one `np.searchsorted` away, not a scan of every item per lookup."""
    contig = np.asarray(contig).astype(str)
    start = np.asarray(start, dtype=np.int64)
    index = np.arange(contig.size) if index is None else np.asarray(index)
    order = np.lexsort((start, contig))  # stable: by contig, then start, then given order
    cuts = np.flatnonzero(contig[order][1:] != contig[order][:-1]) + 1
    return {str(contig[rows[0]]): (start[rows], index[rows]) for rows in np.split(order, cuts) if rows.size}


def _checked(name: str, contig: str, start: int, end: int, fasta: dict[str, str], location: str) -> Region:
    """Build a Region after checking its bounds against the (already resolved) FASTA contig, and that neither
    its name nor its contig holds a comma: window ids (``contig:start-end``, ``@region`` where regions overlap)
    are listed comma-joined in the SAE's ``top_windows`` (features.parquet, report.json), which the atlas and
    steering split on commas."""
    for what, text in (("FASTA contig name", contig), ("region name", name)):
        if "," in text:
            raise InputError(f"{location}: {what} {text!r} holds a comma; window ids are listed comma-separated "
                             "(the SAE's top_windows), so rename it without one")
    size = len(fasta[contig])
    if start < 0:
        raise InputError(f"{location}: region {name} start {start} is negative")
    if end > size:
        raise InputError(f"{location}: region {name} end {end} is past the end of {contig} ({size} bases)")
    if start >= end:
        raise InputError(f"{location}: region {name} is empty or reversed (start {start} >= end {end})")
    return Region(name, contig, start, end)


def _coordinate(value: object, location: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"{location}: expected an integer, got {value!r}")
    try:
        return int(str(value).replace(",", "").replace("_", ""))
    except ValueError:
        raise InputError(f"{location}: expected an integer, got {value!r}") from None


def regions_from_config(
    entries: list[dict], fasta: dict[str, str], aliases: dict[str, str] | None = None
) -> list[Region]:
    """Regions from config entries ``{"name", "contig", "start", "end"}``; `end` defaults to the contig end."""
    regions: list[Region] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        location = f"config regions[{index}]"
        if not isinstance(entry, dict) or "contig" not in entry:
            raise InputError(f"{location}: expected a mapping with at least 'contig' (and name, start, end), "
                             f"got {entry!r}")
        contig = resolve_contig(str(entry["contig"]), fasta, aliases, source=location)
        start = _coordinate(entry.get("start", 0), f"{location}, field start")
        end = (_coordinate(entry["end"], f"{location}, field end") if entry.get("end") is not None
               else len(fasta[contig]))
        name = str(entry.get("name") or f"{contig}:{start}-{end}")
        if name in seen:
            raise InputError(f"{location}: duplicate region name {name!r}; region names must be unique")
        seen.add(name)
        regions.append(_checked(name, contig, start, end, fasta, location))
    if not regions:
        raise InputError("config regions: no regions listed; expected at least one")
    return regions


def read_bed(path: str | Path, fasta: dict[str, str], aliases: dict[str, str] | None = None) -> list[Region]:
    """Regions from a BED3+ file (0-based half-open); name from column 4, else ``contig:start-end``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: BED file not found")
    regions: list[Region] = []
    first_line: dict[str, int] = {}
    try:
        path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a plain-text BED file (gzipped? give it uncompressed)") from None
    with open(path, encoding="utf-8-sig") as handle:  # (a BOM, as Windows editors save, is no text)
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) < 3:
                raise InputError(f"{where(path, line=line_no)}: expected at least 3 columns "
                                 f"(contig, start, end), got {len(fields)}")
            location = where(path, line=line_no)
            contig = resolve_contig(fields[0], fasta, aliases, source=location)
            start = _coordinate(fields[1].strip(), where(path, line=line_no, field="start"))
            end = _coordinate(fields[2].strip(), where(path, line=line_no, field="end"))
            name = fields[3].strip() if len(fields) > 3 and fields[3].strip() not in ("", ".") else \
                f"{contig}:{start}-{end}"
            if name in first_line:
                raise InputError(f"{location}: duplicate region name {name!r} (first on line {first_line[name]})")
            first_line[name] = line_no
            regions.append(_checked(name, contig, start, end, fasta, location))
    if not regions:
        raise InputError(f"{path}: BED file has no regions")
    return regions


def require_unique_names(regions: list[Region], sources: str) -> list[Region]:
    """`regions` unchanged when no name comes twice; else an InputError naming it and `sources` (what the
    regions were gathered from): later stages key windows and shards by region name."""
    seen: set[str] = set()
    for r in regions:
        if r.name in seen:
            raise InputError(f"cohort: region name {r.name!r} comes twice ({sources} both name it); region "
                             "names must be unique")
        seen.add(r.name)
    return regions


def write_regions(regions: list[Region], path: str | Path) -> None:
    """The regions as a table (name, contig, start, end; 0-based half-open) in their order, which
    `read_regions` reads back exactly (any name or contig). Written whole to a temporary file, then renamed
    (no half-written file)."""
    with atomic_path(path) as tmp:
        pl.DataFrame({"name": [r.name for r in regions], "contig": [r.contig for r in regions],
                      "start": [r.start for r in regions], "end": [r.end for r in regions]},
                     schema={"name": pl.String, "contig": pl.String, "start": pl.Int64, "end": pl.Int64}
                     ).write_parquet(tmp)


def read_regions(path: str | Path, fasta: dict[str, str]) -> list[Region]:
    """Regions written by `write_regions`, in order, each checked against the FASTA (contig and bounds)."""
    table = pl.read_parquet(path)
    out = []
    for row, (name, contig, start, end) in enumerate(table.select("name", "contig", "start", "end").iter_rows()):
        if contig not in fasta:
            raise InputError(f"{path}, row {row + 1}: contig {contig!r} is not in the FASTA; the regions were "
                             "resolved against another reference: rerun place_cohort")
        out.append(_checked(name, contig, int(start), int(end), fasta, f"{path}, row {row + 1}"))
    return out


def gene_regions(
    annotation: pl.DataFrame,
    genes: list[str],
    flank: int,
    fasta: dict[str, str],
    aliases: dict[str, str] | None = None,
) -> list[Region]:
    """The span of all transcripts of each named gene, +/- `flank` bases, the flank clipped to its contig (a gene
    that ends past the contig's end is an InputError: annotation and FASTA of different builds).

    Region names are the gene names. Contigs are resolved to the FASTA's names.
    """
    if flank < 0:
        raise InputError(f"gene region flank must be >= 0, got {flank}")
    spans = (
        annotation.filter(pl.col("feature") == "transcript")
        .group_by("gene", maintain_order=True)
        .agg(pl.col("contig").unique(maintain_order=True), pl.col("start").min(), pl.col("end").max())
    )
    by_gene = {row["gene"]: row for row in spans.iter_rows(named=True)}
    regions = []
    for gene in genes:
        if gene not in by_gene:
            raise _unknown_gene(gene, by_gene)
        row = by_gene[gene]
        if len(row["contig"]) > 1:
            raise InputError(f"gene {gene!r} has transcripts on several contigs ({', '.join(row['contig'])}); "
                             "list a BED region instead")
        contig = resolve_contig(row["contig"][0], fasta, aliases, source=f"annotation gene {gene}")
        if row["end"] > len(fasta[contig]):  # the flank may be clipped at the contig's end, the gene may not
            where_ = "lies" if row["start"] >= len(fasta[contig]) else "ends"
            raise InputError(f"annotation gene {gene}: {contig}:{row['start']}-{row['end']} {where_} past the end of "
                             f"{contig} in the FASTA ({len(fasta[contig])} bases); are the annotation and the FASTA "
                             "of the same genome build?")
        start = max(0, row["start"] - flank)
        end = min(len(fasta[contig]), row["end"] + flank)
        regions.append(_checked(gene, contig, start, end, fasta, f"annotation gene {gene}"))
    return regions


def _unknown_gene(gene: str, known: Iterable[str]) -> InputError:
    known = sorted(known)
    shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30 else "")
    return InputError(f"gene {gene!r} is not in the annotation (known genes: {shown})")


def explain_missing_genes(annotation_path: str | Path, annotation_format: str, genes: list[str],
                          kept: pl.DataFrame | None, fasta_contigs: list[str],
                          aliases: dict[str, str] | None = None) -> None:
    """Raise an InputError for the genes of `genes` that `kept` (the studied transcripts, on the FASTA's contigs)
    lacks: those the annotation has on contigs the FASTA does not (named with their contig), else one the file
    does not have (named with the genes it has on the FASTA's contigs); return when none is missing.

    Reads the annotation again, keeping no transcript, only each gene's contig (a typo in a gene name of a
    GENCODE GTF must not build the whole file's table, twice, as until the thirty-third session): call it on the
    error path only.
    """
    from interp.genome.annotation import read_annotation

    known = set(kept["gene"].to_list()) if kept is not None else set()
    missing = [g for g in genes if g not in known]
    if not missing:
        return
    contig_of: dict[str, str] = {}

    def record(gene: str, contig: str, start: int, end: int) -> bool:
        contig_of.setdefault(gene, contig)
        return False

    read_annotation(annotation_path, annotation_format, keep=record)
    resolved: dict[str, str | None] = {}
    for contig in dict.fromkeys(contig_of.values()):
        try:
            resolved[contig] = resolve_contig(contig, fasta_contigs, aliases, source="annotation")
        except InputError:
            resolved[contig] = None
    off_fasta = [(g, contig_of[g]) for g in missing if g in contig_of and resolved[contig_of[g]] is None]
    if off_fasta:
        found = ", ".join(f"{g} on '{c}'" for g, c in off_fasta)
        shown = ", ".join(f"'{n}'" for n in fasta_contigs[:10])
        shown += f", ... ({len(fasta_contigs)} in all)" if len(fasta_contigs) > 10 else ""
        raise InputError(f"{annotation_path}: gene(s) {found} lie on contigs the FASTA does not have (it has "
                         f"{shown}); map the names with reference.contig_aliases, or use the FASTA the annotation "
                         "was made for")
    if contig_of and not any(resolved.values()):  # an annotation of another naming: say which contig
        resolve_contig(next(iter(resolved)), fasta_contigs, aliases, source="annotation")
    absent = [g for g in missing if g not in contig_of]
    if absent:
        raise _unknown_gene(absent[0], (g for g, c in contig_of.items() if resolved[c] is not None))
