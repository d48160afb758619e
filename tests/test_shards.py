"""interp.cohort.shards: haplotypes and embeddings computed per shard of regions, then gathered, give the
unsharded run's tables: the haplotype tables the same rows (in shard order: gathered one shard at a time), the
embedding tables built from them byte for byte (h5ad files compared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from interp.cohort.haplotypes import SEQUENCE_SCHEMA, cohort_haplotype_windows, read_sequences
from interp.cohort.shards import (
    count_bed_regions,
    count_cohort_regions,
    gather_haplotype_files,
    gather_haplotypes,
    gather_shard_files,
    gather_vectors,
    haplotype_stats,
    read_vectors,
    shard_count,
    shard_index,
    shard_names,
    shard_slice,
    write_vectors,
)
from interp.cohort.vcf import Genotypes
from interp.errors import InputError
from interp.genome.regions import Region


def test_shard_arithmetic() -> None:
    assert shard_count(5, 0) == 1 and shard_count(5, 2) == 3 and shard_count(4, 2) == 2
    assert shard_names(5, 2) == ["s0000", "s0001", "s0002"]
    assert [shard_slice(5, 2, i) for i in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert shard_slice(5, 0, 0) == slice(0, 5)
    assert shard_index("s0012") == 12
    with pytest.raises(InputError, match="does not exist"):
        shard_slice(5, 2, 3)
    with pytest.raises(InputError, match="s<4 digits>"):
        shard_index("shard1")
    with pytest.raises(InputError, match="no regions"):
        shard_count(0, 1)


def test_bed_regions_counted_as_read_bed_reads_them(tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\n# comment\nchr1\t0\t10\ta\n\nchr1 20 30\nbrowser position\nchr2\t5\t9\n")
    assert count_bed_regions(bed) == 3
    assert count_cohort_regions(["G1", "G2"], bed) == 5 and count_cohort_regions(["G1"], None) == 1


def _cohort(n_samples: int = 6) -> tuple[dict, Genotypes, list[Region]]:
    """A random 3 kb contig whose last region repeats the first one's bases (sequences shared across shards),
    SNVs, an insertion and a deletion, phased and unphased calls, 6 samples; regions not in name order."""
    rng = np.random.default_rng(1)
    bases = "".join(rng.choice(list("ACGT"), size=3000))
    bases = bases[:2500] + bases[100:500] + bases[2900:]
    regions = [Region("g1", "chr1", 100, 700), Region("g2", "chr1", 900, 1500), Region("g3", "chr1", 1600, 2400),
               Region("g0", "chr1", 2500, 2900)]
    pos0 = sorted(set(rng.choice(np.r_[150:650, 950:1450, 1650:2350], size=40, replace=False).tolist()))
    ref = [bases[p] for p in pos0]
    alt = ["ACGT"[("ACGT".index(r) + 1) % 4] for r in ref]
    alt[3] = ref[3] + "TTA"  # insertion
    ref[7], alt[7] = bases[pos0[7]:pos0[7] + 3], bases[pos0[7]]  # deletion
    gt = rng.integers(0, 2, size=(len(pos0), n_samples, 2)).astype(np.int8)
    gt[5, 0, 1] = -1  # one missing call
    phased = rng.random((len(pos0), n_samples)) > 0.1
    geno = Genotypes(samples=[f"S{i}" for i in range(n_samples)], contig=np.array(["chr1"] * len(pos0)),
                     pos=np.array(pos0, dtype=np.int64) + 1, ref=ref, alt=alt, gt=gt, phased=phased)
    return {"chr1": bases}, geno, regions


def _write(df: pl.DataFrame, path: Path) -> bytes:
    from interp.stages import write_table

    write_table(df, path)
    return path.read_bytes()


def _sharded(fasta, geno, regions, shard_genes: int, width: int = 200):
    parts = []
    for i in range(shard_count(len(regions), shard_genes)):
        part = regions[shard_slice(len(regions), shard_genes, i)]
        a, d = cohort_haplotype_windows(fasta, geno, part, width, width, missing="N", unphased="N")
        parts.append((a, d, haplotype_stats(a, d.height, len(geno.samples), [r.name for r in part], "N", "N")))
    return parts


def _in_shard_order(parts: list[pl.DataFrame], table: pl.DataFrame) -> None:
    """`table` holds the shards' rows in shard order, each shard's rows sorted by (sample, hap, window_index)."""
    offset = 0
    for a in parts:
        mine = table.slice(offset, a.height)
        assert mine.select("region", "start").unique().sort("region", "start").equals(
            a.select("region", "start").unique().sort("region", "start"))
        assert mine.select("sample", "hap", "window_index").rows() == sorted(
            mine.select("sample", "hap", "window_index").rows())
        offset += a.height
    assert offset == table.height


@pytest.mark.parametrize("shard_genes", [1, 2, 3, 4])
def test_gathered_haplotypes_are_the_unsharded_tables(tmp_path: Path, shard_genes: int) -> None:
    """The assignments the same rows (the gather writes one shard at a time, so rows come in shard order, each
    shard's sorted by (sample, hap, window_index): compared sorted; with one shard, 4 genes, in the same order); the
    distinct sequences the same rows (gc included), in shard order, each shard's rows by hash, whether gathered in
    memory or written by the rule's streaming gather, which writes each table as one row group per shard and the
    same bytes on rerun."""
    import pyarrow.parquet as pq

    fasta, geno, regions = _cohort()
    assign, dist = cohort_haplotype_windows(fasta, geno, regions, 200, 200, missing="N", unphased="N")
    stats = haplotype_stats(assign, dist.height, len(geno.samples), [r.name for r in regions], "N", "N")
    parts = _sharded(fasta, geno, regions, shard_genes)
    g_assign, g_dist, g_stats = gather_haplotypes(*[list(x) for x in zip(*parts, strict=True)])
    assert g_stats == stats
    assert g_assign.schema == assign.schema
    assert g_assign.sort("sample", "hap", "window_index").equals(assign)
    assert g_assign.equals(assign) == (len(parts) == 1)  # out of the unsharded order only when sharded
    _in_shard_order([a for a, _, _ in parts], g_assign)
    assert g_dist.sort("seq_hash").equals(dist)
    assert g_dist.schema == SEQUENCE_SCHEMA
    # the rule's way: shard files in, both tables streamed to files
    files = {"a": [], "d": []}
    for i, (a, d, _) in enumerate(parts):
        for key, table in (("a", a), ("d", d)):
            files[key].append(tmp_path / f"{key}{i}.parquet")
            table.write_parquet(files[key][-1])
    f_stats = gather_haplotype_files(files["a"], files["d"], [s for _, _, s in parts], tmp_path / "out" / "hap.parquet",
                                     tmp_path / "out" / "seq.parquet")
    written = pl.read_parquet(tmp_path / "out" / "seq.parquet")
    assert f_stats == stats and written.equals(g_dist)
    assert pl.read_parquet(tmp_path / "out" / "hap.parquet").equals(g_assign)
    assert pq.ParquetFile(tmp_path / "out" / "hap.parquet").metadata.num_row_groups == len(parts)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hap.parquet", "seq.parquet"]
    first = (tmp_path / "out" / "hap.parquet").read_bytes()
    gather_haplotype_files(files["a"], files["d"], [s for _, _, s in parts], tmp_path / "out" / "hap.parquet",
                           tmp_path / "out" / "seq.parquet")
    assert (tmp_path / "out" / "hap.parquet").read_bytes() == first
    expected_order = [h for i, (_, d, _) in enumerate(parts) for h in d["seq_hash"]
                      if all(h not in set(e["seq_hash"]) for _, e, _ in parts[:i])]
    assert written["seq_hash"].to_list() == expected_order
    # the repeated region's windows are shared sequences: counted once, haplotype counts summed
    per_shard = sum(d.height for _, d, _ in parts)
    assert per_shard > dist.height or len(parts) < 3 and per_shard >= dist.height


def _renumbered_by_dict(assign: pl.DataFrame) -> pl.DataFrame:
    """renumber_windows' contract, written plainly: window_index = rank of (region, start) among the distinct
    pairs sorted by region then start, rows sorted by sample, hap, window_index, window_index last."""
    pairs = sorted(set(zip(assign["region"].to_list(), assign["start"].to_list(), strict=True)))
    rank = {pair: i for i, pair in enumerate(pairs)}
    window = [rank[pair] for pair in zip(assign["region"].to_list(), assign["start"].to_list(), strict=True)]
    return (assign.drop("window_index").with_columns(pl.Series("window_index", window, dtype=pl.Int64))
            .sort(["sample", "hap", "window_index"]))


def test_gather_numbers_windows_as_the_whole_table_renumbering(tmp_path: Path) -> None:
    """The gather numbers windows over all shards from their (region, start) pairs alone, as renumber_windows
    numbers the shards' tables concatenated whole (its contract written plainly, `_renumbered_by_dict`): the same
    rows (compared sorted: the gather keeps shard order), whether given the files or the frames, with shards whose
    region names sort out of shard order (g0 last) and sequences repeated across shards."""
    from interp.cohort.haplotypes import renumber_windows

    fasta, geno, regions = _cohort()
    for shard_genes in (1, 3):
        parts = _sharded(fasta, geno, regions, shard_genes)
        files = {"a": [], "d": []}
        for i, (a, d, _) in enumerate(parts):
            for key, table in (("a", a), ("d", d)):
                files[key].append(str(tmp_path / f"{key}{shard_genes}_{i}.parquet"))
                table.write_parquet(files[key][-1])
        expected = _renumbered_by_dict(pl.concat([a for a, _, _ in parts]))
        assert renumber_windows([a for a, _, _ in parts]).equals(expected)
        assert renumber_windows(pl.concat([a for a, _, _ in parts])).equals(expected)
        g_assign, g_dist, _ = gather_haplotypes(files["a"], files["d"], [s for _, _, s in parts])
        f_assign, f_dist, _ = gather_haplotypes(*[list(x) for x in zip(*parts, strict=True)])
        assert g_assign.columns == expected.columns and g_assign.dtypes == expected.dtypes
        assert g_assign.sort("sample", "hap", "window_index").equals(expected)
        assert g_dist.equals(f_dist) and f_assign.equals(g_assign)
        _in_shard_order([a for a, _, _ in parts], g_assign)


def test_gather_sorts_a_shard_out_of_order_and_refuses_shards_of_other_columns(tmp_path: Path) -> None:
    """A shard whose rows are not sorted by (sample, hap, window_index) (a table written otherwise) is sorted, it
    alone; a shard lacking a needed column or with other columns than the first raises InputError naming its
    file before anything is written."""
    from interp.cohort.shards import write_gathered_haplotypes

    fasta, geno, regions = _cohort()
    parts = [a for a, _, _ in _sharded(fasta, geno, regions, 2)]
    shuffled = [parts[0], parts[1].sample(fraction=1.0, shuffle=True, seed=3)]
    assert not shuffled[1].equals(parts[1])
    files = []
    for i, a in enumerate(shuffled):
        files.append(tmp_path / f"a{i}.parquet")
        a.write_parquet(files[-1])
    assert write_gathered_haplotypes(files, tmp_path / "hap.parquet") == (sum(a.height for a in parts),
                                                                            parts[0]["window_index"].n_unique()
                                                                            + parts[1]["window_index"].n_unique())
    assert pl.read_parquet(tmp_path / "hap.parquet").equals(gather_haplotypes(parts, [_seqs([])] * 2, [
        {"n_samples": 6, "missing_policy": "N", "unphased_policy": "N", "regions": []}] * 2)[0])
    parts[1].drop("contig").write_parquet(tmp_path / "other.parquet")
    parts[1].drop("start").write_parquet(tmp_path / "nostart.parquet")
    for bad, message in (("other.parquet", r"other\.parquet: the haplotype windows table's columns"),
                         ("nostart.parquet", r"nostart\.parquet: the haplotype windows table has no column start")):
        with pytest.raises(InputError, match=message):
            write_gathered_haplotypes([files[0], tmp_path / bad], tmp_path / "out" / "hap.parquet")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _seqs(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    from interp.cohort.haplotypes import gc_fraction

    return pl.DataFrame([(h, x, n, gc_fraction(x)) for h, x, n in rows], schema=SEQUENCE_SCHEMA, orient="row")


def test_streamed_sequences_sum_a_shared_sequence_and_keep_its_gc(tmp_path: Path) -> None:
    """A sequence held by two shards: one row, its counts summed, sequence and gc as the shards wrote them; rows
    of the first shard holding them, in shard order; the file written by the rule's gather says the same."""
    from interp.cohort.shards import gathered_sequences, write_gathered_sequences

    shards = [_seqs([("a1", "GGGA", 2), ("b2", "ACGT", 3)]), _seqs([]), _seqs([("b2", "ACGT", 4), ("c0", "NNAT", 1)]),
              _seqs([("0z", "CCNN", 5), ("c0", "NNAT", 6)])]
    paths = []
    for i, table in enumerate(shards):
        paths.append(tmp_path / f"s{i}.parquet")
        table.write_parquet(paths[-1])
    expected = [("a1", "GGGA", 2, 0.75), ("b2", "ACGT", 7, 0.5), ("c0", "NNAT", 7, 0.0), ("0z", "CCNN", 5, 1.0)]
    assert pl.concat(list(gathered_sequences(shards))).rows() == expected
    assert write_gathered_sequences(paths, tmp_path / "out" / "seq.parquet") == 4
    written = pl.read_parquet(tmp_path / "out" / "seq.parquet")
    assert written.schema == SEQUENCE_SCHEMA and written.rows() == expected
    # written by rows groups, one per shard holding a first row, not as one table
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "out" / "seq.parquet").metadata.num_row_groups == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seq.parquet"]


