"""VCF reading, samples.tsv parsing, cohort validation errors and indexing."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest

from interp.cohort.vcf import (
    ensure_indexed,
    iter_dosage_chunks,
    read_genotypes,
    read_samples_tsv,
    validate_cohort,
    vcf_samples,
)
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
    assert genotypes.n_multiallelic_split == 0
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
    with pytest.raises(InputError, match="not in the VCF header: 'nobody'"):
        read_genotypes(KG, samples=["nobody"])


def test_multiallelic_records_are_split_into_one_record_per_alt_allele(tmp_path):
    """An unsplit multi-allelic record was skipped (its variants lost from every haplotype); it is now read as
    `bcftools norm -m -any` splits it: one record per ALT allele, a copy carrying another ALT reads 0 in it.
    Symbolic and '*' alleles give no record; a record with none but them is counted as skipped."""
    vcf = tmp_path / "m.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=100>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
                   "1\t5\t.\tA\tC,G\t.\t.\t.\tGT\t0|1\t2|1\n"
                   "1\t6\t.\tA\tT,*,<*>\t.\t.\t.\tGT:DP\t3/2:4\t1|.:5\n"
                   "1\t7\t.\tA\tT\t.\t.\t.\tGT\t0|1\t1/.\n"
                   "1\t8\t.\tA\t*,<DEL>\t.\t.\t.\tGT\t0|1\t1|2\n")
    genotypes = read_genotypes(vcf)
    assert genotypes.n_multiallelic_split == 2 and genotypes.n_other_skipped == 1
    assert list(genotypes.pos) == [5, 5, 6, 7] and genotypes.alt == ["C", "G", "T", "T"]
    np.testing.assert_array_equal(genotypes.gt[0], [[0, 1], [0, 1]])
    np.testing.assert_array_equal(genotypes.gt[1], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(genotypes.gt[2], [[0, 0], [1, -1]])
    np.testing.assert_array_equal(genotypes.gt[3], [[0, 1], [1, -1]])
    np.testing.assert_array_equal(genotypes.phased[:, 0], [True, True, False, True])
    with pytest.raises(InputError, match=r"'0\|3' names ALT allele 3, but the record has 2"):
        vcf.write_text(vcf.read_text() + "1\t9\t.\tA\tC,G\t.\t.\t.\tGT\t0|3\t0|1\n")
        read_genotypes(vcf)


@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_repeated_records_are_read_once_as_bcftools_norm_d_exact_keeps_them(tmp_path):
    """A record repeating the contig, position, REF, ALT and calls of an earlier one (two copies of a file
    concatenated, a split record beside its unsplit source) was read twice: the rank stage tested the variant
    twice under `#k` ids and the PCA counted it twice. It is skipped, as `bcftools norm -d exact` skips it
    (the oracle), here for a plain repeat, one in lower case, and one hidden in a multi-allelic record; a
    record at the same position with another ALT is a different variant and stays. The same variant with
    other calls is refused, naming it: which record is right cannot be told."""
    text = ("##fileformat=VCFv4.2\n##contig=<ID=1,length=100>\n"
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
            "1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n"
            "1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n"
            "1\t5\t.\tA\tG\t.\t.\t.\tGT\t1|0\t0|0\n"
            "1\t7\t.\tA\tT\t.\t.\t.\tGT\t0|0\t0|1\n"
            "1\t7\t.\ta\tt\t.\t.\t.\tGT\t0|0\t0|1\n"
            "1\t9\t.\tA\tT\t.\t.\t.\tGT\t0|1\t0|0\n"
            "1\t9\t.\tA\tG,T\t.\t.\t.\tGT\t1|2\t0|0\n")
    vcf = _bgzip(tmp_path / "dup.vcf.gz", text)
    pysam.tabix_index(str(vcf), preset="vcf", force=True)
    genotypes = read_genotypes(vcf)
    assert genotypes.n_duplicate_skipped == 3 and genotypes.n_variants == 5
    normed = subprocess.run(["bcftools", "norm", "-m", "-any", str(vcf)], check=True, capture_output=True,
                            text=True).stdout
    normed = subprocess.run(["bcftools", "norm", "-d", "exact", "-"], input=normed, check=True,
                            capture_output=True, text=True).stdout
    expected = [line.split("\t") for line in normed.splitlines() if not line.startswith("#")]
    assert [(int(f[1]), f[3].upper(), f[4].upper()) for f in expected] == list(
        zip(genotypes.pos.tolist(), genotypes.ref, genotypes.alt, strict=True))
    calls = [[[int(a) for a in call.replace("|", "/").split("/")] for call in f[9:]] for f in expected]
    np.testing.assert_array_equal(genotypes.gt, calls)
    fasta = {"1": "A" * 100}
    summary = validate_cohort(vcf, _sheet(["a", "b"], case=[0, 1]), fasta, {}, None, [], 2)
    assert summary["n_duplicate_skipped"] == 3 and summary["n_variants_in_regions"] == 5
    from interp.cohort.ancestry import read_marker_dosages  # a marker panel counts a repeated marker once too

    assert read_marker_dosages(vcf, ["a", "b"], maf_min=0.0).n_read == 4  # 5 biallelic, the multi-allelic skipped
    # the phase of a homozygous call means nothing: '0/0' repeating '0|0' is the same call, not a conflict; that
    # of a heterozygous one does ('1/0' repeating '1|0')
    same = _bgzip(tmp_path / "phase.vcf.gz", text + "1\t5\t.\tA\tG\t.\t.\t.\tGT\t1|0\t0/0\n")
    assert read_genotypes(same).n_duplicate_skipped == 4
    other = _bgzip(tmp_path / "phase2.vcf.gz", text + "1\t5\t.\tA\tG\t.\t.\t.\tGT\t1/0\t0|0\n")
    with pytest.raises(InputError, match=r"1:5 A>G appears twice \(in two records, or .*\) with different genotypes"):
        read_genotypes(other)
    regional = read_genotypes(vcf, regions=[Region("r", "1", 0, 100)], fasta_contigs=["1"])
    assert regional.n_duplicate_skipped == 3 and regional.n_variants == 5
    conflicting = _bgzip(tmp_path / "conflict.vcf.gz", text + "1\t9\t.\tA\tT\t.\t.\t.\tGT\t0|1\t1|0\n")
    message = r"conflict.vcf.gz: the variant 1:9 A>T appears twice \(in two records"
    with pytest.raises(InputError, match=message):
        read_genotypes(conflicting)
    with pytest.raises(InputError, match=message):
        validate_cohort(conflicting, _sheet(["a", "b"], case=[0, 1]), fasta, {}, None, [], 2)


@pytest.mark.parametrize("pos", ["10x", "3.0", "-4"])
def test_a_malformed_pos_is_an_input_error_through_the_index_and_in_a_scan(tmp_path, pos):
    """tabix indexes POS '10x' at 10 (htslib reads the leading digits), so a bad POS got past the index and
    ended check_cohort and the haplotype shards in a bare ValueError traceback."""
    seq = "ACGTACGTTAGCCATGGATCCAGTTGACCATGCAATGCGTACCGGATTACAGT" * 2
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1\n{seq}\n")
    text = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=106>\n"
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\n"
            "chr1\t3\t.\tG\tC\t.\t.\t.\tGT\t0|1\t1|1\n"
            f"chr1\t{pos}\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    vcf = _bgzip(tmp_path / "bad.vcf.gz", text)
    region = Region("r", "chr1", 0, 106)
    message = rf"bad\.vcf\.gz: record .*: POS '{pos}' is not a whole number"
    with pytest.raises(InputError, match=message):
        read_genotypes(vcf)  # a scan of the whole file
    if pos[0].isdigit():  # tabix refuses the others itself (its own error, also an InputError)
        pysam.tabix_index(str(vcf), preset="vcf", force=True)
        with pytest.raises(InputError, match=message):
            read_genotypes(vcf, regions=[region], fasta_contigs=["chr1"])
        with pytest.raises(InputError, match=message):
            validate_cohort(vcf, pl.DataFrame({"sample_id": ["A", "B"]}), read_fasta(fasta), {}, [region], [], 2)


def test_a_telomere_record_at_pos_0_is_read_past(tmp_path):
    """POS 0 marks a telomere (VCF 4.2, 1.6.1): it lies in no region and was read past; the POS check must not
    refuse it."""
    seq = "ACGTACGTTAGCCATGGATCCAGTTGACCATGCAATGCGTACCGGATTACAGT" * 4
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1\n{seq}\n")
    vcf = _bgzip(tmp_path / "t.vcf.gz", "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=212>\n"
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                 "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\n"
                 "chr1\t0\t.\tN\t.[chr1:5[\t.\t.\tSVTYPE=BND\tGT\t0|1\t0|0\n"
                 "chr1\t103\t.\tC\tG\t.\t.\t.\tGT\t0|1\t1|1\n")
    region = Region("r", "chr1", 100, 200)
    assert read_genotypes(vcf, regions=[region], fasta_contigs=["chr1"]).n_variants == 1
    summary = validate_cohort(vcf, pl.DataFrame({"sample_id": ["A", "B"]}), read_fasta(fasta), {}, [region], [], 2)
    assert summary["n_variants_in_regions"] == 1


def test_record_with_more_alt_alleles_than_int8_holds_is_split(tmp_path):
    """A joint-called STR site can list over 127 ALT alleles: a call naming allele 130 stopped the read with an
    OverflowError traceback; the record is now split like any other."""
    alts = [f"A{'C' * i}" for i in range(1, 131)]
    vcf = tmp_path / "str.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=1000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
                   f"1\t5\t.\tA\t{','.join(alts)}\t.\t.\t.\tGT\t0|130\t129/1\n")
    genotypes = read_genotypes(vcf)
    assert genotypes.n_variants == 130 and genotypes.alt == alts and genotypes.gt.dtype == np.int8
    np.testing.assert_array_equal(genotypes.gt[[0, 1, 128, 129]],
                                  [[[0, 0], [0, 1]], [[0, 0], [0, 0]], [[0, 0], [1, 0]], [[0, 1], [0, 0]]])


def test_samples_tsv_short_row_is_refused_not_read_as_missing(tmp_path):
    """A row with fewer fields than the header (a phenotype left off, not written NA) is refused by its line:
    it was read with its last columns missing, silently dropping that sample's phenotype."""
    path = tmp_path / "samples.tsv"
    path.write_text("sample_id\tpopulation\tcase\nA\tYRI\t1\nB\tCEU\nC\tCEU\tNA\n")
    with pytest.raises(InputError, match=r"samples.tsv, line 3: 2 tab-separated fields, but the header has 3"):
        read_samples_tsv(path, ["case"], [], "population")
    path.write_text("sample_id\tpopulation\tcase\nA\tYRI\t1\nB\tCEU\t\n\n")  # empty field and blank line: fine
    assert read_samples_tsv(path, ["case"], [], "population")["case"].to_list() == [1.0, None]


