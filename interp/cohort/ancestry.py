"""Genotype PCA (plink2-style standardisation), neighbours, UMAP and Leiden clusters with scanpy."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import polars as pl
import scanpy as sc

from interp.cohort.vcf import Genotypes
from interp.errors import InputError


def genotype_anndata(genotypes: Genotypes, samples: pl.DataFrame) -> anndata.AnnData:
    """samples x variants AnnData; X float32 ALT dosage (0/1/2, NaN missing).

    obs: the samples table indexed by sample_id, in the genotypes' sample order.
    var (index variant_id "contig:pos:ref:alt"): contig, pos, ref, alt, alt_freq (ALT frequency among
    called alleles), maf, missing_rate (fraction of samples with a missing call).
    """
    table = samples.to_pandas().set_index("sample_id")
    absent = [s for s in genotypes.samples if s not in table.index]
    if absent:
        raise InputError(f"samples table has no row for {len(absent)} VCF samples, e.g. {', '.join(absent[:20])}")
    obs = table.loc[genotypes.samples]
    obs.index = obs.index.astype(str)
    dosage = genotypes.dosage().T  # [n_samples, n_var]
    called = ~np.isnan(dosage)
    n_called = called.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        alt_freq = np.where(n_called > 0, np.nansum(dosage, axis=0) / (2 * np.maximum(n_called, 1)), np.nan)
    ids = [f"{c}:{p}:{r}:{a}" for c, p, r, a in zip(genotypes.contig, genotypes.pos, genotypes.ref,
                                                     genotypes.alt, strict=True)]
    var = pd.DataFrame({
        "contig": np.asarray(genotypes.contig, dtype=str), "pos": genotypes.pos, "ref": genotypes.ref,
        "alt": genotypes.alt, "alt_freq": alt_freq, "maf": np.minimum(alt_freq, 1 - alt_freq),
        "missing_rate": 1 - n_called / max(dosage.shape[0], 1),
    }, index=pd.Index(ids, name="variant_id"))
    if not var.index.is_unique:
        var.index = pd.Index([f"{v}#{k}" for k, v in enumerate(ids)], name="variant_id")
    return anndata.AnnData(X=dosage.astype(np.float32), obs=obs, var=var)


def standardise_genotypes(dosage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """plink2's variance-standardised genotypes.

    dosage: [n_samples, n_var] ALT counts, NaN missing. p = ALT frequency among called alleles;
    returns ((x - 2p) / sqrt(2p(1-p)) with missing set to 0, i.e. mean-imputed) [n_samples, n_var]
    float32 and p [n_var].
    """
    called = ~np.isnan(dosage)
    p = np.nansum(dosage, axis=0) / (2 * np.maximum(called.sum(axis=0), 1))
    scale = np.sqrt(2 * p * (1 - p))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (dosage - 2 * p) / scale
    z[~called] = 0.0
    z[:, scale == 0] = 0.0
    return z.astype(np.float32), p


def _orient(scores: np.ndarray, loadings: np.ndarray) -> None:
    """In place: flip each PC so that its largest-|score| sample has a positive score."""
    for k in range(scores.shape[1]):
        if scores[np.argmax(np.abs(scores[:, k])), k] < 0:
            scores[:, k] *= -1
            loadings[:, k] *= -1


def genotype_pca(
    adata: anndata.AnnData,
    maf_min: float = 0.05,
    max_missing: float = 0.5,
    n_pcs: int = 10,
    seed: int = 0,
    n_neighbors: int = 15,
    leiden_resolution: float = 0.5,
    umap_and_clusters: bool = True,
) -> anndata.AnnData:
    """Genotype PCA, UMAP and Leiden clusters of a `genotype_anndata` matrix.

    Keeps variants with maf >= maf_min and missing_rate <= max_missing, standardises like plink2
    --pca (see `standardise_genotypes`), runs scanpy PCA (covariance eigendecomposition:
    deterministic), orients each PC so its largest-|score| sample is positive, then neighbours,
    UMAP and Leiden (igraph flavour) with `seed` (skipped when umap_and_clusters is False; the first
    call in a process spends ~20 s compiling numba code).
    Returns a new AnnData over the kept variants: X standardised float32, layers["dosage"],
    obsm["X_pca"] [n_samples, n_pcs], varm["PCs"], uns["pca"]["variance_ratio"], obsm["X_umap"],
    obs["cluster"] (categorical), uns["genotype_pca"] (filters and counts).
    """
    keep = (adata.var["maf"].to_numpy() >= maf_min) & (adata.var["missing_rate"].to_numpy() <= max_missing)
    n_keep = int(keep.sum())
    max_pcs = min(adata.n_obs, n_keep) - 1
    if max_pcs < 2:
        raise InputError(f"genotype PCA: only {n_keep} variants pass maf >= {maf_min} and missing <= "
                         f"{max_missing} for {adata.n_obs} samples; need at least 3 of each")
    n_pcs = min(n_pcs, max_pcs)
    result = adata[:, keep].copy()
    dosage = np.asarray(result.X, dtype=np.float64)
    result.layers["dosage"] = dosage.astype(np.float32)
    result.X, _ = standardise_genotypes(dosage)
    sc.pp.pca(result, n_comps=n_pcs, zero_center=True, svd_solver="covariance_eigh", random_state=seed)
    _orient(result.obsm["X_pca"], result.varm["PCs"])
    if umap_and_clusters:
        _embed_and_cluster(result, n_neighbors, leiden_resolution, seed)
    result.uns["genotype_pca"] = {"maf_min": maf_min, "max_missing": max_missing, "n_variants": n_keep,
                                  "n_pcs": n_pcs, "seed": seed}
    return result


def _embed_and_cluster(result: anndata.AnnData, n_neighbors: int, leiden_resolution: float, seed: int) -> None:
    sc.pp.neighbors(result, n_neighbors=min(n_neighbors, result.n_obs - 1), use_rep="X_pca",
                    random_state=seed)
    sc.tl.umap(result, random_state=seed)
    sc.tl.leiden(result, resolution=leiden_resolution, key_added="cluster", flavor="igraph", n_iterations=2,
                 directed=False, random_state=seed)
