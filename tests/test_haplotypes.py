"""Haplotype sequences must equal `bcftools consensus -H 1|2`; windows align to reference coordinates."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest

from interp.cohort.haplotypes import (
    SEQUENCE_SCHEMA,
    _anchored_indel,
    gc_fraction,
    haplotype_sequences,
    haplotype_windows,
    read_sequences,
)
from interp.cohort.vcf import Genotypes, read_genotypes
from interp.errors import InputError
from interp.genome.fasta import read_fasta
from interp.genome.regions import Region

FASTA = Path("resources/demo/hg19_chr17_1-40000.fa")
REGION = Region("demo", "chr17", 6000, 6400)
needs_bcftools = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")


def _records(ref: str) -> list[tuple[int, str, str]]:
    """(1-based pos, REF, ALT): SNVs, insertions, deletions, an MNP and overlapping records."""
    def base(pos: int, n: int = 1) -> str:
        return ref[pos - 1: pos - 1 + n].upper()

    def other(b: str) -> str:
        return "A" if b != "A" else "C"

    return [
        (6010, base(6010), other(base(6010))),
        (6020, base(6020), base(6020) + "GTA"),            # insertion
        (6030, base(6030, 4), base(6030)),                  # 3-bp deletion
        (6031, base(6031), other(base(6031))),              # SNV inside the deletion
        (6050, base(6050), other(base(6050))),
        (6050, base(6050), "G" if base(6050) != "G" else "T"),  # second record at the same position
        (6100, base(6100, 11), base(6100)),                 # 10-bp deletion
        (6105, base(6105, 2), base(6105) + "TT"),           # complex record inside it
        (6200, base(6200, 2), other(base(6200)) + other(base(6201))),  # MNP
        # bcftools applies an indel anchored on the last base of the record applied before it (unless that
        # one was an insertion), as `bcftools norm -m -any` writes them
        (6220, base(6220), other(base(6220))),              # SNV ...
        (6220, base(6220), base(6220) + "TTT"),             # ... then an insertion at the same POS
        (6230, base(6230, 2), other(base(6230)) + other(base(6231))),  # MNP ...
        (6231, base(6231), base(6231) + "GG"),              # ... then an insertion on its last base
        (6240, base(6240), other(base(6240))),              # SNV ...
        (6240, base(6240, 3), base(6240)),                  # ... then a deletion at the same POS
        (6250, base(6250), base(6250) + "AA"),              # insertion ...
        (6250, base(6250, 2), base(6250)),                  # ... then a deletion: skipped (follows an insertion)
        (6260, base(6260, 3), base(6260)),                  # deletion ...
        (6262, base(6262), base(6262) + "C"),               # ... then an insertion on its last (deleted) base
        (6270, base(6270, 3), base(6270)),                  # deletion ...
        (6272, base(6272, 2), base(6272)),                  # ... then a deletion from its last base
        (6300, base(6300), base(6300) + "CCCC"),            # insertion
        (6301, base(6301), other(base(6301))),              # SNV just after the insertion anchor
        (6390, base(6390, 3), base(6390)),
    ]


def _write_vcf(path: Path, ref: str, n_samples: int, seed: int, missing_rate: float = 0.0,
               snv_only: bool = False) -> list[str]:
    """Phased VCF with random genotypes (some missing alleles); returns the sample names."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i}" for i in range(n_samples)]
    header = pysam.VariantHeader()
    header.add_line(f"##contig=<ID=chr17,length={len(ref)}>")
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    for s in samples:
        header.add_sample(s)
    plain = path.with_suffix("")
    with pysam.VariantFile(str(plain), "w", header=header) as out:
        for pos, r, a in _records(ref):
            if snv_only and len(r) + len(a) > 2:
                continue
            record = out.new_record(contig="chr17", start=pos - 1, alleles=(r, a))
            for s in samples:
                alleles = [int(x) for x in rng.integers(0, 2, size=2)]
                gt = tuple(None if rng.random() < missing_rate else x for x in alleles)
                record.samples[s]["GT"] = gt
                record.samples[s].phased = True
            out.write(record)
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    return samples