def test_samples_tsv_errors(tmp_path):
    path = tmp_path / "samples.tsv"
    path.write_text("sample_id\tpopulation\tcase\tsex\nA\tYRI\t1\t0\nB\tCEU\t0\t1\n")
    table = read_samples_tsv(path, ["case"], ["sex"], "population")
    assert table.columns == ["sample_id", "population", "case", "sex"] and table["case"].to_list() == [1.0, 0.0]
    with pytest.raises(InputError, match=r"samples.tsv, line 1, field batch: column 'batch' is missing; the "
                                         r"header has: sample_id, population, case, sex; it is named in "
                                         r"cohort.covariates \(configs/demo.yaml's value unless"):
        read_samples_tsv(path, ["case"], ["batch"], "population")
    path.write_text("sample_id\tcase\nA\t1\nB\tyes\n")
    with pytest.raises(InputError, match=r"line 3, field case: phenotype value 'yes' is not a number"):
        read_samples_tsv(path, ["case"], [], None)
    # Python's float() reads these, a sample sheet does not mean them: 1_0 was 10, Inf and NAN numbers
    for value in ("1_0", "Inf", "NAN", "-infinity", "0x1"):
        path.write_text(f"sample_id\tcase\tage\nA\t1\t50\nB\t{value}\t61\n")
        with pytest.raises(InputError, match=rf"line 3, field case: phenotype value '{value}' is not a number"):
            read_samples_tsv(path, ["case"], [], None)
        path.write_text(f"sample_id\tcase\tage\nA\t1\t50\nB\t0\t{value}\n")
        if value == "0x1":  # not a float at all: the column is categorical, as before
            assert read_samples_tsv(path, ["case"], ["age"], None)["age"].to_list() == ["50", "0x1"]
            continue
        with pytest.raises(InputError, match=rf"line 3, field age: covariate value '{value}' is not a finite"):
            read_samples_tsv(path, ["case"], ["age"], None)
    path.write_text("sample_id\tcase\tage\nA\t1\t5e1\nB\t0\t -.5 \nC\tNA\t+61.\n")
    assert read_samples_tsv(path, ["case"], ["age"], None)["age"].to_list() == [50.0, -0.5, 61.0]
    path.write_text("sample_id\tcase\nA\t1\nA\t0\n")
    with pytest.raises(InputError, match=r"line 3, field sample_id: duplicate sample_id 'A' \(first seen on "
                                         r"line 2\)"):
        read_samples_tsv(path, ["case"], [], None)
    path.write_text("sample_id\tcase\n")
    with pytest.raises(InputError, match="no samples"):
        read_samples_tsv(path, ["case"], [], None)
    # a comment line above the header read as "line 2: 2 fields, but the header has 1 columns"; a comma-separated
    # sheet as "column 'sample_id' is missing; the header has: sample_id,case"
    path.write_text("# cohort of 2024\nsample_id\tcase\nA\t1\n")
    with pytest.raises(InputError, match=r"samples.tsv, line 1: starts with '#' .* takes no comment lines"):
        read_samples_tsv(path, ["case"], [], None)
    path.write_text("#sample_id\tcase\nA\t1\n")
    with pytest.raises(InputError, match=r"line 1: starts with '#'.*sample_id as a column name \(no '#'\)"):
        read_samples_tsv(path, ["case"], [], None)
    for sep, name in ((",", "comma"), (";", "semicolon")):
        path.write_text(f"sample_id{sep}case\nA{sep}1\n")
        with pytest.raises(InputError, match=rf"line 1: the header is one column holding {name}s .* looks "
                                             rf"{name}-separated; a sample sheet is tab-separated"):
            read_samples_tsv(path, ["case"], [], None)


