"""interp.io: a file or folder appears under its final name only once it is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.io import atomic_dir, atomic_path, write_text_atomic


def test_atomic_path_renames_on_success_and_keeps_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "cohort.vcf.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".gz" and tmp != target
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["cohort.vcf.gz"]


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.tsv"]


def test_atomic_dir_replaces_the_folder_on_success(tmp_path: Path) -> None:
    target = tmp_path / "atlas"
    target.mkdir()
    (target / "stale.html").write_text("old")
    with atomic_dir(target) as folder:
        assert folder.is_dir() and not any(folder.iterdir())
        (folder / "index.html").write_text("new")
        assert (target / "stale.html").exists()
    assert sorted(p.name for p in target.iterdir()) == ["index.html"]
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "embeddings"
    with atomic_dir(target) as folder:
        (folder / "a.h5ad").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as folder:
        (folder / "a.h5ad").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.h5ad").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings"]


def test_write_table_flattens_list_and_struct_columns_in_the_tsv(tmp_path: Path) -> None:
    """A list or struct column is written to the TSV as JSON text (polars cannot cast it to a string)."""
    import polars as pl

    from interp.stages import write_table

    df = pl.DataFrame({"k": [1, 2], "selected": [[3, 7], None], "fit": [{"C": 0.1, "n": 5}, {"C": 1.0, "n": 6}]})
    write_table(df, tmp_path / "t.parquet", tmp_path / "t.tsv")
    assert pl.read_parquet(tmp_path / "t.parquet").equals(df)
    assert (tmp_path / "t.tsv").read_text().splitlines() == [
        "k\tselected\tfit", '1\t[3, 7]\t"{""C"": 0.1, ""n"": 5}"', '2\t\t"{""C"": 1.0, ""n"": 6}"']


def test_write_table_leaves_no_new_parquet_beside_the_old_tsv_when_the_tsv_fails(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    import polars as pl

    from interp.stages import write_table

    parquet, tsv = tmp_path / "t.parquet", tmp_path / "t.tsv"
    write_table(pl.DataFrame({"x": [1]}), parquet, tsv)
    before = parquet.read_bytes(), tsv.read_bytes()

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_csv", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_table(pl.DataFrame({"x": [2]}), parquet, tsv)
    assert (parquet.read_bytes(), tsv.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet", "t.tsv"]


def _gzip_with_extra_field(data: bytes, subfield: bytes) -> bytes:
    """One gzip member whose header carries the FEXTRA field `subfield` (as dictzip's 'RA' or BGZF's 'BC')."""
    import struct
    import zlib

    header = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + struct.pack("<H", len(subfield)) + subfield
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data))


def test_compression_tells_bgzf_from_a_gzip_with_another_extra_field(tmp_path: Path) -> None:
    """BGZF is a gzip header with the extra subfield 'BC' (htslib's test); a gzip file whose header has another
    extra field (dictzip's 'RA') is plain gzip, and a FASTA so compressed is read, not refused as a bad bgzip."""
    import gzip
    import struct

    import pysam

    from interp.genome.fasta import read_fasta
    from interp.io import compression

    text = b">chrT\nACGTACGTAC\nGGCC\n"
    plain = tmp_path / "genome.fa"
    plain.write_bytes(text)
    pysam.tabix_compress(str(plain), str(tmp_path / "genome.fa.bgz"))
    (tmp_path / "genome.fa.gz").write_bytes(gzip.compress(text))
    dictzip = tmp_path / "dictzip" / "genome.fa.dz"
    dictzip.parent.mkdir()
    dictzip.write_bytes(_gzip_with_extra_field(text, b"RA" + struct.pack("<H", 4) + bytes(4)))
    assert gzip.decompress(dictzip.read_bytes()) == text
    assert [compression(tmp_path / n) for n in ("genome.fa", "genome.fa.bgz", "genome.fa.gz")] == [
        "plain", "bgzf", "gzip"]
    assert compression(dictzip) == "gzip"
    assert read_fasta(dictzip, tmp_path / "cache") == {"chrT": "ACGTACGTACGGCC"}
