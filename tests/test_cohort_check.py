"""place_cohort_vcf and check_cohort_inputs: which file a sample mismatch is blamed on, indexes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from interp.cohort.check import check_cohort_inputs, place_cohort_vcf
from interp.cohort.config import CohortConfig
from interp.errors import InputError
from interp.genome.fasta import read_fasta
from interp.genome.regions import Region

FASTA = "resources/demo/hg19_chr17_1-40000.fa"


def _vcf(path, fasta, samples: list[str]) -> None:
    ref = fasta["chr17"][999].upper()
    alt = "G" if ref != "G" else "T"
    gts = "\t".join("0|1" if i % 2 else "0|0" for i in range(len(samples)))
    path.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
                    f"chr17\t1000\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{gts}\n")


def _place_and_check(vcf: Path, sheet: pl.DataFrame, fasta, regions: list[Region], cohort: CohortConfig,
                     out_dir: Path, panel: Path | None = None) -> dict:
    """place_cohort_vcf, then check_cohort_inputs on the placed VCF naming the user's, as the stages run them."""
    out_vcf, out_tbi = out_dir / "cohort.vcf.gz", out_dir / "cohort.vcf.gz.tbi"
    place_cohort_vcf(vcf, out_vcf, out_tbi)
    return check_cohort_inputs(out_vcf, out_dir / "samples.tsv", sheet, fasta, {}, regions, cohort, 2, panel=panel,
                               shown_as=vcf)


def test_a_sample_in_neither_vcf_is_blamed_on_the_cohort_vcf_not_the_ancestry_panel(tmp_path) -> None:
    """A samples.tsv row absent from the cohort VCF (and so from the panel too) was reported as missing from
    the ancestry VCF, sending the user to rebuild the wrong file; the cohort VCF's sample check comes first."""
    fasta = read_fasta(FASTA)
    ids = [f"S{i}" for i in range(1, 9)]
    vcf, panel = tmp_path / "cohort.vcf", tmp_path / "panel.vcf"
    _vcf(vcf, fasta, ids)
    _vcf(panel, fasta, ids)
    sheet = pl.DataFrame({"sample_id": ids + ["EXTRA"], "case": [0, 1] * 4 + [0]})
    out = tmp_path / "out"
    out.mkdir()
    cohort, regions = CohortConfig(phenotypes=["case"], covariates=[]), [Region("r", "chr17", 900, 1100)]
    with pytest.raises(InputError, match=rf"^{vcf}: .*in the samples table but not in the VCF: 'EXTRA'"):
        _place_and_check(vcf, sheet, fasta, regions, cohort, out, panel=panel)
    # a sample only the panel lacks is still refused naming the panel
    _vcf(vcf, fasta, ids + ["EXTRA"])
    with pytest.raises(InputError, match=r"panel.vcf: 1 sample\(s\) of samples.tsv are not in the ancestry VCF: EXTRA"):
        _place_and_check(vcf, sheet, fasta, regions, cohort, out, panel=panel)


def test_a_bgzipped_vcf_with_a_csi_index_is_used_through_it(tmp_path) -> None:
    """`bcftools index` writes a .csi (the README offers it for long contigs): such a VCF counted as indexed,
    but pysam looked for a .tbi only, and check_cohort stopped with 'cannot open its tabix/CSI index (index
    ... .tbi not found)'. It is now read through its .csi, linked in place with the index beside it."""
    import pysam

    fasta = read_fasta(FASTA)
    ids = [f"S{i}" for i in range(1, 9)]
    plain = tmp_path / "user.vcf"
    _vcf(plain, fasta, ids)
    vcf = tmp_path / "user.vcf.gz"
    pysam.tabix_compress(str(plain), str(vcf))
    pysam.tabix_index(str(vcf), preset="vcf", csi=True)
    assert not (tmp_path / "user.vcf.gz.tbi").exists()
    sheet = pl.DataFrame({"sample_id": ids, "case": [0, 1] * 4})
    out_vcf, out_tbi = tmp_path / "out" / "cohort.vcf.gz", tmp_path / "out" / "cohort.vcf.gz.tbi"
    out_vcf.parent.mkdir()
    regions = [Region("r", "chr17", 900, 1100)]
    summary = _place_and_check(vcf, sheet, fasta, regions, CohortConfig(phenotypes=["case"], covariates=[]),
                               out_vcf.parent)
    assert summary["indexed"] and summary["n_variants_in_regions"] == 1
    assert out_vcf.resolve() == vcf.resolve() and out_tbi.resolve() == Path(f"{vcf}.csi").resolve()
    from interp.cohort.vcf import read_genotypes

    for path in (vcf, out_vcf):
        genotypes = read_genotypes(path, samples=ids, regions=regions, fasta_contigs=list(fasta))
        assert list(genotypes.pos) == [1000] and genotypes.gt[:, :, 1].tolist() == [[0, 1] * 4]


