"""The audit's variant-direction scan (interp.variant_scan): the score test against statsmodels, the
effective number of directions, the scale the maximum is put on, the choice of directions, and the error
rates of the within-ancestry test that includes it (planted Balding-Nichols cohorts of tests/test_audit.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from interp import variant_scan
from interp.audit import AuditConfig, RidgeProbe, audit_phenotype, logistic_many
from interp.errors import InputError
from interp.variant_scan import effective_tests, scan_statistics, scan_z, variant_directions
from tests.test_audit import FAST, assert_rate_at_least, assert_rate_at_most, make_cohort, run


def test_score_statistics_match_statsmodels_score_test():
    """Each direction's |z| is the square root of statsmodels' score test of adding it to the logistic
    model y ~ 1 + nuisance; the scan returns the largest and which."""
    rng = np.random.default_rng(0)
    n, V = 400, 4
    nuisance = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)
    S = rng.normal(size=(V, n))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.6 * nuisance[:, 0] + 0.3 * S[2])))).astype(float)
    fit = logistic_many(nuisance, y[None], penalty=0.0)
    best, which = scan_statistics(y[None], fit["prob"], S, nuisance)
    base = sm.GLM(y, sm.add_constant(nuisance), family=sm.families.Binomial()).fit()
    oracle = np.array([np.sqrt(base.score_test(exog_extra=S[v][:, None])[0]) for v in range(V)]).ravel()
    assert best[0] == pytest.approx(oracle.max(), rel=1e-5)
    assert which[0] == int(np.argmax(oracle))


def test_scan_statistics_are_the_same_in_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    n = 120
    nuisance = rng.normal(size=(n, 3))
    S = rng.normal(size=(5, n))
    Y = (rng.random((70, n)) < 0.3).astype(float)
    prob = logistic_many(nuisance, Y)["prob"]
    whole = scan_statistics(Y, prob, S, nuisance)
    monkeypatch.setattr(variant_scan, "SCAN_CHUNK", 8)
    chunked = scan_statistics(Y, prob, S, nuisance)
    np.testing.assert_allclose(whole[0], chunked[0], rtol=1e-10)
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_effective_tests_counts_independent_directions():
    rng = np.random.default_rng(2)
    one = rng.normal(size=300)
    assert effective_tests(np.stack([one, one, 2 * one + 1])) == pytest.approx(1.0)
    independent = effective_tests(rng.normal(size=(10, 5000)))
    assert 8.0 <= independent <= 10.0
    block = np.vstack([np.stack([one + 0.01 * rng.normal(size=300) for _ in range(5)]), rng.normal(size=(3, 300))])
    assert 3.5 <= effective_tests(block) <= 5.0  # five near-copies count about once


def test_scan_z_is_the_sidak_quantile_and_keeps_order_in_the_tail():
    from scipy import stats

    t = np.array([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(scan_z(t, 1.0), stats.norm.isf(2 * stats.norm.sf(t)), rtol=1e-9)
    m = 20.0
    np.testing.assert_allclose(scan_z(t, m), stats.norm.isf(1 - (1 - 2 * stats.norm.sf(t)) ** m), rtol=1e-7)
    tail = scan_z(np.array([10.0, 30.0, 45.0, 60.0]), m)
    assert np.all(np.isfinite(tail)) and np.all(np.diff(tail) > 0)
    assert scan_z(np.array([3.0]), 1.0)[0] > scan_z(np.array([3.0]), 50.0)[0]  # more directions, less surprise


def test_variant_directions_keep_the_best_predicted_and_never_see_y(monkeypatch):
    """Directions are leave-one-out predictions of the dosages from the embedding, ranked by R^2: a variant the
    embedding does not hold ranks last; constant columns are dropped; missing calls are mean-imputed; predicting
    a chunk of variants at a time changes nothing."""
    rng = np.random.default_rng(3)
    n = 300
    D = rng.binomial(2, 0.3, size=(n, 6)).astype(float)
    held = D[:, :4]
    X = held @ rng.normal(size=(4, 16)) + 0.3 * rng.normal(size=(n, 16))
    D[:5, 1] = np.nan
    D = np.hstack([D, np.ones((n, 1))])  # a monomorphic column
    ids = [f"v{j}" for j in range(D.shape[1])]
    probe = RidgeProbe.from_embeddings(X)
    whole = variant_directions(probe, D, ids, max_variants=5)
    assert whole.n_candidates == 6
    assert len(whole.ids) == 5 and "v6" not in whole.ids
    assert set(whole.ids[:4]) == {"v0", "v1", "v2", "v3"}  # held by the embedding
    assert whole.r2[0] > 0.8 and whole.r2[-1] < 0.2
    np.testing.assert_allclose(whole.S.mean(axis=1), 0, atol=1e-10)
    np.testing.assert_allclose(whole.S.std(axis=1), 1, rtol=1e-10)
    monkeypatch.setattr(variant_scan, "VARIANT_CHUNK", 2)
    chunked = variant_directions(probe, D, ids, max_variants=5)
    assert chunked.ids == whole.ids
    np.testing.assert_allclose(chunked.S, whole.S, rtol=1e-10)
    assert variant_directions(probe, np.ones((n, 2)), ["a", "b"], 5) is None
    # a variant that 1-4 people carry is never a direction (its ID would be named by the audit), however well the
    # embedding holds it; 5 carriers are enough
    rare = np.zeros((n, 2))
    rare[:2, 0], rare[:5, 1] = 1.0, 1.0
    X_rare = np.column_stack([X, 5 * rare])
    directions = variant_directions(RidgeProbe.from_embeddings(X_rare), np.hstack([D, rare]), ids + ["r2", "r5"], 10)
    assert "r2" not in directions.ids and "r5" in directions.ids and directions.n_candidates == 7


def test_audit_reports_the_scan_and_refuses_misshapen_genotypes():
    X, y, population, pcs, region = make_cohort("causal", seed=7, odds_ratio=3.0, return_region=True)
    ids = [f"v{j}" for j in range(region.shape[1])]
    cfg = AuditConfig(seed=7, **FAST)
    r = audit_phenotype(X, y, population, pcs, cfg, variant_dosage=region, variant_ids=ids)
    assert r["within_test"] == "probe + variant scan"
    assert r["variant_scan_n_variants"] == region.shape[1] and r["variant_scan_variant"] in ids
    assert 1.0 <= r["variant_scan_m_eff"] <= region.shape[1]
    assert r["within_probe_null_sd"] > 0 and r["variant_scan_null_sd"] > 0
    assert r["p_within"] <= 0.05  # OR 3 at n = 600
    plain = audit_phenotype(X, y, population, pcs, cfg)
    assert plain["within_test"] == "probe" and plain["variant_scan_statistic"] is None
    assert plain["within_combined_statistic"] == plain["within_statistic"]
    off = audit_phenotype(X, y, population, pcs, AuditConfig(seed=7, variant_scan=False, **FAST),
                          variant_dosage=region, variant_ids=ids)
    assert off["p_within"] == plain["p_within"]  # switched off: the probe statistic alone, same null draws
    with pytest.raises(InputError, match="dosage matrix"):
        audit_phenotype(X, y, population, pcs, cfg, variant_dosage=region[:10], variant_ids=ids)
    with pytest.raises(InputError, match="variant ID"):
        audit_phenotype(X, y, population, pcs, cfg, variant_dosage=region, variant_ids=ids[:3])


def _pass_counts(seeds, scan: bool, **cohort) -> int:
    k = 0
    for s in seeds:
        X, y, population, pcs, region = make_cohort(seed=s, return_region=True, **cohort)
        k += run(X, y, population, pcs, seed=s, dosage=region if scan else None)["verdict"] == "PASS"
    return k


def test_scan_keeps_the_level_under_differentiated_ancestry_without_labels():
    """The hardest case for the scan: no labels (strata from PC bins), strong prevalence differences, and
    region variants whose frequencies differ between populations, so every variant direction carries
    ancestry; only the PCs stand between them and a false PASS."""
    seeds = range(5000, 5024)
    k = _pass_counts(seeds, True, kind="ancestry", prevalence=(0.1, 0.5, 0.85), labels=False)
    assert_rate_at_most(k, len(seeds), 0.05, "ancestry-only, no labels, with the scan: PASS")


def test_scan_adds_power_with_few_cases():
    """A single causal SNV (OR 2.5) among 31 region variants, about 10% cases: the scan finds it more often
    than the probe alone, which must learn its direction from ~60 cases."""
    seeds = range(6000, 6020)
    cohort = {"kind": "causal", "odds_ratio": 2.5, "baseline": (0.1, 0.1, 0.1), "causal_freq": (0.2, 0.3, 0.4)}
    with_scan, without = _pass_counts(seeds, True, **cohort), _pass_counts(seeds, False, **cohort)
    assert with_scan > without, (with_scan, without)
    assert_rate_at_least(with_scan, len(seeds), 0.8, f"causal OR 2.5, 10% cases, with the scan: PASS {with_scan}")
