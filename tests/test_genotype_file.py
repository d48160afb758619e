"""interp.cohort.genotype_file: the audit reads genotypes.h5ad's dosage columns a block at a time, and gets
the same numbers as from the AnnData loaded whole."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interp.cohort.genotype_file import DosageColumns, GenotypeFile, dosage_columns
from interp.errors import InputError


def _genotypes(n: int = 40, v: int = 30, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    dosage = rng.integers(0, 3, size=(n, v)).astype(np.float32)
    dosage[rng.random((n, v)) < 0.05] = np.nan
    # two contigs interleaved: chr2's columns are scattered through the file, chr1's 10-19 adjacent
    contig = np.where(np.arange(v) % 3 == 0, "chr2", "chr1")
    var = pd.DataFrame({"contig": contig, "pos": np.arange(v) * 100 + 1}, index=[f"v{j}" for j in range(v)])
    adata = ad.AnnData(X=np.nan_to_num(dosage - 1.0), obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]), var=var)
    adata.layers["dosage"] = dosage
    return adata


def _expected(adata: ad.AnnData, ids: list[str], span: list | None) -> tuple[np.ndarray, list[str]]:
    cols = np.ones(adata.n_vars, dtype=bool)
    if span is not None:
        pos0 = adata.var["pos"].to_numpy() - 1
        cols = (adata.var["contig"].to_numpy() == span[0]) & (pos0 >= span[1]) & (pos0 < span[2])
    rows = [adata.obs_names.get_loc(s) for s in ids]
    return adata.layers["dosage"][rows][:, cols], list(adata.var_names[cols])


@pytest.mark.parametrize("span", [None, ["chr1", 1000, 2000], ["chr2", 0, 3000], ["chr3", 0, 10]],
                         ids=["all", "adjacent", "scattered", "none"])
def test_columns_read_from_disk_equal_the_loaded_anndata(tmp_path, span) -> None:
    adata = _genotypes()
    path = tmp_path / "genotypes.h5ad"
    adata.write_h5ad(path)
    ids = [f"s{i}" for i in np.random.default_rng(1).permutation(adata.n_obs)[:33]]  # another order, a subset
    want, want_ids = _expected(adata, ids, span)
    with GenotypeFile(path) as g:
        view, got_ids = dosage_columns(g, ids, span)
        assert got_ids == want_ids and view.shape == want.shape
        np.testing.assert_array_equal(np.asarray(view), want)  # NaN where missing, in the same places
        for lo in range(0, want.shape[1], 4):  # the blocks variant_directions asks for
            np.testing.assert_array_equal(view[:, lo:lo + 4], want[:, lo:lo + 4])
        mask = np.arange(len(ids)) % 3 != 0
        np.testing.assert_array_equal(np.asarray(view[mask]), want[mask])
    in_memory, mem_ids = dosage_columns(adata, ids, span)  # a notebook's AnnData: same interface
    assert mem_ids == want_ids
    np.testing.assert_array_equal(np.asarray(in_memory), want)


def test_nothing_is_read_before_a_block_is_asked_for() -> None:
    class Source:
        shape = (5, 100)
        reads: list = []

        def __getitem__(self, key):
            self.reads.append(key)
            return np.arange(500, dtype=np.float32).reshape(5, 100)[key]

    source = Source()
    view = DosageColumns(source, np.array([4, 0, 2]), np.arange(10, 30))
    sub = view[np.array([True, False, True])]
    assert source.reads == [] and sub.shape == (2, 20)
    block = sub[:, 0:5]
    assert source.reads == [(slice(None), slice(10, 15))]  # a block reads only its own columns
    np.testing.assert_array_equal(block, np.arange(500).reshape(5, 100)[[4, 2]][:, 10:15])
    with pytest.raises(TypeError):
        view[0]
    with pytest.raises(IndexError):
        view[np.array([True, False])]


def test_a_sparse_dosage_layer_and_a_missing_sample(tmp_path) -> None:
    adata = _genotypes()
    adata.layers["dosage"] = sp.csr_matrix(np.nan_to_num(adata.layers["dosage"]))
    path = tmp_path / "sparse.h5ad"
    adata.write_h5ad(path)
    with GenotypeFile(path) as g:
        view, _ = dosage_columns(g, ["s3", "s1"], ["chr1", 0, 500])
        np.testing.assert_array_equal(np.asarray(view), adata.layers["dosage"].toarray()[[3, 1]][:, [1, 2, 4]])
        with pytest.raises(InputError, match=r"lack sample 'x9' of the embedding table \(2 missing\)"):
            dosage_columns(g, ["s1", "x9", "x8"])


def test_a_file_that_is_not_genotypes_h5ad_is_an_input_error(tmp_path) -> None:
    path = tmp_path / "genotypes.h5ad"
    path.write_text("contig\tpos\n")
    with pytest.raises(InputError, match="genotypes.h5ad: not a readable genotypes.h5ad"):
        GenotypeFile(path)


def test_the_audit_reads_the_same_numbers_from_disk_and_shares_directions_across_phenotypes(tmp_path, monkeypatch):
    """audit_embedding with the file open lazily gives the AnnData's numbers; the scan's directions are computed
    once for the phenotypes with the same samples and again for one with a missing value."""
    import interp.audit as audit_module
    from interp.audit import AuditConfig
    from interp.audit_summary import audit_embedding

    rng = np.random.default_rng(2)
    n, v = 240, 12
    geno = _genotypes(n, v, seed=3)
    dose = np.nan_to_num(geno.layers["dosage"], nan=1.0)
    population = np.repeat(["A", "B"], n // 2)
    liability = 1.2 * (dose[:, 4] - 1) + 0.3 * (population == "B")
    obs = pd.DataFrame({"p1": (liability + rng.logistic(size=n) > 1).astype(float),
                        "p2": (rng.random(n) < 0.3).astype(float), "population": population},
                       index=geno.obs_names)
    obs["p3"] = obs["p1"].where(np.arange(n) != 7)  # one sample without a value: its own directions
    table = ad.AnnData(X=(dose @ rng.normal(size=(v, 8)) + rng.normal(scale=0.5, size=(n, 8))).astype(np.float32),
                       obs=obs)
    table.obsm["X_pca"] = (population == "B")[:, None] + rng.normal(scale=0.3, size=(n, 2))
    table.uns.update({"model": "m", "layer": "block1"})
    path = tmp_path / "genotypes.h5ad"
    geno[::-1].copy().write_h5ad(path)
    cfg = AuditConfig(n_folds=3, bootstrap=20, max_null_replicates=99, seed=0)
    calls = []
    original = audit_module.variant_directions
    monkeypatch.setattr(audit_module, "variant_directions", lambda *a, **k: calls.append(1) or original(*a, **k))
    kw = {"population_column": "population", "max_null_replicates": 99}
    with GenotypeFile(path) as g:
        lazy = audit_embedding(table, None, ["p1", "p2", "p3"], cfg, [], genotypes=g, **kw)
    assert len(calls) == 2  # p1 and p2 share; p3 has one sample fewer
    loaded = audit_embedding(table, None, ["p1", "p2", "p3"], cfg, [], genotypes=geno, **kw)
    for (a, _), (b, _) in zip(lazy, loaded, strict=True):
        assert a["variant_scan_variant"] == b["variant_scan_variant"]
        for key in ("p_within", "within_statistic", "variant_scan_statistic", "variant_scan_m_eff"):
            assert a[key] == b[key], key
    assert lazy[0][0]["variant_scan_variant"] == "v4"


def test_read_genotypes_leaves_out_the_standardised_x(tmp_path) -> None:
    from interp.cohort.genotype_file import read_genotypes

    adata = _genotypes()
    adata.obsm["X_pca"] = np.arange(80, dtype=np.float64).reshape(40, 2)
    adata.uns["pca"] = {"variance_ratio": np.array([0.3, 0.1])}
    path = tmp_path / "genotypes.h5ad"
    adata.write_h5ad(path)
    geno = read_genotypes(path)
    assert geno.X is None and geno.shape == adata.shape
    np.testing.assert_array_equal(geno.layers["dosage"], adata.layers["dosage"])
    np.testing.assert_array_equal(geno.obsm["X_pca"], adata.obsm["X_pca"])
    pd.testing.assert_frame_equal(geno.var, adata.var)
    assert list(geno.obs_names) == list(adata.obs_names) and geno.uns["pca"]["variance_ratio"][0] == 0.3
    meta = read_genotypes(path, dosage=False)  # the samples' ancestry only
    assert meta.X is None and len(meta.layers) == 0 and meta.n_vars == adata.n_vars
    del adata.layers["dosage"]  # a file whose X is the dosage
    adata.write_h5ad(path)
    np.testing.assert_array_equal(read_genotypes(path).layers["dosage"], adata.X)
    meta_only = ad.AnnData(obs=adata.obs, var=adata.var)  # no matrix at all: the ancestry is readable, dosages not
    meta_only.write_h5ad(path)
    assert read_genotypes(path, dosage=False).n_vars == adata.n_vars
    with pytest.raises(InputError, match=r"neither layers\['dosage'\] nor X"):
        read_genotypes(path)
    with pytest.raises(InputError, match=r"neither layers\['dosage'\] nor X"):
        GenotypeFile(path)
