"""Confound audit on synthetic cohorts with a planted answer: confounded, causal and null phenotypes."""

from __future__ import annotations

import numpy as np
import pytest

import interp.audit as audit
from interp.audit import (
    AuditConfig,
    audit_phenotype,
    feature_attribution,
    permute_within,
    residualise_in_fold,
    stratified_folds,
)
from interp.errors import InputError

POPS = ("AFR", "EUR", "EAS")
FAST = {"permutations": 99, "bootstrap": 50}


def make_cohort(kind: str, seed: int, n_per: int = 60, d: int = 48):
    """3 populations x n_per samples.

    PCs = population centre + noise; embeddings = ancestry directions (the population centre pushed through
    a random [2, d] map) + noise. "confounded": prevalence 15/50/85% by population, no causal link.
    "causal": a genotype with the same frequency and effect in every population drives the phenotype and
    adds a direction to the embeddings. "null": phenotype is a coin flip.
    """
    rng = np.random.default_rng(seed)
    pop_idx = np.repeat(np.arange(3), n_per)
    population = np.array(POPS)[pop_idx]
    centres = np.array([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]])[pop_idx]
    pcs = centres + rng.normal(scale=0.3, size=(pop_idx.size, 2))
    X = centres @ rng.normal(size=(2, d)) + rng.normal(size=(pop_idx.size, d))
    if kind == "confounded":
        y = (rng.random(pop_idx.size) < np.array([0.15, 0.5, 0.85])[pop_idx]).astype(int)
    elif kind == "causal":
        genotype = rng.binomial(2, 0.4, size=pop_idx.size)
        y = (genotype + rng.normal(scale=0.6, size=pop_idx.size) > 0.9).astype(int)
        direction = rng.normal(size=d)
        X = X + 2.0 * np.outer(genotype - 0.8, direction / np.linalg.norm(direction))
    else:
        y = rng.integers(0, 2, size=pop_idx.size)
    return X, y, population, pcs


@pytest.mark.parametrize("seed", range(3))
def test_confounded_phenotype_fails(seed):
    r = audit_phenotype(*make_cohort("confounded", seed), AuditConfig(seed=seed, **FAST))
    assert r["verdict"] == "FAIL", r["reasons"]
    assert r["auroc_random_cv"] >= 0.6
    assert r["permutation_p"] > 0.05  # the signal survives permuting the phenotype inside populations
    assert r["shortcut_drop"] > 0.1
    assert r["auroc_lopo_cv"] < 0.6 and r["auroc_residualised"] < 0.62
    assert r["auroc_ancestry_only"] >= r["auroc_random_cv"] - 0.05
    assert abs(r["auroc_shuffled"] - 0.5) < 0.15
    assert any("permutation_p" in s for s in r["reasons"])


@pytest.mark.parametrize("seed", range(3))
def test_causal_phenotype_passes(seed):
    r = audit_phenotype(*make_cohort("causal", seed), AuditConfig(seed=seed, **FAST))
    assert r["verdict"] == "PASS", r["reasons"]
    assert r["permutation_p"] <= 0.02
    assert r["shortcut_drop"] <= 0.1
    assert r["auroc_residualised"] > 0.6 and r["auroc_lopo_cv"] > 0.6


@pytest.mark.parametrize("seed", range(3))
def test_null_phenotype_does_not_fail(seed):
    r = audit_phenotype(*make_cohort("null", seed), AuditConfig(seed=seed, **FAST))
    assert r["verdict"] != "FAIL", r["reasons"]
    assert abs(r["auroc_random_cv"] - 0.5) < 0.15


def test_ancestry_readouts_structure_and_reproducibility():
    X, y, population, pcs = make_cohort("causal", 7)
    cfg = AuditConfig(seed=7, permutations=19, bootstrap=100)
    r = audit_phenotype(X, y, population, pcs, cfg)
    assert r["ancestry_auroc"] > 0.95  # ancestry is written all over the embeddings
    assert r["ancestry_pc_r2"] > 0.8
    assert r["thresholds"]["max_drop"] == cfg.max_drop and r["thresholds"]["alpha"] == cfg.alpha
    groups = r["by_population"]
    assert sorted(g["population"] for g in groups) == sorted(POPS)
    for g in groups:
        assert g["n"] == 60
        assert g["auroc_ci_low"] <= g["auroc"] <= g["auroc_ci_high"]
        assert g["accuracy_ci_low"] <= g["accuracy"] <= g["accuracy_ci_high"]
    aucs = [g["auroc"] for g in groups]
    assert r["between_group_difference"]["auroc"] == pytest.approx(max(aucs) - min(aucs))
    again = audit_phenotype(X, y, population, pcs, cfg)
    assert again["permutation_p"] == r["permutation_p"] and again["auroc_random_cv"] == r["auroc_random_cv"]


