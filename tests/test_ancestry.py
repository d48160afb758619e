"""Genotype PCA: plink2 oracle on real 1000 Genomes data; planted structure; determinism."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from interp.cohort.ancestry import genotype_anndata, genotype_pca, standardise_genotypes
from interp.cohort.vcf import Genotypes, read_genotypes
from interp.errors import InputError

KG = Path("tests/data/1kg_pilot_chr2_10038-40424.vcf.gz")


@pytest.fixture(scope="module")
def kg():
    genotypes = read_genotypes(KG)
    return genotype_anndata(genotypes, pl.DataFrame({"sample_id": genotypes.samples}))


def _planted(seed: int = 0, n_per_pop: int = 40, n_var: int = 200) -> Genotypes:
    """Two populations with different allele frequencies; 5% missing calls."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, size=(2, n_var))
    gt = np.concatenate([rng.random((n_var, n_per_pop, 2)) < p[k][:, None, None] for k in range(2)], axis=1)
    gt = gt.astype(np.int8)
    gt[rng.random(gt.shape) < 0.05] = -1
    n = 2 * n_per_pop
    return Genotypes(samples=[f"s{i}" for i in range(n)], contig=np.array(["chr1"] * n_var, dtype=object),
                     pos=np.arange(1, n_var + 1, dtype=np.int64), ref=["A"] * n_var, alt=["G"] * n_var, gt=gt,
                     phased=np.ones((n_var, n), dtype=bool))


def test_anndata_dosage_and_variant_stats(kg):
    assert kg.shape == (629, 381)
    assert kg.var_names[0] == "2:10038:C:A"
    x = kg.X
    assert set(np.unique(x[~np.isnan(x)])) <= {0.0, 1.0, 2.0}
    missing = np.isnan(x).mean(axis=0)
    np.testing.assert_allclose(kg.var["missing_rate"], missing, atol=1e-9)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(kg.var["alt_freq"], np.nanmean(x, axis=0) / 2, atol=1e-6)


def test_standardisation_matches_definition():
    dosage = np.array([[0, 2], [1, np.nan], [2, 0], [np.nan, 1]], dtype=float)
    z, p = standardise_genotypes(dosage)
    np.testing.assert_allclose(p, [0.5, 0.5])
    np.testing.assert_allclose(z[:, 0], [(0 - 1) / np.sqrt(0.5), 0, (2 - 1) / np.sqrt(0.5), 0], rtol=1e-6)
    assert z[1, 1] == 0 and z[3, 0] == 0  # missing -> 0 (mean imputation)


def test_pca_separates_planted_populations_and_is_deterministic():
    genotypes = _planted()
    samples = pl.DataFrame({"sample_id": genotypes.samples, "population": ["A"] * 40 + ["B"] * 40})
    adata = genotype_anndata(genotypes, samples)
    a = genotype_pca(adata, n_pcs=5, seed=3, umap_and_clusters=False)
    b = genotype_pca(adata, n_pcs=5, seed=3, umap_and_clusters=False)
    np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])
    pc1 = a.obsm["X_pca"][:, 0]
    is_a = (a.obs["population"] == "A").to_numpy()
    assert min(pc1[is_a].max(), pc1[~is_a].max()) < max(pc1[is_a].min(), pc1[~is_a].min())  # disjoint
    ratio = a.uns["pca"]["variance_ratio"]
    assert ratio[0] > 2 * ratio[1]
    scores = a.obsm["X_pca"]
    assert all(scores[np.argmax(np.abs(scores[:, k])), k] > 0 for k in range(scores.shape[1]))


def test_too_few_variants_is_input_error(kg):
    with pytest.raises(InputError, match="variants pass maf"):
        genotype_pca(kg, maf_min=0.499)


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_pca_matches_plink2(kg, tmp_path):
    # plink2 keeps all-missing variants through --maf (their frequency is NaN) but they add nothing
    # to the GRM; max_missing=1.0 keeps every called variant, like plink2.
    subprocess.run(["plink2", "--vcf", str(KG), "--maf", "0.05", "--pca", "2", "--double-id",
                    "--set-missing-var-ids", "@:#", "--out", str(tmp_path / "pc")], check=True,
                   capture_output=True)
    plink = pl.read_csv(tmp_path / "pc.eigenvec", separator="\t")
    ours = genotype_pca(kg, maf_min=0.05, max_missing=1.0, n_pcs=4, seed=0)
    lookup = dict(zip(plink["IID"], zip(plink["PC1"], plink["PC2"], strict=True), strict=True))
    theirs = np.array([lookup[s] for s in ours.obs_names])
    for k in range(2):
        r = np.corrcoef(theirs[:, k], ours.obsm["X_pca"][:, k])[0, 1]
        assert abs(r) > 0.99, (k, r)
    # the full pipeline ran: UMAP and Leiden clusters for every sample
    assert ours.obsm["X_umap"].shape == (629, 2)
    assert ours.obs["cluster"].notna().all() and ours.obs["cluster"].nunique() >= 2


