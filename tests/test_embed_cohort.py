"""interp.embed.cohort: embedding each distinct haplotype window once and pooling per sample, on a
hand-built cohort of 2 samples x 2 windows with known means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest


def _cohort_inputs():
    """2 samples x 2 windows x 2 haplotypes over 3 distinct sequences (rows of `pooled`)."""
    import anndata as ad
    import pandas as pd

    sequences = pl.DataFrame({"seq_hash": ["h0", "h1", "h2"], "sequence": ["GGCC", "AATT", "GANN"],
                              "gc": [1.0, 0.0, 0.5]})
    # (sample, window, hap) -> hash
    which = {("s1", 0, 1): "h0", ("s1", 0, 2): "h1", ("s1", 1, 1): "h2", ("s1", 1, 2): "h2",
             ("s2", 0, 1): "h1", ("s2", 0, 2): "h1", ("s2", 1, 1): "h0", ("s2", 1, 2): "h2",
             ("other", 0, 1): "h9"}  # a sample not in the genotypes: ignored
    rows = [{"sample": s, "hap": h, "window_index": w, "window_id": f"chr1:{100 * w}-{100 * w + 50}",
             "region": "g", "contig": "chr1", "start": 100 * w, "end": 100 * w + 50, "seq_hash": x}
            for (s, w, h), x in which.items()]
    assign = pl.DataFrame(rows)
    geno = ad.AnnData(obs=pd.DataFrame({"population": ["A", "B"]}, index=["s1", "s2"]))
    geno.obsm["X_pca"] = np.array([[1.0, 0.0], [0.0, 1.0]])
    pooled = {"block1": np.array([[0.0, 10.0], [2.0, 20.0], [4.0, 40.0]], dtype=np.float32),
              "sae": np.array([[1.0], [0.0], [3.0]], dtype=np.float32)}
    return pooled, sequences, assign, geno


def test_gc_fraction_ignores_n() -> None:
    from interp.cohort.haplotypes import gc_fraction

    assert gc_fraction("GGCC") == 1.0
    assert gc_fraction("GANN") == 0.5
    assert gc_fraction("NNNN") == 0.0


def test_sequence_index_maps_sample_window_haplotype_to_sequence_rows() -> None:
    from interp.embed.cohort import sequence_index

    _, sequences, assign, _ = _cohort_inputs()
    seq_index, windows = sequence_index(assign, ["s2", "s1"], sequences["seq_hash"].to_list())
    assert seq_index.tolist() == [[[1, 1], [0, 2]], [[0, 1], [2, 2]]]  # s2 first, as asked
    assert windows["window_id"].to_list() == ["chr1:0-50", "chr1:100-150"]
    with pytest.raises(ValueError, match="no sequence"):
        sequence_index(assign.filter(pl.col("seq_hash") != "h1"), ["s1", "s2"], ["h0", "h2"])
    # tables of two different runs: named, not a polars mapping error or an anonymous hole
    with pytest.raises(ValueError, match="1 sequence hash.* not in the sequences table, e.g. h1"):
        sequence_index(assign, ["s1", "s2"], ["h0", "h2"])
    with pytest.raises(ValueError, match="different sample sets"):
        sequence_index(assign, ["s1", "s3"], sequences["seq_hash"].to_list())
    with pytest.raises(ValueError, match="sample 's1' has no sequence for window chr1:100-150 haplotype 2"):
        sequence_index(assign.filter((pl.col("sample") != "s1") | (pl.col("window_index") == 0)
                                     | (pl.col("hap") == 1)), ["s1", "s2"], sequences["seq_hash"].to_list())


@pytest.mark.parametrize("batch_rows", [1 << 18, 7])
def test_sequence_index_from_a_parquet_path_equals_the_table_in_memory(tmp_path: Path, batch_rows: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """embed_cohort passes the path of haplotypes.parquet (only the columns used are read, a batch of rows at
    a time, as codes): the index and windows equal those of the former string-keyed mapping, row by row, on a
    cohort of many samples, windows and hashes (rows shuffled, in row groups of 500; samples listed in another
    order, one not in the genotypes), with batches of whole row groups and of 7 rows (cutting row groups);
    the index is int32; the errors are the same."""
    from interp.embed import cohort
    from interp.embed.cohort import sequence_index

    monkeypatch.setattr(cohort, "INDEX_BATCH_ROWS", batch_rows)

    rng = np.random.default_rng(0)
    n_s, n_w = 40, 30
    hashes = [f"{k:040x}" for k in rng.permutation(500)]
    rows = pl.DataFrame({"sample": np.repeat([f"s{i}" for i in range(n_s)], 2 * n_w),
                         "hap": np.tile(np.repeat([1, 2], n_w), n_s).astype(np.int8),
                         "window_index": np.tile(np.arange(n_w), 2 * n_s)})
    rows = rows.with_columns(pl.Series("seq_hash", [hashes[k] for k in rng.integers(0, 500, rows.height)]),
                             pl.format("chr1:{}-{}", pl.col("window_index") * 10, pl.col("window_index") * 10 + 5)
                             .alias("window_id"), pl.lit("g").alias("region"), pl.lit("chr1").alias("contig"),
                             (pl.col("window_index") * 10).alias("start"), (pl.col("window_index") * 10 + 5).alias("end"))
    path = tmp_path / "haplotypes.parquet"
    rows.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(path, row_group_size=500)
    samples = [f"s{i}" for i in rng.permutation(n_s)[:-1]]  # the last is not in the genotypes: ignored
    # the former mapping, string by string
    s_pos, index_of = {s: i for i, s in enumerate(samples)}, {h: i for i, h in enumerate(hashes)}
    expected = np.full((len(samples), n_w, 2), -1, dtype=np.int64)
    for r in rows.iter_rows(named=True):
        if r["sample"] in s_pos:
            expected[s_pos[r["sample"]], r["window_index"], r["hap"] - 1] = index_of[r["seq_hash"]]
    for source in (path, str(path), pl.read_parquet(path)):
        seq_index, windows = sequence_index(source, samples, hashes)
        assert seq_index.dtype == np.int32
        np.testing.assert_array_equal(seq_index, expected)
        assert windows.equals(rows.select("window_index", "window_id", "region", "contig", "start", "end")
                              .unique().sort("window_index"))
    with pytest.raises(ValueError, match="sequence hash.* not in the sequences table"):
        sequence_index(path, samples, hashes[1:])
    with pytest.raises(ValueError, match="different sample sets"):
        sequence_index(path, [*samples, "nobody"], hashes)
    with pytest.raises(TypeError, match="a DataFrame or a parquet path, not LazyFrame"):
        sequence_index(pl.scan_parquet(path), samples, hashes)


@pytest.mark.parametrize("batch_rows", [1 << 18, 3])
def test_sequence_index_places_a_repeated_row_once_and_names_a_conflicting_one(
        tmp_path: Path, batch_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A (sample, window, haplotype) given twice with the same sequence is placed once; with another sequence
    (in the same batch, or a later one: batches of 3 rows put the repeat in another) it is named, not silently
    overwritten by the later row. Bad hap, window_index or missing values are named too."""
    from interp.embed import cohort
    from interp.embed.cohort import sequence_index

    monkeypatch.setattr(cohort, "INDEX_BATCH_ROWS", batch_rows)
    _, sequences, assign, _ = _cohort_inputs()
    hashes = sequences["seq_hash"].to_list()
    expected, _ = sequence_index(assign, ["s2", "s1"], hashes)
    again = pl.concat([assign, assign.head(2)])
    path = tmp_path / "haplotypes.parquet"
    again.write_parquet(path)
    for source in (again, path):
        np.testing.assert_array_equal(sequence_index(source, ["s2", "s1"], hashes)[0], expected)
    first = assign.row(0, named=True)
    other = next(h for h in hashes if h != first["seq_hash"])
    clash = pl.concat([assign, assign.head(1).with_columns(pl.lit(other).alias("seq_hash"))])
    clash.write_parquet(path)
    for source in (clash, path, clash.reverse()):
        with pytest.raises(ValueError, match=f"sample '{first['sample']}' window {first['window_id']} haplotype "
                                             f"{first['hap']} is given more than once with different sequences"):
            sequence_index(source, ["s2", "s1"], hashes)
    with pytest.raises(ValueError, match="hap 3: haplotypes are 1 and 2"):
        sequence_index(assign.with_columns(pl.col("hap").replace(2, 3)), ["s2", "s1"], hashes)
    with pytest.raises(ValueError, match=r"3 windows are not numbered 0 \.\. 2 once each"):
        sequence_index(pl.concat([assign, assign.head(1).with_columns(pl.lit(-1, pl.Int64).alias("window_index"))]),
                       ["s2", "s1"], hashes)
    with pytest.raises(ValueError, match=r"missing values in \['seq_hash'\]"):
        sequence_index(assign.with_columns(pl.when(pl.col("hap") == 2).then(pl.col("seq_hash"))),
                       ["s2", "s1"], hashes)
    with pytest.raises(ValueError, match=r"no column\(s\) \['window_id'\]"):
        sequence_index(assign.drop("window_id"), ["s2", "s1"], hashes)