def test_permutation_p_separates_causal_from_confounded():
    causal = audit_phenotype(*make_cohort("causal", 11), AuditConfig(seed=11, **FAST))
    confounded = audit_phenotype(*make_cohort("confounded", 11), AuditConfig(seed=11, **FAST))
    assert causal["permutation_p"] == pytest.approx(1 / 100)  # no permutation reaches the real AUROC
    assert confounded["permutation_p"] > 0.1


def test_batch_confounder_is_flagged():
    """A sequencing batch that tracks the phenotype and marks the embeddings: signal is batch, not biology."""
    X, _, population, pcs = make_cohort("null", 3)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=X.shape[0])
    batch = np.where(rng.random(X.shape[0]) < 0.85, y, 1 - y)
    direction = rng.normal(size=X.shape[1])
    X = X + 3.0 * np.outer(batch, direction / np.linalg.norm(direction))
    gc = rng.normal(size=X.shape[0])  # an irrelevant numeric covariate
    r = audit_phenotype(X, y, population, pcs, AuditConfig(seed=3, **FAST),
                        confounders={"batch": np.array(["b1", "b2"])[batch], "gc": gc})
    b, g = r["confounders"]["batch"], r["confounders"]["gc"]
    assert b["predictability_from_X"] > 0.9 and b["association"]["cramers_v"] > 0.5
    assert b["auroc_drop"] > 0.1
    assert abs(g["auroc_drop"]) < 0.1 and g["association"]["p_value"] > 0.01
    assert r["verdict"] == "WARN"
    assert any("batch" in s for s in r["reasons"])


def test_residualisation_uses_training_rows_only():
    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    train = np.arange(35)
    out = residualise_in_fold(X, Z, train)
    D = np.hstack([np.ones((50, 1)), Z])
    beta = np.linalg.lstsq(D[train], X[train], rcond=None)[0]
    np.testing.assert_allclose(out, X - D @ beta)
    # changing the held-out rows must not change anything fitted
    X2, Z2 = X.copy(), Z.copy()
    X2[35:] += 100.0
    Z2[35:] *= -3.0
    np.testing.assert_allclose(residualise_in_fold(X2, Z2, train)[:35], out[:35])


def test_audit_residualises_inside_each_fold(monkeypatch):
    seen = []

    def spy(X, Z, train):
        seen.append(np.asarray(train).size)
        return residualise_in_fold(X, Z, train)

    monkeypatch.setattr(audit, "residualise_in_fold", spy)
    X, y, population, pcs = make_cohort("causal", 1)
    audit_phenotype(X, y, population, pcs, AuditConfig(n_folds=4, permutations=9, bootstrap=0))
    assert len(seen) == 4 and all(s < X.shape[0] for s in seen)


def test_permute_within_keeps_population_prevalence():
    rng = np.random.default_rng(0)
    X, y, population, pcs = make_cohort("confounded", 0)
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


def test_feature_attribution_ranks_planted_features():
    X, y, population, pcs = make_cohort("causal", 2)
    rng = np.random.default_rng(2)
    F = rng.normal(size=(y.size, 20))
    F[:, 3] += 2.0 * pcs[:, 0]  # ancestry feature
    F[:, 7] += 2.0 * y  # phenotype feature
    table = feature_attribution(F, y, pcs, population)
    assert table.height == 20
    anc = table["partial_r2_ancestry"].to_numpy()
    phe = table["partial_r2_phenotype"].to_numpy()
    assert int(np.argmax(anc)) == 3 and anc[3] > 0.8
    assert int(np.argmax(phe)) == 7 and phe[7] > 0.3
    leak = table["ancestry_auroc_feature"].to_numpy()
    assert int(np.argmax(leak)) == 3 and leak[3] > 0.95


def test_bad_inputs_raise_input_error():
    X, y, population, pcs = make_cohort("null", 0)
    with pytest.raises(InputError, match="binary"):
        audit_phenotype(X, y * 2.5, population, pcs, AuditConfig(**FAST))
    with pytest.raises(InputError, match="samples"):
        audit_phenotype(X, y[:-1], population, pcs, AuditConfig(**FAST))
    with pytest.raises(InputError, match="confounder batch"):
        audit_phenotype(X, y, population, pcs, AuditConfig(**FAST), confounders={"batch": np.zeros(3)})


def test_missing_phenotypes_and_a_single_population_are_handled():
    X, y, _, pcs = make_cohort("causal", 4)
    y = y.astype(float)
    y[:10] = np.nan
    population = np.array(["all"] * y.size)
    r = audit_phenotype(X, y, population, pcs, AuditConfig(seed=4, permutations=19, bootstrap=20),
                        confounders={"sex": np.array(["F", "M"])[np.arange(y.size) % 2]})
    assert r["n_missing_phenotype"] == 10 and r["n_samples"] == y.size - 10
    assert np.isnan(r["auroc_lopo_cv"])  # no other population to train on
    assert r["auroc_random_cv"] > 0.6 and r["verdict"] in {"PASS", "WARN"}
    assert len(r["by_population"]) == 1
    table = feature_attribution(X, y, pcs)
    assert table.height == X.shape[1] and table["ancestry_auroc_feature"].is_nan().all()
