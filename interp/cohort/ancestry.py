"""Genotype PCA (plink2-style standardisation), neighbours, UMAP and Leiden clusters with scanpy.

Two routes: `genotype_pca` (scanpy, exact) for the few variants of a studied region, and `marker_pca`
for a genome-wide ancestry-marker VCF (100k-500k markers): int8 dosages read in chunks, then the exact
samples x samples Gram matrix accumulated one block at a time (up to `EXACT_MAX_SAMPLES` samples) or a
blockwise randomized block Krylov SVD beyond, run until it matches the exact PCs, never a float matrix of
the whole panel. Missing genotypes are
mean-imputed, as `plink2 --pca meanimpute` (plain `plink2 --pca` drops missing pairs instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

    Keeps polymorphic variants with maf >= maf_min and missing_rate <= max_missing, computes the PCs from the
    autosomal ones (`non_autosomal`: X, Y and MT are left out of the PCs, as plink2 --pca leaves them out, and
    kept in the result; where fewer than 3 autosomal ones pass, from all of them, `pcs_from_non_autosomal`),
    standardises like plink2
    --pca (see `standardise_genotypes`), runs scanpy PCA (covariance eigendecomposition:
    deterministic), orients each PC so its largest-|score| sample is positive, then neighbours,
    UMAP and Leiden (igraph flavour) with `seed` (skipped when umap_and_clusters is False; the first
    call in a process spends ~20 s compiling numba code).
    Returns a new AnnData over the kept variants: X standardised float32, layers["dosage"],
    obsm["X_pca"] [n_samples, n_pcs], varm["PCs"], uns["pca"]["variance_ratio"], obsm["X_umap"],
    obs["cluster"] (categorical), uns["genotype_pca"] (filters and counts).
    """
    maf = adata.var["maf"].to_numpy()
    # maf > 0: a monomorphic variant standardises to 0 and carries nothing (maf_min may be 0)
    keep = (maf >= maf_min) & (maf > 0) & (adata.var["missing_rate"].to_numpy() <= max_missing)
    # X, Y and MT variants stay in the returned genotypes but out of the PCs, as plink2 --pca leaves them out;
    # regions on them alone (an X-linked study without a marker panel) keep them, as before, and say so
    sex = non_autosomal(adata.var["contig"]) & keep
    only_non_autosomal = int((keep & ~sex).sum()) < 3 and sex.any()
    if only_non_autosomal:
        sex = np.zeros_like(sex)
    n_pca = int((keep & ~sex).sum())
    max_pcs = min(adata.n_obs, n_pca) - 1
    if max_pcs < 2:
        raise InputError(f"genotype PCA: only {n_pca} variants pass maf >= {maf_min} and missing <= "
                         f"{max_missing} for {adata.n_obs} samples; need at least 3 of each")
    n_pcs = min(n_pcs, max_pcs)
    n_keep = int(keep.sum())
    result = adata[:, keep].copy()
    dosage = np.asarray(result.X, dtype=np.float64)
    result.layers["dosage"] = dosage.astype(np.float32)
    result.X, _ = standardise_genotypes(dosage)
    on = ~sex[keep]
    target = result if on.all() else result[:, on].copy()
    if n_pca > target.n_obs:  # scanpy's covariance route would hold n_pca^2 float64 (10,000 variants: 800 MB)
        gram_pca(target, n_pcs)
    else:
        sc.pp.pca(target, n_comps=n_pcs, zero_center=True, svd_solver="covariance_eigh", random_state=seed)
    _orient(target.obsm["X_pca"], target.varm["PCs"])
    if target is not result:  # loadings 0 for the variants the PCs left out
        loadings = np.zeros((result.n_vars, n_pcs), dtype=target.varm["PCs"].dtype)
        loadings[on] = target.varm["PCs"]
        result.obsm["X_pca"], result.varm["PCs"], result.uns["pca"] = target.obsm["X_pca"], loadings, target.uns["pca"]
    if umap_and_clusters:
        _embed_and_cluster(result, n_neighbors, leiden_resolution, seed)
    result.uns["genotype_pca"] = {"maf_min": maf_min, "max_missing": max_missing, "n_variants": n_keep,
                                  "n_pca_variants": n_pca, "n_non_autosomal": int(sex.sum()), "n_pcs": n_pcs,
                                  "seed": seed, "pcs_from_non_autosomal": bool(only_non_autosomal)}
    return result