def test_pool_cohort_means_over_haplotypes_and_windows(tmp_path: Path) -> None:
    import anndata as ad

    from interp.embed.cohort import pool_cohort

    pooled, sequences, assign, geno = _cohort_inputs()
    tables = dict(pool_cohort(pooled, sequences, assign, geno, "m", "block2", keep_haplotypes=True))
    assert list(tables) == ["block1.samples.h5ad", "block1.windows.h5ad", "sae.features.h5ad",
                            "sae.windows.h5ad"]
    s = tables["block1.samples.h5ad"]
    # s1: windows (h0+h1)/2 = [1, 15], (h2+h2)/2 = [4, 40] -> [2.5, 27.5]; s2: [2, 20], [2, 25] -> [2, 22.5]
    np.testing.assert_allclose(s.X, [[2.5, 27.5], [2.0, 22.5]])
    assert s.X.dtype == np.float32
    np.testing.assert_allclose(s.obsm["hap1"], [[2.0, 25.0], [1.0, 15.0]])  # s1: h0, h2; s2: h1, h0
    np.testing.assert_allclose(s.obsm["hap2"], [[3.0, 30.0], [3.0, 30.0]])  # s1: h1, h2; s2: h1, h2
    np.testing.assert_array_equal(s.obsm["X_pca"], geno.obsm["X_pca"])
    # gc: s1 over h0, h1, h2, h2 = (1 + 0 + 0.5 + 0.5) / 4; s2 over h1, h1, h0, h2 = (0 + 0 + 1 + 0.5) / 4
    np.testing.assert_allclose(s.obs["gc"].to_numpy(), [0.5, 0.375])
    assert s.obs["population"].tolist() == ["A", "B"]
    assert dict(s.uns) == {"model": "m", "layer": "block1", "kind": "embedding"}
    tables["block1.windows.h5ad"].write_h5ad(tmp_path / "w.h5ad")
    w = ad.read_h5ad(tmp_path / "w.h5ad")
    assert w.X.dtype == np.float32 and w.uns["kind"] == "embedding"
    np.testing.assert_array_equal(w.obsm["X_pca"], geno.obsm["X_pca"])
    np.testing.assert_allclose(w.X, [[1.0, 15.0, 4.0, 40.0], [2.0, 20.0, 2.0, 25.0]])  # window-major
    assert w.var_names.tolist() == ["m/block1/chr1:0-50/dim0", "m/block1/chr1:0-50/dim1",
                                    "m/block1/chr1:100-150/dim0", "m/block1/chr1:100-150/dim1"]
    assert w.var["dim"].tolist() == [0, 1, 0, 1]
    assert w.var["start"].tolist() == [0, 0, 100, 100]
    f = tables["sae.features.h5ad"]
    np.testing.assert_allclose(f.X, [[(1 + 0 + 3 + 3) / 4], [(0 + 0 + 1 + 3) / 4]])
    assert f.uns["layer"] == "block2" and f.uns["kind"] == "sae"
    assert tables["sae.windows.h5ad"].var.index.tolist() == ["m/block2/chr1:0-50/f0", "m/block2/chr1:100-150/f0"]
    plain = dict(pool_cohort(pooled, sequences, assign, geno, "m", "block2"))
    assert "hap1" not in plain["block1.samples.h5ad"].obsm
    # gc comes from the table's gc column, not from the sequences (the sharded gather reads no sequence)
    other = dict(pool_cohort(pooled, sequences.drop("sequence").with_columns(pl.Series("gc", [0.0, 1.0, 0.0])),
                             assign, geno, "m", "block2"))
    np.testing.assert_allclose(other["block1.samples.h5ad"].obs["gc"].to_numpy(), [0.25, 0.5])
    with pytest.raises(ValueError, match="no gc column"):
        pool_cohort(pooled, sequences.drop("gc"), assign, geno, "m", "block2")


