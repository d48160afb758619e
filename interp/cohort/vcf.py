"""Cohort inputs: samples.tsv, VCF genotypes, and the checks run before any work starts.

Cost follows the regions studied: a bgzipped VCF with a .tbi/.csi is read region by region through
its index (`pysam.TabixFile`), streamed, so time and memory grow with records-in-regions x samples,
never with the file; only unindexed files are scanned (`place_cohort` makes an indexed copy once).
Records are parsed from their text: one-digit diploid calls (`0|1`, `./.`) are decoded with numpy, from
GT-only columns (phased reference panels) or from the GT sub-field of a FORMAT that starts with GT (imputed
GT:DS:GP, called GT:AD:DP); any other FORMAT or ploidy goes field by field.
Marker panels stream as int8 dosage chunks (`iter_dosage_chunks`), biallelic records only. Genotype reads
split a multi-allelic record into one biallelic record per ALT allele, as `bcftools norm -m -any` does
(symbolic `<DEL>`/`<*>` and `*` alleles give none; a record with no other ALT is skipped and counted). Positions are 1-based as
in the VCF; `Region` objects are 0-based half-open in FASTA contig names. A truncated or corrupt
compressed VCF ends in a one-line InputError naming the file.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pysam

from interp.errors import InputError, where
from interp.genome.fasta import check_alias_not_masking, resolve_contig
from interp.io import MISSING_TEXT, atomic_path, compression

if TYPE_CHECKING:
    from interp.genome.regions import Region



@dataclass
class Genotypes:
    """Biallelic genotypes of a cohort.

    samples: sample IDs, in column order of `gt`.
    contig: [n_var] contig names (FASTA names when the reader was given FASTA contigs).
    pos: [n_var] int64, 1-based VCF positions.
    ref, alt: [n_var] allele strings (upper case).
    gt: [n_var, n_samples, 2] int8 allele index per chromosome copy (0 REF, 1 ALT, -1 missing).
    phased: [n_var, n_samples] bool, True where the VCF call used '|'.
    """

    samples: list[str]
    contig: np.ndarray
    pos: np.ndarray
    ref: list[str]
    alt: list[str]
    gt: np.ndarray
    phased: np.ndarray
    n_multiallelic_split: int = 0  # multi-allelic records read as one record per sequence ALT allele
    n_other_skipped: int = 0  # records with no sequence ALT: reference-only, or only symbolic (<DEL>, <*>) or *
    # biallelic records (after splitting) repeating the contig, position, REF, ALT and calls of one read before:
    # skipped, as `bcftools norm -d exact` does (read twice, a variant was tested twice and counted twice in the
    # PCA and the multiple-testing families); the same variant with other calls is an InputError
    n_duplicate_skipped: int = 0
    contig_map: dict[str, str] = field(default_factory=dict)  # VCF name -> returned name

    @property
    def n_variants(self) -> int:
        return int(self.pos.shape[0])

    def dosage(self) -> np.ndarray:
        """[n_var, n_samples] float32 ALT allele count (0, 1, 2), NaN where either copy is missing."""
        missing = (self.gt < 0).any(axis=2)
        dose = self.gt.clip(min=0).sum(axis=2).astype(np.float32)
        dose[missing] = np.nan
        return dose


# ---------------------------------------------------------------- samples.tsv


# a finite decimal number as a sample sheet writes one; Python's float() also takes "1_0" (10), "Inf" and "NAN"
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _is_number(text: str) -> bool:
    return _DECIMAL.fullmatch(text) is not None


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: the name the population labels carry in every table after samples.tsv (whatever its column is called)
POPULATION = "population"


def population_obs_column(configured: str | None) -> str | None:
    """The obs column of the population labels in the cohort's tables: `POPULATION` when the config names
    a population column of samples.tsv (`read_samples_tsv` renames it), None without labels."""
    return POPULATION if configured else None


#: heterozygous (or half-missing ALT) calls a sample needs in the studied regions before its share of unphased
#: ones counts it in n_samples_mostly_unphased (a lone unphased call says little)
MIN_HET_CALLS_PER_SAMPLE = 5


def sample_ids_digest(path: str | Path) -> str:
    """sha256 of samples.tsv's sample IDs in their order (hex): what the haplotype shards read of the sheet, so
    the workflow reruns them when it changes and only then (`read_samples_tsv`'s checks apply)."""
    ids = read_samples_tsv(path, [], [], None)["sample_id"].to_list()
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def read_samples_tsv(
    path: str | Path,
    phenotypes: list[str],
    covariates: list[str],
    population_column: str | None = None,
) -> pl.DataFrame:
    """Read and check a tab-separated sample sheet.

    Returns columns sample_id (str), population (str, when `population_column` is given),
    each phenotype (float64, null for NA/empty) and each covariate (float64 when every value is
    numeric, else str). Raises InputError naming file, line and column on any problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: samples file does not exist")
    _check_header_line(path)
    try:
        table = pl.read_csv(path, separator="\t", infer_schema=False, comment_prefix=None)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as error:
        detail = " ".join(str(error).split())
        raise _ragged_row(path) or InputError(f"{path}: cannot be read as a tab-separated table ({detail})") from error
    ragged = _ragged_row(path)  # polars fills a short row's last fields with nulls: never read it so
    if ragged:
        raise ragged
    header = table.columns
    # trailing blank lines (an editor's last newline or two) are no samples; a blank line inside stays an error
    blank = table.select(pl.all_horizontal(pl.all().fill_null("").str.strip_chars() == "")).to_series().to_list()
    while blank and blank[-1]:
        blank.pop()
    table = table.head(len(blank))
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        raw_header = handle.readline().rstrip("\r\n").split("\t")
    repeated = sorted({c for c in raw_header if raw_header.count(c) > 1})
    if repeated:
        raise InputError(f"{where(path, line=1)}: column(s) {', '.join(map(repr, repeated))} appear more than "
                         "once in the header; each column name must be unique")
    wanted = ["sample_id"] + ([population_column] if population_column else []) + phenotypes + covariates
    for column in wanted:
        if column not in header:
            # a config that leaves cohort.covariates out inherits configs/demo.yaml's [sex, batch]
            hint = ("; it is named in cohort.covariates (configs/demo.yaml's value unless your config sets its own: "
                    "`covariates: []` for none)" if column in covariates else "")
            raise InputError(
                f"{where(path, line=1, field=column)}: column '{column}' is missing; "
                f"the header has: {', '.join(header)}{hint}"
            )
    if table.height == 0:
        raise InputError(f"{path}: has a header but no samples")

    ids = table["sample_id"].to_list()
    first_line: dict[str, int] = {}
    for row, sample in enumerate(ids):
        line = row + 2  # line 1 is the header
        if sample is None or sample.strip() == "":
            raise InputError(f"{where(path, line=line, field='sample_id')}: empty sample_id")
        if sample in first_line:
            raise InputError(
                f"{where(path, line=line, field='sample_id')}: duplicate sample_id '{sample}' "
                f"(first seen on line {first_line[sample]})"
            )
        first_line[sample] = line

    columns: dict[str, pl.Series] = {"sample_id": table["sample_id"]}
    if population_column:
        labels = table[population_column].to_list()
        empty = [row + 2 for row, v in enumerate(labels) if v is None or v.strip() in MISSING_TEXT]
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
            raise InputError(f"{where(path, field=population_column)}: {len(empty)} sample(s) have no population "
                             f"label (lines {shown}); fill them in (e.g. from the ancestry PCs) or set "
                             "cohort.population_column: null to let the audit bin the PCs for every sample")
        columns[POPULATION] = pl.Series([v.strip() for v in labels], dtype=pl.String)
    for name in phenotypes:
        values = table[name].to_list()
        for row, value in enumerate(values):
            if value is not None and value not in MISSING_TEXT and not _is_number(value):
                raise InputError(
                    f"{where(path, line=row + 2, field=name)}: phenotype value '{value}' is not a number "
                    "(expected 0/1 for binary or a number for quantitative traits; NA for missing)"
                )
        columns[name] = _to_float(values)
    for name in covariates:
        values = table[name].to_list()
        # a column of numbers is numeric, even with a stray "Inf" or "1_0", which is then refused by line
        numeric = all(v is None or v in MISSING_TEXT or _parses_as_float(v) for v in values)
        if numeric:
            for row, value in enumerate(values):
                if value is not None and value not in MISSING_TEXT and not _is_number(value):
                    raise InputError(f"{where(path, line=row + 2, field=name)}: covariate value '{value}' is not a "
                                     "finite decimal number (NA for missing)")
        columns[name] = _to_float(values) if numeric else table[name]
    return pl.DataFrame(columns).select(list(columns))


def _check_header_line(path: Path) -> None:
    """InputError for a sample sheet whose first line is not a tab-separated header: a comment line ('#'), or
    a comma- or semicolon-separated file (one column holding the separators)."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline().rstrip("\r\n")
    if first.startswith("#"):
        raise InputError(f"{where(path, line=1)}: starts with '#' ({first[:40]!r}): a sample sheet's first line is its "
                         "header, with sample_id as a column name (no '#'), and it takes no comment lines")
    if "\t" not in first:
        for sep, name in ((",", "comma"), (";", "semicolon")):
            if sep in first:
                raise InputError(f"{where(path, line=1)}: the header is one column holding {name}s "
                                 f"({first[:60]!r}): the file looks {name}-separated; a sample sheet is tab-separated")


def _ragged_row(path: Path) -> InputError | None:
    """The first non-blank row of a sample sheet whose tab-separated field count differs from the header's, as
    an InputError naming its line (a stray or trailing tab; a value left off instead of written NA), or None."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        n_columns = len(handle.readline().rstrip("\r\n").split("\t"))
        for line_no, line in enumerate(handle, start=2):
            n_fields = len(line.rstrip("\r\n").split("\t"))
            if line.strip() and n_fields != n_columns:
                why = "a stray or trailing tab?" if n_fields > n_columns else "a missing value still needs its field: NA"
                return InputError(f"{where(path, line=line_no)}: {n_fields} tab-separated fields, but the header "
                                  f"has {n_columns} columns ({why})")
    return None


def _to_float(values: list[str | None]) -> pl.Series:
    return pl.Series([None if v is None or v in MISSING_TEXT else float(v) for v in values], dtype=pl.Float64)


# ---------------------------------------------------------------- VCF reading


def _open_text(path: Path):
    """The VCF as text: UTF-8 (VCF 4.3; sample IDs may hold any character), undecodable bytes replaced."""
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if compression(path) != "plain" else (
        open(path, encoding="utf-8", errors="replace"))


def _corrupt(path: Path, error: Exception) -> InputError:
    """One-line error for a VCF that ends early or whose compressed blocks are damaged."""
    detail = " ".join(str(error).split()) or type(error).__name__
    return InputError(f"{path}: truncated or corrupt VCF ({detail}); re-create it (bgzip, then tabix -p vcf)")


@dataclass
class VcfHeader:
    """What the header says: samples (column order) and ##contig IDs with their lengths (None if unset)."""

    samples: list[str]
    contigs: dict[str, int | None]


_CONTIG_ID = re.compile(r"[<,]ID=([^,>]+)")
_CONTIG_LENGTH = re.compile(r"[<,]length=(\d+)")


def read_vcf_header(vcf_path: str | Path) -> VcfHeader:
    """Read only the header lines of a VCF (plain, gzip or bgzip); InputError if it is not a VCF."""
    path = Path(vcf_path)
    if not path.exists():
        raise InputError(f"{path}: VCF does not exist")
    contigs: dict[str, int | None] = {}
    try:
        with _open_text(path) as handle:
            first = handle.readline()
            if first.startswith("BCF"):  # binary VCF: bcftools reads it, this text reader does not
                raise InputError(f"{path}: is a BCF (binary VCF); convert it to a bgzipped VCF: bcftools view -Oz "
                                 f"-o {path.name.removesuffix('.bcf')}.vcf.gz {path.name}, then tabix -p vcf")
            if not first.startswith("##fileformat=VCF"):
                raise InputError(f"{where(path, line=1)}: cannot be read as a VCF (expected '##fileformat=VCF...', "
                                 f"found {first[:40].rstrip()!r})")
            for line_no, line in enumerate(handle, start=2):
                if line.startswith("##contig="):
                    found = _CONTIG_ID.search(line)
                    if found:
                        length = _CONTIG_LENGTH.search(line)
                        contigs[found.group(1)] = int(length.group(1)) if length else None
                elif line.startswith("#CHROM"):
                    columns = line.rstrip("\r\n").split("\t")
                    if columns[:8] != _FIXED_COLUMNS:
                        raise InputError(f"{where(path, line=line_no)}: header line must start with the tab-separated "
                                         f"columns {' '.join(_FIXED_COLUMNS)}")
                    unnamed = [k for k, name in enumerate(columns[9:], start=10) if not name.strip()]
                    if unnamed:
                        raise InputError(f"{where(path, line=line_no)}: column {unnamed[0]} of the #CHROM line has "
                                         "no sample name (a trailing tab or space, or two tabs in a row); expected "
                                         "one name per sample column")
                    return VcfHeader(samples=columns[9:], contigs=contigs)
                elif not line.startswith("##"):
                    break
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise _corrupt(path, error) from error
    raise InputError(f"{path}: cannot be read as a VCF (no '#CHROM' header line before the records)")


_FIXED_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


def _indexes(path: Path) -> list[Path]:
    """The .tbi / .csi files beside `path`."""
    return [index for suffix in (".tbi", ".csi") if (index := Path(str(path) + suffix)).exists()]


def _stale(index: Path, path: Path) -> bool:
    """True when `index` is older than the VCF it indexes (htslib's rule, whole seconds): the VCF was
    rewritten after indexing, and region queries through it silently miss records (or hit damaged blocks)."""
    return int(index.stat().st_mtime) < int(path.stat().st_mtime)


def _has_index(path: Path) -> bool:
    """True when `path` has a .tbi or .csi beside it and none of them is stale."""
    indexes = _indexes(path)
    return bool(indexes) and not any(_stale(index, path) for index in indexes)


def is_indexed(vcf_path: str | Path) -> bool:
    """True for a bgzipped VCF with a .tbi or .csi beside it (region queries go through the index); an index
    older than the VCF counts as none (the file is then scanned, or `ensure_indexed` indexes it anew)."""
    path = Path(vcf_path)
    return path.exists() and compression(path) == "bgzf" and _has_index(path)


def _open_tabix(path: Path) -> pysam.TabixFile:
    """`path` opened through its index: the .tbi beside it, else the .csi (pysam looks for a .tbi only, so a VCF
    indexed by `bcftools index`, CSI by default, was refused as having no index)."""
    indexes = _indexes(path)
    return pysam.TabixFile(str(path), index=str(indexes[0]) if indexes else None)


def indexed_contigs(vcf_path: str | Path) -> list[str]:
    """Contigs that have records, from the tabix/CSI index (no record is read)."""
    path = Path(vcf_path)
    try:
        with _open_tabix(path) as tabix:
            return list(tabix.contigs)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot open its tabix/CSI index ({' '.join(str(error).split())})") from error


def vcf_samples(vcf_path: str | Path) -> list[str]:
    """Sample IDs in the VCF header, in file order."""
    return read_vcf_header(vcf_path).samples


class MaskingAlias(InputError):
    """A contig alias that sends a contig the FASTA has to one it lacks: refused where contigs the FASTA lacks
    are otherwise skipped."""


def _contig_resolver(vcf_path: Path, fasta_contigs, aliases):
    """Function VCF contig name -> returned name (cached); identity without FASTA contigs."""
    cache: dict[str, str] = {}
    available = list(fasta_contigs) if fasta_contigs is not None else None

    def resolve(name: str) -> str:
        if name not in cache:
            if available is None:
                cache[name] = aliases.get(name, name) if aliases else name
            else:
                try:
                    cache[name] = resolve_contig(name, available, aliases, source=f"VCF {vcf_path}")
                except InputError:
                    # callers skip contigs the FASTA lacks; a mistyped alias of a studied contig must not be one
                    try:
                        check_alias_not_masking(name, available, aliases)
                    except InputError as err:
                        raise MaskingAlias(f"VCF {vcf_path}: {err}") from None
                    raise
        return cache[name]

    return resolve, cache


def _merged(regions: list[Region]) -> dict[str, list[tuple[int, int]]]:
    """Regions merged per contig: {contig: sorted disjoint [(start, end)]} (0-based, half-open)."""
    by_contig: dict[str, list[tuple[int, int]]] = {}
    for region in sorted(regions, key=lambda r: (r.contig, r.start)):
        spans = by_contig.setdefault(region.contig, [])
        if spans and region.start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], region.end))
        else:
            spans.append((region.start, region.end))
    return by_contig