def test_streamed_sequences_refuse_a_shard_without_gc_and_write_nothing(tmp_path: Path) -> None:
    """A shard table from before the gc column: InputError naming its file, no output (not even a partial one),
    an existing output kept."""
    from interp.cohort.shards import write_gathered_sequences

    good, old = tmp_path / "s0.parquet", tmp_path / "s1.parquet"
    _seqs([("a1", "GGGA", 2)]).write_parquet(good)
    _seqs([("b2", "ACGT", 3)]).drop("gc").write_parquet(old)
    out = tmp_path / "out"
    out.mkdir()
    (out / "seq.parquet").write_bytes(b"former")
    with pytest.raises(InputError, match=r"s1\.parquet: the distinct-sequence table has no column gc"):
        write_gathered_sequences([good, old], out / "seq.parquet")
    assert [p.name for p in out.iterdir()] == ["seq.parquet"] and (out / "seq.parquet").read_bytes() == b"former"
    with pytest.raises(InputError, match="shard 1: the distinct-sequence table has no column gc"):
        gather_haplotypes([pl.DataFrame()] * 2, [_seqs([]), _seqs([]).drop("gc")],
                          [{"n_samples": 1, "missing_policy": "N", "unphased_policy": "N", "regions": []}] * 2)


def test_gather_refuses_shards_of_other_policies() -> None:
    fasta, geno, regions = _cohort()
    parts = _sharded(fasta, geno, regions, 2)
    a, d, s = (list(x) for x in zip(*parts, strict=True))
    s[1] = {**s[1], "missing_policy": "ref"}
    with pytest.raises(ValueError, match="missing_policy"):
        gather_haplotypes(a, d, s)


