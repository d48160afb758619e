"""Confound audit: verdict error rates on planted truth (Balding-Nichols cohorts), and its building blocks
against peer tools (statsmodels, scikit-learn).

Cohorts: three populations with allele frequencies drawn from the Balding-Nichols model (F_ST 0.1) or one
two-way admixed population with continuous ancestry; genotype PCs from separate ancestry markers (as the
pipeline does); embeddings X = a random linear map of the region's standardised dosages + noise, so an
embedding carries both ancestry and the causal variant. Rates are asserted with Clopper-Pearson intervals.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from interp.audit import (
    AuditConfig,
    RidgeProbe,
    assign_verdicts,
    audit_phenotype,
    benjamini_hochberg,
    feature_attribution,
    holm,
    logistic_many,
    null_replicates_needed,
    permute_within,
    residualise_in_fold,
    sequential_mc_p,
    stratified_folds,
    verdict,
)
from interp.covariates import CovariateDesign, covariate_design
from interp.errors import InputError

POPS = ("AFR", "EUR", "EAS")
FAST = {"bootstrap": 100, "max_null_replicates": 199, "n_folds": 3}
#: the slow rate tests use the defaults' folds and bootstrap (a one-verdict run needs at most 199 replicates)
FULL = {"bootstrap": 200, "max_null_replicates": 199, "n_folds": 5}


# ------------------------------------------------------------------------------------------ simulation


def make_cohort(kind: str, seed: int, n_per: int = 200, labels: bool = True, admixed: bool = False,
                causal_freq=(0.3, 0.3, 0.3), odds_ratio: float = 3.0, prevalence=(0.3, 0.12, 0.2),
                d: int = 32, n_region: int = 30, n_markers: int = 1000, fst: float = 0.1, baseline=None,
                return_region: bool = False):
    """(X [n, d], y [n], population [n], pcs [n, 5]) for one planted scenario, and with return_region the
    region's dosages [n, n_region + 1] (the causal SNP last), which the audit's variant scan reads.

    kind: "causal" (logit P(y) = b0 + log(OR) x dosage of a causal SNP with per-population allele
    frequencies causal_freq, same effect everywhere, ~30% cases; baseline: per-population prevalences at the
    mean dosage instead, i.e. a causal effect plus ancestry-dependent risk), "ancestry" (prevalence by population, or
    rising with the admixture proportion q in an admixed cohort; no genetic effect in the region), "null".
    labels=False gives every sample the label "all". admixed: one population of 3 x n_per samples whose
    genotypes mix the first two populations' frequencies with per-sample proportion q ~ U(0, 1).
    """
    rng = np.random.default_rng(seed)
    n_snps = n_markers + n_region
    p_anc = rng.uniform(0.05, 0.95, n_snps)
    a, b = p_anc * (1 - fst) / fst, (1 - p_anc) * (1 - fst) / fst
    freqs = np.stack([rng.beta(a, b) for _ in POPS])  # [3, snps]
    cf = np.asarray(causal_freq, dtype=float)
    n = 3 * n_per
    if admixed:
        q = rng.uniform(0, 1, n)
        f = q[:, None] * freqs[0] + (1 - q[:, None]) * freqs[1]
        fc = q * cf[0] + (1 - q) * cf[1]
        population = np.array(["ADMIX"] * n)
        pop_idx = None
    else:
        pop_idx = np.repeat(np.arange(3), n_per)
        f, fc, q = freqs[pop_idx], cf[pop_idx], None
        population = np.array(POPS)[pop_idx]
    G = rng.binomial(2, f).astype(float)
    g_causal = rng.binomial(2, fc).astype(float)
    markers = G[:, :n_markers]
    sd = markers.std(0)
    Z = (markers[:, sd > 0] - markers[:, sd > 0].mean(0)) / sd[sd > 0]
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    pcs = U[:, :5] * S[:5]
    region = np.hstack([G[:, n_markers:], g_causal[:, None]])
    rs = region.std(0)
    rs[rs == 0] = 1
    X = ((region - region.mean(0)) / rs) @ rng.normal(size=(region.shape[1], d)) / np.sqrt(region.shape[1])
    X = X + 0.5 * rng.normal(size=X.shape)
    if kind == "causal":
        beta = np.log(odds_ratio)
        b0 = np.log(0.3 / 0.7) - beta * g_causal.mean()
        if baseline is not None:
            base = np.asarray(baseline, dtype=float)[pop_idx]
            b0 = np.log(base / (1 - base)) - beta * g_causal.mean()
        y = rng.random(n) < 1 / (1 + np.exp(-(b0 + beta * g_causal)))
    elif kind == "ancestry":
        if admixed:
            y = rng.random(n) < 1 / (1 + np.exp(-(np.log(0.1 / 0.9) + 2.5 * q)))
        else:
            y = rng.random(n) < np.asarray(prevalence)[pop_idx]
    else:
        y = rng.random(n) < 0.3
    if not labels:
        population = np.array(["all"] * n)
    if return_region:
        return X, y.astype(int), population, pcs, region
    return X, y.astype(int), population, pcs


def run(X, y, population, pcs, seed: int, dosage=None, **kw) -> dict:
    """One verdict; with dosage [n, V] the within test includes the variant scan, as the stage runs it."""
    cfg = AuditConfig(seed=seed, **{**FAST, **kw})
    ids = None if dosage is None else [f"v{j}" for j in range(dosage.shape[1])]
    r = audit_phenotype(X, y, population, pcs, cfg, variant_dosage=dosage, variant_ids=ids)
    return assign_verdicts([r], cfg)[0]


def verdict_counts(seeds, audit: dict | None = None, scan: bool = True, **cohort) -> dict[str, int]:
    """Verdict counts over cohorts of these seeds; scan: give the audit the region's genotypes (the stage's
    default), else the probe statistic alone."""
    counts = {"PASS": 0, "FAIL": 0, "NO SIGNAL": 0, "INCONCLUSIVE": 0}
    for s in seeds:
        X, y, population, pcs, region = make_cohort(seed=s, return_region=True, **cohort)
        counts[run(X, y, population, pcs, seed=s, dosage=region if scan else None, **(audit or {}))["verdict"]] += 1
    return counts


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    lo = stats.beta.ppf((1 - level) / 2, k, n - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - (1 - level) / 2, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def assert_rate_at_most(k: int, n: int, target: float, what: str) -> None:
    """The planted rate is consistent with <= target: the CP interval's lower end does not exceed it."""
    lo, hi = clopper_pearson(k, n)
    assert lo <= target, f"{what}: {k}/{n} = {k / n:.3f} (95% CI {lo:.3f}-{hi:.3f}) exceeds {target}"


def assert_rate_at_least(k: int, n: int, target: float, what: str) -> None:
    lo, hi = clopper_pearson(k, n)
    assert hi >= target, f"{what}: {k}/{n} = {k / n:.3f} (95% CI {lo:.3f}-{hi:.3f}) below {target}"


# ------------------------------------------------------------------------------------------ rates (default run)