def test_samples_tsv_population_labels_and_header(tmp_path):
    """The population column, whatever its name, is `population` in the table the stages read (the audit
    and the report look it up there); empty labels and a repeated header column are refused."""
    path = tmp_path / "samples.tsv"
    path.write_text("sample_id\tsuperpopulation\tcase\nA\tAFR \t1\nB\tEUR\t0\n")
    table = read_samples_tsv(path, ["case"], [], "superpopulation")
    assert table.columns == ["sample_id", "population", "case"] and table["population"].to_list() == ["AFR", "EUR"]
    path.write_text("sample_id\tsuperpopulation\tcase\nA\tAFR\t1\nB\t\t0\nC\tNA\t1\n")
    with pytest.raises(InputError, match=r"field superpopulation: 2 sample\(s\) have no population label "
                                         r"\(lines 3, 4\).*population_column: null"):
        read_samples_tsv(path, ["case"], [], "superpopulation")
    path.write_text("sample_id\tcase\tsex\tcase\nA\t1\t0\t0\nB\t0\t1\t1\n")
    with pytest.raises(InputError, match=r"samples.tsv, line 1: column\(s\) 'case' appear more than once"):
        read_samples_tsv(path, ["case"], ["sex"], None)


def test_repeated_vcf_sample_is_refused(tmp_path):
    """Genotypes are read by sample name: a VCF header naming one sample twice is refused, not read as one."""
    vcf = tmp_path / "dup.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS1\n"
                   "chr17\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0|1\t0|0\t1|1\n")
    with pytest.raises(InputError, match=r"dup.vcf: the VCF header lists sample\(s\) more than once: 'S1'"):
        validate_cohort(vcf, _sheet(["S1", "S2"], case=[0, 1]), read_fasta(FASTA), {}, None, ["case"], 2)


def test_utf8_sample_ids_are_read_as_written(tmp_path):
    """VCF 4.3 is UTF-8: a sample called 'Mü' was decoded as ASCII ('M\ufffd\ufffd') and so missing from
    samples.tsv, which is read as UTF-8."""
    from interp.cohort.vcf import read_genotypes, vcf_samples

    plain = tmp_path / "utf.vcf"
    plain.write_text("##fileformat=VCFv4.3\n##contig=<ID=chr17,length=40000>\n"
                     '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                     "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tMü\tS2\n"
                     "chr17\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0|1\t0|0\n", encoding="utf-8")
    indexed = Path(pysam.tabix_index(str(plain), preset="vcf", keep_original=True, force=True))
    for vcf in (plain, indexed):
        assert vcf_samples(vcf) == ["Mü", "S2"], vcf
        genotypes = read_genotypes(vcf, samples=["Mü"])
        assert genotypes.samples == ["Mü"] and genotypes.gt[0, 0].tolist() == [0, 1], vcf