def _bcftools(fasta: Path, vcf: Path, sample: str, hap: int, missing_n: bool) -> str:
    command = ["bcftools", "consensus", "-f", str(fasta), "-s", sample, "-H", str(hap), str(vcf)]
    if missing_n:
        command[2:2] = ["-M", "N"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return "".join(result.stdout.splitlines()[1:])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hap")
    reference = read_fasta(FASTA)
    ref = reference["chr17"]
    # bcftools reads a region FASTA named chr:from-to; upper-cased so output case matches ours.
    region_fa = tmp / "region.fa"
    region_fa.write_text(f">chr17:{REGION.start + 1}-{REGION.end}\n{ref[REGION.start:REGION.end].upper()}\n")
    vcf_full = tmp / "phased.vcf.gz"
    samples = _write_vcf(vcf_full, ref, 5, seed=1)
    vcf_missing = tmp / "missing.vcf.gz"
    _write_vcf(vcf_missing, ref, 5, seed=2, missing_rate=0.3)
    vcf_missing_snv = tmp / "missing_snv.vcf.gz"
    _write_vcf(vcf_missing_snv, ref, 5, seed=3, missing_rate=0.3, snv_only=True)
    return {"reference": reference, "region_fa": region_fa, "full": vcf_full, "missing": vcf_missing,
            "missing_snv": vcf_missing_snv, "samples": samples}


@pytest.mark.oracle
@needs_bcftools
def test_matches_bcftools_consensus_snvs_and_indels(demo):
    genotypes = read_genotypes(demo["full"])
    haps = haplotype_sequences(demo["reference"], genotypes, REGION)
    lengths = set()
    for sample in demo["samples"]:
        for hap in (1, 2):
            expected = _bcftools(demo["region_fa"], demo["full"], sample, hap, missing_n=False)
            assert haps[(sample, hap)] == expected, (sample, hap)
            lengths.add(len(expected))
    assert len(lengths) > 1  # indels really changed lengths
    assert sum(haps.n_overlapping_skipped.values()) > 0  # overlapping records really occurred


def test_anchored_indels_are_those_htslib_calls_indels_sharing_the_first_base():
    """bcftools consensus applies a record on the last base of the one before it only when htslib's
    bcf_set_variant_type calls it an indel and REF and ALT share their first base."""
    for ref, alt, expected in (("A", "ATTT", True), ("CGT", "C", True), ("AC", "A", True), ("ATG", "ACTG", True),
                               ("cgt", "C", True), ("GT", "GGC", False), ("CGTA", "CT", False), ("C", "T", False),
                               ("GA", "T", False), ("AT", "CA", False), ("AG", "AG", False), ("AT", "AC", False)):
        assert _anchored_indel(ref, alt) is expected, (ref, alt)


def _chr1_vcf(plain: Path, samples: str, records: list[tuple[int, str, str, list[str]]]) -> Path:
    """A bgzipped, tabix-indexed VCF of a 200-base chr1 with one sample per letter of `samples` and records
    (POS, REF, ALT, GT per sample)."""
    plain.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=200>\n"
                     '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n'
                     "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
                     + "".join(f"chr1\t{p}\t.\t{r}\t{a}\t.\tPASS\t.\tGT\t" + "\t".join(g) + "\n"
                               for p, r, a, g in records))
    return Path(pysam.tabix_index(str(plain), preset="vcf", force=True))


@pytest.mark.oracle
@needs_bcftools
def test_dense_random_records_match_bcftools_consensus(tmp_path):
    """Dense random SNVs, insertions, deletions, MNPs and complex records, several at one position (as
    `bcftools norm -m -any` leaves them): every haplotype equals `bcftools consensus -H 1|2` (an indel anchored
    on the last base of an applied record was dropped in 22 of 162 haplotypes of such a fuzz before)."""
    rng = np.random.default_rng(11)
    seq = "".join(rng.choice(list("ACGT"), 200))
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1\n{seq}\n")
    pysam.faidx(str(fasta))
    reference = read_fasta(fasta)
    region = Region("r", "chr1", 0, 200)
    n_anchored = 0
    for it in range(40):
        records = []
        for _ in range(10):
            p = int(rng.integers(20, 45))
            kind = rng.choice(["snv", "ins", "del", "mnp", "complex"])
            b = seq[p - 1]
            if kind == "snv":
                r, a = b, str(rng.choice([x for x in "ACGT" if x != b]))
            elif kind == "ins":
                r, a = b, b + "".join(rng.choice(list("ACGT"), int(rng.integers(1, 4))))
            elif kind == "del":
                r, a = seq[p - 1:p - 1 + int(rng.integers(2, 5))], b
            elif kind == "mnp":
                r = seq[p - 1:p + 1]
                a = "".join(str(rng.choice([x for x in "ACGT" if x != c])) for c in r)
            else:
                r = seq[p - 1:p - 1 + int(rng.integers(2, 4))]
                a = "".join(rng.choice(list("ACGT"), int(rng.integers(1, 4))))
            if r != a and (p, r, a) not in {rec[:3] for rec in records}:  # a repeated variant is refused
                records.append((p, r, a, ["|".join(str(x) for x in rng.integers(0, 2, 2)) for _ in range(3)]))
        records.sort(key=lambda x: x[0])
        vcf = _chr1_vcf(tmp_path / f"f{it}.vcf", "ABC", records)
        haps = haplotype_sequences(reference, read_genotypes(vcf, regions=[region], fasta_contigs=["chr1"]), region)
        for sample in "ABC":
            for hap in (1, 2):
                assert haps[(sample, hap)] == _bcftools(fasta, vcf, sample, hap, missing_n=False), (it, sample, hap)
                # an anchored record is applied after its first base: (POS, len(REF) - 1, ALT[1:]) 0-based
                n_anchored += len(set(haps.edits[(sample, hap)]) & {(p, len(r) - 1, a[1:]) for p, r, a, _ in records})
    assert n_anchored > 0  # the exception was exercised


def test_records_crossing_either_edge_of_the_region_are_skipped_and_counted(demo):
    """A deletion that begins before the region and ends inside it was skipped without being counted (only
    records crossing the end were); both edges now count, and the region's bases stay reference. A deletion that
    begins inside and runs past the end deletes the region's bases it covers (it was skipped, keeping bases the
    individual lacks); another record crossing the end (a complex one) is skipped and counted."""
    genotypes = read_genotypes(demo["full"])
    edge = Region("edge", "chr17", 6031, 6105)  # inside the 4-bp REF at 6030; before the ends of 6100 and 6105
    haps = haplotype_sequences(demo["reference"], genotypes, edge)
    assert haps.n_outside_skipped == 2  # the deletion at 6030 and the complex record at 6105
    applied = {(start, ref_len) for edits in haps.edits.values() for start, ref_len, _ in edits}
    assert applied and min(start for start, _ in applied) >= edge.start and 6029 not in {s for s, _ in applied}
    assert (6099, edge.end - 6099) in applied  # 6100's 10-bp deletion, cut at the region's end


