"""The place_cohort and check_cohort stages' library functions: a user's VCF placed, then checked with
samples.tsv before any work.

`place_cohort_vcf` puts the VCF where the cohort rules read it: a link to the user's file when it is bgzipped
and indexed (cost follows the regions read, not the file), else the indexed copy made once. It reads nothing
of samples.tsv, so a new phenotype or covariate never re-places the VCF (nor reruns the haplotype shards that
read it). `check_cohort_inputs` then runs the checks of `interp.cohort.vcf.validate_cohort` (samples, contigs,
REF alleles, records in the regions, phenotypes) plus the covariates, the share of unphased calls and the
ancestry panel's samples.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import polars as pl

from interp.cohort.config import CohortConfig
from interp.cohort.vcf import ensure_indexed, refuse_repeated_samples, validate_cohort, vcf_samples
from interp.covariates import covariate_design
from interp.errors import InputError
from interp.genome.regions import Region
from interp.io import atomic_path

#: above this share of unphased heterozygous calls (`validate_cohort`'s unphased_het_rate, half-missing ALT calls
#: such as './1' included), `cohort.unphased: ref` (which erases them) is refused
MAX_UNPHASED_WITH_REF = 0.5


def place_cohort_vcf(vcf: str | Path, out_vcf: str | Path, out_index: str | Path) -> None:
    """Put the cohort VCF at out_vcf / out_index, where the cohort rules read it: a link to `vcf` when it is
    bgzipped and indexed (cost follows the regions read, not the file), else the indexed copy made once
    (`ensure_indexed`). A failure names the user's file and leaves nothing placed."""
    staging = Path(out_vcf).parent / ".staging"
    try:
        indexed = ensure_indexed(vcf, out_dir=staging)
        index = Path(f"{indexed}.tbi") if Path(f"{indexed}.tbi").exists() else Path(f"{indexed}.csi")
        for src, dst in ((indexed, out_vcf), (index, out_index)):
            with atomic_path(dst) as tmp:
                if indexed == Path(vcf):  # bgzipped and indexed: used as it is, not copied
                    os.symlink(src.resolve(), tmp)
                else:  # the indexed copy made of a plain or unindexed VCF
                    shutil.move(src, tmp)
    except InputError as err:
        raise InputError(_as_user_file(str(err), staging, vcf)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _as_user_file(message: str, placed: str | Path, user_vcf: str | Path) -> str:
    """`message` with paths under `placed` (the placed VCF, or the staging folder of its copy) named as the user's
    VCF: the user knows their own file, not the pipeline's copy of it."""
    return re.sub(re.escape(str(placed)) + r"(/[^\s'\")]*?)?(?=[:;,\s'\")]|$)", str(user_vcf), message)


def check_cohort_inputs(vcf: str | Path, samples_path: str | Path, samples: pl.DataFrame, fasta,
                        aliases: dict[str, str], regions: list[Region], cohort: CohortConfig, n_folds: int,
                        panel: str | Path | None = None, shown_as: str | Path | None = None) -> dict:
    """Check the cohort's inputs: returns `validate_cohort`'s summary with `regions` and, with a panel,
    `ancestry_panel`.

    vcf: the VCF as `place_cohort_vcf` placed it (bgzipped, indexed). samples: `read_samples_tsv` of samples_path.
    shown_as: the user's VCF, named in every failure instead of `vcf` (default: `vcf`). Every failure is one
    InputError.
    """
    # covariates first, before any genotype is read (the audit would otherwise find them after embedding)
    covariate_design({n: samples[n].to_numpy() for n in cohort.covariates}, cohort.covariates,
                     missing=cohort.covariate_missing, sample_ids=samples["sample_id"].to_list(),
                     source=str(samples_path), categorical=cohort.categorical_covariates)
    try:
        summary = validate_cohort(vcf, samples, fasta, aliases, regions, cohort.phenotypes, n_folds,
                                  binary_only=True, samples_source=str(samples_path))
        if summary["n_variants_in_regions"] and summary["missing_rate"] >= 1.0:
            # every haplotype would be the reference (cohort.missing: ref) or masked (N): nothing to audit
            raise InputError(
                f"{vcf}: no genotype is called in the studied regions: every call of its "
                f"{summary['n_variants_in_regions']} variant(s) there is missing ('./.'), or their FORMAT has no GT "
                f"field (a VCF of dosages or of sites only); the haplotypes need called genotypes (GT)")
        if summary["unphased_het_rate"] > MAX_UNPHASED_WITH_REF and cohort.unphased == "ref":
            n_half = summary["n_unphased_half_missing"]
            raise InputError(
                f"{vcf}: {summary['unphased_het_rate']:.0%} of the "
                f"{summary['n_het_calls'] + summary['n_half_missing_alt_calls']} heterozygous calls "
                "in the studied regions are unphased ('/')"
                + (f", {n_half} of them half-missing ('./1')" if n_half else "")
                + "; with cohort.unphased: ref each becomes REF on both haplotypes, erasing those variants. Phase "
                "the VCF (SHAPEIT5, Eagle), or set cohort.unphased: N to mask them knowingly")
        # the panel after the cohort VCF: a samples.tsv row in neither file is the cohort VCF's mismatch
        panel_summary = check_panel(panel, samples) if panel else None
    except InputError as err:
        if shown_as is None or str(shown_as) == str(vcf):
            raise
        raise InputError(_as_user_file(str(err), vcf, shown_as)) from None
    summary["regions"] = [f"{r.name}={r.contig}:{r.start}-{r.end}" for r in regions]
    if panel_summary is not None:
        summary["ancestry_panel"] = panel_summary
    return summary


def check_panel(panel_vcf: str | Path, samples: pl.DataFrame) -> dict:
    """The ancestry marker VCF must hold every sample of samples.tsv once (extra samples are ignored)."""
    header = vcf_samples(panel_vcf)
    present = set(header)
    refuse_repeated_samples(panel_vcf, header, samples["sample_id"].to_list())
    missing = [s for s in samples["sample_id"].to_list() if s not in present]
    if missing:
        shown = ", ".join(missing[:20])
        raise InputError(f"{panel_vcf}: {len(missing)} sample(s) of samples.tsv are not in the ancestry VCF: "
                         f"{shown}{' ...' if len(missing) > 20 else ''}")
    return {"vcf": str(panel_vcf), "n_samples": len(present)}