ANCESTRY_SCENARIOS = {
    "mild, labels": {"prevalence": (0.3, 0.12, 0.2)},
    "mild, no labels": {"prevalence": (0.3, 0.12, 0.2), "labels": False},
    "strong, labels": {"prevalence": (0.1, 0.5, 0.85)},
    "strong, no labels": {"prevalence": (0.1, 0.5, 0.85), "labels": False},
    "admixed continuous": {"admixed": True},
}


@pytest.mark.parametrize("freq", [(0.3, 0.3, 0.3), (0.05, 0.3, 0.6)], ids=["flat", "differentiated"])
def test_causal_variant_passes_and_never_fails(freq):
    counts = verdict_counts(range(16), kind="causal", causal_freq=freq, odds_ratio=3.0)
    n = sum(counts.values())
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"causal {freq} FAIL {counts}")
    assert_rate_at_least(counts["PASS"], n, 0.8, f"causal {freq} PASS {counts}")


def test_causal_variant_with_strong_ancestry_risk_is_not_failed():
    """A real effect on top of a six-fold prevalence difference between populations: the probe's signal is
    mostly ancestry, yet the within-ancestry effect is real, so FAIL must stay rare (the absolute margin
    of the FAIL rule; the share bound alone FAILed such cohorts whenever the within test missed)."""
    counts = verdict_counts(range(400, 424), kind="causal", odds_ratio=2.0, baseline=(0.6, 0.1, 0.3))
    n = sum(counts.values())
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"causal + strong ancestry risk FAIL {counts}")


@pytest.mark.parametrize("scenario", list(ANCESTRY_SCENARIOS))
def test_ancestry_only_phenotype_is_not_passed(scenario):
    counts = verdict_counts(range(100, 116), kind="ancestry", **ANCESTRY_SCENARIOS[scenario])
    assert_rate_at_most(counts["PASS"], sum(counts.values()), 0.05, f"ancestry-only {scenario} PASS {counts}")


def test_null_phenotype_neither_passes_nor_fails():
    counts = verdict_counts(range(200, 224), kind="null")
    n = sum(counts.values())
    assert_rate_at_most(counts["PASS"], n, 0.05, f"null PASS {counts}")
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"null FAIL {counts}")
    assert counts["NO SIGNAL"] >= 0.8 * n, counts


def test_strong_ancestry_only_phenotype_fails():
    """With strong prevalence differences the signal is there and ancestry explains it: FAIL in a good share
    of cohorts, INCONCLUSIVE otherwise. At n = 600 FAIL needs the within-ancestry AUROC's upper bound below
    0.55 from a 600-sample bootstrap, which the data give in about 40% of cohorts (7 of 16 here, measured
    2026-11-25); a broken FAIL rule (never FAIL) gives 0 and fails this. (The within-ancestry test still has
    its nominal 5% PASS rate: a calibrated test rejects a true null at alpha.)"""
    counts = verdict_counts(range(300, 316), kind="ancestry", prevalence=(0.1, 0.5, 0.85))
    assert_rate_at_least(counts["FAIL"], sum(counts.values()), 0.3, f"strong ancestry-only FAIL {counts}")


# ------------------------------------------------------------------------------------------ rates (slow, fuller)


# measured 2026-12-06 with the variant scan (README, audit): flat PASS 97/100; differentiated PASS 82/100 (CI
# 73-89%; 70/100 with the probe statistic alone, when this case was an expected failure), FAIL 1/100
@pytest.mark.slow
@pytest.mark.parametrize("freq", [
    (0.3, 0.3, 0.3),
    (0.05, 0.3, 0.6),
], ids=["flat", "differentiated"])
def test_causal_or2_n1000_rates(freq):
    counts = verdict_counts(range(1000, 1100), kind="causal", causal_freq=freq, odds_ratio=2.0, n_per=334, audit=FULL)
    print("rates", counts)  # shown by pytest -rA: the measured rates the README quotes
    n = sum(counts.values())
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"causal OR 2 {freq} FAIL {counts}")
    assert_rate_at_least(counts["PASS"], n, 0.8, f"causal OR 2 {freq} PASS {counts}")


@pytest.mark.slow
def test_causal_with_strong_ancestry_risk_rates_full():
    counts = verdict_counts(range(4000, 4100), kind="causal", odds_ratio=2.0, baseline=(0.6, 0.1, 0.3), n_per=334, audit=FULL)
    print("rates", counts)  # shown by pytest -rA: the measured rates the README quotes
    n = sum(counts.values())
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"causal OR 2 + strong ancestry risk FAIL {counts}")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(ANCESTRY_SCENARIOS))
def test_ancestry_only_rates_full(scenario):
    counts = verdict_counts(range(2000, 2100), kind="ancestry", n_per=334, **ANCESTRY_SCENARIOS[scenario], audit=FULL)
    print("rates", counts)  # shown by pytest -rA: the measured rates the README quotes
    assert_rate_at_most(counts["PASS"], sum(counts.values()), 0.05, f"ancestry-only {scenario} PASS {counts}")


@pytest.mark.slow
def test_null_rates_full():
    counts = verdict_counts(range(3000, 3100), kind="null", n_per=334, audit=FULL)
    print("rates", counts)  # shown by pytest -rA: the measured rates the README quotes
    n = sum(counts.values())
    assert_rate_at_most(counts["PASS"], n, 0.05, f"null PASS {counts}")
    assert_rate_at_most(counts["FAIL"], n, 0.05, f"null FAIL {counts}")


# ------------------------------------------------------------------------------------------ one audit, in detail


def test_audit_row_carries_numbers_intervals_and_rule():
    X, y, population, pcs = make_cohort("causal", 7, causal_freq=(0.05, 0.3, 0.6))
    r = run(X, y, population, pcs, seed=7)
    for key in ("verdict", "verdict_rule", "reason", "p_within", "p_within_adjusted", "p_signal",
                "p_signal_adjusted", "n_null_replicates", "multiplicity", "within_auroc", "within_auroc_ci_low",
                "within_auroc_ci_high", "auroc_ancestry_only", "auroc_ancestry_only_ci_low", "ancestry_auroc",
                "auroc_random_cv", "auroc_lopo_cv", "auroc_residualised", "permutation_p", "effective_n_within"):
        assert key in r, key
    assert r["verdict"] == "PASS" and r["verdict_rule"] == "within_ancestry_signal", r["reason"]
    assert r["multiplicity"] == "holm over 1 verdict"
    assert r["within_auroc_ci_low"] <= r["within_auroc"] <= r["within_auroc_ci_high"]
    assert r["within_auroc_ci_low"] > 0.5
    assert r["ancestry_auroc"] > 0.9  # ancestry is written all over the embeddings
    assert str(round(r["p_within"], 3))[:4] in r["reason"] or f"{r['p_within']:.3g}" in r["reason"]
    assert (f"ancestry-only AUROC {r['auroc_ancestry_only']:.3g} [{r['auroc_ancestry_only_ci_low']:.3g}, "
            f"{r['auroc_ancestry_only_ci_high']:.3g}]") in r["reason"]  # the PASS reason gives the interval too
    groups = r["by_population"]
    assert sorted(g["population"] for g in groups) == sorted(POPS)
    for g in groups:
        assert g["n"] == 200 and g["auroc_ci_low"] <= g["auroc"] <= g["auroc_ci_high"]
    # the within statistic is the larger of the two probes' statistics; the headline AUROC the larger estimate
    assert r["within_statistic"] == max(r["within_statistic_residual_probe"], r["within_statistic_phenotype_probe"])
    both = {k: r[f"within_auroc_{k}_probe"] for k in ("phenotype", "ancestry_residualised")}
    assert r["within_auroc"] == max(both.values()) and r["within_auroc"] == both[r["within_auroc_probe"]]
    again = run(X, y, population, pcs, seed=7)
    assert again["p_within"] == r["p_within"] and again["within_auroc"] == r["within_auroc"]