@pytest.mark.oracle
@needs_bcftools
def test_deletion_running_past_the_region_end_matches_bcftools_on_the_region(tmp_path):
    """Deletions (and an insertion on the last base of one) at the region's end: equal to `bcftools consensus`
    on the region's FASTA, which deletes the region's bases a deletion covers."""
    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 200))
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1\n{seq}\n")
    pysam.faidx(str(fasta))
    region = Region("r", "chr1", 50, 100)
    region_fa = tmp_path / "region.fa"
    region_fa.write_text(f">chr1:51-100\n{seq[50:100]}\n")
    records = [(60, seq[59:62], seq[59], ["1|1", "0|0"]),          # inside: a 2-bp deletion
               (97, seq[96:100], seq[96], ["1|0", "0|0"]),         # ends at the region's last base
               (99, seq[98:104], seq[98], ["0|1", "1|0"]),         # anchor inside, 5 bases deleted, 3 outside
               (100, seq[99], seq[99] + "TTT", ["0|1", "0|0"])]    # an insertion on that deletion's last base
    vcf = _chr1_vcf(tmp_path / "v.vcf", "AB", records)
    haps = haplotype_sequences(read_fasta(fasta), read_genotypes(vcf, regions=[region], fasta_contigs=["chr1"]),
                               region)
    assert haps.n_outside_skipped == 0
    for sample in "AB":
        for hap in (1, 2):
            assert haps[(sample, hap)] == _bcftools(region_fa, vcf, sample, hap, missing_n=False), (sample, hap)
    assert haps[("B", 1)] == seq[50:99]  # the region's last base, after the anchor, deleted


@pytest.mark.oracle
@needs_bcftools
@pytest.mark.parametrize(("policy", "vcf"), [("ref", "missing"), ("ref", "missing_snv"), ("N", "missing_snv")])
def test_missing_policies_match_bcftools(demo, policy, vcf):
    genotypes = read_genotypes(demo[vcf])
    assert (genotypes.gt < 0).any()
    haps = haplotype_sequences(demo["reference"], genotypes, REGION, missing=policy)
    n_masked = 0
    for sample in demo["samples"]:
        for hap in (1, 2):
            expected = _bcftools(demo["region_fa"], demo[vcf], sample, hap, missing_n=policy == "N")
            assert haps[(sample, hap)] == expected, (sample, hap)
            n_masked += expected.count("N")
    assert (n_masked > 0) == (policy == "N")


def _multiallelic_vcf(path: Path, ref: str) -> list[str]:
    """Unsplit multi-allelic records, as a joint caller writes them (no `bcftools norm -m -any`), indexed."""
    def base(pos: int, n: int = 1) -> str:
        return ref[pos - 1: pos - 1 + n].upper()

    def others(b: str) -> list[str]:
        return [x for x in "ACGT" if x != b]

    samples = ["A", "B", "C", "D"]
    records = [
        (6010, base(6010), ",".join(others(base(6010))[:2]), ["1|2", "2|0", "0|2", ".|2"]),
        (6020, base(6020, 3), f"{base(6020)},{others(base(6020))[0]}{base(6021, 2)}", ["1|2", "2|1", "0|0", "1|1"]),
        (6022, base(6022), others(base(6022))[0], ["1|1", "1|1", "1|0", "0|1"]),  # inside 6020's REF span
        (6030, base(6030), f"{others(base(6030))[0]},<*>", ["1|0", "0|1", "1|2", "2|2"]),
        (6050, base(6050), f"{others(base(6050))[1]},{others(base(6050))[2]},{base(6050)}TT", ["3|1", "2|3", "0|3", "1|2"]),
    ]
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID=chr17,length={len(ref)}>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])]
    lines += ["\t".join(["chr17", str(pos), ".", r, a, ".", "PASS", ".", "GT", *gts]) for pos, r, a, gts in records]
    plain = path.with_suffix("")
    plain.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    return samples


@pytest.mark.oracle
@needs_bcftools
def test_unsplit_multiallelic_records_match_bcftools_consensus(demo, tmp_path):
    """A VCF whose multi-allelic records are not split: every haplotype was the reference at those sites
    (the records were skipped, only counted in validation.json); each ALT allele now applies as in
    `bcftools consensus -H 1|2` on the same file, `<*>` leaves REF, and a record inside an applied multi-base
    REF is skipped as bcftools skips it."""
    vcf = tmp_path / "multi.vcf.gz"
    samples = _multiallelic_vcf(vcf, demo["reference"]["chr17"])
    genotypes = read_genotypes(vcf, regions=[REGION], fasta_contigs=["chr17"])
    assert genotypes.n_multiallelic_split == 4 and genotypes.n_variants == 9
    haps = haplotype_sequences(demo["reference"], genotypes, REGION)
    reference = demo["reference"]["chr17"][REGION.start:REGION.end].upper()
    for sample in samples:
        for hap in (1, 2):
            expected = _bcftools(demo["region_fa"], vcf, sample, hap, missing_n=False)
            assert expected != reference
            assert haps[(sample, hap)] == expected, (sample, hap)


def test_missing_n_masks_whole_ref_span(demo):
    """Documented difference: bcftools -M N writes one N over REF's first base only; we mask REF's span."""
    genotypes = read_genotypes(demo["full"])
    deletion = int(np.flatnonzero(genotypes.pos == 6100)[0])  # 11-bp REF
    genotypes.gt[:, 0] = 0
    genotypes.gt[deletion, 0] = [-1, 1]
    haps = haplotype_sequences(demo["reference"], genotypes, REGION, missing="N")
    ref = demo["reference"]["chr17"].upper()
    offset = 6099 - REGION.start
    assert haps[("S0", 1)] == ref[REGION.start:6099] + "N" * 11 + ref[6110:REGION.end]
    assert haps[("S0", 2)] == ref[REGION.start:6099] + ref[6099] + ref[6110:REGION.end]
    assert haps[("S0", 1)][offset:offset + 12] == "N" * 11 + ref[6110]
    # the masked span blocks the overlapping record at 6105, as an applied record would
    genotypes.gt[int(np.flatnonzero(genotypes.pos == 6105)[0]), 0] = [1, 1]
    haps = haplotype_sequences(demo["reference"], genotypes, REGION, missing="N")
    assert haps.n_overlapping_skipped[("S0", 1)] == 1
    assert haps.n_overlapping_skipped[("S0", 2)] == 1


