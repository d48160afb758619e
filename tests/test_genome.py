"""Tests for interp.genome: FASTA, annotations, regions, windows and per-base labels."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest
import yaml
from Bio import SeqIO

from interp.errors import InputError
from interp.genome import (
    Region,
    base_labels,
    build_windows,
    gene_regions,
    heldout_start,
    open_reference,
    read_annotation,
    read_bed,
    read_fasta,
    regions_from_config,
    resolve_contig,
    tile,
    to_contigs,
    window_label_tracks,
    write_windows,
)

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
DEMO_FASTA = DEMO / "hg19_chr17_1-40000.fa"
DEMO_GENES = DEMO / "grch37_chr17_1-40000_genes.tsv"
DOC2B_EXONS = [(6010, 6168), (11205, 11332), (11871, 11981), (13920, 13995), (22327, 22407), (30897, 31427)]


@pytest.fixture(scope="module")
def demo_fasta() -> dict[str, str]:
    return read_fasta(DEMO_FASTA)


@pytest.fixture(scope="module")
def demo_genes() -> pl.DataFrame:
    return read_annotation(DEMO_GENES)


@pytest.fixture(scope="module")
def demo_bases(demo_fasta, demo_genes) -> pl.DataFrame:
    return base_labels(demo_fasta, [Region("demo", "chr17", 0, 40000)], demo_genes)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


# ---------------------------------------------------------------- FASTA

def test_demo_fasta_keeps_soft_masking(demo_fasta):
    assert list(demo_fasta) == ["chr17"]
    sequence = demo_fasta["chr17"]
    assert len(sequence) == 40000
    lower = sum(ch.islower() for ch in sequence)
    assert 0.40 < lower / 40000 < 0.46  # ~43% soft-masked repeats


def test_fasta_multi_record_and_wrapped_lines(tmp_path):
    path = _write(tmp_path / "two.fa", ">a desc\nACGT\nacgn\n>b\nNNNN\n")
    assert read_fasta(path) == {"a": "ACGTacgn", "b": "NNNN"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("ACGT\n", "no '>' records"),
        (">a\nACGT\n>a\nACGT\n", "duplicate"),
        (">a\n>b\nACGT\n", "'a' has zero bases"),
    ],
)
def test_fasta_structure_errors(tmp_path, text, needle):
    with pytest.raises(InputError, match=needle):
        read_fasta(_write(tmp_path / "bad.fa", text))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b">a\nACGT\nAC\nACGT\n", r"bad.fa, line 4: FASTA record 'a' has more bases after line 3, which is shorter"),
        (b">a\nACGT\n\nACGT\n>b\nA\n", r"line 4: FASTA record 'a' has more bases after line 3, .* or blank"),
        (b">a\nACGT\nACGTAA\n", r"line 3: FASTA record 'a' holds 6 bases, more than the record's first line"),
        (b">a\r\nACGT\r\nACGT\nAC\r\n", r"line 4: .* after line 3, which ends with \\n where the record's first "
                                       r"line ends with \\r\\n"),
        (b">a\nACGT\nACGT\r\n", r"line 3: FASTA record 'a' ends its line with \\r\\n where"),
        (b"\xef\xbb\xbf>a\nACGT\n", r"line 1: the FASTA starts with a UTF-8 byte-order mark"),
    ],
)
def test_fasta_lines_faidx_cannot_index_are_named_by_line(tmp_path, text, needle):
    """faidx refuses a record whose lines (but its last) differ in width, and says so on stderr only: the error
    named no line and showed a temporary index path. The structure check now names the line; a BOM (a file saved
    by a Windows editor) is named too, where it read as 'text before the first header'."""
    path = tmp_path / "bad.fa"
    path.write_bytes(text)
    with pytest.raises(InputError, match=needle) as info:
        open_reference(path)
    assert ".tmp" not in str(info.value)


def test_fasta_lines_faidx_indexes_still_pass(tmp_path):
    for text, lengths in ((b">a\nACGT\nAC\n\n>b\nACGT\nACGT\n\n\n", {"a": 6, "b": 8}),
                          (b">a\r\nACGT\r\nAC\r\n", {"a": 6}), (b">a\nACGT\nACGT", {"a": 8})):
        path = tmp_path / "ok.fa"
        path.write_bytes(text)
        for index in tmp_path.glob("ok.fa.*"):
            index.unlink()
        reference = open_reference(path)
        assert {k: len(reference[k]) for k in reference.keys()} == lengths


def test_bed_and_annotation_with_a_byte_order_mark_are_read(demo_fasta, tmp_path):
    """A BED or gene table saved with a UTF-8 BOM: the BED's first contig read as '\\ufeffchr17' ("chr17 is not
    in chr17"), the UCSC table's header as a data row."""
    bed = tmp_path / "r.bed"
    bed.write_bytes("\ufeffchr17\t0\t500\tr\n".encode())
    assert read_bed(bed, demo_fasta, None) == [Region("r", "chr17", 0, 500)]
    genes = tmp_path / "genes.tsv"
    genes.write_bytes(b"\xef\xbb\xbf" + DEMO_GENES.read_bytes())
    assert read_annotation(genes).equals(read_annotation(DEMO_GENES))
    from interp.cohort.shards import count_bed_regions

    assert count_bed_regions(bed) == 1


def test_fasta_bad_character_names_record_line_column(tmp_path):
    path = _write(tmp_path / "bad.fa", ">ok\nACGT\n>chrX\nACGTACGT\nACGXAC\n")
    with pytest.raises(InputError) as info:
        read_fasta(path)
    message = str(info.value)
    assert "line 5" in message and "column 4" in message and "'X'" in message and "chrX" in message
    assert str(path) in message


def _bgzip(plain: Path, out: Path) -> Path:
    pysam.tabix_compress(str(plain), str(out), force=True)
    return out


@pytest.mark.parametrize("compression", ["plain", "bgzip", "gzip"])
def test_indexed_reference_iupac_soft_masking_and_location(tmp_path, compression):
    text = ">ok desc\nACGTacgt\nAC\n>chrX\nACGTACGT\nacRyNNNN\nAC*T\n"
    path = _write(tmp_path / "g.fa", text)
    if compression == "bgzip":
        path = _bgzip(path, tmp_path / "g.fa.bgz")
    elif compression == "gzip":
        with gzip.open(tmp_path / "g.fa.gz", "wt") as handle:
            handle.write(text)
        path = tmp_path / "g.fa.gz"
    reference = open_reference(path, cache_dir=tmp_path / "cache")
    assert list(reference) == ["ok", "chrX"] and reference.lengths() == {"ok": 10, "chrX": 20}
    assert reference["ok"][2:10] == "GTacgtAC" and reference["ok"][-1] == "C"
    # IUPAC codes become N, keeping soft-masking as case; they are counted per code
    assert reference["chrX"][8:16] == "acNnNNNN"
    assert reference.ambiguity_counts([Region("x", "chrX", 0, 16), Region("y", "chrX", 5, 12)]) == {"R": 1, "Y": 1}
    # a non-nucleotide is refused with file, line and column, only when its region is fetched
    with pytest.raises(InputError, match=r"line 7, column 3: record 'chrX' has character '\*'") as info:
        reference["chrX"][16:20]
    assert str(path) in str(info.value)
    if compression == "bgzip":
        assert (tmp_path / "g.fa.bgz.fai").exists() and (tmp_path / "g.fa.bgz.gzi").exists()
    if compression == "gzip":  # htslib cannot seek plain gzip: a bgzipped copy under the cache folder
        assert list((tmp_path / "cache").glob("g.fa.*.bgz.fai"))


def test_reference_index_goes_to_cache_when_folder_is_read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _write(folder / "g.fa", ">a\nACGT\n")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write to read-only folders (root)")
        reference = open_reference(path, cache_dir=tmp_path / "cache")
        assert reference["a"][0:4] == "ACGT" and not (folder / "g.fa.fai").exists()
        assert len(list((tmp_path / "cache").glob("g.fa.*.fai"))) == 1
    finally:
        folder.chmod(0o755)


def test_reference_read_only_folder_logic_as_root(tmp_path, monkeypatch):
    """The same decision, with the writability check forced (root may write anywhere)."""
    from interp.genome import fasta as fasta_module

    path = _write(tmp_path / "g.fa", ">a\nACGT\n")
    monkeypatch.setattr(fasta_module, "_writable", lambda folder: False)
    reference = open_reference(path, cache_dir=tmp_path / "cache")
    assert reference["a"][1:3] == "CG" and not (tmp_path / "g.fa.fai").exists()
    assert len(list((tmp_path / "cache").glob("g.fa.*.fai"))) == 1


