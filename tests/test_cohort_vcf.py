"""VCF reading, samples.tsv parsing, cohort validation errors and indexing."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from interp.cohort.vcf import ensure_indexed, read_genotypes, read_samples_tsv, validate_cohort, vcf_samples
from interp.errors import InputError
from interp.genome.fasta import read_fasta
from interp.genome.regions import Region

KG = Path("tests/data/1kg_pilot_chr2_10038-40424.vcf.gz")
FASTA = Path("resources/demo/hg19_chr17_1-40000.fa")


@pytest.fixture(scope="module")
def kg_samples():
    return vcf_samples(KG)


def _sheet(ids, **columns) -> pl.DataFrame:
    return pl.DataFrame({"sample_id": ids, **columns})


def test_read_real_vcf_missing_calls():
    genotypes = read_genotypes(KG)
    assert genotypes.gt.shape == (381, 629, 2)
    assert genotypes.n_multiallelic_skipped == 0
    assert (genotypes.contig == "2").all() and genotypes.pos[0] == 10038
    assert 0.3 < (genotypes.gt < 0).mean() < 1
    # first record: every call is ./.
    assert (genotypes.gt[0] == -1).all()


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_genotypes_match_bcftools_query():
    text = subprocess.run(f"zcat {KG} | bcftools query -f '[%GT\\t]\\n'", shell=True, check=True,
                          capture_output=True, text=True).stdout
    rows = [line.rstrip("\t").split("\t") for line in text.splitlines()]
    genotypes = read_genotypes(KG)
    code = {".": -1, "0": 0, "1": 1}
    expected = np.array([[[code[a] for a in gt.replace("|", "/").split("/")] for gt in row] for row in rows])
    np.testing.assert_array_equal(genotypes.gt, expected)


def test_sample_subset_order_regions_and_contig_mapping(kg_samples):
    fasta = {"chr2": "N" * 50000}
    chosen = [kg_samples[5], kg_samples[0]]
    genotypes = read_genotypes(KG, samples=chosen, regions=[Region("r", "chr2", 10037, 10200)],
                               fasta_contigs=list(fasta))
    full = read_genotypes(KG)
    assert genotypes.samples == chosen
    assert (genotypes.contig == "chr2").all() and genotypes.contig_map == {"2": "chr2"}
    assert ((genotypes.pos > 10037) & (genotypes.pos <= 10200)).all()
    np.testing.assert_array_equal(genotypes.gt, full.gt[: genotypes.n_variants][:, [5, 0]])
    with pytest.raises(InputError, match="not in the VCF header: nobody"):
        read_genotypes(KG, samples=["nobody"])


def test_multiallelic_records_are_skipped_and_counted(tmp_path):
    vcf = tmp_path / "m.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=100>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
                   "1\t5\t.\tA\tC,G\t.\t.\t.\tGT\t0|1\t2|1\n"
                   "1\t7\t.\tA\tT\t.\t.\t.\tGT\t0|1\t1/.\n")
    genotypes = read_genotypes(vcf)
    assert genotypes.n_multiallelic_skipped == 1 and genotypes.n_variants == 1
    np.testing.assert_array_equal(genotypes.gt[0], [[0, 1], [1, -1]])
    np.testing.assert_array_equal(genotypes.phased[0], [True, False])


def test_samples_tsv_errors(tmp_path):
    path = tmp_path / "samples.tsv"
    path.write_text("sample_id\tpopulation\tcase\tsex\nA\tYRI\t1\t0\nB\tCEU\t0\t1\n")
    table = read_samples_tsv(path, ["case"], ["sex"], "population")
    assert table.columns == ["sample_id", "population", "case", "sex"] and table["case"].to_list() == [1.0, 0.0]
    with pytest.raises(InputError, match=r"samples.tsv, line 1, field batch: column 'batch' is missing; the "
                                         r"header has: sample_id, population, case, sex"):
        read_samples_tsv(path, ["case"], ["batch"], "population")
    path.write_text("sample_id\tcase\nA\t1\nB\tyes\n")
    with pytest.raises(InputError, match=r"line 3, field case: phenotype value 'yes' is not a number"):
        read_samples_tsv(path, ["case"], [], None)
    path.write_text("sample_id\tcase\nA\t1\nA\t0\n")
    with pytest.raises(InputError, match=r"line 3, field sample_id: duplicate sample_id 'A' \(first seen on "
                                         r"line 2\)"):
        read_samples_tsv(path, ["case"], [], None)
    path.write_text("sample_id\tcase\n")
    with pytest.raises(InputError, match="no samples"):
        read_samples_tsv(path, ["case"], [], None)


def test_validate_sample_mismatch_lists_samples(kg_samples):
    fasta = read_fasta(FASTA)
    sheet = _sheet(kg_samples[2:] + ["EXTRA1"], case=[0, 1] * 314)
    with pytest.raises(InputError) as error:
        validate_cohort(KG, sheet, fasta, {"2": "chr17"}, [], ["case"], 5)
    message = str(error.value)
    assert f"in the VCF but not in the samples table: {kg_samples[0]}, {kg_samples[1]} (2 in all)" in message
    assert "in the samples table but not in the VCF: EXTRA1 (1 in all)" in message


def test_validate_contig_then_ref_mismatch_on_real_data(kg_samples):
    fasta = read_fasta(FASTA)
    sheet = _sheet(kg_samples, case=[0, 1] * 314 + [0])
    with pytest.raises(InputError, match=r"VCF contigs '2' do not match any FASTA contig .*FASTA contigs: chr17"):
        validate_cohort(KG, sheet, fasta, None, [], ["case"], 5)
    with pytest.raises(InputError) as error:
        validate_cohort(KG, sheet, fasta, {"2": "chr17"}, [], ["case"], 5)
    message = str(error.value)
    assert "REF alleles disagree with the reference FASTA" in message
    assert "of 381 records checked" in message
    ref = fasta["chr17"][10037].upper()
    if ref != "C":
        assert f"2:10038 REF=C reference={ref}" in message


def _matching_cohort(tmp_path: Path, n: int = 20) -> tuple[Path, dict[str, str], list[str]]:
    """A small VCF whose REF alleles come from the demo FASTA."""
    fasta = read_fasta(FASTA)
    ids = [f"s{i}" for i in range(n)]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=17,length=40000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *ids])]
    rng = np.random.default_rng(0)
    for pos in (6100, 6200, 20000, 35000):
        ref = fasta["chr17"][pos - 1].upper()
        alt = "A" if ref != "A" else "C"
        calls = [f"{rng.integers(2)}|{rng.integers(2)}" if rng.random() > 0.1 else "./." for _ in ids]
        lines.append("\t".join(["17", str(pos), ".", ref, alt, ".", ".", ".", "GT", *calls]))
    vcf = tmp_path / "ok.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    return vcf, fasta, ids


def test_validate_phenotype_class_checks_and_summary(tmp_path):
    vcf, fasta, ids = _matching_cohort(tmp_path)
    regions = [Region("doc2b", "chr17", 6000, 31500)]
    one_class = _sheet(ids, case=[1] * 20)
    with pytest.raises(InputError, match=r"field case: phenotype has a single class"):
        validate_cohort(vcf, one_class, fasta, None, regions, ["case"], 5)
    few = _sheet(ids, case=[1] * 3 + [0] * 17)
    with pytest.raises(InputError, match=r"field case: binary phenotype has class counts 0: 17, 1: 3; each class "
                                         r"needs at least 5"):
        validate_cohort(vcf, few, fasta, None, regions, ["case"], 5)
    quantitative = _sheet(ids, height=[1.5 + i for i in range(8)] + [None] * 12)
    with pytest.raises(InputError, match=r"field height: quantitative phenotype has 8 non-missing samples; needs "
                                         r"at least 10"):
        validate_cohort(vcf, quantitative, fasta, None, regions, ["height"], 5)
    good = _sheet(ids, case=[0, 1] * 10)
    summary = validate_cohort(vcf, good, fasta, None, regions, ["case"], 5)
    assert summary["n_samples"] == 20 and summary["n_variants"] == 4
    assert summary["n_variants_in_regions"] == 3 and summary["contig_map"] == {"17": "chr17"}
    assert 0 < summary["missing_rate"] < 0.3 and summary["n_multiallelic_skipped"] == 0


def test_ensure_indexed_never_touches_user_file(tmp_path):
    vcf, _, _ = _matching_cohort(tmp_path)
    before = vcf.read_bytes()
    out = tmp_path / "out"
    indexed = ensure_indexed(vcf, out_dir=out)
    assert indexed == out / "ok.vcf.gz" and Path(str(indexed) + ".tbi").exists()
    assert vcf.read_bytes() == before
    with gzip.open(indexed, "rt") as handle:
        assert handle.read() .split("#CHROM")[1] == before.decode().split("#CHROM")[1]
    assert ensure_indexed(indexed) == indexed  # already indexed: unchanged
    # plain-gzip (not bgzip) 1KG file gets a bgzipped copy with the same records
    copy = ensure_indexed(KG, out_dir=out)
    assert copy.parent == out and read_genotypes(copy).gt.shape == (381, 629, 2)
    assert not list(out.glob(".*tmp*"))


def test_fast_gt_parsing_equals_pysam_call_by_call(tmp_path):
    """GT-only records of three-character calls are parsed from the record text; the result equals
    pysam's call-by-call reading, and other records (haploid calls, more FORMAT fields) fall back."""
    import pysam

    from interp.cohort.vcf import _gt_only_calls, _record_calls, _record_calls_pysam

    rows = [
        ("GT", ["0|1", "1/0", "./.", ".|.", "1|1", "0/0"]),  # fast path
        ("GT", ["0|1", "1", "./.", "0|0", "1|0", "."]),  # haploid calls: pysam
        ("GT:DP", ["0|1:3", "1/0:4", "./.:.", "0|0:1", "1|1:9", "0/1:2"]),  # more fields: pysam
    ]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
                       + [f"s{i}" for i in range(6)])]
    for k, (fmt, calls) in enumerate(rows):
        lines.append("\t".join(["chr1", str(10 + k), ".", "A", "G", ".", "PASS", ".", fmt, *calls]))
    path = tmp_path / "calls.vcf"
    path.write_text("\n".join(lines) + "\n")
    with pysam.VariantFile(str(path)) as vcf:
        records = list(vcf)
    assert _gt_only_calls(records[0], 6) is not None
    assert _gt_only_calls(records[1], 6) is None and _gt_only_calls(records[2], 6) is None
    for record in records:
        gt, phased = _record_calls(record, 6)
        gt_ref, phased_ref = _record_calls_pysam(record, 6)
        np.testing.assert_array_equal(gt, gt_ref)
        np.testing.assert_array_equal(phased, phased_ref)
    np.testing.assert_array_equal(_record_calls(records[0], 6)[0],
                                  [[0, 1], [1, 0], [-1, -1], [-1, -1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(_record_calls(records[0], 6)[1], [True, False, False, True, True, False])


def test_fast_and_pysam_reading_agree_on_real_and_simulated_vcfs(tmp_path):
    from interp.cohort.simulate import simulate_ancestry_panel
    from interp.cohort.vcf import _open_vcf, _record_calls, _record_calls_pysam

    simulate_ancestry_panel({"YRI": 20, "CEU": 20, "CHB": 20}, 3, 5, 5000, tmp_path / "panel.vcf.gz")
    for path in (KG, tmp_path / "panel.vcf.gz"):
        with _open_vcf(path) as vcf:
            n = len(vcf.header.samples)
            for record in vcf:
                a, b = _record_calls(record, n), _record_calls_pysam(record, n)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