def test_unphased_het_policy(demo, tmp_path):
    genotypes = read_genotypes(demo["full"])
    genotypes.gt[0, 0] = [0, 1]
    genotypes.gt[0, 1] = [1, 1]
    genotypes.phased[0, :2] = False
    ref = demo["reference"]["chr17"]
    pos0 = int(genotypes.pos[0]) - 1
    offset = pos0 - REGION.start  # the first record is an SNV before any indel
    kept = haplotype_sequences(demo["reference"], genotypes, REGION, unphased="ref")
    masked = haplotype_sequences(demo["reference"], genotypes, REGION, unphased="N")
    for hap in (1, 2):
        assert kept[("S0", hap)][offset] == ref[pos0].upper()
        assert masked[("S0", hap)][offset] == "N"
        # unphased homozygous ALT is unambiguous: applied under both policies
        assert kept[("S1", hap)][offset] == genotypes.alt[0] == masked[("S1", hap)][offset]


# Half-missing calls at one SNV (REF r, ALT a) -> (hap 1, hap 2) under (missing, unphased); "N" masks the base.
# A missing allele reads as REF under missing: ref before the phase is judged (./1 is 0/1, ./0 is 0/0); under
# missing: N it is N on its own haplotype and the called allele of an unphased call follows `unphased` (its
# haplotype is unknown). A phased call keeps each allele on its haplotype.
_HALF_MISSING = {  # call: {(missing, unphased): (hap 1, hap 2)}
    "./1": {("ref", "ref"): "rr", ("ref", "N"): "NN", ("N", "ref"): "Nr", ("N", "N"): "NN"},
    "1/.": {("ref", "ref"): "rr", ("ref", "N"): "NN", ("N", "ref"): "rN", ("N", "N"): "NN"},
    ".|1": {("ref", "ref"): "ra", ("ref", "N"): "ra", ("N", "ref"): "Na", ("N", "N"): "Na"},
    "1|.": {("ref", "ref"): "ar", ("ref", "N"): "ar", ("N", "ref"): "aN", ("N", "N"): "aN"},
    "./0": {("ref", "ref"): "rr", ("ref", "N"): "rr", ("N", "ref"): "Nr", ("N", "N"): "NN"},
    "0/.": {("ref", "ref"): "rr", ("ref", "N"): "rr", ("N", "ref"): "rN", ("N", "N"): "NN"},
    "./.": {("ref", "ref"): "rr", ("ref", "N"): "rr", ("N", "ref"): "NN", ("N", "N"): "NN"},
    "0/1": {("ref", "ref"): "rr", ("ref", "N"): "NN", ("N", "ref"): "rr", ("N", "N"): "NN"},
    "1/1": {("ref", "ref"): "aa", ("ref", "N"): "aa", ("N", "ref"): "aa", ("N", "N"): "aa"},
}


