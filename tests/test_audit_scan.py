"""audit.window_scan: the within-ancestry and signal tests scan each window's own embedding.

Cohorts from `tests.test_audit_regions.region_cohort` (three Balding-Nichols populations, windows that embed
their own variants, the causal variant in window 0). The scan's statistic is checked against the per-probe
statistics it maximises; its null against the nominal level as a rate; its power against the pooled
statistic's on the same cohorts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from interp.audit import (
    AuditConfig,
    RidgeProbe,
    audit_phenotype,
    logistic_many,
    signed_root_lr,
    window_scan_statistic,
)
from interp.embed.cohort import window_sample_matrices
from interp.errors import InputError
from tests.test_audit_regions import _params, _run, clopper_pearson, region_cohort, write_tables


def test_scan_reports_the_window_that_carries_the_effect():
    obs, pcs, h, windows = region_cohort(11, n_per=150, n_regions=4, windows_per_region=3, odds_ratio=3.0)
    y = obs["causal"].to_numpy()
    A = np.hstack([(obs["population"].to_numpy()[:, None] == np.array(["EUR", "EAS"])).astype(float), pcs])
    A = (A - A.mean(0)) / A.std(0)
    probes = [RidgeProbe.from_embeddings(h.mean(axis=1))] + [RidgeProbe.from_embeddings(h[:, w])
                                                             for w in range(h.shape[1])]
    t, where = window_scan_statistic(y[None], probes, A)
    assert where[0] == 1  # probes[1] is window 0, the causal variant's
    # it is the largest signed root LR over probes and both targets (y and the ancestry model's residual)
    y2 = y[None].astype(float)
    fitted = logistic_many(A, y2)["prob"]
    each = [signed_root_lr(y2, p.loo_scores(target)[0], A)[0] for p in probes for target in (y2 - fitted, y2)]
    np.testing.assert_allclose(t[0], max(each), rtol=1e-10)
    # a null replicate's maximum is over the same probes, so it is at least each probe's own statistic
    Y = (np.random.default_rng(0).random((8, y.size)) < y.mean()).astype(float)
    t_all, _ = window_scan_statistic(Y, probes, A)
    t_one, _ = window_scan_statistic(Y, probes[2:3], A)
    assert np.all(t_all >= t_one - 1e-12)


def test_window_scan_stage_reads_each_window_and_names_missing_inputs(tmp_path, monkeypatch):
    import anndata as ad

    import interp.rank

    obs, pcs, h, windows = region_cohort(12, n_per=120, n_regions=3, windows_per_region=2, odds_ratio=3.0)
    emb = write_tables(tmp_path / "emb" / "toy", obs, pcs, h, windows)
    samples = ad.read_h5ad(emb / "block2.samples.h5ad")
    monkeypatch.setattr(interp.rank, "COLUMN_CHUNK", 5)  # several reads
    mats = window_sample_matrices(samples, emb / "block2.windows.h5ad")
    assert len(mats) == 6
    for w, m in enumerate(mats):
        np.testing.assert_allclose(m, h[:, w], rtol=1e-5, atol=1e-6)
    region = windows["region"].to_numpy()
    r1 = window_sample_matrices(samples, emb / "block2.windows.h5ad", "r1")
    np.testing.assert_allclose(np.stack(r1, axis=1), h[:, region == "r1"], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match=r"need .* GiB at once .* set audit.window_scan: false"):
        window_sample_matrices(samples, emb / "block2.windows.h5ad", max_bytes=1000)

    table, details = _run(tmp_path, emb, _params(window_scan=True, by_region=True), "scan")
    assert set(table["within_statistic_kind"]) == {"window_scan"}
    n_windows = {r["region"]: r["n_scan_windows"] for r in table.iter_rows(named=True)}
    assert n_windows == {None: 6, "r0": 2, "r1": 2, "r2": 2}
    causal = {r["region"]: r for r in table.filter(table["phenotype"] == "causal").iter_rows(named=True)}
    # window 0 of the table and of region r0: the causal variant's
    assert causal[None]["scan_window_index"] == 0 and causal["r0"]["scan_window_index"] == 0
    pooled, _ = _run(tmp_path, emb, _params(by_region=True), "pooled")
    assert set(pooled["within_statistic_kind"]) == {"pooled"} and set(pooled["n_scan_windows"]) == {0}
    pooled_p = {r["region"]: r["p_within"] for r in pooled.filter(pooled["phenotype"] == "causal").iter_rows(named=True)}
    # diluted over 6 windows the pooled embedding misses it (p 0.83); the scan finds it (p 0.019)
    assert causal[None]["p_within"] < 0.05 < pooled_p[None]
    assert details[0]["thresholds"]["window_scan"] is True

    (emb / "block2.windows.h5ad").unlink()
    with pytest.raises(InputError, match=r"audit.window_scan: .*block2.windows.h5ad is missing"):
        _run(tmp_path, emb, _params(window_scan=True), "x")


def test_window_scan_needs_the_windows():
    obs, pcs, h, _ = region_cohort(13, n_per=20)
    cfg = AuditConfig(window_scan=True, bootstrap=20, n_folds=3)
    args = (h.mean(axis=1), obs["causal"].to_numpy(), obs["population"].to_numpy(), pcs, cfg)
    with pytest.raises(InputError, match="no per-window embeddings"):
        audit_phenotype(*args)
    with pytest.raises(InputError, match="needs 60 rows"):
        audit_phenotype(*args, windows=[h[:10, 0]])


@pytest.mark.slow
def test_window_scan_keeps_the_level_and_finds_a_diluted_effect():
    """24 cohorts of 3 x 150 with 12 windows, the OR 2 causal variant in one: the scan's within-ancestry p
    is <= 0.05 for the causal phenotype more often than the pooled statistic's (paired, same cohorts); for
    the null and the ancestry-only phenotypes its rate of p <= 0.05 has a 95% interval that covers 5%."""
    reps = 24
    cfg = AuditConfig(bootstrap=20, n_folds=3)
    hits = {"scan": 0, "pooled": 0, "null": 0, "confounded": 0}
    for seed in range(reps):
        obs, pcs, h, _ = region_cohort(200 + seed, n_per=150, n_regions=6, windows_per_region=2, odds_ratio=2.0)
        windows = [h[:, w] for w in range(h.shape[1])]
        population = obs["population"].to_numpy()
        for phenotype in ("causal", "null", "confounded"):
            y = obs[phenotype].to_numpy()
            scan = audit_phenotype(h.mean(axis=1), y, population, pcs, replace(cfg, seed=seed, window_scan=True),
                                   max_null_replicates=199, windows=windows)
            if phenotype == "causal":
                pooled = audit_phenotype(h.mean(axis=1), y, population, pcs, replace(cfg, seed=seed),
                                         max_null_replicates=199)
                hits["scan"] += scan["p_within"] <= 0.05
                hits["pooled"] += pooled["p_within"] <= 0.05
            else:
                hits[phenotype] += scan["p_within"] <= 0.05
    print(hits)
    assert hits["scan"] > hits["pooled"], hits
    for key in ("null", "confounded"):
        lo, hi = clopper_pearson(hits[key], reps)
        assert lo <= 0.05 <= hi or hits[key] == 0, (key, hits)