def test_gather_vectors_orders_rows_by_the_wanted_hashes(tmp_path: Path) -> None:
    parts = [(["b", "a"], {"x": np.array([[2.0], [1.0]], np.float32)}),
             (["c", "a"], {"x": np.array([[3.0], [9.0]], np.float32)})]  # "a" again: the first shard's row
    write_vectors(tmp_path / "v.npz", *parts[1])
    assert read_vectors(tmp_path / "v.npz")[0] == ["c", "a"]
    out = gather_vectors([parts[0], read_vectors(tmp_path / "v.npz")], ["a", "b", "c"])
    assert out["x"].tolist() == [[1.0], [2.0], [3.0]] and out["x"].dtype == np.float32
    with pytest.raises(ValueError, match="in no shard"):
        gather_vectors(parts, ["a", "z"])


def test_gather_vectors_refuses_a_shard_whose_rows_and_hashes_disagree() -> None:
    good = (["a"], {"x": np.array([[1.0]], np.float32)})
    for bad in [(["b", "c"], {"x": np.array([[2.0], [3.0], [4.0]], np.float32)}),
                (["b", "c"], {"x": np.array([[2.0]], np.float32)})]:
        with pytest.raises(ValueError, match="2 sequence hashes"):
            gather_vectors([good, bad], ["a", "b"])