def test_validation_counts_unphased_heterozygous_calls_and_needs_records_in_the_regions(tmp_path):
    from interp.genome.regions import Region

    fasta = read_fasta(FASTA)
    ref = fasta["chr17"][999].upper()
    alt = "G" if ref != "G" else "T"
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\tS4\n"
                   f"chr17\t1000\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t0|1\t0/1\t1/0\t./.\n")
    sheet = _sheet(["S1", "S2", "S3", "S4"], case=[0, 1, 0, 1])
    summary = validate_cohort(vcf, sheet, fasta, {}, [Region("r", "chr17", 900, 1100)], ["case"], 2)
    assert summary["n_het_calls"] == 3 and summary["unphased_het_rate"] == pytest.approx(2 / 3)
    assert summary["n_samples_mostly_missing"] == 1
    with pytest.raises(InputError, match=r"calls.vcf: no biallelic record lies inside the studied regions"):
        validate_cohort(vcf, sheet, fasta, {}, [Region("r", "chr17", 2000, 3000)], ["case"], 2)


def test_validation_counts_half_missing_alt_calls_with_the_unphased_ones(tmp_path):
    """'./1', '1/.' (and './2', split) carry an ALT whose haplotype is unknown, as a '0/1' does, and
    `cohort.unphased` decides them; they were not counted (both alleles had to be called), so unphased_het_rate
    missed them. They are counted now (n_half_missing_alt_calls, n_unphased_half_missing) and in the rate; './0'
    carries no ALT and is not."""
    from interp.genome.regions import Region

    fasta = read_fasta(FASTA)
    ref, ref2 = fasta["chr17"][999].upper(), fasta["chr17"][1009].upper()
    alt = "G" if ref != "G" else "T"
    alts2 = ",".join([b for b in "ACGT" if b != ref2][:2])
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\tS4\tS5\tS6\n"
                   f"chr17\t1000\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t0|1\t./1\t1/.\t.|1\t./0\t./.\n"
                   f"chr17\t1010\t.\t{ref2}\t{alts2}\t.\tPASS\t.\tGT\t./2\t1|2\t0|0\t0|0\t0|0\t0|0\n")
    sheet = _sheet([f"S{i}" for i in range(1, 7)], case=[0, 1] * 3)
    summary = validate_cohort(vcf, sheet, fasta, {}, [Region("r", "chr17", 900, 1100)], ["case"], 2)
    # 0|1 once, 1|2 as 1|0 and 0|1; ./1, 1/., .|1 and ./2 (as ./1 in the second split record) half-missing
    assert summary["n_het_calls"] == 3
    assert summary["n_half_missing_alt_calls"] == 4 and summary["n_unphased_half_missing"] == 3
    assert summary["unphased_het_rate"] == pytest.approx(3 / 7)


def test_validate_sample_mismatch_lists_samples(kg_samples):
    fasta = read_fasta(FASTA)
    sheet = _sheet(kg_samples[2:] + ["EXTRA1"], case=[0, 1] * 314)
    with pytest.raises(InputError) as error:
        validate_cohort(KG, sheet, fasta, {"2": "chr17"}, [], ["case"], 5)
    message = str(error.value)
    assert f"in the VCF but not in the samples table: '{kg_samples[0]}', '{kg_samples[1]}' (2 in all)" in message
    assert "in the samples table but not in the VCF: 'EXTRA1' (1 in all)" in message


def test_validate_contig_then_ref_mismatch_on_real_data(kg_samples):
    fasta = read_fasta(FASTA)
    sheet = _sheet(kg_samples, case=[0, 1] * 314 + [0])
    with pytest.raises(InputError, match=r"VCF contigs '2' do not match any FASTA contig .*FASTA contigs: 'chr17'"):
        validate_cohort(KG, sheet, fasta, None, None, ["case"], 5)
    with pytest.raises(InputError) as error:
        validate_cohort(KG, sheet, fasta, {"2": "chr17"}, None, ["case"], 5)
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
    quantitative = _sheet(ids, height=[1.5 + i for i in range(20)])
    with pytest.raises(InputError, match=r"^my/samples.tsv, line 2, field height: value 1.5 \(the phenotype has "
                                         r"values 1.5, 2.5, .*binary phenotypes only"):
        validate_cohort(vcf, quantitative, fasta, None, regions, ["height"], 5, binary_only=True,
                        samples_source="my/samples.tsv")
    good = _sheet(ids, case=[0, 1] * 10)
    summary = validate_cohort(vcf, good, fasta, None, regions, ["case"], 5)
    # only the records inside the studied region are read and checked
    assert summary["n_samples"] == 20 and summary["n_variants"] == 3 and summary["n_records_checked"] == 3
    assert summary["n_variants_in_regions"] == 3 and summary["contig_map"] == {"17": "chr17"}
    whole = validate_cohort(vcf, good, fasta, None, None, ["case"], 5)
    assert whole["n_records_checked"] == 4 and whole["n_variants_in_regions"] == 4
    assert 0 < summary["missing_rate"] < 0.3 and summary["n_multiallelic_split"] == 0
    assert summary["n_multiallelic_skipped"] == 0  # report.json's key of earlier reports stays (nothing is skipped)


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


# ---------------------------------------------------------------- region-restricted reading


@pytest.fixture(scope="module")
def kg_indexed(tmp_path_factory):
    return ensure_indexed(KG, out_dir=tmp_path_factory.mktemp("kg"))


