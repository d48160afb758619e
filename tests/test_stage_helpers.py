"""Library functions that the rule layer (`interp/stages.py`) calls, on small hand-built inputs: window
renumbering across regions, the merge of marker-panel PCs, cohort embedding pooling, the audit's summaries
and masking, and the rank stage's inputs (phenotype values, feature families, locus annotation)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest


# ---------------------------------------------------------------- haplotype windows
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


def test_merge_region_windows_adds_contig_window_id_and_sums_shared_sequences() -> None:
    from interp.cohort.haplotypes import merge_region_windows

    a = _assignments("g2", [0, 10], samples=("s1", "s2"))
    b = _assignments("g1", [30], samples=("s1", "s2"))
    d1 = pl.DataFrame({"seq_hash": ["h2", "h1"], "sequence": ["CC", "AA"], "n_haplotypes": [3, 1]})
    d2 = pl.DataFrame({"seq_hash": ["h1", "h3"], "sequence": ["AA", "GG"], "n_haplotypes": [2, 5]})
    assign, dist = merge_region_windows([a, b], [d1, d2], {"g1": "chr1", "g2": "chr2"})
    assert dist.rows() == [("h1", "AA", 3), ("h2", "CC", 3), ("h3", "GG", 5)]
    first = assign.filter((pl.col("sample") == "s2") & (pl.col("hap") == 2)).sort("window_index")
    assert first["window_id"].to_list() == ["chr1:30-40", "chr2:0-10", "chr2:10-20"]
    assert first["contig"].to_list() == ["chr1", "chr2", "chr2"]
    assert first["window_index"].to_list() == [0, 1, 2]
    with pytest.raises(pl.exceptions.InvalidOperationError):
        merge_region_windows([a], [d1], {"g1": "chr1"})  # a region without a contig


# ---------------------------------------------------------------- ancestry
def _genotypes(samples: list[str], gt: np.ndarray):
    """Genotypes from gt [n_var, n_samples, 2] (-1 missing), all phased, on chr1 at 1, 2, ..."""
    from interp.cohort.vcf import Genotypes

    n_var = gt.shape[0]
    return Genotypes(samples=samples, contig=np.array(["chr1"] * n_var, dtype=object),
                     pos=np.arange(1, n_var + 1, dtype=np.int64), ref=["A"] * n_var, alt=["G"] * n_var,
                     gt=gt.astype(np.int8), phased=np.ones((n_var, len(samples)), dtype=bool))


def _small_adata():
    import anndata as ad
    import pandas as pd

    X = np.array([[0, 1, 2], [0, np.nan, 1], [0, np.nan, 0], [1, np.nan, 1]], dtype=np.float32)
    var = pd.DataFrame({"maf": [0.01, 0.2, 0.3], "missing_rate": [0.0, 0.75, 0.0]},
                       index=pd.Index(["v1", "v2", "v3"], name="variant_id"))
    obs = pd.DataFrame({"population": ["A", "A", "B", "B"]}, index=[f"s{i}" for i in range(4)])
    return ad.AnnData(X=X, obs=obs, var=var)


def test_merge_marker_pcs_filters_region_variants_and_copies_the_panel_pcs() -> None:
    import anndata as ad
    import pandas as pd

    from interp.cohort.ancestry import merge_marker_pcs

    adata = _small_adata()
    pcs = ad.AnnData(obs=pd.DataFrame({"cluster": pd.Categorical(["0", "0", "1", "1"])}, index=adata.obs_names))
    pcs.obsm["X_pca"] = np.arange(8, dtype=np.float32).reshape(4, 2)
    pcs.uns["pca"] = {"variance_ratio": np.array([0.6, 0.1])}
    source = {"vcf": "panel.vcf.gz", "n_markers": 7}
    out = merge_marker_pcs(adata, pcs, source, maf_min=0.05, max_missing=0.5)
    assert out.var_names.tolist() == ["v3"]  # v1: maf 0.01; v2: 75% missing
    np.testing.assert_array_equal(out.layers["dosage"][:, 0], [2, 1, 0, 1])
    np.testing.assert_array_equal(out.X, out.layers["dosage"])
    np.testing.assert_array_equal(out.obsm["X_pca"], pcs.obsm["X_pca"])
    assert "X_umap" not in out.obsm
    assert out.obs["cluster"].astype(str).tolist() == ["0", "0", "1", "1"]
    assert out.obs["population"].tolist() == ["A", "A", "B", "B"]
    assert out.uns["ancestry_source"] == source
    assert out.uns["pca"] is not pcs.uns["pca"]
    assert adata.n_vars == 3  # the input is left as it was
    with pytest.raises(ValueError, match="different samples"):
        merge_marker_pcs(adata, pcs[::-1].copy(), source)


def test_cohort_ancestry_without_panel_uses_region_variants_and_records_missing_rate() -> None:
    from interp.cohort.ancestry import cohort_ancestry

    rng = np.random.default_rng(3)
    n, n_var = 30, 40
    gt = (rng.random((n_var, n, 2)) < rng.uniform(0.2, 0.8, (n_var, 1, 1))).astype(np.int8)
    gt[0, :, :] = 0  # monomorphic: dropped by the MAF filter
    gt[1, :3, :] = -1  # 3 samples miss variant 1
    samples = [f"s{i}" for i in range(n)]
    out = cohort_ancestry(_genotypes(samples, gt), pl.DataFrame({"sample_id": samples}), maf_min=0.05, n_pcs=1,
                          seed=0, umap_and_clusters=False)
    assert out.obsm["X_pca"].shape == (n, 2)  # at least 2 PCs
    assert out.uns["ancestry_source"] == {"vcf": "cohort", "n_markers": n_var - 1}
    expected = np.zeros(n)
    expected[:3] = 1 / n_var  # over all the regions' variants, before the filter
    np.testing.assert_allclose(out.obs["missing_rate"].to_numpy(), expected)
    assert "dosage" in out.layers


def test_cohort_ancestry_with_panel_takes_the_pcs_from_the_panel(tmp_path) -> None:
    from interp.cohort.ancestry import cohort_ancestry, marker_pca, read_marker_dosages
    from tests.test_ancestry import _structured_vcf

    panel = tmp_path / "panel.vcf"
    samples = _structured_vcf(panel, n_per_pop=12, n_markers=300)
    rng = np.random.default_rng(0)
    gt = (rng.random((20, len(samples), 2)) < 0.4).astype(np.int8)
    table = pl.DataFrame({"sample_id": samples})
    out = cohort_ancestry(_genotypes(samples, gt), table, maf_min=0.05, n_pcs=3, seed=1, panel=str(panel),
                          umap_and_clusters=False)
    markers = read_marker_dosages(str(panel), samples, maf_min=0.05)
    direct = marker_pca(markers, table, n_pcs=3, seed=1, umap_and_clusters=False)
    np.testing.assert_array_equal(out.obsm["X_pca"], direct.obsm["X_pca"])
    assert out.uns["ancestry_source"] == {"vcf": "panel.vcf", "n_markers": markers.n_kept,
                                          "n_markers_read": 300, "method": "randomized blockwise SVD"}
    np.testing.assert_array_equal(out.X, out.layers["dosage"])  # region dosages, not standardised


# ---------------------------------------------------------------- cohort embedding pooling
def _cohort_inputs():
    """2 samples x 2 windows x 2 haplotypes over 3 distinct sequences (rows of `pooled`)."""
    import anndata as ad
    import pandas as pd

    sequences = pl.DataFrame({"seq_hash": ["h0", "h1", "h2"], "sequence": ["GGCC", "AATT", "GANN"]})
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
    from interp.embed.cohort import gc_fraction

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


def test_pool_cohort_means_over_haplotypes_and_windows() -> None:
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
    w = tables["block1.windows.h5ad"]
    np.testing.assert_allclose(w.X, [[1.0, 15.0, 4.0, 40.0], [2.0, 20.0, 2.0, 25.0]])  # window-major
    assert w.var_names.tolist() == ["m/block1/chr1:0-50/dim0", "m/block1/chr1:0-50/dim1",
                                    "m/block1/chr1:100-150/dim0", "m/block1/chr1:100-150/dim1"]
    assert w.var["dim"].tolist() == [0, 1, 0, 1]
    assert w.var["start"].tolist() == [0, 0, 100, 100]
    f = tables["sae.features.h5ad"]
    np.testing.assert_allclose(f.X, [[(1 + 0 + 3 + 3) / 4], [(0 + 0 + 1 + 3) / 4]])
    assert f.uns["layer"] == "block2" and f.uns["kind"] == "sae"
    assert tables["sae.windows.h5ad"].var_names.tolist() == ["m/block2/chr1:0-50/f0", "m/block2/chr1:100-150/f0"]
    plain = dict(pool_cohort(pooled, sequences, assign, geno, "m", "block2"))
    assert "hap1" not in plain["block1.samples.h5ad"].obsm


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


# ---------------------------------------------------------------- audit summaries
def test_mask_small_groups_hides_counts_below_five() -> None:
    from interp.audit_summary import mask_small_groups

    groups = [{"population": "A", "n": 4, "auroc": 0.7}, {"population": "B", "n": 5, "auroc": 0.6},
              {"population": "C", "n": np.int64(2), "auroc": 0.9}, {"population": "D", "auroc": 0.5},
              {"population": "E", "n": "<5"}]
    out = mask_small_groups(groups)
    assert out == [{"population": "A", "n": "<5"}, groups[1], {"population": "C", "n": "<5"},
                   {"population": "D", "n": "<5"}, groups[4]]
    assert mask_small_groups(groups, min_n=3)[0] == groups[0]
    assert mask_small_groups([]) == []


def test_attribution_summary_counts_and_orders() -> None:
    from interp.audit_summary import attribution_summary

    m = 12
    attribution = pl.DataFrame({
        "feature": np.arange(m), "p_ancestry": np.linspace(0.001, 0.9, m)[::-1],
        "q_ancestry": [0.01, 0.04, 0.05, 0.06] + [0.5] * (m - 4),
        "p_phenotype": np.linspace(0.001, 0.9, m), "q_phenotype": [0.2] * (m - 1) + [0.001],
        "ancestry_dominated": [True, True] + [False] * (m - 2)})
    s = attribution_summary(attribution)
    assert (s["n_features"], s["n_ancestry_significant"], s["n_phenotype_significant"],
            s["n_ancestry_dominated"]) == (12, 3, 1, 2)
    assert [r["feature"] for r in s["top_ancestry"]] == list(range(11, 1, -1))
    assert [r["feature"] for r in s["top_phenotype"]] == list(range(10))


def test_sae_feature_leakage_finds_the_population_feature_and_skips_dead_ones() -> None:
    from interp.audit_summary import sae_feature_leakage

    rng = np.random.default_rng(0)
    n = 80
    population = np.repeat(["A", "B"], n // 2)
    is_b = (population == "B").astype(float)
    pcs = (is_b + rng.normal(scale=0.1, size=n))[:, None]
    y = rng.integers(0, 2, n).astype(float)
    F = np.column_stack([np.zeros(n), 3 * is_b + rng.normal(scale=0.2, size=n), rng.normal(size=n)])
    assert sae_feature_leakage(None, y, pcs, population) is None
    out = sae_feature_leakage(F, y, pcs, population)
    assert out["n_features_alive"] == 2
    assert out["n_features_population_auroc_over_0.8"] == 1
    assert out["top_leaky"][0]["feature"] == 1  # the column of F, not of the alive features
    assert {r["feature"] for r in out["top_leaky"]} == {1, 2}


def _result(phenotype: str, layer: str, by_population: list[dict]) -> dict:
    return {"phenotype": phenotype, "model": "m", "layer": layer, "verdict": "PASS", "verdict_rule": "r",
            "reason": "why", "reasons": ["why"], "multiplicity": "holm over 2 verdicts", "null_method": "permute",
            "strata_source": "labels", "thresholds": {"t": 1}, "covariates": {}, "descriptors": {"gc": {"r": 0.1}},
            "by_population": by_population, "between_group_difference": 0.2, "auroc_lopo_by_population": {},
            "p_within": 0.01, "n": 40, "auroc_ci": None}


def test_audit_tables_rows_sorted_scalars_only_and_details_masked() -> None:
    from interp.audit_summary import audit_tables

    results = [_result("z", "block1", [{"population": "A", "n": 3}, {"population": "B", "n": 37}]),
               _result("a", "block2", [{"population": "A", "n": 20}, {"population": "B", "n": 20}])]
    extras = [{"attribution": {"n_features": 4}, "sae_feature_leakage": None}] * 2
    table, details = audit_tables(results, extras, "impute")
    assert table["phenotype"].to_list() == ["a", "z"]
    assert table.columns[:3] == ["phenotype", "model", "layer"]
    assert table.columns[-1] == "reasons" and table["reasons"].to_list() == ["why", "why"]
    assert "thresholds" not in table.columns and "by_population" not in table.columns
    assert "auroc_ci" in table.columns and "p_within" in table.columns
    assert [d["phenotype"] for d in details] == ["z", "a"]  # input order
    assert details[0]["by_population"] == [{"population": "A", "n": "<5"}, {"population": "B", "n": 37}]
    assert details[0]["covariate_policy"] == {"missing": "impute", "covariates": {},
                                              "descriptors_not_adjusted_for": ["gc"]}
    assert details[0]["attribution"] == {"n_features": 4} and details[0]["sae_feature_leakage"] is None
    assert details[1]["by_stratum"] == []


def test_audit_embedding_one_group_without_population_labels() -> None:
    import anndata as ad
    import pandas as pd

    from interp.audit import AuditConfig
    from interp.audit_summary import audit_embedding

    rng = np.random.default_rng(1)
    n = 60
    obs = pd.DataFrame({"pheno": rng.integers(0, 2, n).astype(float), "gc": rng.normal(0.4, 0.01, n),
                        "population": np.repeat(["A", "B"], n // 2)}, index=[f"s{i}" for i in range(n)])
    table = ad.AnnData(X=rng.normal(size=(n, 3)).astype(np.float32), obs=obs)
    table.obsm["X_pca"] = rng.normal(size=(n, 2))
    table.uns.update({"model": "m", "layer": "block1"})
    cfg = AuditConfig(n_folds=3, bootstrap=10, max_null_replicates=99, seed=0)
    [(res, extra)] = audit_embedding(table, None, ["pheno"], cfg, [], max_null_replicates=99)
    assert (res["phenotype"], res["model"], res["layer"]) == ("pheno", "m", "block1")
    assert [g["population"] for g in res["by_population"]] == ["all"]
    assert list(res["descriptors"]) == ["gc"]
    assert extra["attribution"]["n_features"] == 3 and extra["sae_feature_leakage"] is None
    [(labelled, _)] = audit_embedding(table, None, ["pheno"], cfg, [], population_column="population",
                                      max_null_replicates=99)
    assert sorted(g["population"] for g in labelled["by_population"]) == ["A", "B"]


# ---------------------------------------------------------------- rank inputs
def test_phenotype_values_numbers_missing_and_text() -> None:
    import pandas as pd

    from interp.errors import InputError
    from interp.rank_inputs import phenotype_values

    got = phenotype_values(pd.Series(["1", None, "0", 2.5, np.nan], dtype=object), "p")
    np.testing.assert_array_equal(got, [1.0, np.nan, 0.0, 2.5, np.nan])
    with pytest.raises(InputError, match="phenotype 'p' has non-numeric value 'case'"):
        phenotype_values(pd.Series(["1", "case"], dtype=object), "p")


def test_variant_family_positions_names_and_dosage() -> None:
    import anndata as ad
    import pandas as pd

    from interp.rank_inputs import variant_family

    var = pd.DataFrame({"contig": ["chr1", "chr1", "chr2"], "pos": [10, 20, 30]},
                       index=["chr1:10:A:G", "chr1:20:CT:C", "odd"])
    geno = ad.AnnData(X=np.zeros((2, 3), dtype=np.float32), var=var)
    geno.layers["dosage"] = np.array([[0, 1, 2], [np.nan, 2, 0]], dtype=np.float32)
    fam = variant_family(geno)
    assert (fam.name, fam.kind) == ("variant", "variant")
    assert fam.short_names == ["chr1:10 A>G", "chr1:20 CT>C", "odd"]
    np.testing.assert_array_equal(fam.start, [9, 19, 29])
    np.testing.assert_array_equal(fam.end, [10, 20, 30])
    np.testing.assert_array_equal(fam.matrix, geno.layers["dosage"])
    del geno.layers["dosage"]
    np.testing.assert_array_equal(variant_family(geno).matrix, np.zeros((2, 3)))  # X without a dosage layer


def test_window_family_follows_the_sample_order() -> None:
    import anndata as ad
    import pandas as pd

    from interp.rank_inputs import window_family

    var = pd.DataFrame({"contig": ["chr1"] * 2, "start": [100, 100], "end": [150, 150], "dim": [0, 1]},
                       index=["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"])
    w = ad.AnnData(X=np.array([[1, 2], [3, 4]], dtype=np.float32), obs=pd.DataFrame(index=["s2", "s1"]), var=var)
    w.uns.update({"kind": "sae", "model": "m", "layer": "b2"})
    fam = window_family(w, ["s1", "s2"])
    assert (fam.name, fam.kind, fam.model, fam.layer) == ("sae:m/b2", "sae", "m", "b2")
    np.testing.assert_array_equal(fam.matrix, [[3, 4], [1, 2]])
    assert fam.short_names == ["b2 chr1:100-150 f0", "b2 chr1:100-150 f1"]
    assert fam.features == ["m/b2/chr1:100-150/f0", "m/b2/chr1:100-150/f1"]


def test_annotate_loci_against_a_tiny_annotation() -> None:
    from interp.rank_inputs import annotate_loci

    annotation = pl.DataFrame({"contig": ["chr1", "chr1", "chr1"], "start": [100, 200, 350], "end": [200, 400, 450],
                               "feature": ["exon", "intron", "exon"], "gene": ["G1", "G1", "G2"]})
    v_ids = np.array([f"v{i}" for i in range(8)])
    v_pos0 = np.array([160, 170, 180, 190, 210, 220, 500, 160])
    v_contig = np.array(["chr1"] * 7 + ["chr2"])
    t = pl.DataFrame({"kind": ["embedding", "embedding", "variant", "variant", "variant"],
                      "feature": ["w1", "w2", "v0", "v6", "v7"], "contig": ["chr1", "chr1", "chr1", "chr1", "chr2"],
                      "start": [150, 150, 160, 500, 160], "end": [300, 300, 161, 501, 161]},
                     schema_overrides={"start": pl.Int32, "end": pl.Int32})
    out = annotate_loci(t, annotation, v_contig, v_pos0, v_ids)
    assert out["feature"].to_list() == ["w1", "w2", "v0", "v6", "v7"]  # rows kept in order
    assert out.schema["start"] == pl.Int64
    rows = {r["feature"]: r for r in out.iter_rows(named=True)}
    assert rows["w1"]["window"] == "chr1:150-300" and rows["w1"]["gene"] == "G1" and rows["w1"]["exon_overlap"]
    assert rows["w1"]["nearest_variants"] == "v0,v1,v2,v3,v4"  # the first 5 of the 6 inside; not chr2's v7
    assert rows["v0"]["window"] == "chr1:150-300"  # the model window holding the variant
    assert (rows["v0"]["gene"], rows["v0"]["exon_overlap"], rows["v0"]["nearest_variants"]) == ("G1", True, "v0")
    assert (rows["v6"]["window"], rows["v6"]["gene"], rows["v6"]["exon_overlap"]) == ("", "", False)
    assert rows["v7"]["window"] == "" and rows["v7"]["nearest_variants"] == "v7"
    wide = annotate_loci(t.with_columns(pl.lit(150).alias("start"), pl.lit(380).alias("end")).head(1), annotation,
                         v_contig, v_pos0, v_ids)
    assert wide["gene"][0] == "G1,G2"
    bare = annotate_loci(t, None, v_contig, v_pos0, v_ids)
    assert set(bare["gene"]) == {""} and not bare["exon_overlap"].any()


def test_order_rank_table_sorts_and_puts_key_columns_first() -> None:
    from interp.rank_inputs import order_rank_table

    t = pl.DataFrame({"extra": ["e1", "e2", "e3", "e4"], "p": [0.1, 0.2, 0.3, 0.4],
                      "rank": [2, None, 1, 1], "family": ["variant", "variant", "variant", "sae:m/b"],
                      "phenotype": ["a", "a", "a", "a"]})
    out = order_rank_table(t)
    assert out.columns == ["phenotype", "family", "rank", "p", "extra"]
    assert out["extra"].to_list() == ["e4", "e3", "e1", "e2"]