def _in_regions(contig: str, pos0: int, regions_by_contig: dict[str, list[tuple[int, int]]]) -> bool:
    """Whether pos0 lies in one of the contig's sorted disjoint spans (`_merged`): one binary search, not a
    pass over the spans for every record (2,000 regions on a contig cost 51 us per record)."""
    spans = regions_by_contig.get(contig, ())
    i = bisect.bisect_right(spans, (pos0, math.inf)) - 1
    return i >= 0 and spans[i][0] <= pos0 < spans[i][1]


def _vcf_names_of(vcf_contigs: list[str], fasta_contig: str, resolve) -> list[str]:
    """The VCF's contig names that map onto `fasta_contig`."""
    names = []
    for name in vcf_contigs:
        try:
            if resolve(name) == fasta_contig:
                names.append(name)
        except MaskingAlias:
            raise
        except InputError:
            continue
    return names


def _fetched(path: Path, tabix: pysam.TabixFile, contig: str, start: int, end: int) -> Iterator[str]:
    """The record lines tabix returns for contig:start-end, one at a time (a region of a chromosome VCF with
    thousands of samples holds gigabytes of text: never all of it at once)."""
    lines = tabix.fetch(contig, start, end)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except ValueError as error:  # htslib reports a damaged block as a failed iteration
            raise _corrupt(path, error) from error
        yield line


