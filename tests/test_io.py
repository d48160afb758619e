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
