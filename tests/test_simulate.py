"""Simulated cohort: demography, REF = FASTA, planted causal variant and phenotypes, determinism."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from interp.cohort.ancestry import genotype_anndata, genotype_pca
from interp.cohort.haplotypes import haplotype_sequences
from interp.cohort.simulate import OUT_OF_AFRICA_3G09, out_of_africa_demography, simulate_cohort
from interp.cohort.vcf import read_genotypes, read_samples_tsv
from interp.errors import InputError
from interp.genome.annotation import read_annotation
from interp.genome.fasta import read_fasta
from interp.genome.regions import Region

FASTA = Path("resources/demo/hg19_chr17_1-40000.fa")
GENES = Path("resources/demo/grch37_chr17_1-40000_genes.tsv")
REGION = Region("DOC2B", "chr17", 6000, 31500)
POPULATIONS = {"YRI": 60, "CEU": 60, "CHB": 60}


def _run(out: Path, seed: int = 11):
    fasta, annotation = read_fasta(FASTA), read_annotation(GENES)
    truth = simulate_cohort(fasta, annotation, REGION, POPULATIONS, seed, None, out / "cohort.vcf.gz",
                            out / "samples.tsv", out / "truth.json")
    return fasta, truth


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    fasta, truth = _run(out)
    genotypes = read_genotypes(out / "cohort.vcf.gz", fasta_contigs=list(fasta))
    samples = read_samples_tsv(out / "samples.tsv", ["causal", "confounded", "null"], ["sex", "batch"],
                               "population")
    return {"out": out, "fasta": fasta, "truth": truth, "genotypes": genotypes, "samples": samples}


def test_demography_matches_gutenkunst_2009():
    p = OUT_OF_AFRICA_3G09
    assert (p.T_AF, p.T_B, p.T_EU_AS) == (8800, 5600, 848)
    demography = out_of_africa_demography()
    present = demography.debug().population_size_trajectory(np.array([0.0, p.T_EU_AS - 1e-6]))
    names = [pop.name for pop in demography.populations]
    ceu, chb, yri = names.index("CEU"), names.index("CHB"), names.index("YRI")
    np.testing.assert_allclose(present[1, ceu], p.N_EU0, rtol=1e-3)  # grew from N_EU0 at the split
    np.testing.assert_allclose(present[1, chb], p.N_AS0, rtol=1e-3)
    np.testing.assert_allclose(present[0, ceu], 1000 * np.exp(0.004 * 848), rtol=1e-9)
    np.testing.assert_allclose(present[0, yri], 12300)
    assert demography.migration_matrix[yri, ceu] == pytest.approx(3e-5)
    assert demography.migration_matrix[ceu, chb] == pytest.approx(9.6e-5)


def test_vcf_layout_and_ref_equals_fasta(cohort):
    out, genotypes, fasta = cohort["out"], cohort["genotypes"], cohort["fasta"]
    assert Path(str(out / "cohort.vcf.gz") + ".tbi").exists()
    with gzip.open(out / "cohort.vcf.gz", "rt") as handle:
        header = [line for line in handle if line.startswith("#")]
    assert header[0].strip() == "##fileformat=VCFv4.2"
    assert "##contig=<ID=chr17,length=40000>\n" in header
    assert genotypes.samples[0] == "YRI_0001" and genotypes.samples[-1] == "CHB_0060"
    assert genotypes.phased.all() and (genotypes.gt >= 0).all()
    assert genotypes.n_variants == cohort["truth"]["n_variants"] > 50
    sequence = fasta["chr17"]
    assert all(sequence[p - 1].upper() == r for p, r in zip(genotypes.pos, genotypes.ref, strict=True))
    assert all(a != r and len(a) == 1 for a, r in zip(genotypes.alt, genotypes.ref, strict=True))
    assert ((REGION.start < genotypes.pos) & (genotypes.pos <= REGION.end)).all()
    assert list(cohort["samples"].columns) == ["sample_id", "population", "causal", "confounded", "null",
                                               "sex", "batch"]


def test_causal_variant_in_exon_with_planted_frequency(cohort):
    truth, genotypes, samples = cohort["truth"], cohort["genotypes"], cohort["samples"]
    causal = truth["causal_variant"]
    exons = read_annotation(GENES).filter(pl.col("feature") == "exon")
    assert any(s < causal["pos"] <= e for s, e in zip(exons["start"], exons["end"], strict=True))
    index = int(np.flatnonzero(genotypes.pos == causal["pos"])[0])
    assert (genotypes.ref[index], genotypes.alt[index]) == (causal["ref"], causal["alt"])
    dosage = genotypes.dosage()[index]
    population = samples["population"].to_numpy()
    for name in POPULATIONS:
        freq = dosage[population == name].mean() / 2
        assert freq == pytest.approx(causal["freq"][name])
        assert 0.2 <= freq <= 0.5
    others = np.delete(genotypes.dosage(), index, axis=0)
    r2 = np.array([np.corrcoef(dosage, row)[0, 1] ** 2 for row in others])
    assert np.nanmax(r2) < 0.8


def test_phenotypes_follow_the_plan(cohort):
    genotypes, samples, truth = cohort["genotypes"], cohort["samples"], cohort["truth"]
    dosage = genotypes.dosage()[int(np.flatnonzero(genotypes.pos == truth["causal_variant"]["pos"])[0])]
    causal = samples["causal"].to_numpy()
    assert stats.ttest_ind(dosage[causal == 1], dosage[causal == 0]).pvalue < 1e-6
    assert stats.ttest_ind(dosage[samples["null"].to_numpy() == 1],
                           dosage[samples["null"].to_numpy() == 0]).pvalue > 1e-3
    table = samples.group_by("population").agg(pl.col("confounded").mean()).sort("population")
    prevalence = dict(zip(table["population"], table["confounded"], strict=True))
    assert prevalence["YRI"] > prevalence["CHB"] > prevalence["CEU"]
    contingency = samples.group_by("population", "confounded").len().pivot("confounded", index="population",
                                                                           values="len").fill_null(0)
    assert stats.chi2_contingency(contingency.drop("population").to_numpy())[1] < 1e-4
    assert set(samples["sex"].to_list()) == {0.0, 1.0} and set(samples["batch"].to_list()) == {0.0, 1.0}


def _hudson_fst(dosage: np.ndarray, in_a: np.ndarray) -> float:
    """Hudson's Fst (ratio of averages) between two groups; dosage [n_var, n_samples]."""
    p1, p2 = dosage[:, in_a].mean(axis=1) / 2, dosage[:, ~in_a].mean(axis=1) / 2
    n1, n2 = 2 * in_a.sum(), 2 * (~in_a).sum()
    num = (p1 - p2) ** 2 - p1 * (1 - p1) / (n1 - 1) - p2 * (1 - p2) / (n2 - 1)
    den = p1 * (1 - p2) + p2 * (1 - p1)
    return float(num.sum() / den.sum())