# ---------------------------------------------------------------- genome-wide marker panels


def _structured_vcf(path: Path, seed: int = 0, n_per_pop: int = 100, n_markers: int = 3000) -> list[str]:
    """Three populations drifted from a common frequency (Balding-Nichols, Fst ~0.05 and ~0.1), 2% missing."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0.05, 0.95, n_markers)
    pops = []
    for fst in (0.05, 0.05, 0.1):
        a = p0 * (1 - fst) / fst
        pops.append(rng.beta(a, (1 - p0) * (1 - fst) / fst))
    freq = np.repeat(np.stack(pops), n_per_pop, axis=0)  # [n_samples, n_markers]
    hap = (rng.random((2, *freq.shape)) < freq).astype(int)
    samples = [f"s{i}" for i in range(freq.shape[0])]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=100000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])]
    missing = rng.random(freq.shape) < 0.02
    for j in range(n_markers):
        calls = ["./." if missing[i, j] else f"{hap[0, i, j]}|{hap[1, i, j]}" for i in range(len(samples))]
        lines.append("\t".join(["1", str(1000 + 30 * j), f"m{j}", "A", "G", ".", ".", ".", "GT", *calls]))
    path.write_text("\n".join(lines) + "\n")
    return samples


def test_randomized_marker_pca_equals_exact_pca(tmp_path):
    from interp.cohort.ancestry import randomized_genotype_pca, read_marker_dosages

    vcf = tmp_path / "markers.vcf"
    samples = _structured_vcf(vcf, n_markers=1500)
    markers = read_marker_dosages(vcf, samples, maf_min=0.05, chunk_records=256)  # many small blocks
    assert markers.n_read == 1500 and all(b.dtype == np.int8 for b in markers.blocks)
    scores, ratio = randomized_genotype_pca(markers, n_pcs=4, seed=1)
    exact = genotype_pca(genotype_anndata(read_genotypes(vcf), pl.DataFrame({"sample_id": samples})),
                         maf_min=0.05, n_pcs=4, umap_and_clusters=False)
    assert exact.uns["genotype_pca"]["n_variants"] == markers.n_kept
    for k in range(2):  # the structured PCs: the same up to numerical precision
        r = np.corrcoef(scores[:, k], exact.obsm["X_pca"][:, k])[0, 1]
        assert r > 0.999, (k, r)  # both oriented the same way
        np.testing.assert_allclose(ratio[k], exact.uns["pca"]["variance_ratio"][k], rtol=1e-3)


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_marker_pca_matches_plink2(tmp_path):
    from interp.cohort.ancestry import marker_pca, read_marker_dosages

    vcf = tmp_path / "markers.vcf"
    samples = _structured_vcf(vcf, seed=4)
    subprocess.run(["plink2", "--vcf", str(vcf), "--maf", "0.05", "--pca", "3", "--double-id",
                    "--out", str(tmp_path / "pc")], check=True, capture_output=True)
    plink = pl.read_csv(tmp_path / "pc.eigenvec", separator="\t")
    table = pl.DataFrame({"sample_id": samples, "population": np.repeat(["A", "B", "C"], 100)})
    ours = marker_pca(read_marker_dosages(vcf, samples, maf_min=0.05, chunk_records=500), table, n_pcs=4, seed=0)
    lookup = dict(zip(plink["IID"], zip(plink["PC1"], plink["PC2"], strict=True), strict=True))
    theirs = np.array([lookup[s] for s in ours.obs_names])
    for k in range(2):
        r = np.corrcoef(theirs[:, k], ours.obsm["X_pca"][:, k])[0, 1]
        assert abs(r) > 0.99, (k, r)
    assert ours.obsm["X_umap"].shape == (300, 2) and ours.obs["cluster"].nunique() >= 2