def test_gather_shard_files_sums_cache_counts(tmp_path: Path) -> None:
    import json

    paths, stats = [], []
    for i, (hashes, vec) in enumerate([(["b"], [[2.0]]), (["a"], [[1.0]])]):
        write_vectors(tmp_path / f"{i}.npz", hashes, {"x": np.array(vec, np.float32)})
        (tmp_path / f"{i}.json").write_text(json.dumps({"cache": {"hits": i, "misses": 3},
                                                        "devices": ["cpu" if i == 0 else "cuda"]}))
        paths.append(str(tmp_path / f"{i}.npz"))
        stats.append(str(tmp_path / f"{i}.json"))
    pooled, extra = gather_shard_files(paths, stats, ["a", "b"])
    assert pooled["x"].tolist() == [[1.0], [2.0]]
    # the shards' devices are gathered, so a run mixing CPU and GPU numerics says so (caveat mixed_devices)
    assert extra == {"n_shards": 2, "cache": {"hits": 1, "misses": 6}, "devices": ["cpu", "cuda"]}
    assert gather_shard_files(paths[0], [stats[0]], ["b"])[1]["devices"] == ["cpu"]
    assert gather_shard_files(paths[0], [], ["b"])[1] == {"n_shards": 1, "cache": None, "devices": []}
    # one shard's stats as a plain path, as its vectors (it was read character by character)
    assert gather_shard_files(paths[0], stats[0], ["b"])[1]["devices"] == ["cpu"]
    with pytest.raises(ValueError, match="2 vector files but 1 stats files"):
        gather_shard_files(paths, stats[:1], ["a", "b"])