def test_population_differentiation_and_pc1(cohort):
    dosage = cohort["genotypes"].dosage()
    is_yri = (cohort["samples"]["population"] == "YRI").to_numpy()
    fst = _hudson_fst(dosage, is_yri)
    rng = np.random.default_rng(0)
    null = [_hudson_fst(dosage, rng.permutation(is_yri)) for _ in range(20)]
    assert fst > 0.05 and fst > 2 * max(null)
    adata = genotype_anndata(cohort["genotypes"], cohort["samples"])
    result = genotype_pca(adata, n_pcs=5, seed=0, maf_min=0.0, umap_and_clusters=False)
    pc1 = result.obsm["X_pca"][:, 0]
    auc = stats.mannwhitneyu(pc1[is_yri], pc1[~is_yri]).statistic / (is_yri.sum() * (~is_yri).sum())
    # 25 kb holds only a handful of independent genealogies, so PC1 separates YRI only partly
    # (AUROC 0.65-0.93 over seeds); the planted structure is what must be visible.
    assert max(auc, 1 - auc) > 0.6


def test_deterministic_under_seed(cohort, tmp_path):
    _run(tmp_path, seed=11)
    with gzip.open(tmp_path / "cohort.vcf.gz", "rb") as a, gzip.open(cohort["out"] / "cohort.vcf.gz", "rb") as b:
        assert a.read() == b.read()
    assert (tmp_path / "truth.json").read_bytes() == (cohort["out"] / "truth.json").read_bytes()
    assert (tmp_path / "samples.tsv").read_bytes() == (cohort["out"] / "samples.tsv").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    _, truth = _run(other, seed=12)
    assert json.loads((cohort["out"] / "truth.json").read_text())["seed"] == 11
    assert truth["causal_variant"] != cohort["truth"]["causal_variant"] or truth["n_variants"] != cohort[
        "truth"]["n_variants"]


def test_bad_configuration_is_input_error(tmp_path):
    fasta, annotation = read_fasta(FASTA), read_annotation(GENES)
    with pytest.raises(InputError, match="not in OutOfAfrica_3G09"):
        simulate_cohort(fasta, annotation, REGION, {"LWK": 10}, 1, None, tmp_path / "a.vcf.gz",
                        tmp_path / "s.tsv", tmp_path / "t.json")
    with pytest.raises(InputError, match="no exon inside region"):
        simulate_cohort(fasta, annotation, Region("far", "chr17", 32000, 39000), POPULATIONS, 1, None,
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    assert not (tmp_path / "a.vcf.gz").exists()


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_simulated_haplotypes_match_bcftools(cohort, tmp_path):
    region = Region("sub", "chr17", 11000, 14000)
    region_fa = tmp_path / "region.fa"
    region_fa.write_text(f">chr17:{region.start + 1}-{region.end}\n"
                         f"{cohort['fasta']['chr17'][region.start:region.end].upper()}\n")
    haps = haplotype_sequences(cohort["fasta"], cohort["genotypes"], region)
    vcf = cohort["out"] / "cohort.vcf.gz"
    for sample in ["YRI_0001", "CEU_0030", "CHB_0060"]:
        for hap in (1, 2):
            result = subprocess.run(["bcftools", "consensus", "-f", str(region_fa), "-s", sample, "-H", str(hap),
                                     str(vcf)], capture_output=True, text=True, check=True)
            assert haps[(sample, hap)] == "".join(result.stdout.splitlines()[1:])
