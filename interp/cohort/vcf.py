"""Cohort inputs: samples.tsv, VCF genotypes, and the checks run before any work starts.

VCFs are read with pysam. Only biallelic records are kept (multi-allelic, symbolic and
reference-only records are skipped and counted). Positions are 1-based as in the VCF;
`Region` objects are 0-based half-open in FASTA contig names.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pysam

from interp.errors import InputError, where
from interp.genome.fasta import resolve_contig

if TYPE_CHECKING:
    from interp.genome.regions import Region

_BGZF_MAGIC = b"\x1f\x8b\x08\x04"
_GZIP_MAGIC = b"\x1f\x8b"


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
    n_multiallelic_skipped: int = 0
    n_other_skipped: int = 0  # reference-only or symbolic (<DEL>, *) records
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_MISSING_TEXT = {"", "NA", "na", "NaN", "nan", "."}


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
    try:
        table = pl.read_csv(path, separator="\t", infer_schema=False, comment_prefix=None)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as error:
        raise InputError(f"{path}: cannot be read as a tab-separated table ({error})") from error
    header = table.columns
    wanted = ["sample_id"] + ([population_column] if population_column else []) + phenotypes + covariates
    for column in wanted:
        if column not in header:
            raise InputError(
                f"{where(path, line=1, field=column)}: column '{column}' is missing; "
                f"the header has: {', '.join(header)}"
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
        columns["population"] = table[population_column].fill_null("")
    for name in phenotypes:
        values = table[name].to_list()
        for row, value in enumerate(values):
            if value is not None and value not in _MISSING_TEXT and not _is_number(value):
                raise InputError(
                    f"{where(path, line=row + 2, field=name)}: phenotype value '{value}' is not a number "
                    "(expected 0/1 for binary or a number for quantitative traits; NA for missing)"
                )
        columns[name] = _to_float(values)
    for name in covariates:
        values = table[name].to_list()
        numeric = all(v is None or v in _MISSING_TEXT or _is_number(v) for v in values)
        columns[name] = _to_float(values) if numeric else table[name]
    return pl.DataFrame(columns).select(list(columns))


def _to_float(values: list[str | None]) -> pl.Series:
    return pl.Series([None if v is None or v in _MISSING_TEXT else float(v) for v in values], dtype=pl.Float64)


# ---------------------------------------------------------------- VCF reading


def _compression(path: Path) -> str:
    """'bgzf', 'gzip' or 'plain', from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == _BGZF_MAGIC:
        return "bgzf"
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    return "plain"


