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
from scipy.special import expit

from interp.cohort.ancestry import genotype_anndata, genotype_pca
from interp.cohort.haplotypes import haplotype_sequences
from interp.cohort.simulate import (
    OUT_OF_AFRICA_3G09,
    out_of_africa_demography,
    simulate_cohort,
    solve_intercept,
)
from interp.cohort.vcf import read_genotypes, read_samples_tsv
from interp.errors import InputError
from interp.genome.annotation import read_annotation
from interp.genome.fasta import read_fasta
from interp.genome.regions import Region

FASTA = Path("resources/demo/hg19_chr17_1-40000.fa")
GENES = Path("resources/demo/grch37_chr17_1-40000_genes.tsv")
REGION = Region("DOC2B", "chr17", 6000, 31500)
POPULATIONS = {"YRI": 60, "CEU": 60, "CHB": 60}


STRONG = {"confounded": {"strength": "strong"}}


def _run(out: Path, seed: int = 11, sim: dict | None = None, populations: dict | None = None, panel=None):
    fasta, annotation = read_fasta(FASTA), read_annotation(GENES)
    truth = simulate_cohort(fasta, annotation, REGION, populations or POPULATIONS, seed,
                            STRONG if sim is None else sim, out / "cohort.vcf.gz", out / "samples.tsv",
                            out / "truth.json", panel=panel, out_panel=out / "panel.vcf.gz" if panel else None)
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
    assert truth["causal_variant"]["id"] == (f"chr17:{truth['causal_variant']['pos']}:"
                                             f"{truth['causal_variant']['ref']}:{truth['causal_variant']['alt']}")
    # OR 2 per allele at n = 180: a one-sided test of a positive association (power ~0.8; seeded)
    assert stats.mannwhitneyu(dosage[causal == 1], dosage[causal == 0], alternative="greater").pvalue < 0.05
    table = samples.group_by("population").agg(pl.col("confounded").mean()).sort("population")
    prevalence = dict(zip(table["population"], table["confounded"], strict=True))
    assert prevalence["YRI"] > prevalence["CHB"] > prevalence["CEU"]
    contingency = samples.group_by("population", "confounded").len().pivot("confounded", index="population",
                                                                           values="len").fill_null(0)
    assert stats.chi2_contingency(contingency.drop("population").to_numpy())[1] < 1e-4
    assert set(samples["sex"].to_list()) == {0.0, 1.0} and set(samples["batch"].to_list()) == {0.0, 1.0}
    realised = truth["phenotypes"]["realised_case_fraction"]
    assert realised["null"]["all"] == pytest.approx(samples["null"].mean())
    assert truth["ancestry"]["mean"] == {p: pytest.approx(1 / 3) for p in POPULATIONS}


def test_solve_intercept_hits_the_expected_case_fraction():
    dosage = np.random.default_rng(0).binomial(2, 0.3, size=5000).astype(float)
    for target in (0.1, 0.3, 0.5):
        a = solve_intercept(np.log(2.0) * dosage, target)
        assert float(expit(a + np.log(2.0) * dosage).mean()) == pytest.approx(target, abs=1e-9)