def test_sharded_embedding_tables_are_the_unsharded_tables_byte_for_byte(tmp_path: Path) -> None:
    """Haplotypes and tiny-LM embeddings per shard (each through its own cache-less embedding), gathered,
    pooled: the h5ad files equal the unsharded run's."""
    import anndata as ad
    import pandas as pd

    from interp.embed.cohort import embed_cohort_tables, embed_distinct_windows
    from interp.embed.tiny import TinyEmbedder
    from interp.lm.model import TinyDNALM, TinyLMConfig
    from interp.lm.pretrain import save_checkpoint
    from interp.sae.config import SAEConfig
    from interp.sae.train import build_sae

    torch.manual_seed(0)
    save_checkpoint(TinyDNALM(TinyLMConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64, dropout=0.0)),
                    tmp_path / "lm.safetensors")
    emb = TinyEmbedder(tmp_path / "lm.safetensors")
    sae = build_sae(SAEConfig(n_features=32, k=4, architecture="topk"), 16)
    fasta, geno, regions = _cohort()
    obs = pd.DataFrame({"population": ["A", "B"] * 3}, index=geno.samples)
    genotypes = ad.AnnData(obs=obs)
    genotypes.obsm["X_pca"] = np.random.default_rng(0).normal(size=(6, 2))
    layers = ["block1", "block2"]

    def tables(pooled, seqs, assign, folder: Path) -> dict[str, bytes]:
        it, _ = embed_cohort_tables(None, seqs, assign, genotypes, "tiny-dnalm", layers, None, None, "block2",
                                    keep_haplotypes=True, pooled=pooled)
        folder.mkdir()
        out = {}
        for name, table in it:
            table.write_h5ad(folder / name)
            out[name] = (folder / name).read_bytes()
        return out

    assign, dist = cohort_haplotype_windows(fasta, geno, regions, 200, 200, missing="N", unphased="N")
    dist = dist.sort("seq_hash")
    plain = embed_distinct_windows(emb, dist["sequence"].to_list(), layers, 8, sae, "block2")
    parts = _sharded(fasta, geno, regions, 1)
    vectors = []
    for _, d, _ in parts:
        d = d.sort("seq_hash")
        vectors.append((d["seq_hash"].to_list(),
                        embed_distinct_windows(emb, d["sequence"].to_list(), layers, 8, sae, "block2")))
    # as the rules run: the gathered sequences written, then read as embed_cohort reads them (hash and gc, sorted)
    files = []
    for i, (_, d, _) in enumerate(parts):
        files.append(tmp_path / f"d{i}.parquet")
        d.write_parquet(files[-1])
    a_files = []
    for i, (a, _, _) in enumerate(parts):
        a_files.append(tmp_path / f"a{i}.parquet")
        a.write_parquet(a_files[-1])
    gather_haplotype_files(a_files, files, [s for _, _, s in parts], tmp_path / "hap.parquet", tmp_path / "seq.parquet")
    # in shard order, not the unsharded table's (sorted by sample throughout): the tables below do not depend on it
    g_assign = pl.read_parquet(tmp_path / "hap.parquet")
    assert not g_assign.equals(assign) and g_assign.sort("sample", "hap", "window_index").equals(assign)
    g_dist = read_sequences(tmp_path / "seq.parquet", ["seq_hash", "gc"]).sort("seq_hash")
    gathered = gather_vectors(vectors, g_dist["seq_hash"].to_list())
    for name in plain:
        assert np.array_equal(gathered[name], plain[name]), name
    one = tables(plain, dist, assign, tmp_path / "unsharded")
    many = tables(gathered, g_dist, g_assign, tmp_path / "sharded")
    assert list(one) == list(many) and len(one) == 6
    for name in one:
        assert one[name] == many[name], name
    gc = ad.read_h5ad(tmp_path / "sharded" / "block1.samples.h5ad").obs["gc"]
    assert gc.between(0.3, 0.7).all() and gc.nunique() > 1  # the samples' gc, equal in both (bytes above)

    # the embed_cohort rule on the shards' files reads no sequence: a cohort table stripped of them gives the same
    from interp import stages

    c = tmp_path / "rule"
    c.mkdir()
    pl.read_parquet(tmp_path / "seq.parquet").drop("sequence").write_parquet(c / "seq.parquet")
    g_assign.write_parquet(c / "hap.parquet")
    genotypes.write_h5ad(c / "geno.h5ad")
    shard_vectors = []
    for i, (hashes, vecs) in enumerate(vectors):
        shard_vectors.append(str(c / f"v{i}.npz"))
        write_vectors(shard_vectors[-1], hashes, vecs)
    params = {"layers": layers, "sae_layer": "block2", "batch_size": 8, "device": "cpu", "cache": None,
              "keep_haplotypes": True}

    def job(sequences: Path, out: str) -> stages.Job:
        return stages.Job(input={"card": "models/tiny-dnalm.yaml", "sequences": str(sequences),
                                 "assignments": str(c / "hap.parquet"), "genotypes": str(c / "geno.h5ad"),
                                 "shard_vectors": shard_vectors, "shard_stats": []},
                          output={"out_dir": str(c / out), "stats": str(c / f"{out}.json")}, params=params)

    stages.embed_cohort(job(c / "seq.parquet", "emb"))
    assert sorted(p.name for p in (c / "emb").iterdir()) == sorted(one)
    for name in one:
        assert (c / "emb" / name).read_bytes() == one[name], name
    pl.read_parquet(tmp_path / "seq.parquet").drop("gc").write_parquet(c / "old.parquet")  # an older run's table
    with pytest.raises(InputError, match=r"old\.parquet: the distinct-sequence table has no column gc"):
        stages.embed_cohort(job(c / "old.parquet", "emb2"))
    assert not (c / "emb2").exists()


