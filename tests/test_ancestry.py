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
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gram_route_equals_scanpy_covariance_pca(seed):
    """More variants than samples (a region's variants without a marker panel): genotype_pca takes the samples x
    samples Gram route (`gram_pca`), whose memory does not grow with variants squared (scanpy's covariance route
    held 800 MB at 10,000 variants). The same scores, loadings and variance ratios as scanpy's exact PCA, up to
    sign, over a few seeds of three-population genotypes with missing calls; blocks of 7 variants as one."""
    import anndata
    import scanpy as sc

    from interp.cohort.ancestry import _orient, gram_pca, standardise_genotypes

    rng = np.random.default_rng(seed)
    n, d = 90, 400
    freq = rng.uniform(0.05, 0.95, size=(3, d))
    pop = np.repeat(np.arange(3), n // 3)
    dosage = rng.binomial(2, freq[pop]).astype(np.float64)
    dosage[rng.random(dosage.shape) < 0.02] = np.nan
    z, _ = standardise_genotypes(dosage)
    ours, theirs = anndata.AnnData(z.copy()), anndata.AnnData(z.copy())
    gram_pca(ours, n_pcs=6, block=7)
    sc.pp.pca(theirs, n_comps=6, zero_center=True, svd_solver="covariance_eigh")
    for a in (ours, theirs):
        _orient(a.obsm["X_pca"], a.varm["PCs"])
    np.testing.assert_allclose(ours.obsm["X_pca"], theirs.obsm["X_pca"], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(ours.varm["PCs"], theirs.varm["PCs"], atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(ours.uns["pca"]["variance_ratio"], theirs.uns["pca"]["variance_ratio"], rtol=1e-5)
    np.testing.assert_allclose(ours.uns["pca"]["variance"], theirs.uns["pca"]["variance"], rtol=1e-5)
    whole = anndata.AnnData(z.copy())
    gram_pca(whole, n_pcs=6)  # one block
    _orient(whole.obsm["X_pca"], whole.varm["PCs"])
    np.testing.assert_allclose(ours.obsm["X_pca"], whole.obsm["X_pca"], atol=1e-5)


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


# ---------------------------------------------------------------- the ancestry stage's step
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
    assert out.uns["ancestry_source"] == {"vcf": "cohort", "n_markers": n_var - 1, "n_markers_non_autosomal": 0}
    expected = np.zeros(n)
    expected[:3] = 1 / n_var  # over all the regions' variants, before the filter
    np.testing.assert_allclose(out.obs["missing_rate"].to_numpy(), expected)
    assert "dosage" in out.layers


def test_cohort_ancestry_with_panel_takes_the_pcs_from_the_panel(tmp_path) -> None:
    from interp.cohort.ancestry import cohort_ancestry, marker_pca, read_marker_dosages

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
                                          "n_markers_read": 300, "n_markers_near_regions": 0,
                                          "n_markers_non_autosomal": 0, "exclude_flank": None,
                                          "method": "exact blockwise Gram"}
    np.testing.assert_array_equal(out.X, out.layers["dosage"])  # region dosages, not standardised


def test_near_regions_mask_matches_contig_names_and_flanks() -> None:
    from interp.cohort.ancestry import NearRegions
    from interp.genome.regions import Region

    near = NearRegions.of([Region("g1", "chr2", 1000, 2000), Region("g2", "chr2", 2050, 2060),
                           Region("g3", "chrX", 0, 10)], flank=100)
    assert near.spans["chr2"][0].tolist() == [900] and near.spans["chr2"][1].tolist() == [2160]  # merged
    # 1-based positions: 900 is base 899 (outside), 901 is 900 (inside); 2160 is 2159 (inside), 2161 outside
    got = near.mask(["2", "2", "chr2", "chr2", "3", "X"], np.array([900, 901, 2160, 2161, 1500, 5]))
    assert got.tolist() == [False, True, True, False, False, True]
    aliased = NearRegions.of([Region("g", "NC_000002.12", 100, 200)], flank=0, aliases={"2": "NC_000002.12"})
    assert aliased.mask(["2", "2"], np.array([150, 250])).tolist() == [True, False]


def test_panel_markers_in_and_near_the_studied_regions_are_left_out(tmp_path) -> None:
    """A genome-wide panel holds markers inside the studied gene (and the causal variant's LD): they are left out
    of the PCs, which equal those of the panel without them, and counted; a panel of nothing else is refused."""
    from interp.cohort.ancestry import NearRegions, cohort_ancestry, marker_pca, read_marker_dosages
    from interp.genome.regions import Region

    panel = tmp_path / "panel.vcf"
    samples = _structured_vcf(panel, n_per_pop=12, n_markers=300)
    lines = panel.read_text().splitlines()
    header, records = [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]
    # markers at 1,000 + 30 j on contig "1": region chr1:4,000-5,000 widened by 1,000 holds bases 3,000-5,999
    inside = [r for r in records if 3000 < int(r.split("\t")[1]) <= 6000]
    assert len(inside) == 100
    away = tmp_path / "away.vcf"
    away.write_text("\n".join(header + [r for r in records if r not in inside]) + "\n")
    rng = np.random.default_rng(0)
    gt = (rng.random((20, len(samples), 2)) < 0.4).astype(np.int8)
    table = pl.DataFrame({"sample_id": samples})
    near = NearRegions.of([Region("gene", "chr1", 4000, 5000)], flank=1000)
    out = cohort_ancestry(_genotypes(samples, gt), table, maf_min=0.05, n_pcs=3, seed=1, panel=str(panel),
                          umap_and_clusters=False, near_regions=near)
    want = marker_pca(read_marker_dosages(str(away), samples, maf_min=0.05), table, n_pcs=3, seed=1,
                      umap_and_clusters=False)
    np.testing.assert_array_equal(out.obsm["X_pca"], want.obsm["X_pca"])
    source = out.uns["ancestry_source"]
    assert (source["n_markers_read"], source["n_markers_near_regions"], source["exclude_flank"]) == (300, 100, 1000)
    only_near = tmp_path / "only_near.vcf"
    only_near.write_text("\n".join(header + inside) + "\n")
    with pytest.raises(InputError, match="of 100 biallelic markers read, 100 within 1000 bases of a studied region"):
        cohort_ancestry(_genotypes(samples, gt), table, maf_min=0.05, n_pcs=3, seed=1, panel=str(only_near),
                        umap_and_clusters=False, near_regions=near)


def test_panel_left_with_too_few_markers_by_the_exclusion_says_so(tmp_path) -> None:
    """Markers near the studied regions and a few elsewhere that fail the MAF filter (a panel of the studied
    chromosome, say): the refusal counts each part rather than saying every marker read lay near a region, and
    with 1-2 markers left it names the exclusion, not only the MAF filter."""
    from interp.cohort.ancestry import NearRegions, cohort_ancestry
    from interp.genome.regions import Region

    panel = tmp_path / "panel.vcf"
    samples = _structured_vcf(panel, n_per_pop=12, n_markers=300)
    lines = panel.read_text().splitlines()
    header, records = [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]
    inside = [r for r in records if 3000 < int(r.split("\t")[1]) <= 6000]

    def monomorphic(record: str) -> str:
        fields = record.split("\t")
        return "\t".join(fields[:9] + ["0|0"] * (len(fields) - 9))

    away = [r for r in records if r not in inside]
    near = NearRegions.of([Region("gene", "chr1", 4000, 5000)], flank=1000)
    rng = np.random.default_rng(0)
    gt = (rng.random((20, len(samples), 2)) < 0.4).astype(np.int8)
    table = pl.DataFrame({"sample_id": samples})
    for n_kept in (0, 2):
        vcf = tmp_path / f"kept{n_kept}.vcf"
        vcf.write_text("\n".join(header + inside + away[:n_kept] + [monomorphic(r) for r in away[n_kept:3]]) + "\n")
        with pytest.raises(InputError) as err:
            cohort_ancestry(_genotypes(samples, gt), table, maf_min=0.05, n_pcs=3, seed=1, panel=str(vcf),
                            umap_and_clusters=False, near_regions=near)
        text = str(err.value)
        assert "of 103 biallelic markers read, 100 within 1000 bases of a studied region" in text, text
        assert f"{3 - n_kept} failing the MAF and missingness filters" in text and f"{n_kept} left" in text, text


def test_panel_without_usable_markers_names_the_file_and_what_took_them(tmp_path) -> None:
    """A panel that leaves fewer than 3 markers for another reason than the exclusion flank (no records, X
    only, dosage-only FORMAT) names the panel and what each filter took; a record whose POS is not a number
    is an InputError naming the record (the panel is read whole, past tabix's check: it indexes '50x' at 50)."""
    from interp.cohort.ancestry import cohort_ancestry

    panel = tmp_path / "panel.vcf"
    samples = _structured_vcf(panel, n_per_pop=12, n_markers=40)
    lines = panel.read_text().splitlines()
    header, records = [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]
    rng = np.random.default_rng(0)
    gt = (rng.random((20, len(samples), 2)) < 0.4).astype(np.int8)
    table = pl.DataFrame({"sample_id": samples})

    def dosage_only(record: str) -> str:
        fields = record.split("\t")
        return "\t".join(fields[:8] + ["DS"] + ["1"] * (len(fields) - 9))

    cases = {
        "empty": (header, "no biallelic SNV or indel record"),
        "x_only": (header + ["X" + r[1:] for r in records], "of 40 biallelic markers read, 40 on X, Y or MT"),
        "ds_only": (header + [dosage_only(r) for r in records],
                    "of 40 biallelic markers read, 40 with no called genotype among the studied samples"),
        "pos": (header + records[:5] + [records[5].replace("\t1150\t", "\t1150x\t")] + records[6:],
                "record '1.t1150x.*POS '1150x' is not a whole number"),
    }
    for name, (body, message) in cases.items():
        vcf = tmp_path / f"{name}.vcf"
        vcf.write_text("\n".join(body) + "\n")
        with pytest.raises(InputError, match=message) as err:
            cohort_ancestry(_genotypes(samples, gt), table, maf_min=0.05, n_pcs=3, seed=1, panel=str(vcf),
                            umap_and_clusters=False)
        assert str(vcf) in str(err.value), (name, str(err.value))


def test_panel_with_a_sample_listed_twice_is_refused(tmp_path) -> None:
    """A duplicated sample column in the ancestry VCF: which column is that sample's was the last one, silently."""
    from interp.cohort.ancestry import read_marker_dosages
    from interp.cohort.check import check_panel

    panel = tmp_path / "panel.vcf"
    samples = _structured_vcf(panel, n_per_pop=4, n_markers=20)
    lines = panel.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#CHROM"))
    lines[header] = lines[header].replace("\ts5\t", "\ts1\t")  # s1 twice, s5 gone
    panel.write_text("\n".join(lines) + "\n")
    wanted = [s for s in samples if s != "s5"]
    with pytest.raises(InputError, match="more than once: 's1'"):
        read_marker_dosages(panel, wanted)
    with pytest.raises(InputError, match="more than once: 's1'"):
        check_panel(panel, pl.DataFrame({"sample_id": wanted}))


def _exact_scores(markers) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference: mean-imputed standardised genotypes [n_samples, n_kept], full SVD: (U S, S^2 / total)."""
    dosage = np.concatenate(markers.blocks).T.astype(float)
    dosage[dosage < 0] = np.nan
    z, _ = standardise_genotypes(dosage)
    u, s, _ = np.linalg.svd(z.astype(np.float64), full_matrices=False)
    return u * s, s**2 / np.square(s).sum()


def test_marker_pca_gives_every_pc_exactly_not_only_the_structured_ones(tmp_path) -> None:
    """Three populations: PC1-2 carry the structure, PC3-5 have small eigengaps. The randomized SVD found only
    PC1-2 (PC3-5 correlated 0.15-0.79 with the exact ones, variance ratios 5% off); plink2 --pca is exact."""
    from interp.cohort.ancestry import marker_pca, read_marker_dosages

    vcf = tmp_path / "markers.vcf"
    samples = _structured_vcf(vcf, seed=4, n_per_pop=60, n_markers=1500)
    markers = read_marker_dosages(vcf, samples, maf_min=0.05)
    ours = marker_pca(markers, pl.DataFrame({"sample_id": samples}), n_pcs=5, seed=0, umap_and_clusters=False)
    exact, ratio = _exact_scores(markers)
    for k in range(5):
        r = np.corrcoef(ours.obsm["X_pca"][:, k], exact[:, k])[0, 1]
        assert abs(r) > 0.999, (k, r)
    np.testing.assert_allclose(ours.uns["pca"]["variance_ratio"], ratio[:5], rtol=1e-4)
    assert ours.uns["genotype_pca"]["method"].startswith("exact")
    scores = ours.obsm["X_pca"]
    assert all(scores[np.argmax(np.abs(scores[:, k])), k] > 0 for k in range(5))
    # the PCs do not depend on the chunk size, nor (exact route) on the seed
    small = marker_pca(read_marker_dosages(vcf, samples, maf_min=0.05, chunk_records=7),
                       pl.DataFrame({"sample_id": samples}), n_pcs=5, seed=9, umap_and_clusters=False)
    np.testing.assert_allclose(small.obsm["X_pca"], scores, atol=1e-3 * np.abs(scores).max())
    # beyond exact_max_samples the randomized route still finds the structured PCs
    randomized = marker_pca(markers, pl.DataFrame({"sample_id": samples}), n_pcs=5, seed=0,
                            umap_and_clusters=False, exact_max_samples=10)
    assert randomized.uns["genotype_pca"]["method"].startswith("randomized")
    for k in range(2):
        assert np.corrcoef(randomized.obsm["X_pca"][:, k], scores[:, k])[0, 1] > 0.999


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_marker_pca_matches_plink2_meanimpute_on_every_pc_of_real_data(tmp_path) -> None:
    """Real 1000 Genomes pilot calls, 44% missing, a subset of samples in another order than the VCF's.

    Missing calls are mean-imputed, as plink2 --pca meanimpute: every PC agrees (|r| > 0.99) and the
    eigenvalue ratios agree. (Plain plink2 --pca drops missing pairs from the relationship matrix: on these
    data its PC7 correlates only 0.96 with the mean-imputed one.)"""
    from interp.cohort.ancestry import marker_pca, read_marker_dosages
    from interp.cohort.vcf import vcf_samples

    studied = vcf_samples(KG)[::-2]  # every other sample, reversed
    keep = tmp_path / "keep.txt"
    keep.write_text("".join(f"{s}\t{s}\n" for s in studied))
    subprocess.run(["plink2", "--vcf", str(KG), "--keep", str(keep), "--maf", "0.05", "--geno", "0.5", "--pca", "8",
                    "meanimpute", "--double-id", "--set-missing-var-ids", "@:#", "--threads", "1",
                    "--out", str(tmp_path / "pc")], check=True, capture_output=True)
    plink = pl.read_csv(tmp_path / "pc.eigenvec", separator="\t")
    eigenvalues = np.loadtxt(tmp_path / "pc.eigenval")
    markers = read_marker_dosages(KG, studied, maf_min=0.05, max_missing=0.5, chunk_records=50)
    ours = marker_pca(markers, pl.DataFrame({"sample_id": studied}), n_pcs=8, seed=0, umap_and_clusters=False)
    assert ours.obs_names.tolist() == studied
    rows = {s: i for i, s in enumerate(plink["IID"])}
    order = [rows[s] for s in studied]
    for k in range(8):
        r = np.corrcoef(plink[f"PC{k + 1}"].to_numpy()[order], ours.obsm["X_pca"][:, k])[0, 1]
        assert abs(r) > 0.99, (k, r)
    ratio = ours.uns["pca"]["variance_ratio"]
    np.testing.assert_allclose(ratio / ratio[0], eigenvalues / eigenvalues[0], rtol=1e-3)


def test_marker_chunks_are_sized_by_every_sample_the_vcf_header_decodes(tmp_path, monkeypatch) -> None:
    """A panel of many more samples than studied: each chunk decodes all the header's samples, so its size
    must follow them (it followed the studied samples only: 4,096 records x 500k biobank samples, ~8 GB)."""
    from interp.cohort import ancestry
    from interp.cohort import vcf as vcf_module

    vcf = tmp_path / "panel.vcf"
    samples = _structured_vcf(vcf, n_per_pop=20, n_markers=100)  # 60 samples in the header
    monkeypatch.setattr(ancestry, "CHUNK_GENOTYPES", 60 * 20)
    sizes = []
    original = vcf_module.iter_dosage_chunks

    def spy(path, wanted, chunk_records):
        for chunk, info in original(path, wanted, chunk_records):
            sizes.append(chunk.shape)
            yield chunk, info

    monkeypatch.setattr(vcf_module, "iter_dosage_chunks", spy)
    markers = ancestry.read_marker_dosages(vcf, samples[:4], maf_min=0.0)
    assert markers.n_read == 100
    assert sizes == [(20, 4)] * 5  # 1,200 genotypes / 60 header samples, not / 4 studied ones


def test_monomorphic_markers_do_not_count_as_kept_at_maf_0(tmp_path) -> None:
    """maf 0 is allowed: monomorphic markers (standardised to 0) counted as kept, so a panel of nothing but
    monomorphic markers gave all-zero PCs silently instead of the 'too few markers' error."""
    from interp.cohort.ancestry import marker_pca, read_marker_dosages

    vcf = tmp_path / "panel.vcf"
    samples = _structured_vcf(vcf, n_per_pop=10, n_markers=30)
    lines = vcf.read_text().splitlines()
    records = [i for i, line in enumerate(lines) if not line.startswith("#")]
    for i in records[:20]:  # 20 of the 30 markers monomorphic
        fields = lines[i].split("\t")
        lines[i] = "\t".join(fields[:9] + ["0|0"] * len(samples))
    vcf.write_text("\n".join(lines) + "\n")
    markers = read_marker_dosages(vcf, samples, maf_min=0.0)
    # the 20 and one of the other 10, fixed for ALT by drift (ALT frequency 1), are dropped
    assert markers.n_read == 30 and markers.n_kept == 9
    assert ((markers.alt_freq > 0) & (markers.alt_freq < 1)).all()
    mono = tmp_path / "mono.vcf"
    mono.write_text("\n".join(lines[:records[0]] + [lines[i] for i in records[:20]]) + "\n")
    with pytest.raises(InputError, match="only 0 markers"):
        marker_pca(read_marker_dosages(mono, samples, maf_min=0.0), pl.DataFrame({"sample_id": samples}),
                   umap_and_clusters=False)
    genotypes = _planted(n_var=30)
    genotypes.gt[:20] = 0
    adata = genotype_anndata(genotypes, pl.DataFrame({"sample_id": genotypes.samples}))
    expected = int((adata.var["maf"] > 0).sum())
    assert expected < 30
    assert genotype_pca(adata, maf_min=0.0, umap_and_clusters=False).uns["genotype_pca"]["n_variants"] == expected


def _admixed_markers(seed: int = 0):
    """Three Balding-Nichols populations (Fst 0.05, 0.05, 0.1) of 150 and 150 admixed, 6,000 markers, 2%
    missing: PC1-2 structured, PC3 onward in the noise bulk with relative eigengaps near 1e-3."""
    from interp.cohort.simulate import balding_nichols_markers

    return balding_nichols_markers(seed, block=1000)


def test_randomized_route_gives_the_exact_10_pc_subspace_whatever_the_seed() -> None:
    """Beyond exact_max_samples the PCs came from a range finder (6 power iterations, oversampling 10) that
    resolved only PC1-2: on this panel (seeds 0-2) its 10-PC subspace had smallest canonical correlation
    0.005-0.16 with the exact one, PC3-PC10 correlated 0.01-0.77 with the exact PCs and changed with the seed, so the adjustment of
    cohorts above 4,096 samples depended on the seed. The block Krylov route runs until it has converged."""
    from interp.cohort.ancestry import marker_pca

    markers = _admixed_markers()
    table = pl.DataFrame({"sample_id": markers.samples})
    exact, ratio = _exact_scores(markers)
    exact_basis, _ = np.linalg.qr(exact[:, :10])
    runs = []
    for seed in (0, 1, 2):
        ours = marker_pca(markers, table, n_pcs=10, seed=seed, umap_and_clusters=False, exact_max_samples=10)
        scores = ours.obsm["X_pca"].astype(np.float64)
        basis, _ = np.linalg.qr(scores - scores.mean(axis=0))
        canonical = np.linalg.svd(exact_basis.T @ basis, compute_uv=False)
        assert canonical.min() > 0.999, (seed, canonical)
        for k in range(10):  # every PC
            assert abs(np.corrcoef(scores[:, k], exact[:, k])[0, 1]) > 0.999, (seed, k)
        np.testing.assert_allclose(ours.uns["pca"]["variance_ratio"], ratio[:10], rtol=1e-4)
        meta = ours.uns["genotype_pca"]
        assert meta["method"].startswith("randomized") and meta["converged"] and meta["n_passes"] <= 60
        runs.append(scores)
    for other in runs[1:]:  # the seed changes the PCs by float error only
        np.testing.assert_allclose(other, runs[0], atol=1e-3 * np.abs(runs[0]).max())


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_x_markers_stay_out_of_the_pcs_as_plink2_leaves_them_out(tmp_path) -> None:
    """A panel as the README's recipe leaves it (autosomes and 5% chrX markers, males haploid on X, read as dosage
    0 or 2) gave PCs 3-6 correlating 0.32-0.76 with plink2 --pca, which leaves non-autosomes out, and leaning on
    the males. X, Y and MT markers now stay out of the PCs on both routes (a marker panel, and the regions'
    own variants, which keep their X variants for everything else): every PC as plink2's."""
    from interp.cohort.ancestry import genotype_anndata, genotype_pca, marker_pca, read_marker_dosages
    from interp.cohort.vcf import read_genotypes

    rng = np.random.default_rng(1)
    n_per = 60
    n = 3 * n_per
    male = rng.random(n) < 0.5
    samples = [f"s{i}" for i in range(n)]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=100000000>", "##contig=<ID=X,length=100000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])]
    for contig, m in (("1", 950), ("X", 50)):
        p0 = rng.uniform(0.05, 0.95, m)
        f = np.repeat(np.stack([rng.beta(p0 * (1 - s) / s, (1 - p0) * (1 - s) / s) for s in (0.05, 0.05, 0.1)]),
                      n_per, axis=0)
        hap = (rng.random((2, n, m)) < f).astype(int)
        for j in range(m):
            calls = [f"{hap[0, i, j]}" if contig == "X" and male[i] else f"{hap[0, i, j]}/{hap[1, i, j]}"
                     for i in range(n)]
            lines.append("\t".join([contig, str(1000 + 100 * j), f"{contig}_{j}", "A", "G", ".", "PASS", ".", "GT",
                                    *calls]))
    vcf = tmp_path / "panel.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    subprocess.run(["plink2", "--vcf", str(vcf), "--maf", "0.05", "--pca", "6", "--double-id", "--out",
                    str(tmp_path / "pc")], check=True, capture_output=True)
    plink = pl.read_csv(tmp_path / "pc.eigenvec", separator="\t")
    order = [dict(zip(plink["IID"], range(n), strict=True))[s] for s in samples]
    table = pl.DataFrame({"sample_id": samples})
    markers = read_marker_dosages(vcf, samples, maf_min=0.05)
    assert markers.n_non_autosomal == 50
    by_panel = marker_pca(markers, table, n_pcs=6, umap_and_clusters=False).obsm["X_pca"]
    own = genotype_pca(genotype_anndata(read_genotypes(vcf), table), maf_min=0.05, n_pcs=6, umap_and_clusters=False)
    assert own.uns["genotype_pca"]["n_non_autosomal"] > 0 and (own.var["contig"] == "X").any()
    for scores in (by_panel, own.obsm["X_pca"]):
        r = [abs(np.corrcoef(plink[f"PC{k + 1}"].to_numpy()[order], scores[:, k])[0, 1]) for k in range(6)]
        assert min(r) > 0.999, r
    # regions on X alone, no panel: their variants still make the PCs (they were refused for a moment), said so
    x_only = genotype_anndata(read_genotypes(vcf), table)
    x_only = x_only[:, (x_only.var["contig"] == "X").to_numpy()].copy()
    pcs = genotype_pca(x_only, maf_min=0.05, n_pcs=3, umap_and_clusters=False)
    assert pcs.uns["genotype_pca"]["pcs_from_non_autosomal"] and pcs.obsm["X_pca"].shape == (n, 3)