def test_truncated_compressed_fasta_is_one_line_input_error(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(5000)]
    plain = _write(tmp_path / "g.fa", ">a\n" + "\n".join(lines) + "\n")
    whole = _bgzip(plain, tmp_path / "g.fa.gz").read_bytes()
    cut = tmp_path / "cut.fa.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError) as info:
        open_reference(cut, cache_dir=tmp_path / "cache")["a"][0:100]
    message = str(info.value)
    assert str(cut) in message and "\n" not in message
    with gzip.open(tmp_path / "g2.fa.gz", "wb") as handle:
        handle.write(plain.read_bytes())
    cut2 = tmp_path / "cut2.fa.gz"
    cut2.write_bytes((tmp_path / "g2.fa.gz").read_bytes()[:3000])
    with pytest.raises(InputError, match=str(cut2)):
        open_reference(cut2, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("compression", ["plain", "bgzip"])
def test_index_newer_than_a_replaced_fasta_is_refused_as_stale(tmp_path, compression):
    """A FASTA replaced keeping an older mtime (cp -p, rsync -a) leaves a .fai that looks fresh but is not."""
    old = ">c1\n" + "ACGTTGCAAC\n" * 10 + ">c2\n" + "GGGGGCCCCC\n" * 5
    # the same size as `old` (11 bytes more header, one 11-byte line less of c2), so the file ends where the
    # index says; only the records' own check sees the change
    new = ">c1 abcdefghij\n" + "ACGTTGCAAC\n" * 10 + ">c2\n" + "GGGGGCCCCC\n" * 4
    assert len(new) == len(old)
    crlf = ">c1\r\n" + "ACGTTGCAAC\r\n" * 10 + ">c2 x\r\n" + "GGGGGCCCCC\r\n" * 4 + "GGG"
    for text in (old, crlf):  # a matching index passes, LF or CRLF, with or without a final line end
        plain = _write(tmp_path / "ok.fa", text)
        path = plain if compression == "plain" else _bgzip(plain, tmp_path / "ok.fa.bgz")
        for index in (Path(f"{path}.fai"), Path(f"{path}.gzi")):
            index.unlink(missing_ok=True)
        reference = open_reference(path)
        assert reference["c1"][0:12] == "ACGTTGCAACAC" and str(reference["c2"]).startswith("GGGGG")
    plain = _write(tmp_path / "g.fa", old)
    path = plain if compression == "plain" else _bgzip(plain, tmp_path / "g.fa.bgz")
    open_reference(path).close()  # builds the index
    stamp = path.stat()
    plain = _write(tmp_path / "g.fa", new)
    if compression == "bgzip":
        _bgzip(plain, path)
    os.utime(path, ns=(stamp.st_atime_ns - 10**10, stamp.st_mtime_ns - 10**10))  # older than its index
    reference = open_reference(path)
    for contig in ("c1", "c2"):  # before: 'extra desc' read as bases, or a newline refused at "base 20"
        with pytest.raises(InputError, match=rf"index .*\.fai does not match the file \(record '{contig}'"):
            reference[contig][0:10]
    # a contig added in the replacement: the index knows c1 and c2 only, so c3 was silently missing
    open_reference(_rebuilt(tmp_path, old, compression)).close()
    plain = _write(tmp_path / "h.fa", old + ">c3\n" + "ACGTACGTAC\n" * 3)
    if compression == "bgzip":
        _bgzip(plain, tmp_path / "h.fa.bgz")
    with pytest.raises(InputError, match=r"index .*\.fai does not match the file \(the file goes on after record 'c2'"):
        open_reference(_rebuilt(tmp_path, None, compression))


def _rebuilt(tmp_path: Path, text: str | None, compression: str) -> Path:
    """h.fa (or h.fa.bgz): written from `text` and indexed when given, else made older than its index."""
    plain = tmp_path / "h.fa"
    path = plain if compression == "plain" else tmp_path / "h.fa.bgz"
    if text is not None:
        _write(plain, text)
        if compression == "bgzip":
            _bgzip(plain, path)
        for index in (Path(f"{path}.fai"), Path(f"{path}.gzi")):
            index.unlink(missing_ok=True)
        return path
    stamp = Path(f"{path}.fai").stat()
    os.utime(path, ns=(stamp.st_atime_ns - 10**10, stamp.st_mtime_ns - 10**10))
    return path


def test_fasta_irregular_lines_are_input_error(tmp_path):
    with pytest.raises(InputError, match="irregular.fa, line 4: FASTA record 'a' has more bases after line 3"):
        read_fasta(_write(tmp_path / "irregular.fa", ">a\nACGT\nAC\nACGT\n"))


def test_fasta_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_fasta(tmp_path / "nope.fa")


def test_resolve_contig_rules():
    assert resolve_contig("17", ["chr17"]) == "chr17"
    assert resolve_contig("chr17", ["17"]) == "17"
    assert resolve_contig("MT", ["chrM", "chr1"]) == "chrM"
    assert resolve_contig("chrM", ["MT"]) == "MT"
    assert resolve_contig("chr17", ["chr17", "17"]) == "chr17"  # exact match beats the prefix rule
    assert resolve_contig("NC_000017.10", ["chr17"], {"NC_000017.10": "chr17"}) == "chr17"
    with pytest.raises(InputError) as info:
        resolve_contig("5", ["chr17"], source="genes.gtf")
    message = str(info.value)
    assert "contig '5' (from genes.gtf) is not in the FASTA (contigs: chr17)" in message
    assert "reference.contig_aliases" in message


# ---------------------------------------------------------------- annotation

def test_demo_annotation_ucsc(demo_genes):
    exons = demo_genes.filter(pl.col("feature") == "exon")
    assert exons.select("start", "end").rows() == DOC2B_EXONS
    assert (exons["end"] - exons["start"]).sum() == 1080
    transcript = demo_genes.filter(pl.col("feature") == "transcript").row(0, named=True)
    assert (transcript["gene"], transcript["contig"], transcript["strand"]) == ("DOC2B", "17", "-")
    assert (transcript["start"], transcript["end"], transcript["source_line"]) == (6010, 31427, 2)
    assert demo_genes.schema["start"] == pl.Int64
    assert to_contigs(demo_genes, ["chr17"], None)["contig"].unique().to_list() == ["chr17"]


def _ucsc_to_gtf_and_gff3(genes: pl.DataFrame, tmp_path: Path) -> tuple[Path, Path]:
    """Write the UCSC table as GTF (exon rows only) and GFF3 (gene/mRNA/exon), 1-based closed."""
    exons = genes.filter(pl.col("feature") == "exon")
    tx = genes.filter(pl.col("feature") == "transcript").row(0, named=True)
    gtf = [
        f'{r["contig"]}\ttest\texon\t{r["start"] + 1}\t{r["end"]}\t.\t{r["strand"]}\t.\t'
        f'gene_id "G1"; transcript_id "T1"; gene_name "{r["gene"]}";'
        for r in exons.iter_rows(named=True)
    ]
    gff = [
        "##gff-version 3",
        f'{tx["contig"]}\ttest\tgene\t{tx["start"] + 1}\t{tx["end"]}\t.\t{tx["strand"]}\t.\tID=gene1;Name={tx["gene"]}',
        f'{tx["contig"]}\ttest\tmRNA\t{tx["start"] + 1}\t{tx["end"]}\t.\t{tx["strand"]}\t.\tID=tx1;Parent=gene1',
    ] + [
        f'{r["contig"]}\ttest\texon\t{r["start"] + 1}\t{r["end"]}\t.\t{r["strand"]}\t.\tID=e{i};Parent=tx1'
        for i, r in enumerate(exons.iter_rows(named=True))
    ]
    return (_write(tmp_path / "genes.gtf", "\n".join(reversed(gtf)) + "\n"),
            _write(tmp_path / "genes.gff3", "\n".join(gff) + "\n"))


def test_gtf_and_gff3_match_ucsc(demo_genes, tmp_path):
    gtf_path, gff_path = _ucsc_to_gtf_and_gff3(demo_genes, tmp_path)
    columns = ["gene", "contig", "strand", "feature", "start", "end"]
    expected = demo_genes.select(columns).sort("feature", "start")
    for path in (gtf_path, gff_path):
        got = read_annotation(path)  # format by extension
        assert got.select(columns).sort("feature", "start").equals(expected), path
    # GTF had no transcript rows: the span is derived from the exons; sniffing works without extensions.
    sniffed = read_annotation(_write(tmp_path / "genes_gtf.txt", gtf_path.read_text()))
    assert sniffed.filter(pl.col("feature") == "transcript").select("start", "end").row(0) == (6010, 31427)
    assert read_annotation(_write(tmp_path / "genes_gff.txt", gff_path.read_text()))["transcript"][0] == "tx1"


def test_gff3_fasta_section_compressed_files_and_more_ucsc_layouts(demo_genes, tmp_path):
    """A GFF3 ending in a ##FASTA section (Prokka, Bakta) was refused at its first sequence line; a bgzipped
    `.bgz` or a gzipped file not named .gz was read as text and refused as undecodable; headerless refFlat (11
    columns) and hg38 knownGene (12) tables were refused by their column count."""
    gtf_path, gff_path = _ucsc_to_gtf_and_gff3(demo_genes, tmp_path)
    expected = read_annotation(gff_path)
    with_fasta = _write(tmp_path / "with_fasta.gff3", gff_path.read_text() + "##FASTA\n>chr17\nACGT\nACGT\n")
    assert read_annotation(with_fasta).equals(expected)
    bare = _write(tmp_path / "bare_fasta.gff3", gff_path.read_text() + ">chr17\nACGT\n")
    assert read_annotation(bare).equals(expected)
    for name in ("genes.gtf.bgz", "genes_gzipped.gtf"):
        packed = tmp_path / name
        packed.write_bytes(gzip.compress(gtf_path.read_bytes()))
        assert read_annotation(packed).equals(read_annotation(gtf_path)), name
    genepred = "NM_1\tchr1\t+\t100\t500\t100\t500\t2\t100,300,\t200,500,"
    ref_flat = read_annotation(_write(tmp_path / "refFlat.txt", "SHOX\t" + genepred + "\n"), fmt="ucsc")
    known = read_annotation(_write(tmp_path / "knownGene.txt", genepred + "\tP1\tuc1\n"), fmt="ucsc")
    for table, gene in ((ref_flat, "SHOX"), (known, "NM_1")):
        exons = table.filter(pl.col("feature") == "exon")
        assert exons.select("start", "end").rows() == [(100, 200), (300, 500)] and set(table["gene"]) == {gene}
    # look-alikes are refused by what they hold, not read wrongly: a genePred with a bin column has refFlat's 11
    # columns (its bin read as the gene name), a BED12 knownGene's 12
    with pytest.raises(InputError, match=r"11 columns without a header is read as refFlat .*gene name '585'"):
        read_annotation(_write(tmp_path / "genscan.txt", "585\t" + genepred + "\n"), fmt="ucsc")
    bed12 = "chr1\t100\t500\tNM_1\t0\t+\t100\t500\t0\t2\t100,200,\t0,200,"
    with pytest.raises(InputError, match=r"12 columns without a header is read as knownGene .*strand '500'"):
        read_annotation(_write(tmp_path / "genes.bed12", bed12 + "\n"), fmt="ucsc")


def test_ucsc_transcript_placed_twice_is_two_transcripts(tmp_path):
    """refGene lists a PAR transcript once per chromosome under one name: each row is a placement, the later
    ones named <name>_dup<k> (as genePredToGtf does), not refused; with keep, only the studied placement."""
    from interp.genome.annotation import KeepStudied

    row = "585\tNM_1\t{}\t+\t100\t500\t100\t500\t2\t100,300,\t200,500,\t0\tSHOX\tcmpl\tcmpl\t0,1,\n"
    path = _write(tmp_path / "refGene.txt", row.format("chrX") + row.format("chrY") + row.format("chrY_alt"))
    got = read_annotation(path, "ucsc").filter(pl.col("feature") == "transcript")
    assert got.select("transcript", "contig", "gene").rows() == [
        ("NM_1", "chrX", "SHOX"), ("NM_1_dup1", "chrY", "SHOX"), ("NM_1_dup2", "chrY_alt", "SHOX")]
    studied = read_annotation(path, "ucsc", keep=KeepStudied(["chrY"], spans=[("chrY", 150, 160)]))
    assert studied["transcript"].unique().to_list() == ["NM_1_dup1"]


def test_gtf_source_lines(tmp_path):
    path = _write(tmp_path / "a.gtf", "#comment\n"
                  'chr1\tx\texon\t1\t10\t.\t+\t.\tgene_id "g"; transcript_id "t";\n'
                  'chr1\tx\tCDS\t2\t9\t.\t+\t0\tgene_id "g"; transcript_id "t";\n'
                  'chr1\tx\texon\t21\t30\t.\t+\t.\tgene_id "g"; transcript_id "t";\n')
    got = read_annotation(path)
    assert got.select("feature", "start", "end", "source_line", "gene").rows() == [
        ("transcript", 0, 30, 2, "g"), ("exon", 0, 10, 2, "g"), ("exon", 20, 30, 4, "g")]


def test_refgene_layout(tmp_path):
    row = "585\tNM_1\tchr1\t+\t100\t500\t150\t450\t2\t100,300,\t200,500,\t0\tGENE1\tcmpl\tcmpl\t0,0,\n"
    got = read_annotation(_write(tmp_path / "refGene.txt", row), fmt="ucsc")
    assert got.select("gene", "transcript", "feature", "start", "end").rows() == [
        ("GENE1", "NM_1", "transcript", 100, 500), ("GENE1", "NM_1", "exon", 100, 200),
        ("GENE1", "NM_1", "exon", 300, 500)]


HEADER = "#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"


@pytest.mark.parametrize(
    ("name", "body", "needles"),
    [
        ("end_before_start.tsv", "G\t17\t-\t500\t100\t500,\t100,\n", ["line 2", "before its start"]),
        ("bad_int.tsv", "G\t17\t-\t1x\t100\t0,\t100,\n", ["line 2", "TX_START", "integer"]),
        ("strand.tsv", "G\t17\t*\t0\t100\t0,\t100,\n", ["line 2", "unknown strand"]),
        ("columns.tsv", "G\t17\t-\t0\t100\t0,\n", ["line 2", "6 columns", "expected 7"]),
        ("count.tsv", "G\t17\t-\t0\t100\t0,50,\t40,\n", ["line 2", "2 exon starts but 1 exon ends"]),
    ],
)
def test_ucsc_errors(tmp_path, name, body, needles):
    path = _write(tmp_path / name, HEADER + body)
    with pytest.raises(InputError) as info:
        read_annotation(path)
    for needle in [str(path), *needles]:
        assert needle in str(info.value)


def test_annotation_errors_gtf_and_empty(tmp_path):
    with pytest.raises(InputError, match="empty"):
        read_annotation(_write(tmp_path / "e.gtf", "\n"))
    bad = _write(tmp_path / "b.gtf", '#x\nchr1\tx\texon\t50\t10\t.\t+\t.\tgene_id "g"; transcript_id "t";\n')
    with pytest.raises(InputError, match=r"line 2: end 10 is before start 50"):
        read_annotation(bad)
    short = _write(tmp_path / "c.gff3", "chr1\tx\texon\t1\t10\t.\t+\n")
    with pytest.raises(InputError, match="line 1: expected 9"):
        read_annotation(short)


def test_read_annotation_keeps_only_the_studied_transcripts(tmp_path):
    """keep=KeepStudied: the genes named (any contig) and the transcripts overlapping the spans, each whole
    (an exon outside the span stays: exon numbers count every exon); annotation contigs map onto the FASTA's."""
    from interp.genome.annotation import KeepStudied

    def tx(contig, gene, name, exons):
        return "".join(f'{contig}\tx\texon\t{s + 1}\t{e}\t.\t+\t.\tgene_id "{gene}"; transcript_id "{name}";\n'
                       for s, e in exons)

    path = _write(tmp_path / "a.gtf", tx("1", "A", "a1", [(0, 50), (900, 1000)])      # overlaps chr1:950-960
                  + tx("1", "B", "b1", [(2000, 2100)])                                  # outside every span
                  + tx("5", "C", "c1", [(10, 20)])                                      # named gene, no FASTA contig
                  + tx("1", "D", "d1", [(100, 200)]))                                   # inside A's span only
    keep = KeepStudied(["chr1", "chr2"], genes=["C"], spans=[("chr1", 950, 960), ("chr2", 0, 10)])
    got = read_annotation(path, keep=keep)
    assert got.select("transcript", "feature", "start", "end").rows() == [
        ("a1", "transcript", 0, 1000), ("a1", "exon", 0, 50), ("a1", "exon", 900, 1000),
        ("c1", "transcript", 10, 20), ("c1", "exon", 10, 20)]
    assert keep.contigs_seen == ["1", "5"] and keep.contigs_matched == ["1"]
    assert read_annotation(path, keep=KeepStudied(["chr1"], spans=[("chr1", 1000, 2001)]))["transcript"].unique(
        maintain_order=True).to_list() == ["b1"]
    assert read_annotation(path).height == 9  # no keep: every transcript


def test_gtf_transcripts_not_kept_are_dropped_at_their_transcript_line(tmp_path, monkeypatch):
    """With `transcript` lines (GENCODE, Ensembl), a transcript `keep` refuses is dropped when its line is read,
    with any exons read before it: the kept table is the one filtered at the end, and the parser never holds
    the unstudied transcripts' exons (memory follows the studied genes, not the file)."""
    from interp.genome import annotation as annotation_module
    from interp.genome.annotation import KeepStudied

    def tx(contig, gene, name, start, end, exons, exons_first=False):
        line = f'{contig}\tx\t{{}}\t{{}}\t{{}}\t.\t+\t.\tgene_id "{gene}"; transcript_id "{name}";\n'
        ex = "".join(line.format("exon", s + 1, e) for s, e in exons)
        head = line.format("transcript", start + 1, end)
        return ex + head if exons_first else head + ex

    text = (tx("1", "A", "a1", 0, 1000, [(0, 50), (900, 1000)])
            + "".join(tx("1", f"G{i}", f"g{i}", 5000 + i, 5100 + i, [(5000 + i, 5050 + i)] * 3) for i in range(200))
            + tx("1", "B", "b1", 2000, 2100, [(2000, 2100)], exons_first=True)
            + tx("1", "D", "d1", 100, 200, [(100, 200)]))
    path = _write(tmp_path / "a.gtf", text)
    keep = KeepStudied(["chr1"], spans=[("chr1", 950, 960)])
    largest = []
    to_frame = annotation_module._to_frame
    monkeypatch.setattr(annotation_module, "_to_frame",
                        lambda txs, *a, **k: largest.append(len(txs)) or to_frame(txs, *a, **k))
    got = read_annotation(path, keep=keep)
    assert got.select("transcript", "feature", "start", "end").rows() == [
        ("a1", "transcript", 0, 1000), ("a1", "exon", 0, 50), ("a1", "exon", 900, 1000)]
    assert largest == [1]  # only a1 reached the end of the parse; 202 others were dropped on the way
    whole = read_annotation(path)
    assert whole.filter(pl.col("transcript") == "a1").equals(got)
    none = read_annotation(path, keep=KeepStudied(["chr1"], spans=[("chr1", 90000, 90010)]))
    assert none.height == 0 and none.columns == whole.columns


def test_ucsc_rows_not_kept_are_dropped_as_they_are_read(tmp_path, monkeypatch):
    """Each UCSC row is a whole transcript, so one `keep` refuses is dropped when read (until the thirty-third
    session every row, exons included, was held to the end of the file: about 1.8 kB per transcript, 480 MB for
    GRCh38's knownGene); the kept table and the _dupN names are the whole read's."""
    from interp.genome import annotation as annotation_module
    from interp.genome.annotation import KeepStudied

    rows = ["NM_1\tchr1\t+\t900\t1000\t900,\t1000,"]
    rows += [f"NM_{i}\tchr2\t+\t{10 * i}\t{10 * i + 5}\t{10 * i},\t{10 * i + 5}," for i in range(2, 302)]
    rows += ["NM_1\tchr1\t+\t950\t990\t950,960,\t955,990,", "NM_1_dup1\tchr1\t-\t5000\t6000\t5000,\t6000,"]
    path = _write(tmp_path / "genes.tsv", "\n".join(rows) + "\n")
    largest = []
    to_frame = annotation_module._to_frame
    monkeypatch.setattr(annotation_module, "_to_frame",
                        lambda txs, *a, **k: largest.append(len(txs)) or to_frame(txs, *a, **k))
    got = read_annotation(path, "ucsc", keep=KeepStudied(["chr1", "chr2"], spans=[("chr1", 940, 960)]))
    assert largest == [2]  # of 303 rows, only the two kept reached the end of the parse
    whole = read_annotation(path, "ucsc")
    assert got.equals(whole.filter(pl.col("transcript").is_in(["NM_1", "NM_1_dup1"])))
    # the second NM_1 is NM_1_dup1 and the file's own NM_1_dup1 then NM_1_dup1_dup1, as in the whole read
    assert sorted(whole.filter(pl.col("contig") == "chr1")["transcript"].unique()) == [
        "NM_1", "NM_1_dup1", "NM_1_dup1_dup1"]
    none = read_annotation(path, "ucsc", keep=KeepStudied(["chr1"], spans=[("chr1", 90000, 90010)]))
    assert none.height == 0 and none.columns == whole.columns


def test_exon_only_gtf_holds_no_exons_until_its_transcripts_are_decided(tmp_path, monkeypatch):
    """A GTF without `transcript` lines (or with exons before it): a transcript's span is known only at the
    end, so its exons are not held while the file is read (only its span); the transcripts `keep` then
    accepts get their exons from a second pass. The table is the whole read's, filtered."""
    from interp.genome import annotation as annotation_module
    from interp.genome.annotation import KeepStudied

    line = '1\tx\t{}\t{}\t{}\t.\t+\t.\tgene_id "{}"; transcript_id "{}";\n'
    text = "".join(line.format("exon", 5000 + i + 1, 5050 + i, f"G{i}", f"g{i}") for i in range(200) for _ in range(3))
    text = (line.format("exon", 1, 50, "A", "a1") + text + line.format("exon", 901, 1000, "A", "a1")  # spans 950
            + line.format("exon", 2001, 2100, "B", "b1") + line.format("transcript", 1, 2100, "B", "b1")
            + line.format("exon", 2201, 2300, "B", "b1") + line.format("exon", 3001, 3100, "C", "c1"))
    path = _write(tmp_path / "exons.gtf", text)
    keep = KeepStudied(["chr1"], spans=[("chr1", 950, 960)])
    held = []
    collect = annotation_module._collect_unheld_exons
    monkeypatch.setattr(annotation_module, "_collect_unheld_exons", lambda p, txs, *a: held.append(
        sum(len(t.exons) for t in txs.values())) or collect(p, txs, *a))
    got = read_annotation(path, keep=keep)
    assert held == [1]  # of 604 exons read, only b1's after its (studied) transcript line was held
    whole = read_annotation(path)
    assert got.equals(whole.filter(pl.col("transcript").is_in(["a1", "b1"])))
    assert got.filter(pl.col("feature") == "exon").select("transcript", "start", "source_line").rows() == [
        ("a1", 0, 1), ("a1", 900, 602), ("b1", 2000, 603), ("b1", 2200, 605)]
    assert got.filter(pl.col("feature") == "transcript")["end"].to_list() == [1000, 2100]


def _gff3_gene(contig, g, start, n_tx=2, unsorted=False):
    """GENCODE-style GFF3 rows of one gene: gene, mRNAs, exons and CDS, every row with an ID; unsorted puts
    each transcript's exons first and the gene line last."""
    gene = f"{contig}\tx\tgene\t{start + 1}\t{start + 1000}\t.\t+\t.\tID=gene:{g};Name={g}\n"
    rows = []
    for t in range(n_tx):
        tid = f"tx:{g}.{t}"
        exons = [f"{contig}\tx\t{kind}\t{start + 100 * k + 1}\t{start + 100 * k + 50}\t.\t+\t.\t"
                 f"ID={kind}:{g}.{t}.{k};Parent={tid}\n" for k in range(3) for kind in ("exon", "CDS")]
        mrna = f"{contig}\tx\tmRNA\t{start + 1}\t{start + 1000 - t}\t.\t+\t.\tID={tid};Parent=gene:{g}\n"
        rows += exons + [mrna] if unsorted else [mrna] + exons
    return "".join(rows + [gene] if unsorted else [gene] + rows)


def test_annotation_errors_do_not_depend_on_what_is_studied(tmp_path):
    """A malformed transcript is refused whether or not `keep` studies it (a dropped transcript keeps a small
    record for the checks), and a GTF transcript with two `transcript` lines is refused: its span, and so
    whether it is studied, would be ambiguous."""
    from interp.genome.annotation import KeepStudied

    nothing = KeepStudied(["chr1", "chr2"], spans=[("chr1", 90000, 90010)])
    line = 'chr{}\tx\t{}\t{}\t{}\t.\t{}\t.\tgene_id "G"; transcript_id "T";\n'
    moved = _write(tmp_path / "moved.gtf", line.format(1, "transcript", 1, 100, "+") + line.format(2, "exon", 1, 50, "+"))
    twice = _write(tmp_path / "twice.gtf", line.format(1, "transcript", 1, 100, "+") + line.format(1, "exon", 1, 50, "+")
                   + line.format(1, "transcript", 500, 600, "+"))
    gff = _write(tmp_path / "moved.gff3", "chr1\tx\tgene\t1\t100\t.\t+\t.\tID=G\n"
                 "chr1\tx\tmRNA\t1\t100\t.\t+\t.\tID=T;Parent=G\n"
                 "chr2\tx\texon\t1\t50\t.\t-\t.\tParent=T\n")
    for keep in (None, nothing):
        with pytest.raises(InputError, match=r"moved.gtf, line 2: transcript T changes contig or strand"):
            read_annotation(moved, keep=keep)
        with pytest.raises(InputError, match=r"twice.gtf, line 3: transcript T has a second 'transcript' line"):
            read_annotation(twice, keep=keep)
        with pytest.raises(InputError, match=r"moved.gff3, line 3: exon's contig/strand differ from its parent T"):
            read_annotation(gff, keep=keep)


def test_gff3_exon_listing_its_parent_twice_is_one_exon(tmp_path):
    """"Parent=T,T" names T once: one exon row, whether the exon is read after T, before it, or with keep."""
    from interp.genome.annotation import KeepStudied

    mrna = "chr1\tx\tmRNA\t1\t100\t.\t+\t.\tID=T;Parent=G\n"
    exon = "chr1\tx\texon\t1\t50\t.\t+\t.\tParent=T,T\n"
    gene = "chr1\tx\tgene\t1\t100\t.\t+\t.\tID=G;Name=G\n"
    for order, text in (("sorted", gene + mrna + exon), ("unsorted", exon + mrna + gene)):
        path = _write(tmp_path / f"{order}.gff3", text)
        for keep in (None, KeepStudied(["chr1"], genes=["G"])):
            got = read_annotation(path, keep=keep)
            assert got["feature"].to_list() == ["transcript", "exon"], (order, keep)


@pytest.mark.parametrize("unsorted", [False, True], ids=["sorted", "unsorted"])
def test_gff3_is_streamed_and_keeps_what_a_whole_read_keeps(tmp_path, monkeypatch, unsorted):
    """GFF3 read with keep: the same rows as the whole read filtered; in a sorted file (gene before its
    transcripts) an unstudied transcript is dropped at its own line and never reaches the end of the parse.
    In an unsorted file (exons first, gene last) the gene names still resolve and nothing is lost."""
    from interp.genome import annotation as annotation_module
    from interp.genome.annotation import KeepStudied

    path = _write(tmp_path / "a.gff3", "##gff-version 3\n" + "".join(
        _gff3_gene("chr1", f"G{i}", 10_000 * i, unsorted=unsorted) for i in range(50)))
    sizes = []
    to_frame = annotation_module._to_frame
    monkeypatch.setattr(annotation_module, "_to_frame",
                        lambda txs, *a, **k: sizes.append(len(txs)) or to_frame(txs, *a, **k))
    whole = read_annotation(path)
    assert whole.filter(pl.col("feature") == "transcript")["gene"].unique().len() == 50
    assert whole.filter(pl.col("transcript") == "tx:G7.1")["gene"].unique().to_list() == ["G7"]
    held = []
    collect = annotation_module._collect_unheld_exons
    monkeypatch.setattr(annotation_module, "_collect_unheld_exons", lambda p, txs, *a: held.append(
        (len(txs), sum(len(t.exons) for t in txs.values()))) or collect(p, txs, *a))
    got = read_annotation(path, keep=KeepStudied(["chr1"], genes=["G7"], spans=[("chr1", 30_500, 30_600)]))
    assert got.equals(whole.filter(pl.col("gene").is_in(["G7", "G3"])))
    assert sizes[0] == 100 and sizes[1] == 4  # only G3's and G7's reach the end
    # sorted: the other transcripts were dropped at their own line, G3's and G7's exons held as they came;
    # unsorted: every transcript waits for its gene, without exons (a second pass reads G3's and G7's)
    assert held == ([(100, 0)] if unsorted else [(4, 12)])


def test_windows_stage_reads_only_the_annotation_of_its_regions(tmp_path):
    """The windows stage's labels equal those from the whole annotation, from the rows overlapping its regions."""
    from interp import stages
    from interp.genome.annotation import KeepStudied

    genes = _write(tmp_path / "genes.tsv", DEMO_GENES.read_text() + "FAR\t17\t+\t39000\t39900\t39000,\t39900,\n")
    out = {k: str(tmp_path / f"w.{k}") for k in ("parquet", "tsv", "fasta", "bases")}
    job = stages.Job(input={"fasta": str(DEMO_FASTA), "annotation": str(genes)}, output=out,
                     params={"reference": {"annotation_format": "auto", "contig_aliases": {}},
                             "regions": [{"name": "r", "contig": "chr17", "start": 5000, "end": 15000}],
                             "windows": {"width": 200, "stride": 100, "heldout_fraction": 0.2, "n_blocks": 2,
                                         "gc_high_quantile": 0.5}}, threads=1)
    stages.windows(job)
    fasta = open_reference(DEMO_FASTA)
    whole = to_contigs(read_annotation(genes), list(fasta), drop_missing=True)
    expected, bases = build_windows(fasta, [Region("r", "chr17", 5000, 15000)], whole, 200, 100, 0.2, 2, 0.5)
    assert pl.read_parquet(out["parquet"]).equals(expected)
    assert pl.read_parquet(out["bases"]).equals(bases)
    keep = KeepStudied(list(fasta), spans=[("chr17", 5000, 15000)])
    assert "FAR" not in read_annotation(genes, keep=keep)["gene"].to_list()


# ---------------------------------------------------------------- regions

def test_regions_from_config(demo_fasta):
    regions = regions_from_config([{"name": "demo", "contig": "17", "start": 0},
                                   {"contig": "chr17", "start": 100, "end": 300}], demo_fasta, None)
    assert regions == [Region("demo", "chr17", 0, 40000), Region("chr17:100-300", "chr17", 100, 300)]
    bad = [
        ([{"name": "x", "contig": "5", "start": 0, "end": 10}], "contig '5'"),
        ([{"name": "x", "contig": "chr17", "start": -1, "end": 10}], "negative"),
        ([{"name": "x", "contig": "chr17", "start": 0, "end": 40001}], "past the end"),
        ([{"name": "x", "contig": "chr17", "start": 10, "end": 10}], "start 10 >= end 10"),
        ([{"name": "x", "contig": "chr17", "end": 10}, {"name": "x", "contig": "chr17", "end": 20}], "duplicate"),
    ]
    for entries, needle in bad:
        with pytest.raises(InputError, match=needle):
            regions_from_config(entries, demo_fasta, None)


def test_read_bed(demo_fasta, tmp_path):
    path = _write(tmp_path / "r.bed", "track name=x\n#c\n17\t0\t500\tpromoter\t0\t+\nchr17\t1000\t2000\n")
    assert read_bed(path, demo_fasta, None) == [Region("promoter", "chr17", 0, 500),
                                                Region("chr17:1000-2000", "chr17", 1000, 2000)]
    with pytest.raises(InputError, match=r"contig 'chr5' \(from .*b\.bed, line 1\) is not in the FASTA"):
        read_bed(_write(tmp_path / "b.bed", "chr5\t0\t10\n"), demo_fasta, None)
    with pytest.raises(InputError, match=r"line 2, field end: expected an integer"):
        read_bed(_write(tmp_path / "c.bed", "chr17\t0\t10\nchr17\t5\tten\n"), demo_fasta, None)
    # a comma in a name would split its window ids in the SAE's comma-joined top_windows (the atlas failed)
    with pytest.raises(InputError, match=r"d\.bed, line 2: region name 'TP53,exon2' holds a comma"):
        read_bed(_write(tmp_path / "d.bed", "chr17\t0\t10\nchr17\t5\t20\tTP53,exon2\n"), demo_fasta, None)
    with pytest.raises(InputError, match=r"FASTA contig name 'chr17,b' holds a comma"):
        read_bed(_write(tmp_path / "e.bed", "chr17,b\t0\t10\n"), {"chr17,b": "ACGT" * 10}, None)


def test_gene_regions(demo_genes, demo_fasta):
    assert gene_regions(demo_genes, ["DOC2B"], 1000, demo_fasta) == [Region("DOC2B", "chr17", 5010, 32427)]
    assert gene_regions(demo_genes, ["DOC2B"], 10**6, demo_fasta) == [Region("DOC2B", "chr17", 0, 40000)]
    with pytest.raises(InputError, match=r"gene 'TP53' is not in the annotation \(known genes: DOC2B\)"):
        gene_regions(demo_genes, ["TP53"], 0, demo_fasta)
    far = demo_genes.with_columns(pl.col("start") + 10**6, pl.col("end") + 10**6)  # another build's coordinates
    with pytest.raises(InputError, match=r"annotation gene DOC2B: chr17:1006010-.* lies past the end of chr17 in "
                                         r"the FASTA \(40000 bases\); are the annotation and the FASTA"):
        gene_regions(far, ["DOC2B"], 0, demo_fasta)
    across = demo_genes.with_columns(pl.col("start") + 20_000, pl.col("end") + 20_000)  # starts in, ends past
    with pytest.raises(InputError, match=r"annotation gene DOC2B: chr17:26010-51427 ends past the end of chr17"):
        gene_regions(across, ["DOC2B"], 0, demo_fasta)  # clipped silently before: part of the gene lost


# ---------------------------------------------------------------- base labels

def test_transcript_without_exon_rows_does_not_make_its_span_intronic(demo_genes, demo_fasta):
    """A transcript listed without exons (a file cut to transcript lines) is left out of the labels: before,
    its whole span came out intronic."""
    from interp.genome.windows import base_labels

    region = [Region("r", "chr17", 35000, 36000)]
    lone = pl.DataFrame({"gene": ["X"], "transcript": ["x1"], "contig": ["chr17"], "strand": ["+"],
                         "feature": ["transcript"], "start": [35100], "end": [35900], "source_line": [1]},
                        schema=demo_genes.schema)
    labels = base_labels(demo_fasta, region, pl.concat([demo_genes, lone]))
    assert not labels["intron"].any() and labels["intergenic"].all()


def test_demo_exon_intron_labels(demo_bases, demo_fasta):
    exon = demo_bases["exon"].to_numpy()
    assert exon.sum() == 1080
    assert _runs(exon) == DOC2B_EXONS
    assert demo_bases["intron"].sum() == (31427 - 6010) - 1080
    flags = demo_bases.select(pl.col("exon").cast(int) + pl.col("intron") + pl.col("intergenic"))
    assert (flags.to_series() == 1).all()  # exactly one class per base
    lower = sum(ch.islower() for ch in demo_fasta["chr17"])
    assert demo_bases["repeat"].sum() == lower
    assert "".join(demo_bases["base"].to_list()) == demo_fasta["chr17"].upper()


def test_demo_minus_strand_exon_numbers(demo_bases):
    exonic = demo_bases.filter(pl.col("exon"))
    numbers = (exonic.group_by("exon_number")
               .agg(lo=pl.col("pos").min(), hi=pl.col("pos").max() + 1, n=pl.len()).sort("exon_number"))
    expected = list(reversed(DOC2B_EXONS))  # minus strand: the right-most exon is exon 1
    assert numbers.select("lo", "hi").rows() == expected
    assert numbers["n"].to_list() == [end - start for start, end in expected]  # each exon is one run
    assert numbers["exon_number"].to_list() == [1, 2, 3, 4, 5, 6]
    assert set(demo_bases.filter(pl.col("exon") | pl.col("intron"))["strand"].unique()) == {"-"}
    assert set(demo_bases.filter(pl.col("intergenic"))["strand"].unique()) == {"."}
    assert (demo_bases.filter(~pl.col("exon"))["exon_number"] == 0).all()


def test_demo_splice_sites_sit_on_gt_ag(demo_bases, demo_fasta):
    # DOC2B is on the minus strand: each intron reads GT..AG in transcript direction, i.e. CT..AC on the
    # plus strand; the donor holds the intron's right end (+ 3 exonic bases), the acceptor its left end
    seq = demo_fasta["chr17"].upper()
    introns = [(end, start) for (_, end), (start, _) in zip(DOC2B_EXONS[:-1], DOC2B_EXONS[1:], strict=True)]
    assert {seq[lo:lo + 2] for lo, _ in introns} == {"CT"} and {seq[hi - 2:hi] for _, hi in introns} == {"AC"}
    donor = _runs(demo_bases["splice_donor"].to_numpy())
    acceptor = _runs(demo_bases["splice_acceptor"].to_numpy())
    assert donor == [(hi - 6, hi + 3) for _, hi in introns]
    assert acceptor == [(lo - 2, lo + 12) for lo, _ in introns]


def test_plus_strand_and_overlapping_transcripts(tmp_path):
    fasta = {"c": "A" * 100}
    genes = _write(tmp_path / "g.gtf",
                   'c\tx\texon\t11\t20\t.\t+\t.\tgene_id "P"; transcript_id "p";\n'
                   'c\tx\texon\t41\t50\t.\t+\t.\tgene_id "P"; transcript_id "p";\n'
                   'c\tx\texon\t31\t35\t.\t-\t.\tgene_id "M"; transcript_id "m";\n'
                   'c\tx\texon\t71\t80\t.\t-\t.\tgene_id "M"; transcript_id "m";\n')
    bases = base_labels(fasta, [Region("r", "c", 0, 100)], read_annotation(genes))
    at = {row["pos"]: row for row in bases.iter_rows(named=True)}
    assert at[10]["exon_number"] == 1 and at[45]["exon_number"] == 2 and at[10]["strand"] == "+"
    # 30-35 is intronic for "p" (+) but exonic for "m" (-): the exonic transcript's strand wins
    assert at[32]["exon"] and at[32]["strand"] == "-" and at[32]["exon_number"] == 2
    assert at[25]["intron"] and at[25]["strand"] == "+"
    assert at[75]["exon_number"] == 1 and at[60]["intron"] and at[90]["intergenic"]


def test_gc_and_cpg_labels():
    fasta = {"c": "ttCGaCGCGnAcg"}
    bases = base_labels(fasta, [Region("r", "c", 2, 12)], None)
    assert bases["base"].to_list() == list("CGACGCGNAC")
    assert bases["gc"].to_list() == [ch in "GC" for ch in "CGACGCGNAC"]
    # the last C pairs with the G just past the region: CpG uses contig context
    assert bases["cpg"].to_list() == [True, True, False, True, True, True, True, False, False, True]
    assert bases["repeat"].to_list() == [False, False, True, False, False, False, False, True, False, True]
    assert bases["intergenic"].all() and (bases["strand"] == ".").all()


# ---------------------------------------------------------------- windows

def test_tile_counts_and_errors():
    region = Region("demo", "chr17", 0, 40000)
    windows = tile(region, 200, 100)
    assert len(windows) == 399 and windows[0] == (0, 200) and windows[-1] == (39800, 40000)
    assert len(tile(region, 200, 200)) == 200
    assert tile(Region("r", "c", 10, 35), 10, 7) == [(10, 20), (17, 27), (24, 34)]
    with pytest.raises(InputError) as info:
        tile(Region("demo", "chr17", 0, 300), 500, 100)
    assert "window width 500 is wider than region demo (chr17:0-300, 300 bases)" in str(info.value)


def test_window_statistics_hand_made():
    sequence = "CGCGAATTNN" + "ccggAATTGC"  # two windows of width 10
    windows, _ = build_windows({"c": sequence}, [Region("r", "c", 0, 20)], None, width=10, stride=10,
                               heldout_fraction=0.5, n_blocks=2)
    first, second = windows.row(0, named=True), windows.row(1, named=True)
    assert first["sequence"] == "CGCGAATTNN" and second["sequence"] == "CCGGAATTGC"
    assert first["gc"] == pytest.approx(4 / 8)  # among the 8 ACGT bases
    assert first["cpg_density"] == pytest.approx(2 / 10)
    assert first["cpg_oe"] == pytest.approx(2 * 10 / (2 * 2))
    assert first["n_fraction"] == pytest.approx(0.2) and first["repeat_fraction"] == 0
    assert second["gc"] == pytest.approx(6 / 10)
    assert second["cpg_density"] == pytest.approx(1 / 10)  # only the "cg" of ccgg; the trailing "GC" is not CpG
    assert second["cpg_oe"] == pytest.approx(1 * 10 / (3 * 3))
    assert second["repeat_fraction"] == pytest.approx(0.4) and not second["repeat"]
    assert windows["gc_high"].to_list() == [False, True]
    assert windows["heldout"].to_list() == [False, True] and windows["block"].to_list() == [0, 1]
    assert windows["intergenic_fraction"].to_list() == [1.0, 1.0]
    no_cg, _ = build_windows({"c": "AAAATTTTAA"}, [Region("r", "c", 0, 10)], None, 10, 10, 0.0, 1)
    assert no_cg["cpg_oe"][0] == 0 and no_cg["cpg_density"][0] == 0 and not no_cg["heldout"][0]


def test_gap_windows_stay_out_of_gc_high():
    """A window of N alone (an assembly gap) has no GC fraction: NaN, outside gc_high's cut and never gc_high.
    Counted as GC 0 it set the cut at 0, so every real window was gc_high and the target marked N windows."""
    rng = np.random.default_rng(0)
    real = "".join(rng.choice(list("AAATTTGC"), 400))  # AT-rich: GC about 0.25
    windows, _ = build_windows({"c": "N" * 600 + real}, [Region("r", "c", 0, 1000)], None, 100, 100, 0.0, 2)
    gap = windows["n_fraction"].to_numpy() == 1.0
    assert gap.sum() == 6 and np.isnan(windows["gc"].to_numpy()[gap]).all()
    assert not windows["gc_high"].to_numpy()[gap].any()
    real_gc = windows["gc"].to_numpy()[~gap]
    assert windows["gc_high"].to_numpy()[~gap].tolist() == (real_gc > np.median(real_gc)).tolist()
    assert windows["gc_high"].sum() == 2  # half of the 4 real windows, not all of them
    only_gap, _ = build_windows({"c": "N" * 200}, [Region("r", "c", 0, 200)], None, 100, 100, 0.0, 1)
    assert not only_gap["gc_high"].any()


def test_demo_windows(demo_fasta, demo_genes):
    started = time.perf_counter()
    region = regions_from_config([{"name": "demo", "contig": "chr17", "start": 0, "end": 40000}], demo_fasta, None)
    windows, bases = build_windows(demo_fasta, region, demo_genes, 200, 100, heldout_fraction=0.2, n_blocks=5)
    assert time.perf_counter() - started < 2.0
    assert windows.height == 399 and bases.height == 40000
    assert windows["window_index"].to_list() == list(range(399))
    assert windows["window_id"][0] == "chr17:0-200"
    for row in windows.sample(25, seed=0).iter_rows(named=True):
        raw = demo_fasta["chr17"][row["start"]:row["end"]]
        assert row["sequence"] == raw.upper()
        assert row["repeat_fraction"] == pytest.approx(sum(c.islower() for c in raw) / 200)
        assert row["window_id"] == f"chr17:{row['start']}-{row['end']}"
    assert not any(any(c.islower() for c in s) for s in windows["sequence"])
    # exon fractions add back up to the exonic base count (each base is in two windows, except the ends)
    exon_any = windows.filter(pl.col("exon"))
    assert all(any(s < e1 and e0 < s + 200 for e0, e1 in DOC2B_EXONS) for s in exon_any["start"])
    fractions = windows.select(pl.sum_horizontal(pl.col("^(exon|intron|intergenic)_fraction$")))
    assert np.allclose(fractions.to_series().to_numpy(), 1.0)
    cut = heldout_start(region[0], 0.2)
    assert cut == 32000
    assert windows.filter(pl.col("heldout"))["start"].min() == 32000
    assert windows.filter(pl.col("heldout")).height == 79
    assert windows.filter(~pl.col("heldout"))["start"].max() == 31900  # straddles 32000: not held out
    sizes = windows.group_by("block").len().sort("block")["len"].to_list()
    assert len(sizes) == 5 and max(sizes) - min(sizes) <= 1
    assert (windows["block"].diff().drop_nulls() >= 0).all()  # contiguous
    assert windows["gc_high"].sum() == (windows["gc"] > windows["gc"].median()).sum()
    assert windows["intron"].to_list() == (windows["intron_fraction"] >= 0.5).to_list() and windows["intron"].any()
    # every probe target the schema offers is a label column of the windows (intron was accepted by the
    # schema and check-config, then refused by the probe stage: the windows had only intron_fraction)
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    for target in schema["properties"]["probe"]["properties"]["targets"]["items"]["enum"]:
        assert windows[target].dtype == pl.Boolean, target
    again, _ = build_windows(demo_fasta, region, demo_genes, 200, 100, heldout_fraction=0.2, n_blocks=5)
    assert again.equals(windows)


def test_windows_genome_order_and_errors(tmp_path):
    fasta = {"a": "ACGT" * 50, "b": "GGCC" * 50}
    regions = [Region("rb", "b", 0, 100), Region("ra2", "a", 100, 200), Region("ra1", "a", 0, 100)]
    windows, bases = build_windows(fasta, regions, None, 50, 50, 0.0, 3)
    assert windows["window_id"].to_list() == ["a:0-50", "a:50-100", "a:100-150", "a:150-200", "b:0-50", "b:50-100"]
    assert bases.height == 300
    with pytest.raises(InputError, match="n_blocks"):
        build_windows(fasta, regions, None, 50, 50, 0.0, 7)
    with pytest.raises(InputError, match="heldout_fraction"):
        build_windows(fasta, regions, None, 50, 50, 1.0, 2)
    with pytest.raises(InputError, match="wider than region"):
        build_windows(fasta, regions, None, 150, 50, 0.0, 2)


def test_overlapping_regions_on_one_grid_name_their_shared_windows_by_region(tmp_path):
    """Two overlapping regions whose tiles line up gave the same window twice under one window_id (and windows.fa
    two records of one id); the embed stage then refused the table with "ids are not unique", naming neither
    region. A window both regions tile is now named by region, as the cohort's dimensions are."""
    from interp.embed.run import check_windows

    fasta = {"a": "ACGT" * 100}
    regions = [Region("whole", "a", 0, 400), Region("inner", "a", 100, 300)]
    windows, bases = build_windows(fasta, regions, None, 100, 100, 0.0, 2)
    ids = windows["window_id"].to_list()
    assert len(set(ids)) == len(ids) == 6
    assert ids == ["a:0-100", "a:100-200@whole", "a:100-200@inner", "a:200-300@whole", "a:200-300@inner",
                   "a:300-400"]
    check_windows(windows)  # the embed stage's own check
    out = {k: tmp_path / f"w.{k}" for k in ("parquet", "tsv", "fa", "bases")}
    write_windows(windows, bases, out["parquet"], out["tsv"], out["fa"], out["bases"])
    headers = [line[1:].split()[0] for line in out["fa"].read_text().splitlines() if line.startswith(">")]
    assert sorted(headers) == sorted(ids)
    # windows of one region only keep the plain id
    alone, _ = build_windows(fasta, regions[:1], None, 100, 100, 0.0, 2)
    assert alone["window_id"].to_list() == ["a:0-100", "a:100-200", "a:200-300", "a:300-400"]


def test_a_mistyped_alias_of_an_annotation_contig_is_refused_not_dropped():
    """reference.contig_aliases {"1": "chr01"} with a FASTA holding chr1: the region path refused it, but the
    annotation reader, which drops contigs the FASTA lacks (a genome-wide annotation with a few chromosomes),
    dropped every transcript of "1" whenever another contig matched, so the region's bases were all intergenic.
    An alias naming no FASTA contig, for a name that matches one without it, is now refused; an alias for a
    contig this FASTA does not hold is still dropped quietly."""
    from interp.genome.annotation import KeepStudied

    annotation = pl.DataFrame({"gene": ["g1", "g2"], "transcript": ["t1", "t2"], "contig": ["1", "2"],
                               "strand": ["+", "+"], "start": [10, 10], "end": [50, 50]})
    available = ["chr1", "chr2"]
    assert to_contigs(annotation, available, {}, drop_missing=True)["contig"].to_list() == ["chr1", "chr2"]
    with pytest.raises(InputError, match=r"alias '1' -> 'chr01'.*'1' itself matches its contig 'chr1'"):
        to_contigs(annotation, available, {"1": "chr01"}, drop_missing=True)
    keep = KeepStudied(available, {"1": "chr01"}, spans=[("chr1", 0, 100)])
    with pytest.raises(InputError, match=r"alias '1' -> 'chr01'"):
        keep("g1", "1", 10, 50)
    # a genome-wide alias map with a FASTA of one chromosome: "2" -> "chr2" names a contig this FASTA lacks
    kept = to_contigs(annotation, ["chr1"], {"1": "chr1", "2": "chr2"}, drop_missing=True)
    assert kept["contig"].to_list() == ["chr1"]
    # the ancestry panel's markers near the studied regions (left out of the PCs) are matched the same way:
    # a mistyped alias would have kept the region's own variants in the panel
    from interp.cohort.ancestry import NearRegions

    near = NearRegions.of([Region("r", "chr1", 0, 100)], 10, {"1": "chr01"})
    with pytest.raises(InputError, match=r"alias '1' -> 'chr01'"):
        near.mask(["1"], np.array([5]))
    assert NearRegions.of([Region("r", "chr1", 0, 100)], 10, {"2": "chr2"}).mask(["1", "2"], np.array([5, 5])).tolist() == [
        True, False]


def test_write_windows_and_tracks(demo_fasta, demo_genes, tmp_path):
    region = [Region("doc2b", "chr17", 5000, 7000)]
    windows, bases = build_windows(demo_fasta, region, demo_genes, 500, 250, 0.25, 2)
    out = tmp_path / "out"
    paths = [out / "windows.parquet", out / "windows.tsv", out / "windows.fa", out / "bases.parquet"]
    write_windows(windows, bases, *paths)
    assert pl.read_parquet(paths[0]).equals(windows)
    tsv = pl.read_csv(paths[1], separator="\t")
    assert "sequence" not in tsv.columns and tsv.height == windows.height
    records = list(SeqIO.parse(paths[2], "fasta"))
    assert [r.id for r in records] == windows["window_id"].to_list()
    assert [str(r.seq) for r in records] == windows["sequence"].to_list()
    assert "region=doc2b" in records[0].description
    assert pl.read_parquet(paths[3]).equals(bases)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    window = windows.row(3, named=True)  # chr17:5750-6250 contains the start of exon 6010-6168
    tracks = window_label_tracks(bases, window, ["exon", "repeat", "exon_number"])
    assert tracks["exon"].shape == (500,) and tracks["exon"].dtype == bool
    assert _runs(tracks["exon"]) == [(6010 - 5750, 6168 - 5750)]
    assert set(tracks["exon_number"][tracks["exon"]]) == {6}
    raw = demo_fasta["chr17"][5750:6250]
    assert tracks["repeat"].tolist() == [c.islower() for c in raw]
    with pytest.raises(InputError, match="not fully covered"):
        window_label_tracks(bases, {"contig": "chr17", "start": 6900, "end": 7100}, ["exon"])


def test_reference_slices_across_fetch_blocks_equal_the_string(tmp_path):
    rng = np.random.default_rng(3)
    sequence = "".join(rng.choice(list("ACGTacgtN"), 200_003))
    path = _write(tmp_path / "long.fa", ">c\n" + "\n".join(sequence[i:i + 70] for i in range(0, len(sequence), 70))
                  + "\n")
    reference = open_reference(path)
    contig = reference["c"]
    assert len(contig) == len(sequence) and str(contig) == sequence
    for start in [0, 65_535, 65_536, 131_000, 199_990, *rng.integers(0, len(sequence), 30).tolist()]:
        for width in (1, 2, 70, 65_536, 140_000):
            assert contig[start:start + width] == sequence[start:start + width], (start, width)
    assert contig[-5:] == sequence[-5:] and contig[10:20:3] == sequence[10:20:3] and contig[5:5] == ""
    with pytest.raises(IndexError):
        contig[len(sequence)]


def test_cohort_stages_read_the_genes_studied_and_name_the_known_ones(tmp_path, monkeypatch):
    """The cohort stages keep the studied genes' transcripts only; an unknown gene's error still lists the genes
    of the whole file, and a gene on a contig the FASTA lacks is named with its contig."""
    from types import SimpleNamespace

    from interp import stages

    genes = _write(tmp_path / "genes.tsv", DEMO_GENES.read_text() + "ELSEWHERE\t5\t+\t10\t900\t10,\t900,\n")
    job = stages.Job(input={"fasta": str(DEMO_FASTA), "annotation": str(genes)}, output={},
                     params={"reference": {"annotation_format": "auto", "contig_aliases": {}}}, threads=1)
    fasta, annotation = stages._reference(job, genes=["DOC2B"], spans=[])
    assert annotation["gene"].unique().to_list() == ["DOC2B"]
    [region] = stages._cohort_regions(job, SimpleNamespace(genes=["DOC2B"], flank=100), fasta, annotation)
    assert (region.contig, region.start, region.end) == ("chr17", 5910, 31527)
    from interp.genome import annotation as annotation_module

    reads = []  # (with a keep, rows returned) of each read of the annotation
    read = annotation_module.read_annotation
    monkeypatch.setattr(annotation_module, "read_annotation", lambda *a, **k: (
        lambda table: reads.append((k.get("keep") is not None, table.height)) or table)(read(*a, **k)))
    for gene, needle in (("NOPE", "known genes: .*DOC2B"), ("ELSEWHERE", "ELSEWHERE on '5'")):
        _, annotation = stages._reference(job, genes=[gene], spans=[])
        reads.clear()
        with pytest.raises(InputError, match=needle):
            stages._cohort_regions(job, SimpleNamespace(genes=[gene], flank=0), fasta, annotation)
        # the error path reads the file once and keeps no transcript (it built the whole table twice)
        assert reads == [(True, 0)], reads
    other = _write(tmp_path / "other.tsv", "#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                   "t1\tscaffold_9\t+\t10\t900\t10,\t900,\n")
    job.input["annotation"] = str(other)
    with pytest.raises(InputError, match="contig 'scaffold_9'"):  # an annotation of another naming
        stages._reference(job, genes=["t1"], spans=[])


def test_lm_split_merges_overlapping_regions_so_no_held_out_base_is_trained_on() -> None:
    """Split region by region, A = [0, 10000)'s held-out tail lay inside B = [5000, 15000)'s training part: the
    LM and the Markov baselines trained on bases they were scored on. Overlapping regions of a contig are one
    span; other regions keep their own split and their order."""
    from interp.genome.regions import Region
    from interp.genome.windows import lm_split

    rng = np.random.default_rng(0)
    fasta = {c: "".join(rng.choice(list("acgt"), 20_000)) for c in ("chrA", "chrB")}
    regions = [Region("far", "chrB", 1000, 3000), Region("A", "chrA", 0, 10_000), Region("B", "chrA", 5000, 15_000),
               Region("C", "chrA", 9100, 10_000), Region("next", "chrA", 15_000, 17_000)]
    train, heldout = lm_split(fasta, regions, 0.1)
    # far; A + B + C merged into [0, 15000) (held out from 13,500); next, adjacent to it but not overlapping
    assert [len(t) for t in train] == [1800, 13_500, 1800] and [len(h) for h in heldout] == [200, 1500, 200]
    assert heldout[1] == fasta["chrA"][13_500:15_000].upper() and train[0] == fasta["chrB"][1000:2800].upper()

    def covered(pieces, contig):  # the bases each piece came from (random text: find() places each one)
        return {(contig, i) for p in pieces for start in [fasta[contig].upper().find(p)] for i in
                range(start, start + len(p))}

    trained = covered(train[1:], "chrA")
    scored = covered(heldout[1:], "chrA")
    assert not trained & scored
    # the per-region split scored A's tail [9000, 10000) (and C's within it, twice) and trained on it within B's
    assert {i for _, i in scored} == set(range(13_500, 15_000)) | set(range(16_800, 17_000))
    assert {i for _, i in trained} == set(range(0, 13_500)) | set(range(15_000, 16_800))
    one = lm_split(fasta, [Region("A", "chrA", 0, 10_000)], 0.1)
    assert one == ([fasta["chrA"][:9000].upper()], [fasta["chrA"][9000:10_000].upper()])  # one region: as before