def top_eigenpairs(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of a symmetric Gram matrix [n, n]: vectors [n, k] and eigenvalues [k], largest
    first, clipped at 0 (rounding can make a PSD matrix's smallest slightly negative)."""
    eigenvalues, vectors = np.linalg.eigh(gram)
    top = np.argsort(eigenvalues)[::-1][:k]
    return vectors[:, top], np.clip(eigenvalues[top], 0, None)


#: variants per block of `gram_pca` (a float64 block of 2,048 variants x 3,000 samples is 49 MB)
GRAM_BLOCK_VARIANTS = 2048


def gram_pca(adata: anndata.AnnData, n_pcs: int, block: int = GRAM_BLOCK_VARIANTS) -> None:
    """In place, scanpy's exact zero-centred PCA of adata.X [n_samples, n_var] (`sc.pp.pca` with
    svd_solver="covariance_eigh": obsm["X_pca"] [n_samples, n_pcs], varm["PCs"] [n_var, n_pcs],
    uns["pca"] {params, variance, variance_ratio}), computed from the samples x samples Gram matrix of the
    centred columns, accumulated `block` variants at a time: memory n_samples^2 + n_samples x block float64,
    where the covariance route takes n_var^2 (a region's variants outnumber the samples at hundreds of genes:
    2,000 samples x 10,000 variants peaked at 3.8 GB and 141 s of CPU). The same PCs up to sign (orient them
    with `_orient`) and rounding.
    """
    x = adata.X
    n, d = x.shape
    gram = np.zeros((n, n))
    means = np.empty(d)
    for start in range(0, d, block):
        z = np.asarray(x[:, start:start + block], dtype=np.float64)
        means[start:start + z.shape[1]] = z.mean(axis=0)
        z -= means[start:start + z.shape[1]]
        gram += z @ z.T
    u, lam = top_eigenpairs(gram, n_pcs)
    singular = np.sqrt(lam)
    loadings = np.empty((d, n_pcs))
    for start in range(0, d, block):  # V = Z^T U / S, one block of variants at a time
        z = np.asarray(x[:, start:start + block], dtype=np.float64) - means[start:start + block]
        loadings[start:start + z.shape[1]] = z.T @ u
    loadings /= np.where(singular > 0, singular, 1.0)
    total = float(np.trace(gram))
    adata.obsm["X_pca"] = (u * singular).astype(np.float32)
    adata.varm["PCs"] = loadings.astype(np.float32)
    adata.uns["pca"] = {"params": {"zero_center": True, "use_highly_variable": False, "mask_var": None},
                        "variance": lam / max(n - 1, 1), "variance_ratio": lam / total if total > 0 else lam * 0}


def _embed_and_cluster(result: anndata.AnnData, n_neighbors: int, leiden_resolution: float, seed: int) -> None:
    sc.pp.neighbors(result, n_neighbors=min(n_neighbors, result.n_obs - 1), use_rep="X_pca",
                    random_state=seed)
    sc.tl.umap(result, random_state=seed)
    sc.tl.leiden(result, resolution=leiden_resolution, key_added="cluster", flavor="igraph", n_iterations=2,
                 directed=False, random_state=seed)


# ---------------------------------------------------------------- genome-wide marker panels


@dataclass
class MarkerDosages:
    """Genome-wide ancestry markers in compact form: int8 dosages in blocks of markers.

    samples: sample IDs, the columns of every block.
    blocks: list of int8 [n_markers_in_block, n_samples] ALT counts (0, 1, 2; -1 missing), markers that
        passed the MAF / missingness filters, in file order. 1 byte per genotype: 500k markers x 2,504
        samples take 1.25 GB, where a float64 matrix would take 10 GB.
    alt_freq: [n_kept] ALT frequency among called alleles of the kept markers.
    n_read: biallelic records read; n_kept: markers kept; n_near_regions: markers read but left out for lying
    in or near a studied region (`NearRegions`).
    """

    samples: list[str]
    blocks: list[np.ndarray]
    alt_freq: np.ndarray
    n_read: int
    n_kept: int
    n_near_regions: int = 0
    n_non_autosomal: int = 0  # markers read on X, Y or MT and left out (`non_autosomal`)
    n_uncalled: int = 0  # autosomal markers left in with no called genotype among the samples (no GT, all ./.)


@dataclass
class NearRegions:
    """The stretches of genome whose markers are left out of the ancestry panel: every studied region widened by
    `flank` bases on each side, so that the PCs are not made of the regions' own (maybe causal) variants or of
    markers in LD with them, which would let the ancestry adjustment take away the effect the audit looks for.

    spans: {FASTA contig: (starts [k], ends [k])}, 0-based half-open, merged and sorted. aliases: the config's
    reference.contig_aliases; a panel contig is matched to a region's contig by them and the chr-prefix rule
    (`interp.genome.fasta.resolve_contig`), and one that matches none has no region.
    """

    spans: dict[str, tuple[np.ndarray, np.ndarray]]
    flank: int
    aliases: dict[str, str] = field(default_factory=dict)
    _names: dict[str, str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, regions, flank: int, aliases: dict[str, str] | None = None) -> NearRegions:
        """From regions (objects with contig, start, end; 0-based half-open) and a flank in bases."""
        merged: dict[str, list[list[int]]] = {}
        for r in sorted(regions, key=lambda r: (str(r.contig), int(r.start))):
            lo, hi = max(0, int(r.start) - flank), int(r.end) + flank
            spans = merged.setdefault(str(r.contig), [])
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        arrays = {c: (np.array([a for a, _ in v], dtype=np.int64), np.array([b for _, b in v], dtype=np.int64))
                  for c, v in merged.items()}
        return cls(spans=arrays, flank=int(flank), aliases=dict(aliases or {}))

    def _contig(self, name: str) -> str | None:
        if name not in self._names:
            from interp.genome.fasta import check_alias_not_masking, resolve_contig

            try:
                self._names[name] = resolve_contig(name, self.spans, self.aliases, source="ancestry panel")
            except InputError:
                check_alias_not_masking(name, self.spans, self.aliases)  # a mistyped alias of a studied contig
                self._names[name] = None
        return self._names[name]

    def mask(self, contigs: list[str], pos: np.ndarray) -> np.ndarray:
        """[n] bool: marker i (contig name as the panel writes it, 1-based VCF position) lies in a span."""
        pos0 = np.asarray(pos, dtype=np.int64) - 1
        out = np.zeros(pos0.size, dtype=bool)
        names = np.asarray(contigs, dtype=object)
        for name in dict.fromkeys(contigs):
            contig = self._contig(str(name))
            if contig is None:
                continue
            starts, ends = self.spans[contig]
            rows = np.flatnonzero(names == name)
            k = np.searchsorted(starts, pos0[rows], side="right") - 1
            out[rows] = (k >= 0) & (pos0[rows] < ends[np.maximum(k, 0)])
        return out


#: genotypes per chunk of a marker VCF (int8 or float32 each): 2^26, 256 MB as float32
CHUNK_GENOTYPES = 2**26

#: contig names (without a chr prefix, upper case) that are not autosomes, as plink2 reads human contigs
#: (23-26 its numeric codes for X, Y, XY, MT): plink2 --pca leaves their variants out
NON_AUTOSOMES = frozenset({"X", "Y", "XY", "MT", "M", "23", "24", "25", "26"})


def non_autosomal(contigs) -> np.ndarray:
    """bool [n]: which contig names are sex chromosomes or the mitochondrion (`NON_AUTOSOMES`; `chrX`, `X`,
    `chrM`, `MT`, ...). Their variants stay out of the ancestry PCs, as plink2 --pca leaves them out: a male's
    haploid X call reads as dosage 0 or 2, so X markers make the lower PCs lean on sex."""
    bare = (str(c)[3:] if str(c).lower().startswith("chr") else str(c) for c in contigs)
    return np.fromiter((b.upper() in NON_AUTOSOMES for b in bare), dtype=bool)


def read_marker_dosages(vcf_path, samples: list[str], maf_min: float = 0.05, max_missing: float = 0.5,
                        chunk_records: int | None = None, near_regions: NearRegions | None = None) -> MarkerDosages:
    """Stream a marker VCF in chunks into `MarkerDosages`, keeping polymorphic markers with maf >= maf_min
    and missing rate <= max_missing, on autosomes (`non_autosomal`, counted in n_non_autosomal), and none in
    `near_regions` (counted in n_near_regions), never more than one chunk of unfiltered records in memory.

    chunk_records: markers per block; default keeps a chunk's decoding (over every sample of the VCF
    header, studied or not) and a block's float32 standardised copy (made one block at a time by the PCA)
    near 256 MB whatever the number of samples (4,096 markers up to 16k samples).
    """
    from interp.cohort.vcf import iter_dosage_chunks, read_vcf_header

    blocks, freqs, n_read, n_near, n_non_autosomal, n_uncalled = [], [], 0, 0, 0, 0
    n = len(samples)
    if chunk_records is None:  # a panel of many more samples than studied is decoded in full, chunk by chunk
        n_decoded = max(n, len(read_vcf_header(vcf_path).samples))
        chunk_records = int(max(16, min(4096, CHUNK_GENOTYPES // max(n_decoded, 1))))
    for chunk, info in iter_dosage_chunks(vcf_path, samples, chunk_records):
        n_read += chunk.shape[0]
        sex = non_autosomal(info["contig"])
        if sex.any():
            n_non_autosomal += int(sex.sum())
            chunk, info = chunk[~sex], {k: [v for v, x in zip(vals, sex, strict=True) if not x]
                                        for k, vals in info.items()}
        if near_regions is not None:
            near = near_regions.mask(info["contig"], np.asarray(info["pos"]))
            n_near += int(near.sum())
            chunk = chunk[~near]
        called = chunk >= 0
        n_called = called.sum(axis=1)
        n_uncalled += int((n_called == 0).sum())
        alt = np.where(called, chunk, 0).sum(axis=1) / (2 * np.maximum(n_called, 1))
        maf = np.minimum(alt, 1 - alt)
        # maf > 0: a monomorphic marker standardises to 0 and carries nothing (maf_min may be 0)
        keep = (n_called > 0) & (maf >= maf_min) & (maf > 0) & (1 - n_called / max(n, 1) <= max_missing)
        if keep.any():
            blocks.append(np.ascontiguousarray(chunk[keep]))
            freqs.append(alt[keep])
    alt_freq = np.concatenate(freqs) if freqs else np.zeros(0)
    return MarkerDosages(samples=list(samples), blocks=blocks, alt_freq=alt_freq, n_read=n_read,
                         n_kept=int(alt_freq.size), n_near_regions=n_near, n_non_autosomal=n_non_autosomal,
                         n_uncalled=n_uncalled)


def _standardised_blocks(markers: MarkerDosages):
    """Yield float32 [n_markers_in_block, n_samples] standardised genotypes, one block at a time
    (the `standardise_genotypes` definition: (x - 2p) / sqrt(2p(1-p)), missing -> 0)."""
    start = 0
    for block in markers.blocks:
        p = markers.alt_freq[start:start + block.shape[0]]
        start += block.shape[0]
        scale = np.sqrt(2 * p * (1 - p))
        inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0).astype(np.float32)
        z = (block.astype(np.float32) - (2 * p).astype(np.float32)[:, None]) * inverse[:, None]
        missing = block < 0
        if missing.any():
            z[missing] = 0.0
        yield z


#: up to this many samples `marker_pca` eigendecomposes the exact Gram matrix (n^2 float64: 128 MB at
#: 4,096), as plink2 does below ~5k samples; beyond, `randomized_genotype_pca` (block Krylov, run until its
#: PC subspace has converged) gives the same PCs. The former range finder (6 power iterations, 10
#: oversampling) only found the PCs with a clear eigengap: on three populations and an admixed group its
#: PC3-PC10 correlated 0.0-0.8 with the exact ones and changed with the seed. The Gram costs n^2 x markers,
#: the Krylov route about 2,600 n x markers (25-33 passes of width 20, 10 PCs); both took about 12 s CPU at
#: 4,096 samples (`benchmarks/ancestry_pca_krylov.py`), so the switch stays here.
EXACT_MAX_SAMPLES = 4096


def exact_genotype_pca(markers: MarkerDosages, n_pcs: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Top principal components of the standardised genotypes Z [n_samples, n_kept] from the exact
    Gram matrix Z Z^T [n_samples, n_samples], accumulated one standardised block at a time (one pass).

    The same as plink2 --pca meanimpute (PCs up to sign, eigenvalue ratios) and as scanpy's exact PCA.
    Returns scores U S [n_samples, n_pcs] (oriented by `_orient`) and variance_ratio [n_pcs] (each PC's
    variance over the total variance of Z).
    """
    n = len(markers.samples)
    gram = np.zeros((n, n))
    for z in _standardised_blocks(markers):
        gram += z.T @ z
    total = float(np.trace(gram))
    u, lam = top_eigenpairs(gram, n_pcs)
    singular = np.sqrt(lam)
    scores = u * singular
    scores = scores - scores.mean(axis=0)  # Z's columns have mean 0 already; guards float error
    _orient(scores, np.zeros((0, scores.shape[1])))
    return scores.astype(np.float32), (singular ** 2 / total if total > 0 else np.zeros(n_pcs))


#: `randomized_genotype_pca` stops once the Davis-Kahan estimate of the sine of the largest principal angle
#: between its n_pcs-PC subspace and the exact one, ||residuals||_F / (theta_k - theta_{k+1}), is below this.
#: An estimate, not a guarantee: the theorem's gap is theta_k - lambda_{k+1}, and the Ritz value theta_{k+1}
#: (<= the unknown lambda_{k+1}) stands in for it. In practice it is pessimistic (at 6e-3 the true sine was
#: 3.5e-5 on 4,096 samples; tests/test_ancestry.py checks the PCs against the exact ones) and levels off near
#: 1.3e-3 there (float32 products), so it cannot be much smaller.
KRYLOV_TOL = 1e-2
#: ... or after this many passes over the markers (the Krylov basis is n_samples x block x passes float64)
KRYLOV_MAX_PASSES = 60


def _gram_times(markers: MarkerDosages, q: np.ndarray, with_total: bool) -> tuple[np.ndarray, float]:
    """Z^T (Z q) [n_samples, width] for the standardised genotypes Z, and (with_total, else 0) the total sum
    of squares of Z, in one pass over the int8 blocks."""
    y = np.zeros(q.shape)
    total = 0.0
    q32 = q.astype(np.float32)
    for z in _standardised_blocks(markers):
        y += z.T @ (z @ q32)
        if with_total:
            total += float(np.square(z, dtype=np.float64).sum())
    return y, total


def randomized_genotype_pca(markers: MarkerDosages, n_pcs: int = 10, seed: int = 0, block: int | None = None,
                            tol: float = KRYLOV_TOL, max_passes: int = KRYLOV_MAX_PASSES,
                            info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top principal components of the standardised genotypes without materialising them.

    Randomized block Krylov (Musco & Musco 2015) as block Lanczos with full reorthogonalisation on the
    samples x samples Gram matrix G = Z Z^T: from a seeded Gaussian start block Q_0 [n, block], each pass over
    the int8 blocks (standardised one at a time) gives G Q_j, which is orthogonalised (twice) against the basis
    into Q_{j+1}; the coefficients give G Q = Q H exactly, so the Rayleigh-Ritz pairs (theta, V) of the basis
    and their residual norms ||G v - theta v|| come from H alone. It stops once the Davis-Kahan estimate
    ||residuals||_F / (theta_{n_pcs} - theta_{n_pcs+1}) of the sine of the largest principal angle to the exact
    n_pcs-PC subspace (`KRYLOV_TOL`: Ritz values stand in for the unknown eigenvalues) is below tol (then every PC matches `exact_genotype_pca`, seed or not), after max_passes,
    or when the basis holds every sample. Power iterations (Halko et al. 2011) converge as
    (lambda_{k+1}/lambda_k)^passes and do not resolve PCs beyond the population structure, whose eigenvalues
    sit in the noise bulk with relative gaps near 1e-3.
    block: Krylov block width, at least n_pcs, default max(2 n_pcs, n_pcs + 10). Memory: the basis,
    n x block x passes float64 (twice that while a pass appends to it).
    info: if given, filled with n_passes, converged and sin_bound.
    Returns scores U S [n_samples, n_pcs] (as scanpy's X_pca, oriented by `_orient`) and
    variance_ratio [n_pcs] (each PC's variance over the total variance of Z).
    """
    n = len(markers.samples)
    if block is not None and block < n_pcs:
        raise ValueError(f"randomized_genotype_pca: block {block} < n_pcs {n_pcs}")
    b = min(block or max(2 * n_pcs, n_pcs + 10), n)
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((n, b)))
    h = np.zeros((b, 0))  # G basis[:, :J] = basis h exactly (up to rounding), h [basis columns, J]
    passes, total = 0, 0.0
    while True:
        j = h.shape[1]
        y, sum_squares = _gram_times(markers, basis[:, j:], with_total=passes == 0)
        total += sum_squares
        passes += 1
        coef = np.zeros((basis.shape[1], y.shape[1]))
        for _ in range(2):  # classical Gram-Schmidt, twice
            c = basis.T @ y
            y -= basis @ c
            coef += c
        room = n - basis.shape[1]
        if room >= y.shape[1]:
            q_new, r = np.linalg.qr(y)
        else:  # the last block fills the sample space: y lies in the room-dimensional complement of the basis
            q_new = np.linalg.svd(y, full_matrices=False)[0][:, :room]
            r = q_new.T @ y
        basis = np.hstack([basis, q_new])
        h = np.hstack([np.vstack([h, np.zeros((q_new.shape[1], j))]), np.vstack([coef, r])])
        size = h.shape[1]
        ritz, vectors = np.linalg.eigh((h[:size] + h[:size].T) / 2)
        order = np.argsort(ritz)[::-1]
        ritz, vectors = ritz[order], vectors[:, order]
        top = vectors[:, :n_pcs]
        residual = float(np.linalg.norm(h @ top - np.vstack([top * ritz[:n_pcs],
                                                             np.zeros((h.shape[0] - size, n_pcs))])))
        gap = ritz[n_pcs - 1] - ritz[n_pcs] if size > n_pcs else 0.0
        bound = 0.0 if size == n else residual / gap if gap > 0 else np.inf  # size == n: Ritz pairs exact
        converged = bound <= tol
        if converged or passes >= max_passes:
            break
    if info is not None:
        info.update(n_passes=passes, converged=bool(converged), sin_bound=float(min(bound, 1.0)))
    singular = np.sqrt(np.clip(ritz[:n_pcs], 0, None))
    scores = (basis[:, :size] @ top) * singular
    scores = scores - scores.mean(axis=0)  # Z's columns have mean 0 already; guards float error
    _orient(scores, np.zeros((0, scores.shape[1])))
    return scores.astype(np.float32), (singular ** 2 / total if total > 0 else np.zeros(n_pcs))


def marker_pca(
    markers: MarkerDosages,
    samples: pl.DataFrame,
    n_pcs: int = 10,
    seed: int = 0,
    n_neighbors: int = 15,
    leiden_resolution: float = 0.5,
    umap_and_clusters: bool = True,
    exact_max_samples: int = EXACT_MAX_SAMPLES,
) -> anndata.AnnData:
    """Ancestry PCs (out-of-core), UMAP and Leiden clusters of a genome-wide marker panel.

    The PCs are exact (`exact_genotype_pca`) up to exact_max_samples samples, randomized block Krylov
    (`randomized_genotype_pca`, seeded start, run to convergence on the exact PCs) beyond.
    Returns a samples x 0 AnnData (obs: the samples table in `markers.samples` order) with
    obsm["X_pca"], uns["pca"]["variance_ratio"], obsm["X_umap"], obs["cluster"], and
    uns["genotype_pca"] (n_variants read / kept, n_pcs, seed, method; on the randomized route also
    n_passes, converged and sin_bound, see `randomized_genotype_pca`).
    """
    table = samples.to_pandas().set_index("sample_id")
    obs = table.loc[markers.samples]
    obs.index = obs.index.astype(str)
    max_pcs = min(len(markers.samples), markers.n_kept) - 1
    if max_pcs < 2:
        raise InputError(f"ancestry PCA: only {markers.n_kept} markers pass the MAF and missingness filters for "
                         f"{len(markers.samples)} samples; need at least 3 of each")
    n_pcs = min(n_pcs, max_pcs)
    info: dict = {}
    if len(markers.samples) <= exact_max_samples:
        scores, ratio = exact_genotype_pca(markers, n_pcs)
        method = "exact (blockwise int8 Gram)"
    else:
        scores, ratio = randomized_genotype_pca(markers, n_pcs, seed, info=info)
        method = "randomized block Krylov (blockwise int8)"
    result = anndata.AnnData(obs=obs)
    result.obsm["X_pca"] = scores
    result.uns["pca"] = {"variance_ratio": ratio}
    if umap_and_clusters:
        _embed_and_cluster(result, n_neighbors, leiden_resolution, seed)
    result.uns["genotype_pca"] = {"n_variants_read": markers.n_read, "n_variants": markers.n_kept,
                                  "n_pcs": n_pcs, "seed": seed, "method": method, **info}
    return result


def merge_marker_pcs(
    adata: anndata.AnnData,
    pcs: anndata.AnnData,
    source: dict,
    maf_min: float = 0.05,
    max_missing: float = 0.5,
) -> anndata.AnnData:
    """The studied regions' genotypes with the ancestry PCs of a marker panel.

    adata: a `genotype_anndata` matrix [n_samples, n_variants] (X ALT dosage 0/1/2, NaN missing; var maf
        and missing_rate). pcs: `marker_pca` of the same samples in the same order (obsm X_pca
        [n_samples, n_pcs], optionally X_umap and obs cluster; uns pca). source: what the PCs came from,
        stored as uns["ancestry_source"].
    Returns a new AnnData over the variants with maf >= maf_min and missing_rate <= max_missing: X and
    layers["dosage"] the (unstandardised) dosages, obsm X_pca (and X_umap), obs cluster when the panel has
    clusters, uns["pca"] (a copy of the panel's), uns["ancestry_source"] = source.
    """
    if list(adata.obs_names) != list(pcs.obs_names):
        raise ValueError("merge_marker_pcs: the genotypes and the panel PCs hold different samples or orders")
    keep_var = (adata.var["maf"].to_numpy() >= maf_min) & (adata.var["missing_rate"].to_numpy() <= max_missing)
    adata = adata[:, keep_var].copy()
    adata.layers["dosage"] = adata.X.copy()
    for key in ("X_pca", "X_umap"):
        if key in pcs.obsm:
            adata.obsm[key] = pcs.obsm[key]
    if "cluster" in pcs.obs:
        adata.obs["cluster"] = pcs.obs["cluster"].to_numpy()
    adata.uns["pca"] = dict(pcs.uns["pca"])
    adata.uns["ancestry_source"] = source
    return adata


def _too_few_markers(panel, markers: MarkerDosages, near_regions: NearRegions | None) -> str:
    """The message for a panel that leaves fewer than 3 markers: what each filter took."""
    read, near, sex, uncalled = markers.n_read, markers.n_near_regions, markers.n_non_autosomal, markers.n_uncalled
    if read == 0:
        return f"{panel}: no biallelic SNV or indel record; ancestry PCs need at least 3 markers (a genome-wide panel)"
    parts = []
    if sex:
        parts.append(f"{sex} on X, Y or MT (left out: haploid calls make PCs lean on sex)")
    if near:
        parts.append(f"{near} within {near_regions.flank} bases of a studied region (a smaller "
                     "cohort.ancestry_exclude_flank keeps more)")
    if uncalled:
        parts.append(f"{uncalled} with no called genotype among the studied samples (a panel without GT, e.g. "
                     "dosage-only DS, reads as missing)")
    failing = read - sex - near - uncalled - markers.n_kept
    if failing:
        parts.append(f"{failing} failing the MAF and missingness filters")
    return (f"{panel}: of {read} biallelic markers read, " + "; ".join(parts) + f"; {markers.n_kept} left, and "
            "ancestry PCs need at least 3 (a genome-wide panel)")


def cohort_ancestry(
    genotypes: Genotypes,
    samples: pl.DataFrame,
    maf_min: float = 0.05,
    n_pcs: int = 10,
    seed: int = 0,
    panel=None,
    umap_and_clusters: bool = True,
    near_regions: NearRegions | None = None,
) -> anndata.AnnData:
    """Genotype AnnData of the studied regions with ancestry PCs (at least 2), UMAP and clusters.

    With a marker panel VCF (`panel`), the PCs come from its markers (`read_marker_dosages`, `marker_pca`)
    but those in `near_regions` (the studied regions and their flanks), and are merged in by
    `merge_marker_pcs`, so the regions' own (maybe causal) variants and their LD do not define them; otherwise
    from the regions' own variants (`genotype_pca`, X then standardised). Either way
    obs["missing_rate"] is each sample's fraction of missing calls over all the regions' variants, before
    any variant filter.
    """
    adata = genotype_anndata(genotypes, samples)
    missing_rate = np.isnan(np.asarray(adata.X, dtype=np.float32)).mean(axis=1)
    n_pcs = max(n_pcs, 2)
    if panel:
        markers = read_marker_dosages(panel, adata.obs_names.tolist(), maf_min=maf_min, near_regions=near_regions)
        if markers.n_kept < 3:  # marker_pca needs 3; say where the panel's markers went
            raise InputError(_too_few_markers(panel, markers, near_regions))
        pcs = marker_pca(markers, samples, n_pcs=n_pcs, seed=seed, umap_and_clusters=umap_and_clusters)
        exact = pcs.uns["genotype_pca"]["method"].startswith("exact")
        source = {"vcf": Path(panel).name, "n_markers": markers.n_kept, "n_markers_read": markers.n_read,
                  "n_markers_near_regions": markers.n_near_regions, "n_markers_non_autosomal": markers.n_non_autosomal,
                  "exclude_flank": None if near_regions is None else near_regions.flank,
                  "method": "exact blockwise Gram" if exact else "randomized block Krylov"}
        if not exact:
            source.update({key: pcs.uns["genotype_pca"][key] for key in ("n_passes", "converged")})
        adata = merge_marker_pcs(adata, pcs, source, maf_min=maf_min)
    else:
        adata = genotype_pca(adata, maf_min=maf_min, n_pcs=n_pcs, seed=seed, umap_and_clusters=umap_and_clusters)
        info = adata.uns["genotype_pca"]
        adata.uns["ancestry_source"] = {"vcf": "cohort", "n_markers": info["n_pca_variants"],
                                        "n_markers_non_autosomal": info["n_non_autosomal"]}
        if info["pcs_from_non_autosomal"]:  # regions on X, Y or MT alone: their variants make the PCs
            adata.uns["ancestry_source"]["pcs_from_non_autosomal"] = True
    adata.obs["missing_rate"] = missing_rate
    return adata