def test_haplotypes_rule_gathers_shard_files_into_its_outputs(tmp_path: Path) -> None:
    """interp.stages.haplotypes on shard files (as the gather rule runs it): both tables written one shard at a
    time (one row group per shard) with the in-memory gather's rows and the unsharded run's stats."""
    import json

    import pyarrow.parquet as pq

    from interp import stages

    fasta, geno, regions = _cohort()
    assign, dist = cohort_haplotype_windows(fasta, geno, regions, 200, 200, missing="N", unphased="N")
    parts = _sharded(fasta, geno, regions, 1)
    inputs: dict[str, list[str]] = {"shard_assignments": [], "shard_sequences": [], "shard_stats": []}
    for i, (a, d, s) in enumerate(parts):
        for key, write in (("shard_assignments", a.write_parquet), ("shard_sequences", d.write_parquet),
                           ("shard_stats", lambda p, s=s: Path(p).write_text(json.dumps(s)))):
            inputs[key].append(str(tmp_path / f"{key}{i}"))
            write(inputs[key][-1])
    out = {"assignments": str(tmp_path / "c" / "haplotypes.parquet"),
           "sequences": str(tmp_path / "c" / "sequences.parquet"), "stats": str(tmp_path / "c" / "stats.json")}
    stages.haplotypes(stages.Job(input=inputs, output=out))
    g_assign, g_dist, g_stats = gather_haplotypes(*[list(x) for x in zip(*parts, strict=True)])
    assert pl.read_parquet(out["assignments"]).equals(g_assign)
    assert pl.read_parquet(out["assignments"]).sort("sample", "hap", "window_index").equals(assign)
    assert pl.read_parquet(out["sequences"]).equals(g_dist)
    assert json.loads(Path(out["stats"]).read_text()) == json.loads(json.dumps(g_stats))
    assert g_stats == haplotype_stats(assign, dist.height, len(geno.samples), [r.name for r in regions], "N", "N")
    assert pq.ParquetFile(out["assignments"]).metadata.num_row_groups == len(parts) == 4