def record_pos(field: str, vcf_path: str | Path, line: str) -> int:
    """A record's POS (1-based; 0 is a telomere, as the VCF specification allows, and lies in no region);
    InputError naming the file and record unless it is a whole number (tabix indexes '10x' at 10, so a bad POS
    gets past the index and only shows here)."""
    if not (field.isascii() and field.isdigit()):
        raise InputError(f"{vcf_path}: record {line[:60]!r}: POS {field!r} is not a whole number")
    return int(field)


def _record_lines(path: Path, spans: list[tuple[str, int, int]] | None) -> Iterator[str]:
    """Record lines (no trailing newline) of the whole file, or of `spans` [(VCF contig, start, end)]
    through the index, each record once: a record belongs to the span holding its first base."""
    try:
        if spans is None:
            with _open_text(path) as handle:
                for line in handle:
                    if not line.startswith("#"):
                        yield line.rstrip("\r\n")
            return
        with _open_tabix(path) as tabix:
            known = set(tabix.contigs)
            for contig, start, end in spans:
                if contig not in known:
                    continue
                for line in _fetched(path, tabix, contig, start, end):
                    pos0 = record_pos(line.split("\t", 2)[1], path, line) - 1
                    if start <= pos0 < end:
                        yield line
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise _corrupt(path, error) from error