def test_indexed_region_reads_equal_a_scan(kg_indexed):
    regions = [Region("b", "chr2", 20000, 30000), Region("a", "chr2", 10037, 12000),
               Region("a2", "chr2", 11000, 15000)]  # unsorted and overlapping: each record once, in order
    fasta = {"chr2": "N" * 50000}
    fetched = read_genotypes(kg_indexed, regions=regions, fasta_contigs=list(fasta))
    scanned = read_genotypes(KG, regions=regions, fasta_contigs=list(fasta))  # plain gzip: no index, a scan
    assert fetched.n_variants == scanned.n_variants > 50
    np.testing.assert_array_equal(fetched.pos, scanned.pos)
    np.testing.assert_array_equal(fetched.gt, scanned.gt)
    np.testing.assert_array_equal(fetched.phased, scanned.phased)
    assert np.all(np.diff(fetched.pos) >= 0)
    inside = ((fetched.pos > 10037) & (fetched.pos <= 15000)) | ((fetched.pos > 20000) & (fetched.pos <= 30000))
    assert inside.all()
    assert read_genotypes(kg_indexed, regions=[Region("z", "chr2", 45000, 46000)],
                          fasta_contigs=list(fasta)).n_variants == 0


def test_general_gt_layouts_match_pysam(tmp_path):
    """FORMAT with more fields, haploid calls, missing alleles: the text parser agrees with htslib."""
    vcf = tmp_path / "f.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=100>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                   '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="DP">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\n"
                   "1\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0|1:3\t1/.:4\t.:2\n"
                   "1\t6\t.\tA\tC\t.\t.\t.\tGT\t1\t0\t.\n"
                   "1\t7\t.\tA\tG\t.\t.\t.\tGT:DP\t1|1:3\t./1:4\t0/0\n")
    ours = read_genotypes(vcf)
    with pysam.VariantFile(str(vcf)) as handle:
        for i, record in enumerate(handle):
            for j, call in enumerate(record.samples.values()):
                alleles = call["GT"] if len(call["GT"]) == 2 else call["GT"] * 2
                assert list(ours.gt[i, j]) == [-1 if a is None else a for a in alleles], (i, j)
    np.testing.assert_array_equal(ours.phased, [[True, False, True], [True, True, True], [True, False, False]])


def test_validation_reads_only_studied_regions(tmp_path):
    vcf, fasta, ids = _matching_cohort(tmp_path)
    text = vcf.read_text().replace("\t35000\t.\t", "\t35000\t.\t").splitlines()
    # break the REF of the record at 35000, outside the studied region
    last = text[-1].split("\t")
    last[3] = "A" if last[3] != "A" else "C"
    text[-1] = "\t".join(last)
    vcf.write_text("\n".join(text) + "\n")
    indexed = ensure_indexed(vcf, out_dir=tmp_path / "idx")
    good = _sheet(ids, case=[0, 1] * 10)
    summary = validate_cohort(indexed, good, fasta, None, [Region("doc2b", "chr17", 6000, 31500)], ["case"], 5)
    assert summary["indexed"] and summary["n_records_checked"] == 3 and summary["n_variants_in_regions"] == 3
    assert summary["n_header_contigs"] == 1 and summary["contig_length_mismatches"] == []
    with pytest.raises(InputError, match=r"1 of 4 records checked, e.g. 17:35000"):
        validate_cohort(indexed, good, fasta, None, None, ["case"], 5)


def test_header_contig_report_and_unmatched_record_contigs(tmp_path):
    vcf, fasta, ids = _matching_cohort(tmp_path)
    vcf.write_text(vcf.read_text().replace("##contig=<ID=17,length=40000>",
                                           "##contig=<ID=17,length=81195210>\n##contig=<ID=HLA-A*01:01,length=9>"))
    indexed = ensure_indexed(vcf, out_dir=tmp_path / "idx")
    summary = validate_cohort(indexed, _sheet(ids, case=[0, 1] * 10), fasta, None,
                              [Region("r", "chr17", 0, 40000)], ["case"], 5)
    assert summary["header_contigs_not_in_fasta"] == ["HLA-A*01:01"]
    assert summary["contig_length_mismatches"] == ["17: VCF 81195210, FASTA chr17 40000"]


def test_region_records_are_streamed_one_at_a_time(kg_indexed, monkeypatch):
    """Records of a region come from the index one at a time: the first is handed on before the next is read
    (a region of a VCF with thousands of samples is never held whole as text)."""
    from interp.cohort import vcf as vcf_module

    pulled, tabix_file = [], pysam.TabixFile

    class Counting:
        def __init__(self, path, index=None):
            self._tabix = tabix_file(path, index=index)
            self.contigs = self._tabix.contigs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._tabix.close()

        def fetch(self, *args):
            for line in self._tabix.fetch(*args):
                pulled.append(line)
                yield line

    monkeypatch.setattr(vcf_module.pysam, "TabixFile", Counting)
    lines = vcf_module._record_lines(kg_indexed, [("2", 10037, 40000)])
    first = next(lines)
    assert pulled == [first]
    assert len([first, *lines]) == len(pulled) > 50