@contextmanager
def _open_vcf(path: str | Path) -> Iterator[pysam.VariantFile]:
    """Open a VCF (plain, bgzip or plain gzip) with pysam.

    htslib cannot read plain-gzip VCFs, so those are decompressed to a temporary file first.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: VCF does not exist")
    tmp_dir = None
    source = path
    if _compression(path) == "gzip":
        tmp_dir = tempfile.mkdtemp(prefix="interp_vcf_")
        source = Path(tmp_dir) / "plain.vcf"
        with gzip.open(path, "rb") as src, open(source, "wb") as dst:
            shutil.copyfileobj(src, dst)
    try:
        try:
            handle = pysam.VariantFile(str(source))
        except (ValueError, OSError) as error:
            raise InputError(f"{path}: cannot be read as a VCF ({error})") from error
        try:
            yield handle
        finally:
            handle.close()
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _has_index(path: Path) -> bool:
    return any(Path(str(path) + suffix).exists() for suffix in (".tbi", ".csi"))


def vcf_samples(vcf_path: str | Path) -> list[str]:
    """Sample IDs in the VCF header, in file order."""
    with _open_vcf(vcf_path) as vcf:
        return list(vcf.header.samples)


def _contig_resolver(vcf_path: Path, fasta_contigs, aliases):
    """Function VCF contig name -> returned name (cached); identity without FASTA contigs."""
    cache: dict[str, str] = {}
    available = list(fasta_contigs) if fasta_contigs is not None else None

    def resolve(name: str) -> str:
        if name not in cache:
            if available is None:
                cache[name] = aliases.get(name, name) if aliases else name
            else:
                cache[name] = resolve_contig(name, available, aliases, source=f"VCF {vcf_path}")
        return cache[name]

    return resolve, cache


def _in_regions(contig: str, pos0: int, regions_by_contig: dict[str, list[tuple[int, int]]]) -> bool:
    return any(start <= pos0 < end for start, end in regions_by_contig.get(contig, ()))


def read_genotypes(
    vcf_path: str | Path,
    samples: list[str] | None = None,
    regions: list[Region] | None = None,
    fasta_contigs=None,
    aliases: dict[str, str] | None = None,
) -> Genotypes:
    """Read biallelic genotypes from a VCF.

    samples: keep these samples in this order (InputError if any is absent); None keeps all.
    regions: keep records whose first base lies in one of these 0-based half-open regions
        (contigs in FASTA names); None keeps all.
    fasta_contigs: contig names of the reference; VCF contigs are mapped onto them with
        `resolve_contig` (aliases, exact, chr rule), and unknown contigs raise InputError.
    Haploid calls (e.g. male chrX) are stored as homozygous and phased.
    """
    vcf_path = Path(vcf_path)
    resolve, contig_map = _contig_resolver(vcf_path, fasta_contigs, aliases)
    regions_by_contig: dict[str, list[tuple[int, int]]] = {}
    for region in regions or []:
        regions_by_contig.setdefault(region.contig, []).append((region.start, region.end))

    contigs, positions, refs, alts, calls, phases = [], [], [], [], [], []
    n_multi = n_other = 0
    with _open_vcf(vcf_path) as vcf:
        header_samples = list(vcf.header.samples)
        if samples is None:
            order = np.arange(len(header_samples))
            kept = header_samples
        else:
            index = {s: i for i, s in enumerate(header_samples)}
            absent = [s for s in samples if s not in index]
            if absent:
                raise InputError(
                    f"{vcf_path}: {len(absent)} requested samples are not in the VCF header: "
                    f"{_first(absent)}"
                )
            order = np.array([index[s] for s in samples], dtype=np.int64)
            kept = list(samples)
        for record in vcf:
            if not record.alts:
                n_other += 1
                continue
            if len(record.alts) > 1:
                n_multi += 1
                continue
            alt = record.alts[0]
            if alt.startswith("<") or alt in ("*", ".") or not record.ref.isalpha() or not alt.isalpha():
                n_other += 1
                continue
            contig = resolve(record.chrom)
            if regions is not None and not _in_regions(contig, record.pos - 1, regions_by_contig):
                continue
            gt, phased = _record_calls(record, len(header_samples))
            contigs.append(contig)
            positions.append(record.pos)
            refs.append(record.ref.upper())
            alts.append(alt.upper())
            calls.append(gt[order])
            phases.append(phased[order])
    n = len(kept)
    return Genotypes(
        samples=kept,
        contig=np.array(contigs, dtype=object),
        pos=np.array(positions, dtype=np.int64),
        ref=refs,
        alt=alts,
        gt=np.stack(calls) if calls else np.zeros((0, n, 2), dtype=np.int8),
        phased=np.stack(phases) if phases else np.zeros((0, n), dtype=bool),
        n_multiallelic_skipped=n_multi,
        n_other_skipped=n_other,
        contig_map=dict(contig_map),
    )


_DIGIT = np.full(256, -2, dtype=np.int16)
_DIGIT[ord("0"):ord("9") + 1] = np.arange(10)
_DIGIT[ord(".")] = -1


def _record_calls(record, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """[n_samples, 2] int8 allele indices (-1 missing) and [n_samples] phased flags of one record.

    Fast path: a FORMAT of GT alone with every call written as three characters ("0|1", "1/0", "./.")
    is parsed from the record's text in one array operation (thousands of samples); any other record
    (more FORMAT fields, haploid or multi-digit calls) goes through pysam call by call. Both give the
    same answer (tests/test_cohort_vcf.py).
    """
    fast = _gt_only_calls(record, n_samples)
    if fast is not None:
        return fast
    return _record_calls_pysam(record, n_samples)


def _gt_only_calls(record, n_samples: int) -> tuple[np.ndarray, np.ndarray] | None:
    if n_samples == 0 or tuple(record.format.keys()) != ("GT",):
        return None
    text = str(record).rstrip("\n")
    fields = text.split("\t", 9)
    if len(fields) < 10:
        return None
    calls = fields[9].encode()
    if len(calls) != 4 * n_samples - 1:
        return None
    raw = np.frombuffer(calls + b"\t", dtype=np.uint8).reshape(n_samples, 4)
    first, second = _DIGIT[raw[:, 0]], _DIGIT[raw[:, 2]]
    separator, tab = raw[:, 1], raw[:, 3]
    if (first < -1).any() or (second < -1).any() or not np.isin(separator, (ord("|"), ord("/"))).all() \
            or not (tab == ord("\t")).all():
        return None
    gt = np.stack([first, second], axis=1).astype(np.int8)
    return gt, separator == ord("|")


def _record_calls_pysam(record, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.full((n_samples, 2), -1, dtype=np.int8)
    phased = np.zeros(n_samples, dtype=bool)
    for i, call in enumerate(record.samples.values()):
        alleles = call.get("GT")
        if not alleles:
            continue
        if len(alleles) == 1:
            alleles = (alleles[0], alleles[0])
            phased[i] = True
        else:
            phased[i] = call.phased
        for copy in range(2):
            if alleles[copy] is not None:
                gt[i, copy] = alleles[copy]
    return gt, phased


def _first(items: list[str], limit: int = 20) -> str:
    """First `limit` items, comma-separated, with the total count."""
    shown = ", ".join(items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else f" ({len(items)} in all)"
    return shown + more


# ---------------------------------------------------------------- validation


def _check_sample_sets(vcf_path: Path, vcf_ids: list[str], sheet_ids: list[str]) -> None:
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


def _check_contigs(vcf_path: Path, vcf_contigs: list[str], fasta: dict[str, str], aliases) -> dict[str, str]:
    contig_map, unmatched = {}, []
    for name in vcf_contigs:
        try:
            contig_map[name] = resolve_contig(name, list(fasta), aliases, source=f"VCF {vcf_path}")
        except InputError:
            unmatched.append(name)
    if unmatched:
        raise InputError(
            f"{vcf_path}: VCF contigs {', '.join(repr(c) for c in unmatched)} do not match any FASTA contig "
            f"(also tried adding/removing 'chr' and the contig aliases); FASTA contigs: "
            f"{_first(list(fasta), 25)}; add an entry to reference.contig_aliases to map them"
        )
    return contig_map


def _check_ref_alleles(vcf_path: Path, records: list[tuple[str, int, str]], fasta: dict[str, str],
                       contig_map: dict[str, str]) -> int:
    """Compare REF with the reference (case-insensitive); returns the number of records checked.

    Reference positions that are 'N' are not counted as mismatches (the reference does not know).
    """
    mismatches, checked = [], 0
    for chrom, pos, ref in records:
        contig = contig_map[chrom]
        sequence = fasta[contig]
        found = sequence[pos - 1: pos - 1 + len(ref)].upper()
        checked += 1
        if len(found) < len(ref):
            mismatches.append(f"{chrom}:{pos} REF={ref} reference=(past the end of {contig}, "
                              f"length {len(sequence)})")
        elif any(a != b and b != "N" for a, b in zip(ref.upper(), found, strict=True)):
            mismatches.append(f"{chrom}:{pos} REF={ref} reference={found}")
    if mismatches:
        raise InputError(
            f"{vcf_path}: REF alleles disagree with the reference FASTA for {len(mismatches)} of {checked} "
            f"records checked, e.g. {'; '.join(mismatches[:5])}. Is the VCF on the same genome build, and are "
            "the contig aliases right?"
        )
    return checked


def _check_phenotypes(samples: pl.DataFrame, phenotypes: list[str], n_folds: int,
                      min_per_class: int | None) -> None:
    for name in phenotypes:
        if name not in samples.columns:
            raise InputError(f"samples table: phenotype column '{name}' is missing; columns: "
                             f"{', '.join(samples.columns)}")
        values = samples[name].drop_nulls().cast(pl.Float64)
        distinct = sorted(set(values.to_list()))
        if len(distinct) < 2:
            raise InputError(
                f"samples table, field {name}: phenotype has a single class ({distinct[0] if distinct else 'none'}"
                f", {values.len()} non-missing samples); it cannot be predicted"
            )
        if set(distinct) <= {0.0, 1.0}:
            need = max(n_folds, min_per_class or 0)
            counts = {int(v): int((values == v).sum()) for v in distinct}
            if min(counts.values()) < need:
                raise InputError(
                    f"samples table, field {name}: binary phenotype has class counts "
                    f"{', '.join(f'{k}: {v}' for k, v in counts.items())}; each class needs at least {need} "
                    f"samples for {n_folds}-fold cross-validation"
                )
        elif values.len() < 2 * n_folds:
            raise InputError(
                f"samples table, field {name}: quantitative phenotype has {values.len()} non-missing samples; "
                f"needs at least {2 * n_folds} for {n_folds}-fold cross-validation"
            )


def validate_cohort(
    vcf_path: str | Path,
    samples: pl.DataFrame,
    fasta: dict[str, str],
    aliases: dict[str, str] | None,
    regions: list[Region],
    phenotypes: list[str],
    n_folds: int,
    min_per_class: int | None = None,
) -> dict:
    """Check a cohort before any work starts; each failure is one InputError.

    Checks, in order: sample IDs agree between VCF and samples table (both directions);
    every VCF contig maps onto a FASTA contig; every REF allele matches the reference;
    every phenotype has two classes with enough samples per class (binary) or enough samples
    (quantitative) for `n_folds`-fold cross-validation.
    Returns n_samples, n_variants (biallelic), n_variants_in_regions, n_multiallelic_skipped,
    missing_rate (fraction of missing calls among biallelic genotypes in the regions), contig_map.
    """
    vcf_path = Path(vcf_path)
    with _open_vcf(vcf_path) as vcf:
        vcf_ids = list(vcf.header.samples)
        _check_sample_sets(vcf_path, vcf_ids, samples["sample_id"].to_list())
        records, contigs = [], []
        for record in vcf:
            if record.chrom not in contigs:
                contigs.append(record.chrom)
            records.append((record.chrom, record.pos, record.ref))
    contig_map = _check_contigs(vcf_path, contigs, fasta, aliases)
    _check_ref_alleles(vcf_path, records, fasta, contig_map)
    _check_phenotypes(samples, phenotypes, n_folds, min_per_class)

    genotypes = read_genotypes(vcf_path, samples=vcf_ids, fasta_contigs=list(fasta), aliases=aliases)
    by_contig: dict[str, list[tuple[int, int]]] = {}
    for region in regions:
        by_contig.setdefault(region.contig, []).append((region.start, region.end))
    in_regions = np.array([_in_regions(c, p - 1, by_contig) for c, p in zip(genotypes.contig, genotypes.pos,
                                                                            strict=True)], dtype=bool)
    calls = genotypes.gt[in_regions]
    missing_rate = float((calls < 0).mean()) if calls.size else 0.0
    return {
        "n_samples": len(vcf_ids),
        "n_variants": genotypes.n_variants,
        "n_variants_in_regions": int(in_regions.sum()),
        "n_multiallelic_skipped": genotypes.n_multiallelic_skipped,
        "missing_rate": missing_rate,
        "contig_map": contig_map,
    }


# ---------------------------------------------------------------- indexing


def ensure_indexed(vcf_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Return the path of a bgzipped, tabix-indexed copy of `vcf_path`, making one if needed.

    - bgzipped with a .tbi/.csi next to it: returned unchanged.
    - bgzipped without index, no `out_dir`: a .tbi is added next to it (the VCF itself is untouched).
    - otherwise (plain text, plain gzip, or `out_dir` given): `<out_dir>/<name>.vcf.gz` + `.tbi` are
      written (temp names, then renamed); `out_dir` defaults to the VCF's folder. The user's file is
      never overwritten.
    """
    vcf_path = Path(vcf_path)
    if not vcf_path.exists():
        raise InputError(f"{vcf_path}: VCF does not exist")
    kind = _compression(vcf_path)
    if kind == "bgzf" and _has_index(vcf_path):
        return vcf_path
    if kind == "bgzf" and out_dir is None:
        _index_atomically(vcf_path)
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
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.vcf.gz")
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
        tmp_index = Path(str(tmp) + ".tbi")
        _tabix(tmp, tmp_index, vcf_path)
        os.replace(tmp, target)
        os.replace(tmp_index, str(target) + ".tbi")
    finally:
        for leftover in (tmp, Path(str(tmp) + ".tbi")):
            leftover.unlink(missing_ok=True)
    return target


def _tabix(path: Path, index: Path, source: Path) -> None:
    try:
        pysam.tabix_index(str(path), preset="vcf", force=True, index=str(index))
    except (OSError, ValueError) as error:
        raise InputError(f"{source}: cannot be tabix-indexed; is it sorted by contig and position? "
                         f"({error})") from error


def _index_atomically(vcf_path: Path) -> None:
    index = Path(str(vcf_path) + ".tbi")
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    try:
        _tabix(vcf_path, tmp, vcf_path)
        os.replace(tmp, index)
    finally:
        tmp.unlink(missing_ok=True)