def test_within_statistic_is_the_maximum_over_refitted_probes():
    """Every null replicate refits both probes: the statistic of a batch equals the per-row maximum of the two
    probes' statistics, each computed on that row's own y (no probe fitted once and reused)."""
    X, y, population, pcs = make_cohort("causal", 11, n_per=60)
    from interp.audit import ancestry_strata, nuisance_design, within_statistic, within_statistics
    strata, _ = ancestry_strata(population, pcs, 4, 0)
    A = nuisance_design(strata, pcs)["ancestry"]
    probe = RidgeProbe.from_embeddings(X)
    rng = np.random.default_rng(0)
    Y = np.stack([y] + [permute_within(y, strata, rng) for _ in range(5)]).astype(float)
    parts = within_statistics(Y, probe, A)
    assert set(parts) == {"residual", "phenotype"}
    np.testing.assert_allclose(within_statistic(Y, probe, A), np.maximum(parts["residual"][0], parts["phenotype"][0]))
    for b in range(Y.shape[0]):
        one = within_statistics(Y[b:b + 1], probe, A)
        for name in parts:
            np.testing.assert_allclose(one[name][0][0], parts[name][0][b], rtol=1e-6, atol=1e-8)


def test_collinear_phenotype_is_inconclusive():
    """A population that is all cases, the others (nearly) all controls: ancestry and phenotype cannot be
    separated. PASS stays possible at the test's level (a significant within signal is still evidence)."""
    counts = {}
    for seed in range(8):
        X, _, population, pcs = make_cohort("null", 50 + seed, n_per=100)
        y = (population == "AFR").astype(int)
        y[np.flatnonzero(population == "EUR")[:2]] = 1  # a couple of within-population cases
        r = run(X, y, population, pcs, seed=seed)
        counts[r["verdict_rule"]] = counts.get(r["verdict_rule"], 0) + 1
        assert r["effective_n_within"] < 30 and r["verdict"] != "FAIL", r["reason"]
    assert counts.get("ancestry_phenotype_collinear", 0) >= 6, counts


def test_multiplicity_over_the_run():
    """Holm over all verdicts: raw and adjusted p are both recorded and the adjusted ones are Holm's."""
    results = []
    cfg = AuditConfig(seed=1, **FAST)
    for seed, kind in enumerate(["causal", "null", "ancestry"]):
        X, y, population, pcs = make_cohort(kind, 40 + seed, n_per=120)
        results.append(audit_phenotype(X, y, population, pcs, cfg))
    assign_verdicts(results, cfg)
    raw = np.array([r["p_within"] for r in results])
    np.testing.assert_allclose([r["p_within_adjusted"] for r in results], holm(raw))
    assert all(r["multiplicity"] == "holm over 3 verdicts" for r in results)
    assert all(r["p_within_adjusted"] >= r["p_within"] for r in results)


def test_verdict_rules_at_their_boundaries():
    """Each rule of the module docstring at its boundary: p exactly alpha is significant, NaN p is not, an
    effective n exactly min_effective_n is not "below", a CI bound exactly at 0.5 + margin (or at the share
    bound) is not "below"; a NaN probe AUROC makes the share bound NaN, so nothing is excluded (no FAIL)."""
    cfg = AuditConfig()
    base = {"p_within": 0.5, "p_signal": 1e-3, "p_within_adjusted": 0.5, "p_signal_adjusted": 1e-3,
            "multiplicity": "holm over 1 verdict", "within_auroc": 0.5, "within_auroc_ci_low": 0.45,
            "within_auroc_ci_high": 0.52, "auroc_probe": 0.8, "auroc_probe_ci_low": 0.7, "auroc_probe_ci_high": 0.9,
            "auroc_ancestry_only": 0.8, "auroc_ancestry_only_ci_low": 0.7, "auroc_ancestry_only_ci_high": 0.9,
            "effective_n_within": 100.0, "p_ancestry": 1e-3, "p_covariates": float("nan"),
            "p_ancestry_and_covariates": float("nan")}

    def rule(**kw) -> str:
        return verdict({**base, **kw}, cfg)[1]

    assert rule() == "signal_explained_by_ancestry"
    assert rule(p_within_adjusted=0.05) == "within_ancestry_signal"
    assert rule(p_within_adjusted=float("nan")) == "signal_explained_by_ancestry"
    assert rule(p_signal_adjusted=0.05) == "signal_explained_by_ancestry"
    assert rule(p_signal_adjusted=float("nan")) == "no_signal"
    assert rule(effective_n_within=30.0) == "signal_explained_by_ancestry"
    assert rule(effective_n_within=29.99) == "ancestry_phenotype_collinear"
    assert rule(effective_n_within=float("nan")) == "ancestry_phenotype_collinear"  # was FAIL: NaN < 30 is False
    assert rule(within_auroc_ci_high=0.55) == "within_effect_undetermined"
    assert rule(within_auroc_ci_high=0.5499) == "signal_explained_by_ancestry"
    assert rule(auroc_probe=0.58, within_auroc_ci_high=0.54) == "within_effect_undetermined"
    assert rule(auroc_probe=0.58, within_auroc_ci_high=0.5399) == "signal_explained_by_ancestry"
    assert rule(within_auroc_ci_high=float("nan")) == "within_effect_undetermined"
    assert rule(p_ancestry=0.05) == "signal_explained_by_ancestry"
    assert rule(p_ancestry=float("nan"), p_covariates=0.01) == "signal_explained_by_covariates"
    assert rule(p_ancestry=0.2, p_covariates=0.3, p_ancestry_and_covariates=0.01) == (
        "signal_explained_by_ancestry_and_covariates")
    # min(margin, share x (NaN - 0.5)) was the margin (Python's min skips a NaN second argument): FAIL
    assert rule(auroc_probe=float("nan")) == "within_effect_undetermined"