def test_pooling_by_window_blocks_gives_the_same_tables(tmp_path: Path, monkeypatch) -> None:
    """Pooling runs over blocks of windows so that memory follows the block, not the number of windows
    (hundreds of genes): one window per block must give the same sample means, gc and windows table."""
    import anndata as ad

    from interp.embed import cohort

    pooled, sequences, assign, geno = _cohort_inputs()

    def tables(folder: Path) -> dict:
        folder.mkdir()
        out = {}
        for name, table in cohort.pool_cohort(pooled, sequences, assign, geno, "m", "block2", keep_haplotypes=True):
            table.write_h5ad(folder / name)
            out[name] = ad.read_h5ad(folder / name)
        return out

    whole = tables(tmp_path / "whole")
    monkeypatch.setattr(cohort, "POOL_CHUNK_BYTES", 1)
    blocks = tables(tmp_path / "blocks")
    for name, a in whole.items():
        np.testing.assert_allclose(blocks[name].X, a.X, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(blocks[name].obs["gc"], a.obs["gc"], rtol=1e-12)
        assert blocks[name].var_names.tolist() == a.var_names.tolist()
    np.testing.assert_allclose(blocks["block1.samples.h5ad"].obsm["hap1"], whole["block1.samples.h5ad"].obsm["hap1"])


def test_embed_distinct_windows_adds_the_sae_codes_of_the_layer() -> None:
    import torch

    from interp.embed.base import TokenActivations
    from interp.embed.cohort import embed_distinct_windows

    class Embedder:
        """Token i of a sequence has activation [i, 1] at every layer; every token is a base."""

        def embed(self, seqs, layers):
            values = np.concatenate([np.stack([np.arange(len(s)), np.ones(len(s))], 1) for s in seqs])
            offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
            span = np.stack([np.concatenate([np.arange(len(s)) for s in seqs]),
                             np.concatenate([np.arange(1, len(s) + 1) for s in seqs])], 1)
            return {layer: TokenActivations(values=values.astype(np.float32), offsets=offsets, base_span=span)
                    for layer in layers}

    class Sae(torch.nn.Module):
        def encode(self, x):
            return torch.relu(x[:, :1] - 1.0)  # one feature: max(token index - 1, 0)

    out = embed_distinct_windows(Embedder(), ["ACGT", "AC"], ["b1"], batch_size=1, sae_model=Sae(), sae_layer="b2")
    np.testing.assert_allclose(out["b1"], [[1.5, 1.0], [0.5, 1.0]])
    np.testing.assert_allclose(out["sae"], [[(0 + 0 + 1 + 2) / 4], [0.0]])


def test_overlapping_regions_sharing_a_window_id_get_one_column_block_each(tmp_path: Path) -> None:
    """Two overlapping regions (a gene and a BED record over the same bases) tile the same window, so two
    window_index values share one window_id "chr1:0-50": the windows table has one block of d columns per
    window (selecting var rows by window_id doubled them and pooling crashed), named apart by region."""
    import anndata as ad

    from interp.embed.cohort import pool_cohort, region_sample_tables

    pooled, sequences, assign, geno = _cohort_inputs()
    assign = assign.with_columns(
        pl.when(pl.col("window_index") == 1).then(pl.lit("g2")).otherwise(pl.col("region")).alias("region"),
        pl.lit("chr1:0-50").alias("window_id"), pl.lit(0).alias("start"), pl.lit(50).alias("end"))
    tables = dict(pool_cohort(pooled, sequences, assign, geno, "m", "block2"))
    np.testing.assert_allclose(tables["block1.samples.h5ad"].X, [[2.5, 27.5], [2.0, 22.5]])
    tables["block1.windows.h5ad"].write_h5ad(tmp_path / "w.h5ad")
    w = ad.read_h5ad(tmp_path / "w.h5ad")
    np.testing.assert_allclose(w.X, [[1.0, 15.0, 4.0, 40.0], [2.0, 20.0, 2.0, 25.0]])
    assert w.var_names.tolist() == ["m/block1/chr1:0-50@g/dim0", "m/block1/chr1:0-50@g/dim1",
                                    "m/block1/chr1:0-50@g2/dim0", "m/block1/chr1:0-50@g2/dim1"]
    assert w.var["region"].tolist() == ["g", "g", "g2", "g2"]
    by_region = list(region_sample_tables(tables["block1.samples.h5ad"], tmp_path / "w.h5ad"))
    np.testing.assert_allclose(by_region[1].X, [[4.0, 40.0], [2.0, 25.0]])


def test_given_vectors_must_be_the_runs_layers_and_sequences() -> None:
    """Vectors gathered from shards of another run (other layers, other sequences) are refused by name, not
    pooled into tables of the wrong layers or indexed past their rows."""
    from interp.embed.cohort import embed_cohort_tables

    pooled, sequences, assign, geno = _cohort_inputs()
    tables, _ = embed_cohort_tables(None, sequences, assign, geno, "m", ["block1"], 1, None, "block2", pooled=pooled)
    assert [name for name, _ in tables][:1] == ["block1.samples.h5ad"]
    with pytest.raises(ValueError, match="hold \\['block1', 'sae'\\], the run asks for \\['block1', 'block2', 'sae'\\]"):
        embed_cohort_tables(None, sequences, assign, geno, "m", ["block1", "block2"], 1, None, "block2", pooled=pooled)
    short = {k: v[:2] for k, v in pooled.items()}
    with pytest.raises(ValueError, match="3 distinct sequences but vectors with"):
        embed_cohort_tables(None, sequences, assign, geno, "m", ["block1"], 1, None, "block2", pooled=short)


@pytest.mark.parametrize("n_s, n_w, d, budget", [(3000, 5, 32768, 1 << 27), (3000, 40, 16, 1 << 20), (7, 3, 4, 1),
                                                 (600, 4, 1000, 600 * 8000 - 1), (10, 6, 2, 10 * 16 * 3)])
def test_pool_blocks_stay_within_the_budget_and_cover_every_entry_once(n_s, n_w, d, budget, monkeypatch) -> None:
    """Where one window of all samples is over `POOL_CHUNK_BYTES` (3,000 samples x 32,768 SAE features: 786 MB
    gathered at once), samples are split too, so no gathered block is over the budget (down to one sample-window)."""
    from interp.embed import cohort

    monkeypatch.setattr(cohort, "POOL_CHUNK_BYTES", budget)
    seen = np.zeros((n_s, n_w), dtype=int)
    for rows, windows in cohort._window_chunks(n_s, n_w, d):
        seen[rows, windows] += 1
        size = (rows.stop - rows.start) * (windows.stop - windows.start) * 2 * d * 4
        assert size <= max(budget, 2 * d * 4), (rows, windows)
    assert (seen == 1).all()


def _former_sample_means(mat, seq_index, keep_haplotypes):
    """`cohort_tables`' sample table before `_sample_means` (verbatim but for the return): the whole
    [n_samples, 2, d] float64 total, its mean over windows and the haplotypes' mean held at once."""
    from interp.embed.cohort import _window_chunks

    n_s, n_w = seq_index.shape[:2]
    d = mat.shape[-1]
    total = np.zeros((n_s, 2, d), dtype=np.float64)
    for rows, sl in _window_chunks(n_s, n_w, d):
        total[rows] += mat[seq_index[rows, sl]].sum(axis=1, dtype=np.float64)
    per_hap = total / max(n_w, 1)
    x = per_hap.mean(axis=1).astype(np.float32)
    haps = (per_hap[:, 0].astype(mat.dtype), per_hap[:, 1].astype(mat.dtype)) if keep_haplotypes else None
    return x, haps


@pytest.mark.parametrize("keep_haplotypes", [False, True])
@pytest.mark.parametrize("budget", [1, 2 * 7 * 8 * 5, 2 * 7 * 4 * 37 * 3, 1 << 27])
def test_sample_means_in_sample_blocks_are_the_former_bits(keep_haplotypes, budget, monkeypatch) -> None:
    """The sample table is summed over blocks of samples (the [samples, 2, d] float64 total within
    `POOL_CHUNK_BYTES`, not 1.5 GB at 3,000 samples x 32,768 SAE features): the same bits as the whole-cohort
    total for every budget (one sample-window, several samples, several windows, everything at once), on
    values over 60 binary orders of magnitude with both signs and two that cancel (+-2^60), where a change in
    the order of the float64 sums shows."""
    import pandas as pd

    from interp.embed import cohort

    monkeypatch.setattr(cohort, "POOL_CHUNK_BYTES", budget)
    rng = np.random.default_rng(7)
    n_s, n_w, d, n_seq = 37, 9, 7, 23
    mat = (rng.choice([-1.0, 1.0], (n_seq, d)) * 2.0 ** rng.integers(-30, 30, (n_seq, d))
           * rng.random((n_seq, d))).astype(np.float32)
    mat[:2] = [[2.0 ** 60], [-(2.0 ** 60)]]  # cancel each other: what is added between them is lost
    seq_index = rng.integers(0, n_seq, (n_s, n_w, 2))
    x, haps = cohort._sample_means(mat, seq_index, keep_haplotypes)
    fx, fhaps = _former_sample_means(mat, seq_index, keep_haplotypes)
    assert x.dtype == np.float32 and x.tobytes() == fx.tobytes()
    if keep_haplotypes:
        for got, want in zip(haps, fhaps, strict=True):
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    else:
        assert haps is None
    # summing the windows in another order changes bits here: the comparison can see a change of order
    other, _ = _former_sample_means(mat, seq_index[:, ::-1], keep_haplotypes)
    assert other.tobytes() != fx.tobytes()
    # and the tables carry them
    obs = pd.DataFrame(index=[f"s{i}" for i in range(n_s)])
    windows = pl.DataFrame({"window_id": [f"chr1:{100 * w}-{100 * w + 50}" for w in range(n_w)],
                            "region": ["g"] * n_w})
    name, table = next(cohort.cohort_tables({"sae": mat}, seq_index, obs, np.zeros((n_s, 2)), windows, "m", "b",
                                            keep_haplotypes=keep_haplotypes))
    assert name == "sae.features.h5ad" and table.X.tobytes() == fx.tobytes()
    assert ("hap1" in table.obsm) == keep_haplotypes
    if keep_haplotypes:
        assert table.obsm["hap2"].tobytes() == fhaps[1].tobytes()