def test_unphased_ref_is_refused_for_a_vcf_of_half_missing_unphased_calls(tmp_path) -> None:
    """A VCF whose heterozygous-looking calls are mostly './1' passed under unphased: ref, which writes REF on both
    haplotypes for each, erasing those variants unseen: half-missing ALT calls were not counted. They are now
    counted with the unphased heterozygous calls, and refused as a '0/1' VCF is; unphased: N is accepted."""
    fasta = read_fasta(FASTA)
    ids = [f"S{i}" for i in range(1, 9)]
    ref = fasta["chr17"][999].upper()
    alt = "G" if ref != "G" else "T"
    vcf = tmp_path / "half.vcf"
    calls = ["0|1", "./1", "1/.", "./1", "./1", "0|0", "./.", "0|0"]
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
                   f"chr17\t1000\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(calls) + "\n")
    sheet = pl.DataFrame({"sample_id": ids, "case": [0, 1] * 4})
    out = tmp_path / "out"
    out.mkdir()
    regions = [Region("r", "chr17", 900, 1100)]
    with pytest.raises(InputError, match=rf"^{vcf}: 80% of the 5 heterozygous calls .* are unphased .*"
                                         r"4 of them half-missing"):
        _place_and_check(vcf, sheet, fasta, regions, CohortConfig(phenotypes=["case"], covariates=[]), out)
    summary = _place_and_check(vcf, sheet, fasta, regions,
                               CohortConfig(phenotypes=["case"], covariates=[], unphased="N"), out)
    assert summary["n_unphased_half_missing"] == 4 and summary["unphased_het_rate"] == pytest.approx(0.8)


@pytest.mark.parametrize("fmt, calls", [("DS", ["0.9"] * 8), ("GT", ["./."] * 8), ("GT:DS", [".|.:1"] * 8)])
def test_a_vcf_without_a_called_genotype_in_the_regions_is_refused(tmp_path, fmt, calls) -> None:
    """A VCF of dosages (FORMAT DS, no GT) or of missing calls passed every check; under cohort.missing: ref
    every haplotype was then the reference, and the audit and rank saw no genotype. It is refused at
    check_cohort, naming the VCF; one called genotype is enough to pass."""
    fasta = read_fasta(FASTA)
    ids = [f"S{i}" for i in range(1, 9)]
    ref = fasta["chr17"][999].upper()
    alt = "G" if ref != "G" else "T"

    def write(cells: list[str]) -> Path:
        vcf = tmp_path / "dosage.vcf"
        vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                       '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                       '##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">\n'
                       "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
                       f"chr17\t1000\t.\t{ref}\t{alt}\t.\tPASS\t.\t{fmt}\t" + "\t".join(cells) + "\n")
        return vcf

    sheet = pl.DataFrame({"sample_id": ids, "case": [0, 1] * 4})
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    regions, cohort = [Region("r", "chr17", 900, 1100)], CohortConfig(phenotypes=["case"], covariates=[])
    vcf = write(calls)
    with pytest.raises(InputError, match=rf"^{vcf}: no genotype is called in the studied regions: every call of "
                                         r"its 1 variant\(s\) there is missing .*no GT field"):
        _place_and_check(vcf, sheet, fasta, regions, cohort, out)
    if fmt != "DS":
        one = list(calls)
        one[0] = "0|1" + calls[0][3:]
        summary = _place_and_check(write(one), sheet, fasta, regions, cohort, out)
        assert summary["missing_rate"] == pytest.approx(7 / 8)