def test_a_covariate_that_is_the_population_does_not_hide_ancestry():
    """A site covariate identical to the population labels: ancestry and the covariate each add nothing beyond
    the other (p_ancestry, p_covariates not significant), so only their joint test can show that they explain
    the phenotype. Verdicts match the audit without the covariate (FAIL by the joint rule where that one
    FAILs), and a causal phenotype is not FAILed with it."""
    for seed in range(4):
        X, y, population, pcs = make_cohort("ancestry", seed, prevalence=(0.6, 0.1, 0.3))
        cfg = AuditConfig(seed=seed, **FAST)
        site = covariate_design({"site": population}, ["site"])
        plain = run(X, y, population, pcs, seed=seed)
        r = assign_verdicts([audit_phenotype(X, y, population, pcs, cfg, covariates=site)], cfg)[0]
        assert r["p_ancestry"] > 0.01 and r["p_ancestry_and_covariates"] < 1e-10 and r["df_ancestry_and_covariates"] > 0
        assert r["verdict"] == plain["verdict"], (r["reason"], plain["reason"])
        if r["verdict"] == "FAIL":
            assert r["verdict_rule"] == "signal_explained_by_ancestry_and_covariates", r["reason"]
        X, y, population, pcs = make_cohort("causal", 10 + seed, causal_freq=(0.1, 0.5, 0.9))
        r = assign_verdicts([audit_phenotype(X, y, population, pcs, cfg, covariates=site)], cfg)[0]
        assert r["verdict"] != "FAIL", r["reason"]
    assert np.isnan(plain["p_ancestry_and_covariates"])  # no covariates: nothing joint to test


@pytest.mark.slow
def test_joint_ancestry_covariate_rule_keeps_the_error_rates():
    """The joint ancestry + covariates FAIL rule as a rate: 40 cohorts per truth (n 600, OR 3 with causal allele
    frequencies 0.1 / 0.5 / 0.9, or prevalences 0.6 / 0.1 / 0.3 without a genetic effect), each audited with a
    site covariate equal to the population. A real effect is FAILed in at most 2 of 40 (5%), and the ancestry-only
    phenotype is FAILed as often as without the covariate, cohort for cohort (the covariate hides nothing).
    Measured (2026-12-05): causal FAIL 0/40 (PASS 25, INCONCLUSIVE 15); ancestry-only FAIL 20/40 with the covariate,
    its verdict the same as without it in 39/40 (before the joint rule none of the 40 could FAIL)."""
    causal_fail, same = 0, 0
    for seed in range(40):
        cfg = AuditConfig(seed=seed, **FAST)
        X, y, population, pcs = make_cohort("causal", 300 + seed, causal_freq=(0.1, 0.5, 0.9))
        site = covariate_design({"site": population}, ["site"])
        r = assign_verdicts([audit_phenotype(X, y, population, pcs, cfg, covariates=site)], cfg)[0]
        causal_fail += r["verdict"] == "FAIL"
        X, y, population, pcs = make_cohort("ancestry", 400 + seed, prevalence=(0.6, 0.1, 0.3))
        site = covariate_design({"site": population}, ["site"])
        r = assign_verdicts([audit_phenotype(X, y, population, pcs, cfg, covariates=site)], cfg)[0]
        same += r["verdict"] == run(X, y, population, pcs, seed=seed)["verdict"]
    assert causal_fail <= 2, causal_fail
    assert same >= 38, same