def test_truncated_vcf_is_one_line_input_error(tmp_path, kg_indexed):
    data = kg_indexed.read_bytes()
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(data[: len(data) // 2])
    for action in (lambda: read_genotypes(cut), lambda: ensure_indexed(cut, out_dir=tmp_path / "o")):
        with pytest.raises(InputError) as info:
            action()
        assert str(cut) in str(info.value) and "\n" not in str(info.value)
    # a damaged block behind a valid index: the region fetch ends in the same kind of error
    shutil.copyfile(f"{kg_indexed}.tbi", f"{cut}.tbi")
    with pytest.raises(InputError, match="truncated or corrupt VCF"):
        read_genotypes(cut, regions=[Region("r", "2", 0, 50000)])


def test_dosage_chunks_match_genotypes(kg_samples):
    from interp.cohort.vcf import iter_dosage_chunks

    full = read_genotypes(KG)
    chosen = kg_samples[::-1][:50]
    chunks = list(iter_dosage_chunks(KG, chosen, chunk_records=100))
    assert [c.shape[0] for c, _ in chunks] == [100, 100, 100, 81]
    dosage = np.concatenate([c for c, _ in chunks])
    expected = full.dosage()[:, [kg_samples.index(s) for s in chosen]]
    np.testing.assert_array_equal(dosage == -1, np.isnan(expected))
    np.testing.assert_array_equal(dosage[dosage >= 0], expected[~np.isnan(expected)])
    assert chunks[0][1]["pos"][0] == 10038


def test_unmatched_record_contig_is_reported_unless_it_hides_a_studied_contig(tmp_path):
    vcf, fasta, ids = _matching_cohort(tmp_path)
    text = vcf.read_text().replace("##contig=<ID=17,length=40000>",
                                   "##contig=<ID=17,length=40000>\n##contig=<ID=chrUn_decoy,length=900>")
    vcf.write_text(text + "chrUn_decoy\t5\t.\tA\tC\t.\t.\t.\tGT" + "\t0|1" * len(ids) + "\n")
    indexed = ensure_indexed(vcf, out_dir=tmp_path / "idx")
    sheet = _sheet(ids, case=[0, 1] * 10)
    for path in (vcf, indexed):  # a scan and the index agree
        summary = validate_cohort(path, sheet, fasta, None, [Region("r", "chr17", 6000, 31500)], ["case"], 5)
        assert summary["record_contigs_not_in_fasta"] == ["chrUn_decoy"] and summary["n_records_checked"] == 3
        with pytest.raises(InputError, match=r"VCF contigs 'chrUn_decoy' do not match any FASTA contig"):
            validate_cohort(path, sheet, fasta, None, None, ["case"], 5)
    with pytest.raises(InputError, match=r"no VCF contig with records matches the studied contig\(s\) chr2"):
        validate_cohort(indexed, sheet, {**fasta, "chr2": "A" * 100}, None, [Region("r", "chr2", 0, 50)],
                        ["case"], 5)
    # a VCF of a header only: said so, not "VCF contigs with records:  (0 in all)" and advice on contig aliases
    header_only = tmp_path / "header_only.vcf"
    header_only.write_text("".join(line for line in vcf.read_text().splitlines(keepends=True) if line.startswith("#")))
    with pytest.raises(InputError, match=r"header_only.vcf: the VCF has no records \(a header only\); expected "
                                         r"genotypes of the samples in the studied contig\(s\) chr17$"):
        validate_cohort(header_only, sheet, fasta, None, [Region("r", "chr17", 6000, 31500)], ["case"], 5)


def test_contig_beyond_tbi_limit_gets_a_csi_index(tmp_path):
    vcf = tmp_path / "long.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=700000000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\n"
                   "1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\n1\t600000000\t.\tA\tC\t.\t.\t.\tGT\t1|1\n")
    indexed = ensure_indexed(vcf, out_dir=tmp_path / "idx")
    far = read_genotypes(indexed, regions=[Region("r", "1", 599_999_000, 600_001_000)])
    assert far.pos.tolist() == [600000000] and far.gt[0, 0].tolist() == [1, 1]


def test_reader_equals_pysam_call_by_call_on_real_and_simulated_vcfs(tmp_path):
    """The numpy GT decoder (fast path) and htslib agree on the 1000 Genomes pilot and a simulated panel."""
    from interp.cohort.simulate import simulate_ancestry_panel

    simulate_ancestry_panel({"YRI": 20, "CEU": 20, "CHB": 20}, 3, 5, 5000, tmp_path / "panel.vcf.gz")
    for path in (KG, tmp_path / "panel.vcf.gz"):
        ours = read_genotypes(path)  # plain gzip (the pilot): a scan; bgzip (the panel): the same reader
        # htslib cannot iterate a plain-gzip file: it reads the bgzipped copy
        with pysam.VariantFile(str(ensure_indexed(path, out_dir=tmp_path / path.name.split(".")[0]))) as handle:
            i = 0
            for record in handle:
                if len(record.alts or ()) != 1:
                    continue  # multi-allelic records are skipped by the reader
                for j, call in enumerate(record.samples.values()):
                    alleles = call["GT"] if len(call["GT"]) == 2 else call["GT"] * 2
                    assert list(ours.gt[i, j]) == [-1 if a is None else a for a in alleles], (path, i, j)
                    assert bool(ours.phased[i, j]) == (call.phased or len(call["GT"]) == 1), (path, i, j)
                i += 1
        assert i == ours.n_variants > 10


# ---------------------------------------------------------------- real-world quirks (review-vcf)

_QUIRK_HEADER = ("##fileformat=VCFv4.3\n##contig=<ID=chr2,length=1000>\n##contig=<ID=chrX,length=1000>\n"
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                 "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n")


def _bgzip(path: Path, text: str) -> Path:
    plain = path.with_suffix(".txt")
    plain.write_text(text)
    pysam.tabix_compress(str(plain), str(path), force=True)
    return path


def test_stale_index_is_not_trusted(tmp_path):
    """An index older than its VCF (rewritten after tabix) made region reads miss records silently."""
    chr2 = "".join(f"chr2\t{p}\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n" for p in range(20, 30))
    chrx = "chrX\t5\t.\tA\tC\t.\t.\t.\tGT\t1\t0|1\n"
    vcf = _bgzip(tmp_path / "c.vcf.gz", _QUIRK_HEADER + chr2 + chrx)
    pysam.tabix_index(str(vcf), preset="vcf", force=True)
    more = "".join(f"chr2\t{p}\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n" for p in range(20, 60))
    _bgzip(vcf, _QUIRK_HEADER + more + chrx)
    index = Path(f"{vcf}.tbi")
    stamp = vcf.stat().st_mtime
    os.utime(index, (stamp - 10, stamp - 10))
    regions = [Region("x", "chrX", 0, 100)]
    assert read_genotypes(vcf, regions=regions).n_variants == 1  # was 0: the old offsets point into chr2
    copy = ensure_indexed(vcf, out_dir=tmp_path / "out")  # check_cohort's call: a fresh indexed copy
    assert copy != vcf and read_genotypes(copy, regions=regions).n_variants == 1
    assert ensure_indexed(vcf) == vcf and index.stat().st_mtime >= stamp  # in place: the index is rewritten
    np.testing.assert_array_equal(read_genotypes(vcf, regions=regions).gt[0], [[1, 1], [0, 1]])


def test_malformed_calls_are_named_not_misread(tmp_path):
    """A short line shifted nothing but left samples missing, '0|2' in a biallelic record gave allele 2, and
    '0|1|1' lost a copy; each is now an InputError naming the record. A trailing tab stays harmless."""
    cases = {"chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\n": r"chr2:5: 1 genotype columns; the header names 2",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t0|1\t1|1\n": "3 genotype columns",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|2\t0|1\n": r"'0\|2' names ALT allele 2, but the record has one",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0|2:3\t0|1:4\n": "names ALT allele 2",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1|1\t0|1\n": "ploidy 3",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|x\t0|1\n": "is not a VCF GT value",
             # a column lost before a trailing tab, and an empty middle one: read as missing calls until the
             # thirty-third session (bcftools refuses both); an empty allele likewise
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t\n": "genotype column 2 of 2 is empty",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT:DS\t\t0|1:1\n": "genotype column 1 of 2 is empty",
             "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|\t0|1\n": r"'0\|' is not a VCF GT value"}
    for record, message in cases.items():
        vcf = tmp_path / "bad.vcf"
        vcf.write_text(_QUIRK_HEADER + record)
        with pytest.raises(InputError, match=message):
            read_genotypes(vcf)
    vcf.write_text(_QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|.\t\n")
    np.testing.assert_array_equal(read_genotypes(vcf).gt[0], [[0, 1], [1, -1]])
    # the dosage stream refused '0|2' the same way (it summed it to dosage 2)
    vcf.write_text(_QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|2\t0|1\n")
    with pytest.raises(InputError, match="names ALT allele 2"):
        list(iter_dosage_chunks(vcf))
    vcf.write_text(_QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t\n")
    with pytest.raises(InputError, match="column 2 of 2 is empty"):
        list(iter_dosage_chunks(vcf))
    # a trailing tab on the #CHROM line: an unnamed sample, named as such (it was "in the VCF but not in the
    # samples table: ''", or records blamed for a column count)
    vcf.write_text(_QUIRK_HEADER.replace("\ta\tb\n", "\ta\tb\t\n") + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    with pytest.raises(InputError, match=r"line 5: column 12 of the #CHROM line has no sample name"):
        read_genotypes(vcf)


def test_a_mistyped_contig_alias_of_the_vcf_is_named(tmp_path):
    """An alias sending the VCF's chr2 to a contig the FASTA lacks (chr02 for chr2): the reads skipped chr2 as a
    contig the FASTA lacks (no variants, all-reference haplotypes) and check_cohort said no contig matched and
    to add an alias; now the alias is named, as for the regions, the annotation and the ancestry panel."""
    vcf = tmp_path / "typo.vcf"
    vcf.write_text(_QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    fasta, aliases = ["chr2", "chrX"], {"chr2": "chr02"}
    message = r"contig alias 'chr2' -> 'chr02' .* names a contig that is not in the FASTA"
    with pytest.raises(InputError, match=message):
        read_genotypes(vcf, regions=[Region("r", "chr2", 0, 100)], fasta_contigs=fasta, aliases=aliases)
    indexed = _bgzip(tmp_path / "typo2.vcf", _QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    with pytest.raises(InputError, match=message):
        read_genotypes(indexed, regions=[Region("r", "chr2", 0, 100)], fasta_contigs=fasta, aliases=aliases)
    # the same VCF and FASTA without the alias: the name matches as it is
    assert read_genotypes(indexed, regions=[Region("r", "chr2", 0, 100)], fasta_contigs=fasta).n_variants == 1


def test_scanned_region_read_counts_and_contigs_like_the_indexed_one(tmp_path):
    """Without an index, skipped records outside the regions were counted, and a contig the FASTA lacks
    (anywhere in the file) stopped the read."""
    text = (_QUIRK_HEADER.replace("##contig=<ID=chrX", "##contig=<ID=HLA-A*01:01,length=9>\n##contig=<ID=chrX")
            + "chr2\t9\t.\tAC\tA\t.\t.\t.\tGT\t0|1\t1|1\n"
            + "chr2\t11\t.\tA\t<DEL>\t.\t.\t.\tGT\t0|1\t1|1\n"
            + "chr2\t15\t.\tA\t*\t.\t.\t.\tGT\t0|1\t1|1\n"
            + "chr2\t16\t.\tA\tC,G\t.\t.\t.\tGT\t0|1\t1|2\n"
            + "HLA-A*01:01\t3\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    vcf = tmp_path / "s.vcf"
    vcf.write_text(text)
    indexed = ensure_indexed(vcf, out_dir=tmp_path / "idx")
    regions = [Region("r", "2", 7, 12)]
    for path in (vcf, indexed):
        genotypes = read_genotypes(path, regions=regions, fasta_contigs=["2", "X"])
        assert list(genotypes.pos) == [9] and genotypes.contig_map["chr2"] == "2"
        assert (genotypes.n_other_skipped, genotypes.n_multiallelic_split) == (1, 0), path


def test_bcf_is_named_as_such(tmp_path):
    vcf = tmp_path / "q.vcf"
    vcf.write_text(_QUIRK_HEADER + "chr2\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    bcf = tmp_path / "q.bcf"
    with pysam.VariantFile(str(vcf)) as src, pysam.VariantFile(str(bcf), "wb", header=src.header) as dst:
        for record in src:
            dst.write(record)
    for call in (read_genotypes, ensure_indexed):
        with pytest.raises(InputError, match=r"q.bcf: is a BCF \(binary VCF\); convert it .*bcftools view -Oz"):
            call(bcf)


def test_samples_tsv_row_with_extra_tab_names_its_line(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample_id\tcase\na\t1\nb\t0\t\n")
    with pytest.raises(InputError, match=r"s.tsv, line 3: 3 tab-separated fields, but the header has 2 columns"):
        read_samples_tsv(sheet, ["case"], [])


def test_imputed_format_is_decoded_without_a_loop_over_samples(tmp_path, monkeypatch):
    """GT:DS:GP (imputation servers) and GT:AD:DP (callers) put GT first: its sub-field is decoded with numpy
    like a GT-only column (the per-sample loop took ~3.5 ms a record at 3,000 samples, ~100x the GT-only
    path), giving the same genotypes; a FORMAT without GT first, and bad calls, still go field by field."""
    import interp.cohort.vcf as vcf_module

    rng = np.random.default_rng(3)
    n, m = 40, 12
    a = rng.integers(0, 2, (m, n, 2))
    a[0, 5] = -1  # a missing call
    sep = np.where(rng.random((m, n)) < 0.8, "|", "/")

    def allele(x: int) -> str:
        return "." if x < 0 else str(x)

    def cells(i: int, extra: str) -> str:
        return "\t".join(f"{allele(a[i, j, 0])}{sep[i, j]}{allele(a[i, j, 1])}{extra}" for j in range(n))

    header = ("##fileformat=VCFv4.2\n##contig=<ID=chr2,length=1000>\n"
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{j}" for j in range(n)) + "\n")
    plain, imputed = tmp_path / "gt.vcf", tmp_path / "imputed.vcf"
    plain.write_text(header + "".join(f"chr2\t{10 + i}\t.\tA\tC\t.\t.\t.\tGT\t{cells(i, '')}\n" for i in range(m)))
    imputed.write_text(header + "".join(f"chr2\t{10 + i}\t.\tA\tC\t.\t.\t.\tGT:DS:GP\t{cells(i, ':0.98:0.01,0.5,0.49')}\n"
                                        for i in range(m)))
    expected = read_genotypes(plain)
    dosage = [d for d, _ in iter_dosage_chunks(plain, chunk_records=5)]

    def no_loop(*args, **kwargs):
        raise AssertionError("the per-sample parser ran for a FORMAT starting with GT")

    monkeypatch.setattr(vcf_module, "_parse_calls", no_loop)
    got = read_genotypes(imputed)
    np.testing.assert_array_equal(got.gt, expected.gt)
    np.testing.assert_array_equal(got.phased, expected.phased)
    assert got.gt[0, 5].tolist() == [-1, -1]
    for ours, theirs in zip(iter_dosage_chunks(imputed, chunk_records=5), dosage, strict=True):
        np.testing.assert_array_equal(ours[0], theirs)
    monkeypatch.undo()
    # GT not first, or a bad call behind GT:DS: the field-by-field parser, same result or the named error
    moved = tmp_path / "moved.vcf"
    moved.write_text(header + "chr2\t10\t.\tA\tC\t.\t.\t.\tDS:GT\t" + "\t".join(
        f"0.5:{allele(a[0, j, 0])}{sep[0, j]}{allele(a[0, j, 1])}" for j in range(n)) + "\n")
    np.testing.assert_array_equal(read_genotypes(moved).gt[0], expected.gt[0])
    imputed.write_text(header + "chr2\t10\t.\tA\tC\t.\t.\t.\tGT:DS\t0|2:1.0" + "\t0|1:1.0" * (n - 1) + "\n")
    with pytest.raises(InputError, match=r"chr2:10: genotype '0\|2' names ALT allele 2"):
        read_genotypes(imputed)


def test_validation_counts_samples_whose_calls_are_mostly_unphased(tmp_path):
    """A VCF phased but for one sample (a batch phased apart, or not at all) passed: its unphased share over the
    whole VCF (1 of 8 samples) stays far below the 50% gate, while that sample's heterozygous variants are all
    erased under unphased: ref. Such samples are now counted (at least 5 heterozygous or half-missing ALT calls,
    over half unphased), and the report says so; a lone unphased call does not count a sample."""
    from interp.genome.regions import Region

    fasta = read_fasta(FASTA)
    ids = [f"S{i}" for i in range(1, 9)]
    lines = []
    for k, pos in enumerate(range(1000, 1060, 10)):  # 6 records
        ref = fasta["chr17"][pos - 1].upper()
        alt = "G" if ref != "G" else "T"
        # S1: every call unphased; S2: one unphased call of 6; the rest phased
        calls = ["0/1", "1/0" if k == 0 else "0|1"] + ["0|1", "1|0", "0|0", "1|1", "0|1", "1|0"]
        lines.append(f"chr17\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(calls) + "\n")
    vcf = tmp_path / "batch.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=40000>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
                   + "".join(lines))
    summary = validate_cohort(vcf, _sheet(ids, case=[0, 1] * 4), fasta, {}, [Region("r", "chr17", 900, 1100)],
                              ["case"], 2)
    assert summary["unphased_het_rate"] < 0.5
    assert summary["n_samples_mostly_unphased"] == 1



def test_in_regions_searches_the_merged_spans_as_a_scan_would():
    """Whether a record lies in the studied regions is one binary search in the contig's merged spans (it was a
    pass over every span for every record); checked against that pass at every position around the edges."""
    from interp.cohort.vcf import _in_regions, _merged

    regions = [Region(f"r{i}", "c", start, end) for i, (start, end) in
               enumerate([(50, 60), (10, 20), (18, 30), (60, 61), (100, 200), (5, 6)])]
    spans = _merged(regions)
    assert spans == {"c": [(5, 6), (10, 30), (50, 61), (100, 200)]}
    for pos0 in range(-2, 205):
        scan = any(r.start <= pos0 < r.end for r in regions)
        assert _in_regions("c", pos0, spans) == scan, pos0
    assert not _in_regions("other", 15, spans) and not _in_regions("c", 15, {})
