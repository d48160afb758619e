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