def test_covariates_enter_the_ancestry_model_and_descriptors_are_only_reported():
    """A batch that tracks the phenotype and marks the embeddings: adjusting for it leaves no within signal."""
    X, _, population, pcs = make_cohort("null", 3)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=X.shape[0])
    batch = np.where(rng.random(X.shape[0]) < 0.85, y, 1 - y)
    X = X + 2.0 * np.outer(batch, rng.normal(size=X.shape[1]) / np.sqrt(X.shape[1]))
    gc = rng.normal(size=X.shape[0])
    design = covariate_design({"batch": np.array(["b1", "b2"])[batch], "site": np.array(["s1"] * X.shape[0])},
                              ["batch", "site"])
    cfg = AuditConfig(seed=3, **FAST)
    gc_by_ancestry = pcs[:, 0] / pcs[:, 0].std() + rng.normal(size=X.shape[0])
    r = assign_verdicts([audit_phenotype(X, y, population, pcs, cfg, covariates=design,
                                         descriptors={"gc": gc, "gc_by_ancestry": gc_by_ancestry})], cfg)[0]
    assert r["verdict"] != "PASS", r["reason"]
    assert r["p_covariates"] < 1e-6
    assert r["covariates"]["batch"]["adjusted_for"] and r["covariates"]["batch"]["kind"] == "categorical"
    assert r["covariates"]["site"]["adjusted_for"] is False  # constant: dropped from the design, said so
    assert r["descriptors"]["gc"]["adjusted_for"] is False and r["descriptors"]["gc"]["p_value"] > 0.001
    assert r["descriptors"]["gc"]["ancestry_p"] > 0.001
    # constant among this phenotype's samples only (the other site's samples lack its value): dropped from the
    # design as well, so not adjusted for (it was reported adjusted for, from the whole cohort's columns)
    y_site = y.astype(float)
    y_site[: X.shape[0] // 2] = np.nan
    two_sites = covariate_design({"site": np.repeat(["s1", "s2"], [X.shape[0] // 2, X.shape[0] - X.shape[0] // 2])},
                                 ["site"])
    r_site = audit_phenotype(X, y_site, population, pcs, cfg, covariates=two_sites)
    assert r_site["covariates"]["site"]["adjusted_for"] is False and r_site["df_covariates"] == 0
    assert r["descriptors"]["gc_by_ancestry"]["ancestry_p"] < 1e-6 and r["descriptors"]["gc_by_ancestry"]["ancestry_r2"] > 0.3
    unadjusted = run(X, y, population, pcs, seed=3)
    assert unadjusted["verdict"] == "PASS"  # without the batch the embedding signal looks within-ancestry


def test_pc_bins_do_not_depend_on_the_order_of_the_samples():
    """Without labels the strata are k-means bins of the PCs. k-means' seeded starts pick rows by index, so
    reordering the samples (samples.tsv, the VCF) moved samples between bins: on a continuous ancestry cloud of
    300, 8 of 8 shuffles gave another partition. The partition (bin name -> its samples) is now the same."""
    from interp.audit import ancestry_strata

    rng = np.random.default_rng(1)
    n = 300
    pcs = np.c_[rng.beta(2, 2, n) + 0.05 * rng.normal(size=n), 0.05 * rng.normal(size=(n, 4))]
    unlabelled = np.array(["all"] * n)
    strata, source = ancestry_strata(unlabelled, pcs, 4, 0)
    assert source == "pc_bins" and np.unique(strata).size == 4
    for shuffle in range(6):
        order = np.random.default_rng(100 + shuffle).permutation(n)
        shuffled, _ = ancestry_strata(unlabelled, pcs[order], 4, 0)
        assert np.array_equal(shuffled, strata[order]), shuffle


def test_a_descriptor_setting_apart_a_few_people_is_not_reported_against_the_phenotype():
    """`missing_rate` is 0 but for the 1-4 samples with missing calls (a count the report gives); its AUROC
    against the phenotype, 0.5 + a / (2 n_cases) - (k - a) / (2 n_controls), then gave a, those few people's cases.
    Such a descriptor's statistics are NaN with `small_cell`, as are those of a group of 5 or more holding 1-4
    cases; a continuous descriptor, or a common split with 5 or more of each, is reported as before."""
    from interp.audit import descriptor_report

    rng = np.random.default_rng(0)
    n = 200
    y = np.zeros(n)
    y[rng.choice(n, 60, replace=False)] = 1
    strata, pcs = np.repeat(["A", "B"], n // 2), rng.normal(size=(n, 3))
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    for k, a in ((1, 1), (1, 0), (3, 2), (4, 0)):
        miss = np.zeros(n)
        miss[np.r_[cases[:a], controls[:k - a]]] = 0.8
        d = descriptor_report(miss, y, strata, pcs)
        assert d["small_cell"] == "<5 among the samples off its most common value", (k, a)
        assert "auroc" not in d and np.isnan(d["pearson_r"]) and np.isnan(d["ancestry_r2"])
    few_cases = np.zeros(n)
    few_cases[np.r_[cases[:2], controls[:20]]] = 0.5  # 22 set apart, 2 of them cases
    assert descriptor_report(few_cases, y, strata, pcs)["small_cell"].startswith("<5 cases among the samples off")
    common = np.zeros(n)
    common[np.r_[cases[:10], controls[:20]]] = 0.5
    continuous = rng.normal(size=n)
    for x in (common, continuous):
        d = descriptor_report(x, y, strata, pcs)
        assert "small_cell" not in d and np.isfinite(d["auroc"]) and np.isfinite(d["pearson_r"])


def test_permutation_null_inside_strata():
    """With labels, null "auto" is the exact permutation inside strata; the parametric bootstrap agrees."""
    X, y, population, pcs = make_cohort("causal", 8, causal_freq=(0.05, 0.3, 0.6))
    r = run(X, y, population, pcs, seed=8)
    assert r["verdict"] == "PASS" and "permuted inside strata" in r["null_method"], r["reason"]
    # on ancestry-only phenotypes the exact within-strata permutation null and the parametric bootstrap agree
    diffs = []
    for seed in (9, 10, 11):
        X, y, population, pcs = make_cohort("ancestry", seed, prevalence=(0.1, 0.5, 0.85))
        full = {"max_null_replicates": 99, "stop_exceedances": 1000}
        diffs.append(run(X, y, population, pcs, seed=seed, null="permute", **full)["p_within"]
                     - run(X, y, population, pcs, seed=seed, null="bootstrap", **full)["p_within"])
    assert np.max(np.abs(diffs)) < 0.15, diffs


def labelled_gradient_cohort(seed: int, n: int = 240, d: int = 8, slope: float = 20.0):
    """Two population labels whose members differ in continuous ancestry q (admixed individuals under one
    label; PC1 = q), a phenotype that follows q alone, and an embedding that reads q: no within-ancestry
    effect, so any PASS is false."""
    rng = np.random.default_rng(seed)
    population = np.array(["A"] * (n // 2) + ["B"] * (n // 2))
    q = np.where(population == "A", rng.beta(2, 5, n), rng.beta(5, 2, n))
    pcs = np.column_stack([q, rng.normal(size=n)])
    y = (rng.random(n) < 1 / (1 + np.exp(0.5 - slope * (q - q.mean())))).astype(int)
    X = np.column_stack([q[:, None] + 0.05 * rng.normal(size=(n, 2)), rng.normal(size=(n, d - 2))])
    return X, y, population, pcs


def test_auto_null_permutes_inside_labels_only_where_the_pcs_add_nothing():
    """`null: auto` permutes y inside the labels only where the labels carry all of ancestry's part in y: with
    a phenotype that follows continuous ancestry inside a label it takes the parametric bootstrap."""
    r = run(*labelled_gradient_cohort(0), seed=0)
    assert r["p_pcs_beyond_strata"] < 1e-6 and "bootstrap" in r["null_method"]
    X, y, population, pcs = make_cohort("ancestry", 10, prevalence=(0.1, 0.5, 0.85))  # label-only ancestry risk
    r = run(X, y, population, pcs, seed=10)  # (the pre-test's p is uniform here: 0.12-0.88 over seeds 9-13)
    assert r["p_pcs_beyond_strata"] >= 0.2 and "permuted inside strata" in r["null_method"]


@pytest.mark.slow
def test_auto_null_is_calibrated_when_ancestry_varies_inside_labels():
    """Planted truth over 400 cohorts of the labelled-gradient kind (no within-ancestry effect): the share of
    p_within <= 0.05 stays at its level under `null: auto` (measured 3.5%, 1.0% at 0.01). The former rule
    permuted inside the labels here: 6.75% (1.5% at 0.01) on the same cohorts and settings, which this bound
    rejects; a reviewer's run with other settings gave 10.7% against the bootstrap's 4.3% over 300."""
    p = np.array([run(*labelled_gradient_cohort(seed), seed=seed, **{**FULL, "max_null_replicates": 999})["p_within"]
                  for seed in range(400)])
    rate = float((p <= 0.05).mean())
    assert rate <= 0.055, rate


def test_missing_phenotypes_are_dropped_and_counted():
    X, y, population, pcs = make_cohort("causal", 4, n_per=100)
    y = y.astype(float)
    y[:10] = np.nan
    r = run(X, y, population, pcs, seed=4)
    assert r["n_missing_phenotype"] == 10 and r["n_samples"] == y.size - 10


def test_without_labels_strata_come_from_pc_bins():
    X, y, population, pcs = make_cohort("causal", 6, n_per=100, labels=False)
    r = run(X, y, population, pcs, seed=6)
    assert r["strata_source"] == "pc_bins" and r["n_strata"] == 4
    assert np.isnan(r["auroc_lopo_cv"])  # no other population to train on
    assert len(r["by_stratum"]) == 4


def test_bad_inputs_raise_input_error():
    X, y, population, pcs = make_cohort("null", 0, n_per=30)
    with pytest.raises(InputError, match="binary"):
        audit_phenotype(X, y * 2.5, population, pcs, AuditConfig(**FAST))
    with pytest.raises(InputError, match="samples"):
        audit_phenotype(X, y[:-1], population, pcs, AuditConfig(**FAST))
    with pytest.raises(InputError, match="descriptor gc"):
        audit_phenotype(X, y, population, pcs, AuditConfig(**FAST), descriptors={"gc": np.zeros(3)})
    with pytest.raises(InputError, match="no PC column"):  # without labels a TypeError from np.lexsort
        audit_phenotype(X, y, np.array(["all"] * y.size), pcs[:, :0], AuditConfig(**FAST))


def test_covariate_matrix_of_other_samples_is_refused_not_reshaped():
    """A design of 2n rows and one column was silently folded into n rows of two columns; an empty design
    with no rows (no covariates, no sample_ids) crashed the reshape."""
    X, y, population, pcs = make_cohort("null", 0, n_per=30)
    other = CovariateDesign(matrix=np.arange(2.0 * y.size)[:, None], columns=["age"])
    with pytest.raises(InputError, match=r"covariates: a design matrix of shape \(180, 1\).*90 samples"):
        audit_phenotype(X, y, population, pcs, AuditConfig(**FAST), covariates=other)
    r = audit_phenotype(X, y, population, pcs, AuditConfig(**FAST), covariates=covariate_design({}, []))
    assert r["n_samples"] == y.size and np.isnan(r["p_covariates"])


def test_missing_population_labels_are_refused_not_a_population():
    """None / NaN labels (or their str() forms) became a population "None" / "nan" of their own."""
    X, y, population, pcs = make_cohort("null", 0, n_per=30)
    labels = population.astype(object)
    labels[[3, 50]] = [None, np.nan]
    for given in (labels, labels.astype(str)):
        with pytest.raises(InputError, match=r"2 sample\(s\) with a phenotype have no population label \(rows 3, 50\)"):
            audit_phenotype(X, y, given, pcs, AuditConfig(**FAST))
    y_missing = y.astype(float)
    y_missing[[3, 50]] = np.nan  # samples left out anyway need no label
    r = audit_phenotype(X, y_missing, labels, pcs, AuditConfig(**FAST))
    assert r["n_strata"] == 3 and r["n_missing_phenotype"] == 2
    # the unlabelled are the report's cohort-table group NO_LABEL, part of the partition its masking reads
    from interp.audit import NO_LABEL
    counts = dict(zip(*np.unique(population, return_counts=True), strict=True))
    counts[population[3]] -= 1
    counts[population[50]] -= 1
    assert r["group_sizes"]["population"] == {NO_LABEL: 2, **{str(k): int(v) for k, v in counts.items()}}


def test_phenotype_as_text_and_coded_one_two():
    """Text phenotypes with "NA" for missing are read as samples.tsv reads them; a 1/2 coding is named."""
    X, y, population, pcs = make_cohort("null", 0, n_per=30)
    text = y.astype(str).astype(object)
    text[:4] = ["NA", "", None, "nan"]
    r = audit_phenotype(X, text, population, pcs, AuditConfig(**FAST))
    assert r["n_missing_phenotype"] == 4 and r["n_samples"] == y.size - 4
    with pytest.raises(InputError, match=r"found 1, 2 \(coded 1/2 as in plink"):
        audit_phenotype(X, y + 1, population, pcs, AuditConfig(**FAST))
    with pytest.raises(InputError, match=r"value 'case' \(row 0\) is not a number"):
        audit_phenotype(X, np.where(np.arange(y.size) == 0, "case", text), population, pcs, AuditConfig(**FAST))


# ------------------------------------------------------------------------------------------ building blocks


def test_loo_ridge_scores_match_refitting_without_each_row():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)) * [1, 2, 3, 1, 1, 5]
    y = (X[:, 0] + rng.normal(size=40) > 0).astype(float)
    probe = RidgeProbe.from_embeddings(X)
    scores, lam = probe.loo_scores(y[None], grid=(0.5,))
    Xs = (X - X.mean(0)) / X.std(0)
    yc = y - y.mean()
    for i in range(40):
        keep = np.arange(40) != i
        m = Ridge(alpha=0.5 * 40, fit_intercept=False).fit(Xs[keep], yc[keep])
        assert scores[0, i] == pytest.approx(float(m.predict(Xs[i:i + 1])[0]), abs=1e-8)
    assert lam[0] == 0.5


def test_logistic_many_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    D = rng.normal(size=(300, 3))
    Y = (rng.random((2, 300)) < 1 / (1 + np.exp(-(D @ [1.0, -0.5, 0.2])))).astype(float)
    fit = logistic_many(D, Y, penalty=0.0)
    for b in range(2):
        ref = sm.Logit(Y[b], sm.add_constant(D)).fit(disp=0)
        np.testing.assert_allclose(fit["beta"][b], ref.params, rtol=1e-6, atol=1e-8)
        assert fit["loglik"][b] == pytest.approx(ref.llf, rel=1e-9)


def test_holm_and_bh_match_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(2).uniform(size=25) ** 3
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])


def test_sequential_monte_carlo_p_is_uniform_under_the_null():
    """P(p <= a) <= a for the Besag-Clifford p-value, over many null draws; and it stops early."""
    rng = np.random.default_rng(3)
    ps, used = [], []
    for _ in range(2000):
        p, b, _ = sequential_mc_p(rng.normal(), lambda m: rng.normal(size=m), h=5, b_max=199, first_round=16)
        ps.append(p)
        used.append(b)
    ps = np.array(ps)
    for a in (0.05, 0.1, 0.5):
        k = int((ps <= a).sum())
        assert_rate_at_most(k, ps.size, a, f"P(p <= {a})")
    assert np.median(used) < 30
    p, b, k = sequential_mc_p(10.0, lambda m: rng.normal(size=m), h=5, b_max=199)
    assert (p, b, k) == (1 / 200, 199, 0)


def test_null_replicates_reach_the_holm_level():
    b = null_replicates_needed(27, 0.05, 10_000)
    assert (1 + 3) / (1 + b) <= 0.05 / 27
    assert null_replicates_needed(1000, 0.05, 4000) == 4000


def test_ancestry_dominated_count_on_noise_and_planted_features():
    """Pure-noise features are (almost) never called ancestry-dominated; a planted ancestry feature is."""
    X, y, population, pcs = make_cohort("null", 2, n_per=100)
    rng = np.random.default_rng(2)
    F = rng.normal(size=(y.size, 400))
    noise = feature_attribution(F, y, pcs, population)
    assert noise["ancestry_dominated"].sum() <= 0.02 * 400
    F[:, 3] += 2.0 * pcs[:, 0] / pcs[:, 0].std()  # ancestry feature
    F[:, 7] += 2.0 * y  # phenotype feature
    table = feature_attribution(F, y, pcs, population)
    assert table["ancestry_dominated"][3] and not table["ancestry_dominated"][7]
    assert int(np.argmin(table["p_phenotype"].to_numpy())) == 7
    anc = table["partial_r2_ancestry"].to_numpy()
    assert int(np.argmax(anc)) == 3 and anc[3] > 0.5
    leak = table["ancestry_auroc_feature"].to_numpy()
    assert int(np.argmax(leak)) == 3


def test_feature_attribution_f_tests_match_statsmodels_with_a_redundant_pc():
    """The two F-tests match statsmodels' nested-model comparison, also when a PC column is redundant (its
    degrees of freedom come from the rank, not the column count)."""
    import statsmodels.api as sm

    X, y, population, pcs = make_cohort("null", 3, n_per=60)
    pcs = np.column_stack([pcs[:, :3], pcs[:, 0] + pcs[:, 1]])  # 4 columns, rank 3
    rng = np.random.default_rng(3)
    F = rng.normal(size=(y.size, 2))
    F[:, 1] += 0.4 * pcs[:, 0] / pcs[:, 0].std() + 0.3 * y
    table = feature_attribution(F, y, pcs, population)
    for j in range(2):
        full = sm.OLS(F[:, j], np.column_stack([np.ones(y.size), y, pcs])).fit()
        no_pcs = sm.OLS(F[:, j], np.column_stack([np.ones(y.size), y])).fit()
        no_y = sm.OLS(F[:, j], np.column_stack([np.ones(y.size), pcs])).fit()
        assert table["p_ancestry"][j] == pytest.approx(full.compare_f_test(no_pcs)[1], rel=1e-6)
        assert table["p_phenotype"][j] == pytest.approx(full.compare_f_test(no_y)[1], rel=1e-6)


def test_residualisation_uses_training_rows_only():
    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    train = np.arange(35)
    out = residualise_in_fold(X, Z, train)
    D = np.hstack([np.ones((50, 1)), Z])
    beta = np.linalg.lstsq(D[train], X[train], rcond=None)[0]
    np.testing.assert_allclose(out, X - D @ beta)
    X2, Z2 = X.copy(), Z.copy()
    X2[35:] += 100.0
    Z2[35:] *= -3.0
    np.testing.assert_allclose(residualise_in_fold(X2, Z2, train)[:35], out[:35])


def test_permute_within_keeps_population_prevalence():
    rng = np.random.default_rng(0)
    _, y, population, _ = make_cohort("ancestry", 0, n_per=50)
    perm = permute_within(y, population, rng)
    for p in POPS:
        assert perm[population == p].sum() == y[population == p].sum()
    assert not np.array_equal(perm, y)


def test_stratified_folds_balance_strata():
    strata = np.repeat(["a", "b", "c"], [50, 30, 20])
    folds = stratified_folds(strata, 5, seed=0)
    tested = np.sort(np.concatenate([t for _, t in folds]))
    assert np.array_equal(tested, np.arange(100))
    for _, test in folds:
        assert [np.sum(strata[test] == s) for s in "abc"] == [10, 6, 4]


# ------------------------------------------------------------------------------------------ the stage


def _embedding_dir(tmp_path, n_per: int = 150):
    import anndata as ad
    import pandas as pd

    out = tmp_path / "emb" / "toy"
    out.mkdir(parents=True)
    # a small embedding (d = 8) so that a probe at n = 450 has the power to see OR 3
    X, y, population, pcs = make_cohort("causal", 21, n_per=n_per, n_region=6, d=8)
    _, y_anc, _, _ = make_cohort("ancestry", 21, n_per=n_per, n_region=6, d=8, prevalence=(0.1, 0.5, 0.85))
    rng = np.random.default_rng(21)
    obs = pd.DataFrame({"population": population, "causal": y.astype(float), "confounded": y_anc.astype(float),
                        "sex": rng.choice(["F", "M"], size=y.size), "batch": rng.choice(["b1", "b2", "b3"], size=y.size),
                        "gc": rng.normal(0.45, 0.01, size=y.size), "missing_rate": np.zeros(y.size)},
                       index=[f"s{i}" for i in range(y.size)])
    for layer in ("block1", "block2"):
        a = ad.AnnData(X=(X + rng.normal(scale=0.1, size=X.shape)).astype(np.float32), obs=obs.copy())
        a.obsm["X_pca"] = pcs
        a.uns.update({"model": "toy", "layer": layer, "kind": "embedding"})
        a.write_h5ad(out / f"{layer}.samples.h5ad")
    return out


def test_audit_stage_writes_adjusted_verdicts_for_every_row(tmp_path):
    import json

    import polars as pl

    from interp import stages

    emb = _embedding_dir(tmp_path)
    params = {"audit": {"n_folds": 3, "bootstrap": 50, "C": 1.0, "alpha": 0.05, "max_null_replicates": 999,
                        "stop_exceedances": 10, "multiplicity": "holm", "null": "auto", "ancestry_bins": 4,
                        "min_effective_n": 30, "fail_max_within_share": 0.5},
              "phenotypes": ["causal", "confounded"],
              "covariates": ["sex", "batch"], "covariate_missing": "refuse", "population_column": "population",
              "sae_layer": "block2", "seed": 3}
    out = {"parquet": tmp_path / "audit.parquet", "tsv": tmp_path / "audit.tsv", "details": tmp_path / "audit.json"}
    stages.audit(stages.Job(input={"emb_dirs": [str(emb)]}, output={k: str(v) for k, v in out.items()},
                            params=params))
    table = pl.read_parquet(out["parquet"])
    assert table.height == 4
    assert set(table["multiplicity"]) == {"holm over 4 verdicts"}
    for col in ("verdict", "verdict_rule", "reason", "reasons", "p_within", "p_within_adjusted", "p_signal",
                "p_signal_adjusted", "n_null_replicates", "ancestry_auroc", "auroc_random_cv", "auroc_lopo_cv",
                "auroc_residualised", "auroc_ancestry_only", "permutation_p", "within_auroc_ci_low"):
        assert col in table.columns, col
    np.testing.assert_allclose(table.sort("p_within")["p_within_adjusted"].to_numpy(),
                               holm(table.sort("p_within")["p_within"].to_numpy()))
    verdicts = dict(zip(table["phenotype"] + "/" + table["layer"], table["verdict"], strict=True))
    assert verdicts["causal/block1"] == "PASS" and verdicts["causal/block2"] == "PASS", verdicts
    assert "PASS" not in {verdicts["confounded/block1"], verdicts["confounded/block2"]}, verdicts
    details = json.loads(out["details"].read_text())
    d = details[0]
    assert d["covariate_policy"]["missing"] == "refuse"
    assert d["covariate_policy"]["covariates"]["batch"]["kind"] == "categorical"
    assert d["covariate_policy"]["descriptors_not_adjusted_for"] == ["gc", "missing_rate"]
    assert {g["population"] for g in d["by_population"]} == set(POPS)
    assert all("auroc_ci_low" in g for g in d["by_population"])
    assert d["attribution"]["n_ancestry_dominated"] <= d["attribution"]["n_features"]


def test_audit_stage_refuses_or_imputes_missing_covariates(tmp_path):
    import anndata as ad

    from interp import stages

    emb = _embedding_dir(tmp_path, n_per=40)
    for path in emb.glob("*.samples.h5ad"):
        a = ad.read_h5ad(path)
        a.obs["batch"] = a.obs["batch"].astype(object)
        a.obs.iloc[:3, a.obs.columns.get_loc("batch")] = np.nan
        a.write_h5ad(path)
    params = {"audit": {"bootstrap": 20, "max_null_replicates": 99, "n_folds": 3}, "phenotypes": ["causal"],
              "covariates": ["batch"], "covariate_missing": "refuse", "population_column": "population",
              "sae_layer": "none", "seed": 1}
    out = {"parquet": tmp_path / "a.parquet", "tsv": tmp_path / "a.tsv", "details": tmp_path / "a.json"}
    job = stages.Job(input={"emb_dirs": [str(emb)]}, output={k: str(v) for k, v in out.items()}, params=params)
    with pytest.raises(InputError, match="covariate 'batch' has 3 missing"):
        stages.audit(job)
    job.params.update({"covariate_missing": "impute", "population_column": None})
    stages.audit(job)
    import polars as pl

    row = pl.read_parquet(out["parquet"]).row(0, named=True)
    assert row["strata_source"] == "pc_bins"  # population_column: null means no labels


def test_between_group_difference_leaves_out_groups_under_five() -> None:
    """A group of 2-4 people is never reported on: the between-group difference spans the larger groups only,
    matching fairlearn's between-groups difference on them."""
    from fairlearn.metrics import MetricFrame

    from interp.audit import by_population

    rng = np.random.default_rng(0)
    # A is masked as RARE's complement (its size would be the total minus B's and C's): B and C are compared
    population = np.array(["A"] * 60 + ["B"] * 60 + ["C"] * 60 + ["RARE"] * 4)
    y = rng.integers(0, 2, population.size).astype(float)
    y[-4:] = [1, 0, 1, 0]
    score = rng.normal(size=population.size) + 0.5 * y
    score[-4:] = [5.0, -5.0, 5.0, -5.0]  # a perfect AUROC in the small group: the extreme if it counted
    groups, diff = by_population(y, score, population, n_boot=0, seed=0)
    big = np.isin(population, ["B", "C"])
    frame = MetricFrame(metrics={"prevalence": lambda t, p: float(np.mean(t))}, y_true=y[big], y_pred=score[big],
                        sensitive_features=population[big])
    assert diff["prevalence"] == pytest.approx(float(frame.difference(method="between_groups")["prevalence"]))
    aucs = {g["population"]: g["auroc"] for g in groups}
    assert diff["auroc"] == pytest.approx(abs(aucs["B"] - aucs["C"])) and aucs["RARE"] == 1.0


def test_between_group_difference_leaves_out_groups_with_under_five_cases() -> None:
    """A population of 60 with 2 cases is a cell of 2 people: its prevalence and AUROC are not an extreme of the
    between-group difference (which would give them away with the other groups' values)."""
    from interp.audit import by_population, small_cell

    rng = np.random.default_rng(1)
    # A is masked as FEW's complement (FEW's 2 would be the total minus B's and C's cases): B and C are compared
    population = np.array(["A"] * 60 + ["B"] * 60 + ["C"] * 60 + ["FEW"] * 60)
    y = rng.integers(0, 2, population.size).astype(float)
    y[-60:] = 0.0
    y[-2:] = 1.0
    score = rng.normal(size=population.size) + 0.5 * y
    score[-2:] = 9.0  # a perfect AUROC in the cell of 2: the extreme if it counted
    groups, diff = by_population(y, score, population, n_boot=0, seed=0)
    aucs = {g["population"]: g["auroc"] for g in groups}
    prev = {g["population"]: g["prevalence"] for g in groups}
    assert aucs["FEW"] == 1.0
    assert diff["auroc"] == pytest.approx(abs(aucs["B"] - aucs["C"]))
    assert diff["prevalence"] == pytest.approx(abs(prev["B"] - prev["C"]))
    assert small_cell(60, 2) == "<5 cases" and small_cell(60, 57) == "<5 controls" and small_cell(4, 2) == "<5"
    assert small_cell(10, 5) is None and small_cell(60, 0) == "<5 cases"


def _few_cases(seed: int, kind: str = "causal"):
    """A cohort of 600 with the region's dosages and 10% cases: by a causal variant at OR 2, or (kind "null")
    drawn apart from everything."""
    X, y, pop, pcs, reg = make_cohort("causal", seed=3000 + seed, n_per=200, return_region=True, odds_ratio=2.0)
    g, rng = reg[:, -1], np.random.default_rng(seed)
    logit = np.log(0.1 / 0.9) + (np.log(2.0) * (g - g.mean()) if kind == "causal" else 0.0)
    return X, (rng.random(y.size) < 1 / (1 + np.exp(-logit))).astype(int), pop, pcs, reg


def test_signal_test_has_the_variant_scan_the_within_test_has() -> None:
    """p_signal is "the same statistic without ancestry", but it left out the variant scan the within test
    has: with a causal variant at OR 2 and 10% cases, the within test found it (p_within 0.001-0.007) while
    p_signal read 0.034-0.077 (0.28 at p_within 0.05), and a real within-ancestry effect could be called NO
    SIGNAL ("nothing to explain"). Over 12 cohorts (16 s): wherever p_within <= 0.01, p_signal <= 0.02 now."""
    ids = [f"v{i}" for i in range(31)]
    strong = []
    for seed in range(12):
        X, y, pop, pcs, reg = _few_cases(seed)
        r = audit_phenotype(X, y, pop, pcs, AuditConfig(seed=seed, **{**FAST, "max_null_replicates": 999}),
                            variant_dosage=reg, variant_ids=ids)
        assert r["within_test"] == "probe + variant scan"
        if r["p_within"] <= 0.01:
            strong.append(r["p_signal"])
    assert len(strong) >= 4 and max(strong) <= 0.02, strong


@pytest.mark.slow
def test_signal_test_with_the_scan_keeps_its_level_on_null_phenotypes() -> None:
    """Rate, not seed: the signal test's null is y permuted over all samples and its statistic (probe + scan,
    standardised on a calibration batch drawn apart) a fixed function of y given the batch, so p_signal <=
    0.05 in at most 5% of null cohorts; 100 cohorts, bound the 99% binomial quantile (10)."""
    from scipy.stats import binom

    ids = [f"v{i}" for i in range(31)]
    hits = 0
    for seed in range(100):
        X, y, pop, pcs, reg = _few_cases(100 + seed, kind="null")
        r = audit_phenotype(X, y, pop, pcs, AuditConfig(seed=seed, **FAST), variant_dosage=reg, variant_ids=ids)
        hits += r["p_signal"] <= 0.05
    assert hits <= binom.ppf(0.99, 100, 0.05), hits


def test_null_rounds_drawn_in_pieces_give_the_same_audit(monkeypatch) -> None:
    """A round of the sequential null (up to 2,048 replicates) was drawn and evaluated at once, B x n x design
    arrays (3.2 GB at n = 5,000); it is drawn MAX_DRAW replicates at a time. The generators are read in the same
    order, so the p-values and every other number are the same as in one piece."""
    import interp.audit as audit

    X, y, pop, pcs, reg = _few_cases(0)
    cfg = AuditConfig(seed=0, **{**FAST, "max_null_replicates": 999})
    ids = [f"v{i}" for i in range(31)]
    monkeypatch.setattr(audit, "MAX_DRAW", 100)
    pieces = audit_phenotype(X, y, pop, pcs, cfg, variant_dosage=reg, variant_ids=ids)
    monkeypatch.setattr(audit, "MAX_DRAW", 10**9)
    whole = audit_phenotype(X, y, pop, pcs, cfg, variant_dosage=reg, variant_ids=ids)
    assert max(pieces["n_null_replicates"], pieces["n_signal_replicates"]) > 100  # a round was split
    for key in ("p_within", "p_signal", "n_null_replicates", "n_signal_replicates", "within_statistic"):
        assert pieces[key] == whole[key], key