def _decode_gt(calls: str, n_samples: int, n_alt: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path for GT-only columns of one-digit diploid calls ('0|1', './.'): ([n, 2] int8, [n] phased).

    None when the layout is anything else, or an allele index is above `n_alt` (then `_parse_calls` reads the
    fields one by one, and names what is wrong).
    """
    raw = np.frombuffer(calls.encode("ascii", "replace") + b"\t", dtype=np.uint8)
    if raw.size != 4 * n_samples:
        return None
    cells = raw.reshape(n_samples, 4)
    sep = cells[:, 1]
    if not ((cells[:, 3] == 9).all() and ((sep == 124) | (sep == 47)).all()):
        return None
    alleles = cells[:, [0, 2]].astype(np.int16) - 48
    alleles[cells[:, [0, 2]] == 46] = -1  # '.'
    if ((alleles < -1) | (alleles > n_alt)).any():  # `_parse_calls` names what is wrong
        return None
    return alleles.astype(np.int8), sep == 124


#: every sub-field after a call's first (GT): removed to read GT out of a FORMAT such as GT:DS:GP
_AFTER_GT = re.compile(r":[^\t]*")


def _gt_text(calls: str, format_field: str) -> str | None:
    """The sample columns reduced to their GT sub-fields (`0|1\t1|1...`) when FORMAT starts with GT (as the
    VCF specification requires when GT is present: imputed GT:DS:GP, called GT:AD:DP:GQ), so that the numpy
    decoders read them instead of a Python loop over thousands of samples; None for another FORMAT."""
    if format_field == "GT":
        return calls
    if format_field.startswith("GT:"):
        return _AFTER_GT.sub("", calls)
    return None


def _parse_calls(fields: list[str], format_field: str, n_samples: int, where_: str, n_alt: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """General path: GT out of any FORMAT of a record with `n_alt` ALT alleles, for `fields` [n_samples] sample
    columns: ([n_samples, 2] int8 allele indices, -1 missing; [n_samples] phased). Haploid calls count as
    homozygous and phased. InputError (naming `where_`) for a column count that differs from the header's, a
    ploidy above 2, or an allele index other than 0 .. n_alt or '.'.
    """
    if len(fields) < n_samples or any(fields[n_samples:]):  # a cut or merged line (a trailing tab is fine)
        raise InputError(f"{where_}: {len(fields)} genotype columns; the header names {n_samples} samples")
    empty = [i for i, f in enumerate(fields[:n_samples]) if not f]
    if empty:  # a lost column with a trailing tab, or two tabs in a row: not a missing call ('./.' or '.')
        raise InputError(f"{where_}: genotype column {empty[0] + 1} of {n_samples} is empty"
                         + (f" ({len(empty)} in all)" if len(empty) > 1 else "")
                         + "; expected a call per sample ('0|1', or './.' for a missing one)")
    # int16 for a site listing over 127 ALT alleles (joint-called STRs); `_split_calls` makes int8 records of it
    gt = np.full((n_samples, 2), -1, dtype=np.int8 if n_alt <= 127 else np.int16)
    phased = np.zeros(n_samples, dtype=bool)
    keys = format_field.split(":")
    if "GT" not in keys:
        return gt, phased
    k = keys.index("GT")
    for i, call in enumerate(fields[:n_samples]):
        parts = call.split(":")
        text = parts[k] if k < len(parts) else "."
        if "|" in text or "/" in text:
            alleles = re.split(r"[|/]", text)
            phased[i] = "|" in text
        else:
            alleles = [text, text]
            phased[i] = True
        if len(alleles) > 2:
            raise InputError(f"{where_}: genotype {text!r} has ploidy {len(alleles)}; only haploid and diploid "
                             "calls can be read")
        for copy, allele in enumerate(alleles):
            if allele == ".":  # an empty allele ('0|', or no GT value) is not one: refused below
                continue
            if not (allele.isdigit() and int(allele) <= n_alt):
                what = "is not a VCF GT value" if not allele.isdigit() else (
                    f"names ALT allele {allele}, but the record has "
                    + ("one ALT allele" if n_alt == 1 else f"{n_alt} ALT alleles"))
                raise InputError(f"{where_}: genotype {text!r} {what} (expected 0 .. {n_alt} or '.' per copy)")
            gt[i, copy] = int(allele)
    return gt, phased


def _is_sequence(allele: str) -> bool:
    """An allele that is bases: not symbolic (<DEL>, <*>, <NON_REF>), not '*' (a deletion another record
    holds), not '.' or a breakend."""
    return allele.isalpha()


def _split_calls(fields: list[str], n_all: int, where_: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A record's calls as biallelic records, as `bcftools norm -m -any` splits them: [(ALT, gt [n_all, 2] int8,
    phased [n_all])], one per ALT allele that is a sequence, in ALT order; a copy carrying another ALT allele
    reads 0 (REF) in that record, a missing copy -1 in each. [] when REF or every ALT is not a sequence."""
    alts = fields[4].split(",")
    kept = [(k, alt.upper()) for k, alt in enumerate(alts, start=1) if _is_sequence(alt)]
    if not kept or not _is_sequence(fields[3]):
        return []
    if n_all == 0:
        return [(alt, np.zeros((0, 2), dtype=np.int8), np.zeros(0, dtype=bool)) for _, alt in kept]
    if len(fields) < 10:
        raise InputError(f"{where_}: no genotype columns for the {n_all} samples of the header")
    gt_text = _gt_text(fields[9], fields[8])
    decoded = _decode_gt(gt_text, n_all, len(alts)) if gt_text is not None else None
    if decoded is None:
        decoded = _parse_calls(fields[9].split("\t"), fields[8], n_all, where_, len(alts))
    gt, phased = decoded
    if len(alts) == 1:
        return [(kept[0][1], gt, phased)]
    return [(alt, np.where(gt < 0, -1, gt == k).astype(np.int8), phased) for k, alt in kept]


def _biallelic(fields: list[str]) -> str:
    """'ok', 'multi' or 'other' (no ALT, symbolic, '*', or a non-base allele) for one record."""
    ref, alt = fields[3], fields[4]
    if alt == "." or not alt:
        return "other"
    if "," in alt:
        return "multi"
    if alt.startswith("<") or alt == "*" or not ref.isalpha() or not alt.isalpha():
        return "other"
    return "ok"


def _is_repeat(seen: dict[tuple[str, int, str, str], bytes], key: tuple[str, int, str, str], gt: np.ndarray,
               phased: np.ndarray, path: Path, vcf_contig: str) -> bool:
    """Whether the biallelic record `key` (contig, pos, REF, ALT) with calls gt [n, 2] / phased [n] repeats one
    in `seen` (then it is skipped); records it in `seen` otherwise. A repeat whose calls differ is an
    InputError: which of the two is right cannot be told (`bcftools norm -d exact` keeps the first; `bcftools
    consensus` applies whichever carries the ALT first)."""
    # the phase of a homozygous or missing call means nothing: '0/0' and '0|0' are the same call
    phase = phased & (gt[:, 0] != gt[:, 1]) & (gt >= 0).all(axis=1) if gt.size else phased
    digest = hashlib.blake2b(gt.tobytes() + np.packbits(phase).tobytes(), digest_size=16).digest()
    earlier = seen.setdefault(key, digest)
    if earlier is digest:
        return False
    if earlier != digest:
        _, pos, ref, alt = key
        raise InputError(f"{path}: the variant {vcf_contig}:{pos} {ref}>{alt} appears twice (in two records, or "
                         "twice among one record's ALT alleles) with different genotypes; which is right cannot be "
                         "told. Remove the repeat (bcftools norm -d exact keeps the first) or fix the file")
    return True


def read_genotypes(
    vcf_path: str | Path,
    samples: list[str] | None = None,
    regions: list[Region] | None = None,
    fasta_contigs=None,
    aliases: dict[str, str] | None = None,
) -> Genotypes:
    """Read genotypes from a VCF as biallelic records: a multi-allelic record is split into one record per ALT
    allele that is a sequence (`_split_calls`, as `bcftools norm -m -any`), so haplotypes built from them equal
    `bcftools consensus` on the unsplit file; a record with no such ALT is skipped and counted. A biallelic
    record (after splitting) with the contig, position, REF, ALT and calls of one read before is skipped and
    counted (`n_duplicate_skipped`), as `bcftools norm -d exact` skips it; the same variant with other calls is
    an InputError (which record is right cannot be told).

    samples: keep these samples in this order (InputError if any is absent); None keeps all.
    regions: keep records whose first base lies in one of these 0-based half-open regions
        (contigs in FASTA names); None keeps all. An indexed (bgzip + .tbi/.csi) VCF is read through
        its index, region by region, so time and memory follow the regions (records x samples), not
        the file; an unindexed one is scanned.
    fasta_contigs: contig names of the reference; VCF contigs are mapped onto them with
        `resolve_contig` (aliases, exact, chr rule), and unknown contigs raise InputError.
    Haploid calls (e.g. male chrX) are stored as homozygous and phased. FILTER is not read: records that
    failed a filter are kept like PASS ones.
    """
    vcf_path = Path(vcf_path)
    header = read_vcf_header(vcf_path)
    resolve, contig_map = _contig_resolver(vcf_path, fasta_contigs, aliases)
    header_samples = header.samples
    if samples is None:
        order = None
        kept = header_samples
    else:
        index = {s: i for i, s in enumerate(header_samples)}
        absent = [s for s in samples if s not in index]
        if absent:
            raise InputError(
                f"{vcf_path}: {len(absent)} requested samples are not in the VCF header: {_first(absent)}"
            )
        order = np.array([index[s] for s in samples], dtype=np.int64)
        kept = list(samples)
    regions_by_contig = _merged(regions) if regions is not None else None
    spans = None
    if regions is not None and is_indexed(vcf_path):
        vcf_contigs = indexed_contigs(vcf_path)  # contigs with records; header-only ones have none
        rank = {name: i for i, name in enumerate(vcf_contigs)}
        spans = sorted(((name, start, end) for contig, merged in regions_by_contig.items()
                        for name in _vcf_names_of(vcf_contigs, contig, resolve) for start, end in merged),
                       key=lambda s: (rank[s[0]], s[1]))

    n_all = len(header_samples)
    contigs, positions, refs, alts, calls, phases = [], [], [], [], [], []
    n_multi = n_other = n_duplicate = 0
    seen: dict[tuple[str, int, str, str], bytes] = {}  # (contig, pos, REF, ALT) read so far -> its calls' digest
    for line in _record_lines(vcf_path, spans):
        fields = line.split("\t", 9)
        if len(fields) < 8:
            raise InputError(f"{vcf_path}: record {line[:60]!r} has {len(fields)} columns; expected at least 8")
        pos = record_pos(fields[1], vcf_path, line)
        if regions_by_contig is not None and spans is None:  # a scan: only records inside the regions count
            try:
                contig = resolve(fields[0])
            except MaskingAlias:
                raise
            except InputError:  # a contig the FASTA lacks (decoy, HLA) holds no studied region
                continue
            if not _in_regions(contig, pos - 1, regions_by_contig):
                continue
        split = _split_calls(fields, n_all, f"{vcf_path}, record {fields[0]}:{pos}")
        if not split:
            n_other += 1
            continue
        n_multi += "," in fields[4]
        contig = resolve(fields[0])
        ref = fields[3].upper()
        for alt, gt, phased in split:
            if _is_repeat(seen, (contig, pos, ref, alt), gt, phased, vcf_path, fields[0]):
                n_duplicate += 1
                continue
            if order is not None:
                gt, phased = gt[order], phased[order]
            contigs.append(contig)
            positions.append(pos)
            refs.append(ref)
            alts.append(alt)
            calls.append(gt)
            phases.append(phased)
    n = len(kept)
    return Genotypes(
        samples=kept,
        contig=np.array(contigs, dtype=object),
        pos=np.array(positions, dtype=np.int64),
        ref=refs,
        alt=alts,
        gt=np.stack(calls) if calls else np.zeros((0, n, 2), dtype=np.int8),
        phased=np.stack(phases) if phases else np.zeros((0, n), dtype=bool),
        n_multiallelic_split=n_multi,
        n_other_skipped=n_other,
        n_duplicate_skipped=n_duplicate,
        contig_map=dict(contig_map),
    )


# allele character -> value whose pairwise sums tell dosage (0..2), missing (< 0) and anything else (> 2)
_ALLELE_CODE = np.full(256, 40, dtype=np.int8)
_ALLELE_CODE[ord("0")], _ALLELE_CODE[ord("1")], _ALLELE_CODE[ord(".")] = 0, 1, -32
_PHASE_SEPARATOR = np.zeros(256, dtype=bool)
_PHASE_SEPARATOR[[ord("|"), ord("/")]] = True


def _dosage_batch(calls: list[str], n_samples: int) -> np.ndarray | None:
    """[k, n] int8 ALT dosages (-1 missing) of GT-only, one-digit diploid, biallelic records at once.

    None unless every record has that layout (the caller then decodes record by record).
    """
    if any(len(c) != 4 * n_samples - 1 for c in calls):
        return None
    raw = np.frombuffer(("\t".join(calls) + "\t").encode("ascii", "replace"), dtype=np.uint8)
    if raw.size != len(calls) * 4 * n_samples:
        return None
    cells = raw.reshape(len(calls), n_samples, 4)
    if not ((cells[:, :, 3] == 9).all() and _PHASE_SEPARATOR[cells[:, :, 1]].all()):
        return None
    dose = _ALLELE_CODE[cells[:, :, 0]] + _ALLELE_CODE[cells[:, :, 2]]
    if (dose > 2).any():
        return None
    dose[dose < 0] = -1
    return dose


def iter_dosage_chunks(
    vcf_path: str | Path, samples: list[str] | None = None, chunk_records: int = 4096
) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """Stream a VCF as chunks of int8 ALT dosages, for genome-wide marker panels.

    Yields (dosage [n_records_in_chunk, n_samples] int8: 0/1/2, -1 where either copy is missing;
    info {"contig", "pos", "ref", "alt"} lists) for biallelic records, in file order; a record repeating the
    contig, position, REF and ALT of an earlier one is skipped (counted once in the PCA, as `read_genotypes` does). Memory is one chunk
    (its text and its int8 calls); GT-only records are decoded a chunk at a time with numpy.
    """
    path = Path(vcf_path)
    header = read_vcf_header(path)
    order = None
    if samples is not None:
        index = {s: i for i, s in enumerate(header.samples)}
        absent = [s for s in samples if s not in index]
        if absent:
            raise InputError(f"{path}: {len(absent)} requested samples are not in the VCF header: {_first(absent)}")
        refuse_repeated_samples(path, header.samples, samples)
        order = np.array([index[s] for s in samples], dtype=np.int64)
    n_all = len(header.samples)

    def decode(pending: list[list[str]]) -> tuple[np.ndarray, dict[str, list]]:
        dose = None
        texts = [_gt_text(f[9], f[8]) for f in pending]
        if all(t is not None for t in texts):
            dose = _dosage_batch(texts, n_all)
        if dose is None:  # another layout somewhere in the chunk: record by record
            dose = np.empty((len(pending), n_all), dtype=np.int8)
            for i, f in enumerate(pending):
                decoded = _decode_gt(texts[i], n_all) if texts[i] is not None else None
                if decoded is None:
                    decoded = _parse_calls(f[9].split("\t"), f[8], n_all, f"{path}, record {f[0]}:{f[1]}")
                gt = decoded[0]
                dose[i] = gt.sum(axis=1, dtype=np.int8)
                dose[i, (gt < 0).any(axis=1)] = -1
        if order is not None:
            dose = dose[:, order]
        info = {"contig": [f[0] for f in pending], "pos": [f[1] for f in pending],
                "ref": [f[3].upper() for f in pending], "alt": [f[4].upper() for f in pending]}
        return dose, info

    pending: list[list[str]] = []
    # a marker repeated in the panel counts once (the first); 64-bit hashes of (contig, pos, REF, ALT), about 60
    # bytes a marker where the tuples took about 250 (a collision, ~n^2 / 2^65, would drop one marker)
    seen: set[int] = set()
    for line in _record_lines(path, None):
        fields = line.split("\t", 9)
        if len(fields) < 10 or _biallelic(fields) != "ok":
            continue
        fields[1] = record_pos(fields[1], path, line)  # the panel is read whole, past any index check
        key = hash((fields[0], fields[1], fields[3].upper(), fields[4].upper()))
        if key in seen:
            continue
        seen.add(key)
        pending.append(fields)
        if len(pending) == chunk_records:
            yield decode(pending)
            pending = []
    if pending:
        yield decode(pending)


def refuse_repeated_samples(path: str | Path, header_samples: list[str], wanted: list[str]) -> None:
    """InputError when the VCF header at `path` lists one of the `wanted` samples more than once: which column
    holds that sample's genotypes would be ambiguous."""
    wanted_set, seen = set(wanted), set()
    repeated = sorted({s for s in header_samples if s in wanted_set and (s in seen or seen.add(s))})
    if repeated:
        raise InputError(f"{path}: the VCF header lists sample(s) more than once: {_first(repeated)}; "
                         "rename or drop the duplicates (bcftools reheader / bcftools view -s)")


def _first(items: list[str], limit: int = 20) -> str:
    """First `limit` items, comma-separated, with the total count."""
    shown = ", ".join(f"'{s}'" for s in items[:limit])  # quoted: a stray space in an ID shows
    more = f", ... ({len(items)} in all)" if len(items) > limit else f" ({len(items)} in all)"
    return shown + more


# ---------------------------------------------------------------- validation


def _check_sample_sets(vcf_path: Path, vcf_ids: list[str], sheet_ids: list[str]) -> None:
    seen: set[str] = set()
    repeated = [s for s in vcf_ids if s in seen or seen.add(s)]
    if repeated:  # genotypes are read by sample name: a repeated column would give one sample another's
        raise InputError(f"{vcf_path}: the VCF header lists sample(s) more than once: {_first(repeated)}; "
                         "rename or drop the duplicates (bcftools reheader / bcftools view -s)")
    vcf_set, sheet_set = set(vcf_ids), set(sheet_ids)
    only_vcf = [s for s in vcf_ids if s not in sheet_set]
    only_sheet = [s for s in sheet_ids if s not in vcf_set]
    if not only_vcf and not only_sheet:
        return
    parts = []
    if only_vcf:
        parts.append(f"in the VCF but not in the samples table: {_first(only_vcf)}")
    if only_sheet:
        parts.append(f"in the samples table but not in the VCF: {_first(only_sheet)}")
    raise InputError(f"{vcf_path}: the VCF and the samples table list different samples; " + "; ".join(parts))


def _check_contigs(vcf_path: Path, vcf_contigs: list[str], fasta, aliases,
                   region_contigs: set[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Map the VCF's contigs that have records onto FASTA contigs: (map, names matching none).

    region_contigs None (the whole file is checked): any unmatched contig is an error. Otherwise an
    unmatched contig is only reported (a genome-wide VCF may carry decoy or HLA contigs the FASTA
    lacks), but every studied contig must be matched by one of the VCF's contigs.
    """
    contig_map, unmatched = {}, []
    available = list(fasta)
    for name in vcf_contigs:
        try:
            contig_map[name] = resolve_contig(name, available, aliases, source=f"VCF {vcf_path}")
        except InputError:
            check_alias_not_masking(name, available, aliases)  # a mistyped alias: named, not "no contig matches"
            unmatched.append(name)
    missing = sorted(region_contigs - set(contig_map.values())) if region_contigs is not None else []
    if missing and not vcf_contigs:
        raise InputError(f"{vcf_path}: the VCF has no records (a header only); expected genotypes of the samples in "
                         f"the studied contig(s) {', '.join(missing)}")
    if (unmatched and region_contigs is None) or missing:
        what = (f"no VCF contig with records matches the studied contig(s) {', '.join(missing)} (VCF contigs "
                f"with records: {_first(vcf_contigs, 25)})" if missing else
                f"VCF contigs {', '.join(repr(c) for c in unmatched[:20])} do not match any FASTA contig")
        raise InputError(
            f"{vcf_path}: {what} (also tried adding/removing 'chr' and the contig aliases); FASTA contigs: "
            f"{_first(available, 25)}; add an entry to reference.contig_aliases to map them"
        )
    return contig_map, unmatched


def _header_contig_report(header: VcfHeader, fasta, aliases) -> dict:
    """Header ##contig lines vs the FASTA: names with no FASTA contig, and lengths that differ.

    Reported, not refused: a GRCh38 header lists thousands of contigs (decoys, HLA) that a FASTA of
    the primary assembly may lack, and a region FASTA (like the demo's) is shorter than the contig.
    """
    available = list(fasta)
    unmatched, mismatched = [], []
    for name, length in header.contigs.items():
        try:
            target = resolve_contig(name, available, aliases, source="VCF header")
        except InputError:
            check_alias_not_masking(name, available, aliases)
            unmatched.append(name)
            continue
        if length is not None and length != len(fasta[target]):
            mismatched.append(f"{name}: VCF {length}, FASTA {target} {len(fasta[target])}")
    return {"n_header_contigs": len(header.contigs), "header_contigs_not_in_fasta": unmatched[:50],
            "n_header_contigs_not_in_fasta": len(unmatched), "contig_length_mismatches": mismatched[:50]}


def check_phenotypes(samples: pl.DataFrame, phenotypes: list[str], n_folds: int,
                      min_per_class: int | None, binary_only: bool = False, source: str = "samples table") -> None:
    """Each phenotype: two classes with enough samples each (binary), or enough samples (quantitative, unless
    binary_only). Errors name `source` (the samples file) and, for a non-binary value, its line."""
    for name in phenotypes:
        if name not in samples.columns:
            raise InputError(f"{source}: phenotype column '{name}' is missing; columns: "
                             f"{', '.join(samples.columns)}")
        values = samples[name].drop_nulls().cast(pl.Float64)
        distinct = sorted(set(values.to_list()))
        if len(distinct) < 2:
            raise InputError(
                f"{source}, field {name}: phenotype has a single class ({distinct[0] if distinct else 'none'}"
                f", {values.len()} non-missing samples); it cannot be predicted"
            )
        if set(distinct) <= {0.0, 1.0}:
            need = max(n_folds, min_per_class or 0)
            counts = {int(v): int((values == v).sum()) for v in distinct}
            if min(counts.values()) < need:
                raise InputError(
                    f"{source}, field {name}: binary phenotype has class counts "
                    f"{', '.join(f'{k}: {v}' for k, v in counts.items())}; each class needs at least {need} "
                    f"samples for {n_folds}-fold cross-validation"
                )
        elif binary_only:
            shown = ", ".join(f"{v:g}" for v in distinct[:5]) + (" ..." if len(distinct) > 5 else "")
            column = samples[name].to_list()
            row = next(i for i, v in enumerate(column) if v is not None and v not in (0.0, 1.0))
            raise InputError(
                f"{where(source, line=row + 2, field=name)}: value {column[row]:g} (the phenotype has values "
                f"{shown}); the confound audit takes binary "
                "phenotypes only (0 = control, 1 = case, empty or NA = missing). Recode the column, or remove it "
                "from cohort.phenotypes"
            )
        elif values.len() < 2 * n_folds:
            raise InputError(
                f"{source}, field {name}: quantitative phenotype has {values.len()} non-missing samples; "
                f"needs at least {2 * n_folds} for {n_folds}-fold cross-validation"
            )


def validate_cohort(
    vcf_path: str | Path,
    samples: pl.DataFrame,
    fasta,
    aliases: dict[str, str] | None,
    regions: list[Region] | None,
    phenotypes: list[str],
    n_folds: int,
    min_per_class: int | None = None,
    binary_only: bool = False,
    samples_source: str = "samples table",
) -> dict:
    """Check a cohort before any work starts; each failure is one InputError.

    fasta: a `Reference` (or any mapping contig -> sliceable sequence).
    regions: the studied regions (FASTA contig names); REF alleles are checked for the records whose
        first base lies inside them, read through the index of an indexed VCF (streamed: memory is one
        record). None checks every record of the file.
    Checks, in order: sample IDs agree between the VCF header and the samples table (both directions);
    every contig with records (from the index, or a scan of an unindexed file) maps onto a FASTA contig;
    REF alleles match the reference (case-insensitive; reference N/IUPAC positions never mismatch);
    every phenotype has two classes with enough samples per class (binary) or enough samples
    (quantitative) for `n_folds`-fold cross-validation; with binary_only (the workflow, whose audit takes
    0/1 phenotypes only) a quantitative phenotype is refused, naming its column.
    Returns n_samples, n_records_checked (records whose REF was compared), n_variants (biallelic
    records among them, a multi-allelic record counting once per sequence ALT allele, as `read_genotypes`
    splits it), n_variants_in_regions, n_multiallelic_split, n_other_skipped (records with no sequence ALT),
    n_duplicate_skipped (biallelic records in the regions repeating the contig, position, REF, ALT and calls of
    an earlier one, which `read_genotypes` skips; the same variant with other calls is refused),
    missing_rate (missing calls among those biallelic genotypes in the regions), n_samples_mostly_missing (samples with a
    missing call at over half of those records), n_het_calls (heterozygous calls there, both copies called),
    n_half_missing_alt_calls (calls with one copy missing and the other ALT: './1', '1/.', '.|1', a './2' in the
    split record of its ALT), n_unphased_half_missing (those written with '/'), unphased_het_rate (of the
    heterozygous and half-missing ALT calls, the share written with '/': those whose ALT `cohort.unphased`
    decides, as `interp.cohort.haplotypes` reads them), n_samples_mostly_unphased (samples with at least
    MIN_HET_CALLS_PER_SAMPLE such calls, over half of them unphased), contig_map, indexed, scope, and the
    header-contig report (`_header_contig_report`). With regions, a VCF with no biallelic record inside
    them is refused.
    """
    vcf_path = Path(vcf_path)
    header = read_vcf_header(vcf_path)
    _check_sample_sets(vcf_path, header.samples, samples["sample_id"].to_list())
    indexed = is_indexed(vcf_path)
    by_contig = _merged(regions) if regions is not None else None
    if indexed:
        record_contigs = indexed_contigs(vcf_path)
    else:  # no index to say which contigs have records: one scan of the CHROM column
        seen: dict[str, None] = {}
        for line in _record_lines(vcf_path, None):
            seen.setdefault(line.split("\t", 1)[0], None)
        record_contigs = list(seen)
    contig_map, unmatched = _check_contigs(vcf_path, record_contigs, fasta, aliases,
                                           set(by_contig) if by_contig is not None else None)
    spans = None
    if by_contig is not None and indexed:
        spans = [(name, start, end) for contig, merged in by_contig.items()
                 for name in contig_map if contig_map[name] == contig for start, end in merged]
    n_all = len(header.samples)
    checked = biallelic = in_regions = n_multi = n_other = n_duplicate = 0
    seen: dict[tuple[str, int, str, str], bytes] = {}  # biallelic records in the regions so far -> calls' digest
    n_missing = n_calls = n_het = n_unphased_het = n_half = n_unphased_half = 0
    per_sample_missing = np.zeros(len(header.samples), dtype=np.int64)  # records with a missing call, per sample
    # per sample: heterozygous and half-missing ALT calls, and those of them unphased
    per_sample_het = np.zeros(len(header.samples), dtype=np.int64)
    per_sample_unphased = np.zeros(len(header.samples), dtype=np.int64)
    mismatches: list[str] = []
    n_mismatch = 0
    for line in _record_lines(vcf_path, spans):
        fields = line.split("\t", 9)
        if len(fields) < 8:
            raise InputError(f"{vcf_path}: record {line[:60]!r} has {len(fields)} columns; expected at least 8")
        chrom, pos, ref = fields[0], record_pos(fields[1], vcf_path, line), fields[3]
        contig = contig_map.get(chrom)
        if contig is None:  # a contig the FASTA lacks, reported above; it holds no studied region
            continue
        if by_contig is not None and spans is None and not _in_regions(contig, pos - 1, by_contig):
            continue
        checked += 1
        sequence = fasta[contig]
        found = sequence[pos - 1: pos - 1 + len(ref)].upper()
        if len(found) < len(ref):
            n_mismatch += 1
            if len(mismatches) < 5:
                mismatches.append(f"{chrom}:{pos} REF={ref} reference=(past the end of {contig}, "
                                  f"length {len(sequence)})")
        elif any(a != b and b != "N" for a, b in zip(ref.upper(), found, strict=True)):
            n_mismatch += 1
            if len(mismatches) < 5:
                mismatches.append(f"{chrom}:{pos} REF={ref} reference={found}")
        alts = [alt.upper() for alt in fields[4].split(",") if _is_sequence(alt)] if _is_sequence(ref) else []
        if not alts:
            n_other += 1
            continue
        n_multi += "," in fields[4]
        n_alts = len(alts)
        biallelic += n_alts  # a multi-allelic record counts as the biallelic records it is read as
        if by_contig is None or _in_regions(contig, pos - 1, by_contig):
            in_regions += n_alts
            split = _split_calls(fields, n_all, f"{vcf_path}, record {chrom}:{pos}") if (
                n_all and len(fields) == 10) else []
            for alt, gt, phased in split:
                if _is_repeat(seen, (contig, pos, ref.upper(), alt), gt, phased, vcf_path, chrom):
                    n_duplicate += 1  # read_genotypes skips it: not a variant of the regions either
                    in_regions -= 1
                    continue
                per_sample_missing += (gt < 0).any(axis=1)
                n_missing += int((gt < 0).sum())
                n_calls += gt.size
                het = (gt[:, 0] != gt[:, 1]) & (gt >= 0).all(axis=1)
                n_het += int(het.sum())
                n_unphased_het += int((het & ~phased).sum())
                # one copy missing, the other ALT ('./1', '1/.', './2' once split): the ALT's haplotype is as
                # unknown as a '0/1''s when unphased, and `cohort.unphased` decides it
                half = (gt < 0).any(axis=1) & (gt > 0).any(axis=1)
                n_half += int(half.sum())
                n_unphased_half += int((half & ~phased).sum())
                per_sample_het += het | half
                per_sample_unphased += (het | half) & ~phased
    if n_mismatch:
        raise InputError(
            f"{vcf_path}: REF alleles disagree with the reference FASTA for {n_mismatch} of {checked} "
            f"records checked, e.g. {'; '.join(mismatches[:5])}. Is the VCF on the same genome build, and are "
            "the contig aliases right?"
        )
    if regions is not None and in_regions == 0:
        raise InputError(f"{vcf_path}: no biallelic record lies inside the studied regions "
                         f"({sum(len(m) for m in by_contig.values())} merged intervals on {', '.join(by_contig)}); "
                         "every haplotype would be the reference. Check cohort.genes / cohort.bed and the VCF")
    check_phenotypes(samples, phenotypes, n_folds, min_per_class, binary_only, samples_source)
    return {
        "n_samples": n_all,
        "n_records_checked": checked,
        "n_variants": biallelic,
        "n_variants_in_regions": in_regions,
        "n_multiallelic_split": n_multi,
        "n_multiallelic_skipped": 0,  # kept for report.json readers: multi-allelic records are now split, not skipped
        "n_other_skipped": n_other,
        "n_duplicate_skipped": n_duplicate,
        "missing_rate": n_missing / n_calls if n_calls else 0.0,
        "n_het_calls": n_het,
        # a count, not who: samples missing most genotypes become (nearly) the reference under missing: ref
        "n_samples_mostly_missing": int((per_sample_missing > 0.5 * in_regions).sum()) if in_regions else 0,
        "n_half_missing_alt_calls": n_half,
        "n_unphased_half_missing": n_unphased_half,
        # the share `cohort.unphased` decides: unphased heterozygous and unphased half-missing ALT calls among
        # all heterozygous and half-missing ALT calls (check_cohort gates unphased: ref on it)
        "unphased_het_rate": ((n_unphased_het + n_unphased_half) / (n_het + n_half)) if n_het + n_half else 0.0,
        # a count, not who: a VCF phased but for a few samples (a batch phased apart, or not at all) passes the
        # whole-VCF gate, yet those samples' heterozygous variants are erased (or masked): the audit can see them
        "n_samples_mostly_unphased": int(((per_sample_het >= MIN_HET_CALLS_PER_SAMPLE)
                                          & (2 * per_sample_unphased > per_sample_het)).sum()),
        "contig_map": contig_map,
        "record_contigs_not_in_fasta": unmatched[:50],
        "indexed": indexed,
        "scope": "whole file" if regions is None else "records inside the studied regions",
        **_header_contig_report(header, fasta, aliases),
    }


# ---------------------------------------------------------------- indexing


def ensure_indexed(vcf_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Return the path of a bgzipped, tabix-indexed copy of `vcf_path`, making one if needed.

    - bgzipped with a .tbi/.csi next to it, not older than the VCF: returned unchanged.
    - bgzipped without index, no `out_dir`: a .tbi is added next to it (the VCF itself is untouched); an
      index older than the VCF (rewritten after indexing) is written anew.
    - otherwise (plain text, plain gzip, or `out_dir` given): `<out_dir>/<name>.vcf.gz` + `.tbi` are
      written (temp names, then renamed); `out_dir` defaults to the VCF's folder. The user's file is
      never overwritten.
    """
    vcf_path = Path(vcf_path)
    read_vcf_header(vcf_path)  # a missing file, a BCF or a non-VCF is named before anything is copied
    kind = compression(vcf_path)
    if kind == "bgzf" and _has_index(vcf_path):
        return vcf_path
    if kind == "bgzf" and out_dir is None:  # no index, or a stale one: (re)written under its own name
        for index in [i for i in _indexes(vcf_path) if _stale(i, vcf_path)] or [Path(str(vcf_path) + ".tbi")]:
            _index_atomically(vcf_path, index)
        return vcf_path
    out_dir = Path(out_dir) if out_dir is not None else vcf_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = vcf_path.name
    for suffix in (".gz", ".bgz", ".vcf"):
        stem = stem.removesuffix(suffix)
    target = out_dir / f"{stem}.vcf.gz"
    if target.resolve() == vcf_path.resolve():
        target = out_dir / f"{stem}.bgzip.vcf.gz"
    if target.exists() and _has_index(target) and target.stat().st_mtime >= vcf_path.stat().st_mtime:
        return target
    # the index is the outer block, so the VCF is renamed into place before its index
    with atomic_path(str(target) + ".tbi") as tmp_index, atomic_path(target) as tmp:
        _copy_bgzipped(vcf_path, kind, tmp)
        _tabix(tmp, tmp_index, vcf_path)
    return target


def _copy_bgzipped(vcf_path: Path, kind: str, tmp: Path) -> None:
    """Write a bgzipped copy of `vcf_path` (of compression `kind`) to `tmp`; InputError if it is damaged."""
    try:
        if kind == "bgzf":
            shutil.copyfile(vcf_path, tmp)
        elif kind == "plain":
            pysam.tabix_compress(str(vcf_path), str(tmp), force=True)
        else:  # plain gzip: decompress, then bgzip the text unchanged
            plain = tmp.with_name(tmp.name + ".txt")
            try:
                with gzip.open(vcf_path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                pysam.tabix_compress(str(plain), str(tmp), force=True)
            finally:
                plain.unlink(missing_ok=True)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise _corrupt(vcf_path, error) from error


def _tabix(path: Path, index: Path, source: Path) -> None:
    """Index `path` into `index`: TBI, or CSI when a position is beyond TBI's 2^29 limit (htslib reads
    either format whatever the file is called)."""
    try:
        try:
            pysam.tabix_index(str(path), preset="vcf", force=True, index=str(index))
        except OSError:
            pysam.tabix_index(str(path), preset="vcf", force=True, index=str(index), csi=True)
    except (OSError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise InputError(f"{source}: cannot be tabix-indexed; is it complete (not truncated) and sorted by "
                         f"contig and position? ({detail})") from error


def _index_atomically(vcf_path: Path, index: Path) -> None:
    """Write `index` (`<vcf_path>.tbi` or `.csi`) beside the bgzipped VCF (left untouched), atomically."""
    with atomic_path(index) as tmp:
        _tabix(vcf_path, tmp, vcf_path)