def _half_missing_vcf(tmp_path: Path, ref: str, calls: list[str]) -> Path:
    """One SNV at position 11 of contig c (ALT a different base) and one sample per call; bgzipped, indexed."""
    alt = "G" if ref[10] != "G" else "T"
    plain = tmp_path / "half.vcf"
    plain.write_text(f"##fileformat=VCFv4.2\n##contig=<ID=c,length={len(ref)}>\n"
                     + '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                     + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
                     + "\t".join(f"S{i}" for i in range(len(calls))) + "\n"
                     + f"c\t11\t.\t{ref[10]}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(calls) + "\n")
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    return tmp_path / "half.vcf.gz"


def test_half_missing_calls_follow_the_documented_rules_under_every_policy(tmp_path):
    """./1, 1/. (and ./2 once split) were written as REF + ALT-under-unphased on the haplotype the GT order
    named: under missing: ref, unphased: N a './1' kept REF on haplotype 1 and masked only haplotype 2, though
    its ALT may lie on either (a '0/1' masks both). A missing allele now reads as REF under missing: ref before the
    phase is judged; phased '.|1' keeps its ALT on haplotype 2."""
    ref = "ACGTACGTACGTACGTACGT"
    calls = list(_HALF_MISSING)
    vcf = _half_missing_vcf(tmp_path, ref, calls)
    genotypes = read_genotypes(vcf)
    region = Region("r", "c", 0, len(ref))
    alt = genotypes.alt[0]
    for (missing, unphased) in _HALF_MISSING["./1"]:
        haps = haplotype_sequences({"c": ref}, genotypes, region, missing=missing, unphased=unphased)
        for i, call in enumerate(calls):
            expected = _HALF_MISSING[call][(missing, unphased)]
            got = "".join(haps[(f"S{i}", hap)][10] for hap in (1, 2))
            assert got == expected.replace("r", ref[10]).replace("a", alt), (call, missing, unphased)


def test_half_missing_multiallelic_call_is_split_before_the_rules(tmp_path):
    """'./2' of a record with two ALT alleles is read as './0' in the first split record and './1' in the second
    (`bcftools norm -m -any`): under missing: ref its ALT follows `unphased` on both haplotypes, like '0/2'."""
    ref = "ACGTACGTACGTACGTACGT"
    plain = tmp_path / "multi.vcf"
    plain.write_text("##fileformat=VCFv4.2\n##contig=<ID=c,length=20>\n"
                     '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                     "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS0\tS1\n"
                     f"c\t11\t.\t{ref[10]}\tA,T\t.\tPASS\t.\tGT\t./2\t.|2\n")
    genotypes = read_genotypes(plain)
    region = Region("r", "c", 0, 20)
    for unphased, expected in (("ref", ref[10] * 2), ("N", "NN")):
        haps = haplotype_sequences({"c": ref}, genotypes, region, missing="ref", unphased=unphased)
        assert haps[("S0", 1)][10] + haps[("S0", 2)][10] == expected
        assert haps[("S1", 1)][10] + haps[("S1", 2)][10] == ref[10] + "T"


@pytest.mark.oracle
@needs_bcftools
@pytest.mark.parametrize("missing", ["ref", "N"])
def test_phased_half_missing_calls_match_bcftools_consensus(tmp_path, missing):
    """'.|1' and '1|.' are phased: each allele stays on its haplotype, as `bcftools consensus -H 1|2` writes it
    (the missing one REF, or N with -M N)."""
    ref = "ACGTACGTACGTACGTACGT"
    calls = [".|1", "1|.", "0|1", ".|."]
    vcf = _half_missing_vcf(tmp_path, ref, calls)
    fasta = tmp_path / "c.fa"
    fasta.write_text(f">c\n{ref}\n")
    genotypes = read_genotypes(vcf)
    haps = haplotype_sequences({"c": ref}, genotypes, Region("r", "c", 0, 20), missing=missing)
    for i in range(len(calls)):
        for hap in (1, 2):
            assert haps[(f"S{i}", hap)] == _bcftools(fasta, vcf, f"S{i}", hap, missing_n=missing == "N"), (calls[i], hap)


def test_ref_mismatch_is_input_error(demo):
    genotypes = read_genotypes(demo["full"])
    genotypes.ref[0] = "A" if genotypes.ref[0] != "A" else "C"
    with pytest.raises(InputError, match=r"chr17:6010 has REF="):
        haplotype_sequences(demo["reference"], genotypes, REGION)


def test_windows_follow_reference_coordinates(demo):
    genotypes = read_genotypes(demo["full"])
    haps = haplotype_sequences(demo["reference"], genotypes, REGION)
    width, stride = 100, 50
    assignments, distinct = haplotype_windows(haps, REGION, genotypes, width, stride)
    n_windows = (REGION.end - REGION.start - width) // stride + 1
    assert assignments.height == len(genotypes.samples) * 2 * n_windows
    assert distinct["seq_hash"].n_unique() == distinct.height
    assert distinct["n_haplotypes"].sum() == assignments.height
    # each sequence's GC fraction travels with it (the cohort's obs gc is pooled from it without the sequences)
    assert distinct.schema == SEQUENCE_SCHEMA
    assert distinct["gc"].to_list() == [gc_fraction(x) for x in distinct["sequence"]]
    assert 0.2 < distinct["gc"].mean() < 0.8
    by_hash = dict(zip(distinct["seq_hash"], distinct["sequence"], strict=True))
    ref = demo["reference"]["chr17"].upper()
    for sample in genotypes.samples:
        for hap in (1, 2):
            rows = assignments.filter((assignments["sample"] == sample) & (assignments["hap"] == hap))
            # non-overlapping windows (every other one) concatenate back to the whole haplotype
            tiles = rows.filter(rows["window_index"] % 2 == 0).sort("start")
            assert "".join(by_hash[h] for h in tiles["seq_hash"]) == haps[(sample, hap)]
            for row in rows.iter_rows(named=True):
                sequence = by_hash[row["seq_hash"]]
                assert hashlib.sha1(sequence.encode()).hexdigest() == row["seq_hash"]
                touching = [e for e in haps.edits[(sample, hap)]
                            if e[0] < row["end"] and e[0] + e[1] > row["start"]]
                if not touching:
                    assert sequence == ref[row["start"]:row["end"]]
                elif all(row["start"] <= e[0] and e[0] + e[1] <= row["end"] for e in touching):
                    assert len(sequence) == width + sum(len(r) - n for _, n, r in touching)
    # the 3-bp insertion after the anchor at 6020 lies in window [6000, 6100) of haplotypes carrying it
    carriers = [k for k, e in haps.edits.items() if any(s == 6019 for s, _, _ in e)]
    assert carriers
    sample, hap = carriers[0]
    row = assignments.filter((assignments["sample"] == sample) & (assignments["hap"] == hap)
                             & (assignments["start"] == 6000)).row(0, named=True)
    window = by_hash[row["seq_hash"]]
    assert window[19:23] == ref[6019] + "GTA"


def test_window_removed_by_a_deletion_holds_the_deletion_junction(demo, tmp_path):
    """A 150-bp deletion removes whole 50-bp windows from the haplotype carrying it: those windows hold the 50
    haplotype bases centred on the junction (empty windows crashed pooling downstream); the other haplotype's
    windows are the reference's."""
    ref = demo["reference"]["chr17"]
    header = pysam.VariantHeader()
    header.add_line(f"##contig=<ID=chr17,length={len(ref)}>")
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header.add_sample("S0")
    plain = tmp_path / "del.vcf"
    with pysam.VariantFile(str(plain), "w", header=header) as out:
        record = out.new_record(contig="chr17", start=6099, alleles=(ref[6099:6250].upper(), ref[6099].upper()))
        record.samples["S0"]["GT"] = (1, 0)
        record.samples["S0"].phased = True
        out.write(record)
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    genotypes = read_genotypes(tmp_path / "del.vcf.gz")
    haps = haplotype_sequences(demo["reference"], genotypes, REGION)
    assignments, distinct = haplotype_windows(haps, REGION, genotypes, 50, 50)
    by_hash = dict(zip(distinct["seq_hash"], distinct["sequence"], strict=True))
    carrier = haps[("S0", 1)]
    assert carrier == ref[6000:6100].upper() + ref[6250:6400].upper()
    for row in assignments.iter_rows(named=True):
        window = by_hash[row["seq_hash"]]
        if row["hap"] == 2 or not (6100 <= row["start"] and row["end"] <= 6250):
            continue
        assert window == carrier[75:125], row  # the junction sits at haplotype base 100
    assert all(by_hash[h] for h in assignments["seq_hash"])


def test_window_arguments_checked(demo):
    genotypes = read_genotypes(demo["full"])
    haps = haplotype_sequences(demo["reference"], genotypes, REGION)
    with pytest.raises(InputError, match="shorter than the window width"):
        haplotype_windows(haps, REGION, genotypes, 1000, 100)


def test_indexed_reference_gives_the_same_haplotypes(demo):
    from interp.genome.fasta import open_reference

    genotypes = read_genotypes(demo["full"], regions=[REGION], fasta_contigs=["chr17"])
    indexed = open_reference(FASTA)
    from_index = haplotype_sequences(indexed, genotypes, REGION)
    from_dict = haplotype_sequences(demo["reference"], read_genotypes(demo["full"]), REGION)
    assert dict(from_index) == dict(from_dict) and from_index.edits == from_dict.edits


def test_reference_n_at_a_variant_is_not_a_mismatch(demo):
    """An IUPAC code in the FASTA is read as N; the VCF's REF there is accepted and the ALT applied."""
    genotypes = read_genotypes(demo["full"])
    i = int(np.flatnonzero(genotypes.pos == 6010)[0])
    ref = dict(demo["reference"])
    ref["chr17"] = ref["chr17"][:6009] + "N" + ref["chr17"][6010:]
    seqs = haplotype_sequences(ref, genotypes, REGION)
    for s, sample in enumerate(genotypes.samples):
        for hap in (1, 2):
            base = seqs[(sample, hap)][6009 - REGION.start]
            assert base == (genotypes.alt[i] if genotypes.gt[i, s, hap - 1] == 1 else "N")


# ---------------------------------------------------------------- cohort-wide windows
def _assignments(region: str, starts: list[int], samples=("s1",), width: int = 10) -> pl.DataFrame:
    rows = [{"sample": s, "hap": h, "region": region, "window_index": i, "window_id": f"{region}:{i}",
             "start": st, "end": st + width, "seq_hash": f"{region}{st}{s}{h}"}
            for s in samples for h in (1, 2) for i, st in enumerate(starts)]
    return pl.DataFrame(rows, schema={"sample": pl.String, "hap": pl.Int8, "region": pl.String,
                                      "window_index": pl.Int32, "window_id": pl.String, "start": pl.Int64,
                                      "end": pl.Int64, "seq_hash": pl.String})


def test_renumber_windows_is_unique_across_regions_in_region_then_start_order() -> None:
    from interp.cohort.haplotypes import renumber_windows

    # region "b" listed first; its per-region indices (0, 1) collide with region "a"'s
    assign = pl.concat([_assignments("b", [100, 50]), _assignments("a", [500, 700, 900])])
    out = renumber_windows(assign)
    assert out["window_index"].dtype == pl.Int64
    assert out.columns[-1] == "window_index"
    got = dict(zip(out.select("region", "start").rows(), out["window_index"], strict=True))
    assert got == {("a", 500): 0, ("a", 700): 1, ("a", 900): 2, ("b", 50): 3, ("b", 100): 4}
    assert out.height == assign.height
    assert out.select("sample", "hap", "window_index").rows() == sorted(
        out.select("sample", "hap", "window_index").rows())


def test_window_numbering_is_one_definition_for_parts_and_wholes() -> None:
    """window_numbering: the distinct (region, start) pairs ranked by region name then start, the same from parts
    (a sharded gather's shards) as from their concatenation; window_indices refuses a row it does not number."""
    from interp.cohort.haplotypes import window_indices, window_numbering

    a, b = _assignments("b", [100, 50]), _assignments("a", [500, 700, 900])
    numbering = window_numbering([a, b.lazy()])
    assert numbering.rows() == [(0, "a", 500), (1, "a", 700), (2, "a", 900), (3, "b", 50), (4, "b", 100)]
    assert numbering.columns == ["window_index", "region", "start"] and numbering["window_index"].dtype == pl.Int64
    assert window_numbering(pl.concat([a, b])).equals(numbering)
    assert window_indices(a, numbering).to_list() == [4, 3] * (a.height // 2)
    with pytest.raises(ValueError, match="1 row"):
        window_indices(pl.DataFrame({"region": ["a", "c"], "start": [500, 500]}), numbering)


def test_merge_region_windows_adds_contig_window_id_and_sums_shared_sequences() -> None:
    from interp.cohort.haplotypes import merge_region_windows

    a = _assignments("g2", [0, 10], samples=("s1", "s2"))
    b = _assignments("g1", [30], samples=("s1", "s2"))
    d1 = pl.DataFrame({"seq_hash": ["h2", "h1"], "sequence": ["CC", "AA"], "n_haplotypes": [3, 1], "gc": [1.0, 0.0]})
    d2 = pl.DataFrame({"seq_hash": ["h1", "h3"], "sequence": ["AA", "GG"], "n_haplotypes": [2, 5], "gc": [0.0, 1.0]})
    assign, dist = merge_region_windows([a, b], [d1, d2], {"g1": "chr1", "g2": "chr2"})
    assert dist.rows() == [("h1", "AA", 3, 0.0), ("h2", "CC", 3, 1.0), ("h3", "GG", 5, 1.0)]
    first = assign.filter((pl.col("sample") == "s2") & (pl.col("hap") == 2)).sort("window_index")
    assert first["window_id"].to_list() == ["chr1:30-40", "chr2:0-10", "chr2:10-20"]
    assert first["contig"].to_list() == ["chr1", "chr2", "chr2"]
    assert first["window_index"].to_list() == [0, 1, 2]
    with pytest.raises(pl.exceptions.InvalidOperationError):
        merge_region_windows([a], [d1], {"g1": "chr1"})  # a region without a contig


def test_read_sequences_reads_the_columns_asked_and_names_a_table_without_gc(tmp_path: Path) -> None:
    table = pl.DataFrame({"seq_hash": ["h1"], "sequence": ["GA"], "n_haplotypes": [2], "gc": [0.5]},
                         schema=SEQUENCE_SCHEMA)
    table.write_parquet(tmp_path / "new.parquet")
    assert read_sequences(tmp_path / "new.parquet", ["seq_hash", "gc"]).rows() == [("h1", 0.5)]
    assert read_sequences(tmp_path / "new.parquet").equals(table)
    table.drop("gc").write_parquet(tmp_path / "old.parquet")  # as written before the gc column
    assert read_sequences(tmp_path / "old.parquet", ["seq_hash", "sequence"]).height == 1
    with pytest.raises(InputError, match=r"old\.parquet: the distinct-sequence table has no column gc .*rerun"):
        read_sequences(tmp_path / "old.parquet", ["seq_hash", "gc"])


def _one_by_one(genotypes, region: Region, ref: str, missing: str, unphased: str) -> dict:
    """The module docstring's rules, record by record and haplotype by haplotype: (sample, hap) -> edits."""
    out = {}
    order = np.argsort(genotypes.pos, kind="stable")
    for s, sample in enumerate(genotypes.samples):
        for hap in (1, 2):
            edits, frozen, inserted = [], -1, False
            for i in order:
                call, start, ref_len = genotypes.gt[i, s], int(genotypes.pos[i]) - 1, len(genotypes.ref[i])
                allele = int(call[hap - 1])
                if missing == "ref":  # a missing copy reads as REF before the phase is judged: ./1 is 0/1
                    call = [max(int(c), 0) for c in call]
                if allele < 0 and missing == "N":
                    write = "N" * ref_len
                elif not genotypes.phased[i, s] and call[0] != call[1]:
                    write = "N" * ref_len if unphased == "N" else None
                else:
                    write = genotypes.alt[i] if allele > 0 else None
                if write is None:
                    continue
                masked = write == "N" * ref_len and genotypes.alt[i] != write
                indel = _anchored_indel(genotypes.ref[i], genotypes.alt[i])
                if start > frozen:
                    edits.append((start, ref_len, write))
                elif start == frozen and indel and not masked and not inserted:  # bcftools' exception
                    edits.append((start + 1, ref_len - 1, write[1:]))
                else:
                    continue
                frozen, inserted = start + ref_len - 1, len(write) > ref_len
            out[(sample, hap)] = edits
    return out


def test_haplotype_rules_for_every_policy_and_sequences_built_from_the_edits():
    """Random calls with missing and unphased genotypes and overlapping records: the edits follow the rules
    applied one by one, and each sequence is built from its edits when read (no sequence per haplotype is held)."""
    from interp.cohort.vcf import Genotypes

    rng = np.random.default_rng(5)
    ref = "".join(rng.choice(list("ACGT"), 800))
    k, n = 40, 12
    pos = np.sort(rng.choice(np.arange(20, 760), k, replace=False)).astype(np.int64) + 1
    pos[7] = pos[6] + 1  # an overlapping record
    pos[13], pos[25] = pos[12], pos[24]  # records at the same position: bcftools' anchored indels below
    refs = [ref[p - 1:p - 1 + int(rng.integers(1, 4))] for p in pos]
    refs[12], refs[24], refs[25] = refs[12][:1], refs[24][:1], ref[pos[25] - 1:pos[25] + 2]
    genotypes = Genotypes(
        samples=[f"s{i}" for i in range(n)], contig=np.array(["c"] * k, dtype=object), pos=pos, ref=refs,
        alt=[str(rng.choice(["A", "CG", "T", "GAT"])) for _ in pos],
        gt=rng.choice([-1, 0, 1], size=(k, n, 2), p=[0.1, 0.6, 0.3]).astype(np.int8),
        phased=rng.random((k, n)) < 0.7, n_multiallelic_split=0, n_other_skipped=0, contig_map={})
    genotypes.alt[12], genotypes.alt[13] = "GT"[refs[12] == "G"], refs[13][0] + "TT"  # SNV, then an insertion
    genotypes.alt[24], genotypes.alt[25] = "GT"[refs[24] == "G"], refs[25][0]  # SNV, then a deletion
    region = Region("r", "c", 10, 790)
    for missing in ("ref", "N"):
        for unphased in ("ref", "N"):
            haps = haplotype_sequences({"c": ref}, genotypes, region, missing=missing, unphased=unphased)
            assert haps.edits == _one_by_one(genotypes, region, ref, missing, unphased), (missing, unphased)
            anchored = {e for edits in haps.edits.values() for e in edits if e[0] in (pos[13], pos[25])}
            assert {(pos[13], 0, "TT"), (pos[25], 2, "")} <= anchored, (missing, unphased)
    key = ("s0", 1)
    haps.edits[key] = [(100, 1, "TT")]
    assert haps[key] == ref[10:100] + "TT" + ref[101:790]  # read from the edits, not stored
    assert len(haps) == 2 * n and set(haps) == set(haps.edits)


def _windows_base_by_base(haps, region: Region, ref: str, key, width: int, stride: int
                          ) -> tuple[list[str], int]:
    """The window rule written out directly: each reference base emits its bases of the haplotype (an edit's
    replacement laid over REF base by base, the rest on REF's last base); a window is what its bases emit,
    or, when that is nothing, the `width` bases centred on the junction. Returns (windows, how many were
    junctions)."""
    emits = list(ref[region.start:region.end].upper())
    for start, ref_len, replacement in haps.edits[key]:
        k = start - region.start
        if ref_len == 0:  # an insertion after its anchor base (bcftools' anchored indel): the anchor emits it
            emits[k - 1] += replacement
            continue
        for j in range(ref_len - 1):
            emits[k + j] = replacement[j] if j < len(replacement) else ""
        emits[k + ref_len - 1] = replacement[ref_len - 1:]
    sequence = "".join(emits)
    assert sequence == haps[key]
    starts = list(range(region.start, region.end - width + 1, stride))
    if starts[-1] + width < region.end:
        starts.append(region.end - width)
    out, n_junction = [], 0
    for s in starts:
        window = "".join(emits[s - region.start:s - region.start + width])
        if not window:
            junction = len("".join(emits[:s - region.start]))
            lo = max(0, min(junction - width // 2, len(sequence) - width))
            window = sequence[lo:lo + width]
            n_junction += 1
        out.append(window)
    return out, n_junction


def test_windows_equal_the_rule_base_by_base_with_long_deletions_and_hold_no_object_per_row():
    """Random SNVs, insertions and deletions longer than a window: every (sample, hap, window) row carries the
    window the rule gives base by base. While cutting, the rows are held as one int each: traced memory stays
    under 100 bytes per row (the former per-row lists of strings and ints took ~225; the finished table is
    polars')."""
    import tracemalloc

    from interp.cohort.vcf import Genotypes

    rng = np.random.default_rng(11)
    ref = "".join(rng.choice(list("ACGT"), 3000))
    k, n = 60, 120
    pos = np.sort(rng.choice(np.arange(20, 2900), k, replace=False)).astype(np.int64) + 1
    lengths = rng.choice([1, 1, 2, 40, 150], size=k)
    refs = [ref[p - 1:p - 1 + int(m)] for p, m in zip(pos, lengths, strict=True)]
    alts = [r[0] if len(r) > 1 else str(rng.choice(["A", "CGT", "T"])) for r in refs]
    alts = [a if a != r else ("C" if r != "C" else "G") for a, r in zip(alts, refs, strict=True)]
    genotypes = Genotypes(samples=[f"s{i}" for i in range(n)], contig=np.array(["c"] * k, dtype=object), pos=pos,
                          ref=refs, alt=alts, gt=(rng.random((k, n, 2)) < 0.3).astype(np.int8),
                          phased=np.ones((k, n), dtype=bool))
    region = Region("r", "c", 5, 2990)
    haps = haplotype_sequences({"c": ref}, genotypes, region)
    width, stride = 20, 20
    tracemalloc.start()
    assignments, distinct = haplotype_windows(haps, region, genotypes, width, stride)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * assignments.height, peak / assignments.height
    by_hash = dict(zip(distinct["seq_hash"], distinct["sequence"], strict=True))
    n_junction = 0
    for (sample, hap), rows in assignments.group_by(["sample", "hap"], maintain_order=True):
        expected, junctions = _windows_base_by_base(haps, region, ref, (sample, hap), width, stride)
        assert [by_hash[h] for h in rows.sort("window_index")["seq_hash"]] == expected, (sample, hap)
        n_junction += junctions
    assert distinct["n_haplotypes"].sum() == assignments.height
    assert n_junction > 0  # some deletions removed whole windows


def test_record_index_finds_each_regions_records_as_a_scan_of_all_would():
    """Each region's records (and those crossing its start) come from a per-contig search of the records
    sorted once (`RecordIndex`), where every region scanned every record of the job (regions x records);
    checked against that scan on records of three contigs in file order, deletions up to 40 bases long."""
    from interp.cohort.haplotypes import RecordIndex, _region_records

    rng = np.random.default_rng(3)
    contigs = {"a": "".join(rng.choice(list("ACGT"), 3000)), "b": "".join(rng.choice(list("ACGT"), 3000)),
               "c": "".join(rng.choice(list("ACGT"), 500))}
    chosen = rng.choice(["a", "b", "c", "b"], 600)
    pos0 = np.array([rng.integers(0, len(contigs[c]) - 41) for c in chosen])
    lengths = rng.choice([1, 1, 1, 2, 5, 40], 600)
    ref = [contigs[c][p:p + n] for c, p, n in zip(chosen, pos0, lengths, strict=True)]
    alt = [r[0] if len(r) > 1 else {"A": "C", "C": "G", "G": "T", "T": "A"}[r] for r in ref]
    genotypes = Genotypes(samples=["s"], contig=np.array(chosen, dtype=object), pos=pos0 + 1, ref=ref, alt=alt,
                          gt=np.zeros((600, 1, 2), dtype=np.int8), phased=np.ones((600, 1), dtype=bool))
    index = RecordIndex(genotypes)
    for contig, start, end in (("a", 0, 3000), ("a", 1000, 1200), ("b", 2990, 3000), ("c", 10, 60), ("b", 5, 6)):
        region = Region("r", contig, start, end)
        records, n_outside, clipped = _region_records(contigs[contig][start:end], genotypes, region, index)
        on = np.asarray(genotypes.contig == contig)
        inside = np.flatnonzero(on & (pos0 >= start) & (pos0 < end))
        crossing = on & (pos0 < start) & (pos0 + lengths > start)
        ends_after = inside[pos0[inside] + lengths[inside] > end]
        assert sorted(records.tolist()) == sorted(set(inside.tolist()) - set(ends_after.tolist()) | set(clipped))
        assert n_outside == int(crossing.sum()) + len(set(ends_after.tolist()) - set(clipped))
        assert (np.diff(pos0[records]) >= 0).all()