def _coverage_ci(hits: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(hits, n).proportion_ci(confidence_level=0.99, method="exact")
    return ci.low, ci.high


@pytest.fixture(scope="module")
def base_cohort(tmp_path_factory):
    """1,000 individuals (three populations), flat causal allele, OR 2, 30% cases: the calibration base."""
    out = tmp_path_factory.mktemp("base")
    _, truth = _run(out, seed=5, sim={}, populations={"YRI": 334, "CEU": 333, "CHB": 333})
    genotypes = read_genotypes(out / "cohort.vcf.gz")
    dosage = genotypes.dosage()[int(np.flatnonzero(genotypes.pos == truth["causal_variant"]["pos"])[0])]
    population = np.array([s.split("_")[0] for s in genotypes.samples])
    return {"truth": truth, "dosage": dosage, "population": population}


@pytest.mark.parametrize("odds_ratio", [1.5, 3.0])
def test_logistic_fit_recovers_the_planted_odds_ratio_as_a_rate(base_cohort, odds_ratio):
    """Over 200 phenotype draws on the simulated genotypes, statsmodels' logistic fit of y on the causal
    dosage covers the planted log OR in ~95% of replicates, and the mean case fraction is the target."""
    import statsmodels.api as sm

    from interp.cohort.simulate import DEFAULTS, _phenotypes, out_of_africa_scenario

    config = {**DEFAULTS, "causal": {**DEFAULTS["causal"], "odds_ratio": odds_ratio},
              "confounded": {**DEFAULTS["confounded"], "prevalence": {"YRI": 0.3, "CEU": 0.12, "CHB": 0.2}}}
    dosage, population = base_cohort["dosage"], base_cohort["population"]
    proportions = np.ones((len(dosage), 3)) / 3
    rng = np.random.default_rng(1)
    covered, estimates, fractions = 0, [], []
    n_rep = 200
    for _ in range(n_rep):
        columns, truth = _phenotypes(config, out_of_africa_scenario(), dosage, list(population), proportions, rng)
        fit = sm.Logit(columns["causal"], sm.add_constant(dosage)).fit(disp=0)
        low, high = fit.conf_int()[1]
        covered += low <= np.log(odds_ratio) <= high
        estimates.append(fit.params[1])
        fractions.append(columns["causal"].mean())
    low, high = _coverage_ci(covered, n_rep)
    assert low <= 0.95 <= high, covered
    assert abs(np.mean(estimates) - np.log(odds_ratio)) < 4 * np.std(estimates) / np.sqrt(n_rep)
    assert abs(np.mean(fractions) - 0.3) < 4 * np.std(fractions) / np.sqrt(n_rep)
    assert truth["causal"]["expected_case_fraction"] == pytest.approx(0.3)


def test_base_cohort_frequencies_and_case_fraction(base_cohort):
    truth, dosage, population = base_cohort["truth"], base_cohort["dosage"], base_cohort["population"]
    for name in ("YRI", "CEU", "CHB"):
        assert dosage[population == name].mean() / 2 == pytest.approx(truth["causal_variant"]["freq"][name])
        assert 0.2 <= truth["causal_variant"]["freq"][name] <= 0.5
    realised = truth["phenotypes"]["realised_case_fraction"]
    for phenotype in ("causal", "null", "confounded"):
        n = 1000
        k = round(realised[phenotype]["all"] * n)
        expected = 0.3 if phenotype != "confounded" else np.mean([0.3, 0.12, 0.2])
        assert stats.binomtest(k, n, expected).pvalue > 1e-3, (phenotype, realised)
    assert truth["effects"]["causal"]["odds_ratio"] == 2.0


def test_confounded_baseline_keeps_per_population_prevalence(base_cohort):
    from interp.cohort.simulate import DEFAULTS, _phenotypes, out_of_africa_scenario

    config = {**DEFAULTS, "causal": {**DEFAULTS["causal"], "confounding": "strong"},
              "confounded": {**DEFAULTS["confounded"], "prevalence": {"YRI": 0.6, "CEU": 0.1, "CHB": 0.3}}}
    dosage, population = base_cohort["dosage"], base_cohort["population"]
    _, truth = _phenotypes(config, out_of_africa_scenario(), dosage, list(population),
                           np.ones((len(dosage), 3)) / 3, np.random.default_rng(2))
    for name, prevalence in {"YRI": 0.6, "CEU": 0.1, "CHB": 0.3}.items():
        a = truth["causal"]["intercept"][name]
        inside = population == name
        assert float(expit(a + np.log(2) * dosage[inside]).mean()) == pytest.approx(prevalence)


def test_differentiated_causal_allele_hits_its_targets(tmp_path):
    targets = {"YRI": 0.05, "CEU": 0.3, "CHB": 0.6}
    _, truth = _run(tmp_path, seed=3, sim={"causal": {"frequency": "differentiated", "target_freqs": targets}},
                    populations={"YRI": 150, "CEU": 150, "CHB": 150})
    freq = truth["causal_variant"]["freq"]
    assert max(abs(freq[p] - targets[p]) for p in targets) <= 0.1
    assert truth["causal_variant"]["max_abs_deviation_from_target"] == pytest.approx(
        max(abs(freq[p] - targets[p]) for p in targets))
    genotypes = read_genotypes(tmp_path / "cohort.vcf.gz")
    dosage = genotypes.dosage()[int(np.flatnonzero(genotypes.pos == truth["causal_variant"]["pos"])[0])]
    population = np.array([s.split("_")[0] for s in genotypes.samples])
    assert dosage[population == "CHB"].mean() / 2 == pytest.approx(freq["CHB"])


@pytest.fixture(scope="module")
def admixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("admixed")
    _, truth = _run(out, seed=4, sim={"demography": "AmericanAdmixture_4B18", "labels": "absent",
                                      "confounded": {"strength": "strong"}},
                    populations={"ADMIX": 300}, panel={"loci": 60, "locus_length": 5000})
    return {"out": out, "truth": truth}


def test_admixture_proportions_match_the_4b18_model(admixed):
    """Mean global ancestry of ADMIX individuals (census at the pulse, 12 generations ago) is the model's
    1/6, 1/3, 1/2 within 4 standard errors."""
    truth = admixed["truth"]
    by_sample = np.array(list(truth["ancestry"]["by_sample"].values()))
    assert by_sample.shape == (300, 3)
    np.testing.assert_allclose(by_sample.sum(axis=1), 1, atol=1e-5)
    se = by_sample.std(axis=0) / np.sqrt(len(by_sample))
    for k, expected in enumerate([1 / 6, 1 / 3, 1 / 2]):
        assert abs(by_sample[:, k].mean() - expected) < 4 * se[k] + 1e-3, (k, by_sample.mean(axis=0))
    assert truth["demography"]["name"] == "AmericanAdmixture_4B18"
    assert truth["ancestry"]["bases_traced_per_haplotype"] == pytest.approx(60 * 5000)
    assert truth["ancestry"]["bases"] == "ancestry panel"


def test_admixed_ancestry_phenotype_is_logistic_in_the_proportion(admixed):
    """The ancestry-only phenotype's odds ratio per SD of AFR proportion (strong: 3) is recovered by a
    logistic fit within its CI in ~95% of 200 draws on the simulated proportions."""
    import statsmodels.api as sm

    from interp.cohort.simulate import DEFAULTS, _phenotypes, american_admixture_scenario

    proportions = np.array(list(admixed["truth"]["ancestry"]["by_sample"].values()))
    z = (proportions[:, 0] - proportions[:, 0].mean()) / proportions[:, 0].std()
    config = {**DEFAULTS, "confounded": {**DEFAULTS["confounded"], "ancestry_odds_ratio": 3.0}}
    sc, rng, covered = american_admixture_scenario(), np.random.default_rng(3), 0
    for _ in range(200):
        columns, _ = _phenotypes(config, sc, np.zeros(len(z)), ["ADMIX"] * len(z), proportions, rng)
        low, high = sm.Logit(columns["confounded"], sm.add_constant(z)).fit(disp=0).conf_int()[1]
        covered += low <= np.log(3.0) <= high
    low, high = _coverage_ci(covered, 200)
    assert low <= 0.95 <= high, covered


def test_labels_absent_writes_no_population_column(admixed):
    out = admixed["out"]
    header = (out / "samples.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["sample_id", "causal", "confounded", "null", "sex", "batch"]
    samples = read_samples_tsv(out / "samples.tsv", ["causal", "confounded", "null"], [], None)
    assert all(s.startswith("S") and "ADMIX" not in s for s in samples["sample_id"].to_list())
    panel = read_genotypes(out / "panel.vcf.gz")
    assert list(panel.samples) == samples["sample_id"].to_list()


def test_labels_absent_shuffles_discrete_populations(tmp_path):
    """A user's cohort without labels: IDs and order say nothing of the population (truth keeps it)."""
    _, truth = _run(tmp_path, seed=6, sim={"labels": "absent"})
    ids = list(truth["ancestry"]["by_sample"])
    yri = [k for k, v in enumerate(truth["ancestry"]["by_sample"].values()) if v[0] == 1.0]
    assert len(yri) == 60 and yri != list(range(60))
    assert all(i.startswith("S") for i in ids)


def test_labels_absent_needs_a_null_population_column():
    import yaml

    from interp.config import check_config
    from tests.conftest import REPO

    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["cohort"]["simulate"]["labels"] = "absent"
    with pytest.raises(InputError, match="population_column: null"):
        check_config(cfg, base_dir=REPO)
    cfg["cohort"]["population_column"] = None
    check_config(cfg, base_dir=REPO)


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
    with pytest.raises(InputError, match="replaced by causal.odds_ratio"):
        simulate_cohort(fasta, annotation, REGION, POPULATIONS, 1, {"causal": {"effect": 2.0}},
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    with pytest.raises(InputError, match="not in AmericanAdmixture_4B18"):
        simulate_cohort(fasta, annotation, REGION, POPULATIONS, 1, {"demography": "AmericanAdmixture_4B18"},
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    # a confounding setting of the other demography's model would do nothing, silently
    with pytest.raises(InputError, match="ancestry_odds_ratio applies to an admixed demography"):
        simulate_cohort(fasta, annotation, REGION, POPULATIONS, 1, {"confounded": {"ancestry_odds_ratio": 5.0}},
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    with pytest.raises(InputError, match="confounded.prevalence applies to discrete populations"):
        simulate_cohort(fasta, annotation, REGION, {"ADMIX": 10}, 1,
                        {"demography": "AmericanAdmixture_4B18", "confounded": {"prevalence": {"ADMIX": 0.9}}},
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    with pytest.raises(InputError, match="no gene of the annotation has an exon inside region far"):
        simulate_cohort(fasta, annotation, Region("far", "chr17", 32000, 39000), POPULATIONS, 1, None,
                        tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
    with pytest.raises(InputError, match="gene 'DOC2B' has no exon inside region far"):
        simulate_cohort(fasta, annotation, Region("far", "chr17", 32000, 39000), POPULATIONS, 1,
                        {"causal": {"gene": "DOC2B"}}, tmp_path / "a.vcf.gz", tmp_path / "s.tsv", tmp_path / "t.json")
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


def test_the_causal_gene_is_configured_not_fixed(tmp_path, capsys):
    """The causal SNV could only be planted in DOC2B (hard-coded): a simulated cohort of any other gene stopped in
    the simulate job, after check-config had accepted it, and `cohort.simulate.causal.gene` was refused as an
    unknown key. It is now a key (null: the first of cohort.genes), checked against cohort.genes by check-config;
    the library takes the first annotated gene with an exon in the region."""
    from interp.cohort.config import causal_gene
    from tests.conftest import check_config_error, demo_config

    assert causal_gene({}, ["GENEX", "DOC2B"]) == "GENEX"
    assert causal_gene({"causal": {"gene": "DOC2B"}}, ["GENEX", "DOC2B"]) == "DOC2B"
    assert causal_gene({}, []) is None  # regions from a BED: the first annotated gene with an exon in them
    assert causal_gene({"causal": {"gene": "DOC2B"}}, []) == "DOC2B"
    cfg = demo_config()
    cfg["cohort"].setdefault("simulate", {}).setdefault("causal", {})["gene"] = "TP53"
    err = check_config_error(cfg, tmp_path / "gene.yaml", capsys)
    assert "cohort.simulate.causal.gene: 'TP53' is not one of cohort.genes (DOC2B)" in err
    # the library: another gene's exon, named or the first with one in the region
    fasta = read_fasta(FASTA)
    annotation = pl.concat([read_annotation(GENES).with_columns(pl.lit("OTHER").alias("gene")),
                            read_annotation(GENES)], how="vertical_relaxed")
    for sim, want in (({"causal": {"gene": "DOC2B"}}, "DOC2B"), (None, "OTHER")):
        truth = simulate_cohort(fasta, annotation, REGION, POPULATIONS, 3, sim, tmp_path / "c.vcf.gz",
                                tmp_path / "s.tsv", tmp_path / "t.json")
        assert truth["causal_variant"]["exon"]["gene"] == want, truth["causal_variant"]
