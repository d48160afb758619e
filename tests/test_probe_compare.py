"""Probes on SAE features vs raw activations (interp.sae.probe_compare): planted winners, leak-free feature
selection, identical folds for both arms, the pipeline stage and the report table."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from interp import stages
from interp.embed.store import TokenStoreWriter
from interp.probe import ProbeConfig, auroc, contiguous_folds
from interp.report import summary
from interp.report.build import render_html
from interp.sae import probe_compare
from interp.sae.probe_compare import compare_probes, feature_auroc, select_top_features, window_features
from interp.sae.topk import TopKSAE
from interp.sae.train import save_sae
from tests import report_synthetic as rs

CFG = ProbeConfig(C=1.0, max_iter=200, seed=0)


def planted(n: int = 600, m: int = 64, d: int = 16, p: float = 0.1, seed: int = 0):
    """Sparse non-negative features F [n, m] (each fires with probability p) read through a random unit
    dictionary D [m, d] into activations X = F D + noise [n, d]: more features than dimensions, so one
    feature's activity is not a clean direction of X."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    F = (rng.random((n, m)) < p) * rng.uniform(0.5, 2.0, (n, m))
    X = F @ D + rng.normal(scale=0.05, size=(n, d))
    return rng, F, X


def interleaved_folds(n: int, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.arange(n)
    return [(idx[idx % k != f], idx[idx % k == f]) for f in range(k)]


def test_label_that_is_one_sae_feature_is_read_best_by_that_feature() -> None:
    _, F, X = planted()
    y = F[:, 3] > 0
    res = compare_probes(X, F, y, interleaved_folds(600), top_k=[1, 8], cfg=CFG, n_bootstrap=500)
    k1 = res.summary.filter(pl.col("k") == 1).row(0, named=True)
    assert all(sel == [3] for sel in res.folds.filter(pl.col("k") == 1)["selected"].to_list())
    assert k1["auroc_sae"] > 0.99
    assert k1["difference"] >= 0.0  # matches or beats raw
    assert k1["auroc_raw"] < 0.97  # the superposed direction is not perfectly readable from X ...
    assert k1["winner"] == "sae" and k1["ci_low"] > 0  # ... so the one feature wins outright
    assert k1["n_folds_used"] == 5 and k1["n_folds_sae_better"] == 5


def test_dense_direction_of_x_is_read_best_by_the_raw_probe() -> None:
    rng, F, X = planted(seed=2)
    score = X @ rng.normal(size=X.shape[1])  # a direction spread over every feature's contribution
    y = score > np.median(score)
    res = compare_probes(X, F, y, interleaved_folds(600), top_k=[1, 8, 32], cfg=CFG, n_bootstrap=500)
    s = {r["k"]: r for r in res.summary.iter_rows(named=True)}
    assert s[1]["auroc_raw"] > 0.97
    for k in (1, 8, 32):
        assert s[k]["winner"] == "raw", s[k]
        assert s[k]["ci_high"] < 0 and s[k]["difference"] < 0
    assert s[1]["difference"] < -0.3  # one feature carries little of a dense direction
    assert s[1]["auroc_sae"] < s[8]["auroc_sae"] < s[32]["auroc_sae"]  # more features, more of it


def null_in_runs(seed: int, n: int = 300):
    """A null label for activations X and SAE features F whose rows come in runs of 10 sharing the label and
    a latent (as neighbouring windows share sequence), with 5 contiguous blocks of 60 rows as folds."""
    rng, F, X = planted(n=n, seed=1000 + seed)
    run = np.arange(n) // 10
    y = (rng.random(run.max() + 1) < 0.3)[run]
    X = X + rng.normal(size=(run.max() + 1, X.shape[1]))[run]
    F = F + (rng.random((run.max() + 1, F.shape[1])) < 0.1)[run]
    idx = np.arange(n)
    return X, F, y, [(idx[idx // 60 != f], idx[idx // 60 == f]) for f in range(5)]


def test_null_label_is_a_tie_and_the_sae_arm_stays_at_chance() -> None:
    """Neither arm can read a null label, so a winner is a false call: at 95% it may come in about 5% of
    seeds. The old test-row bootstrap interval (probes fixed, rows independent) called one in ~60%."""
    cfg = ProbeConfig(C=1.0, max_iter=100, seed=0)
    calls, sae_auc = [], []
    for seed in range(50):
        X, F, y, folds = null_in_runs(seed)
        res = compare_probes(X, F, y, folds, top_k=[1, 8], cfg=cfg, n_bootstrap=100, seed=seed)
        calls += [w != "tie" for w in res.summary["winner"]]
        sae_auc += res.summary["auroc_sae"].to_list()
        s = res.summary
        assert ((s["ci_low"] <= s["difference"]) & (s["difference"] <= s["ci_high"])).all()
    assert np.mean(calls) <= 0.15, np.mean(calls)
    assert abs(np.mean(sae_auc) - 0.5) < 0.03  # top-k chosen on training rows only: no inflation


def test_fold_interval_is_the_corrected_paired_t() -> None:
    d = np.array([0.02, -0.01, 0.05, 0.03, 0.00])
    lo, hi = probe_compare.fold_interval(d, [240] * 5, [60] * 5)
    half = 2.7764451 * d.std(ddof=1) * np.sqrt(1 / 5 + 60 / 240)
    np.testing.assert_allclose([lo, hi], [d.mean() - half, d.mean() + half], rtol=1e-6)
    assert lo < 0 < hi  # 4 of 5 folds favour the SAE, yet 5 folds cannot tell
    assert np.isnan(probe_compare.fold_interval(d[:1], [240], [60])).all()


def leaky_data(seed: int = 0):
    """Feature 0 predicts y on the training rows only; feature 1 predicts y perfectly on the test rows
    only, strongly enough that over all rows it looks best. Rows 0-99 train, 100-199 test."""
    rng = np.random.default_rng(seed)
    n = 200
    y = np.tile([True, False], n // 2)
    F = rng.uniform(0, 1, size=(n, 6))
    train, test = np.arange(100), np.arange(100, 200)
    F[train, 0] = y[train] * 0.3 + rng.uniform(0, 1, 100)  # moderate, train only
    F[test, 1] = y[test] + rng.uniform(0, 0.5, 100)  # perfect, test only
    return F, y.astype(float), train, test


def test_top_k_is_chosen_on_training_rows_only() -> None:
    F, y, train, test = leaky_data()
    # the case is built so that leakage would change the choice
    assert select_top_features(F, y, np.arange(200), 1).tolist() == [1]
    assert select_top_features(F, y, train, 1).tolist() == [0]
    X = np.random.default_rng(1).normal(size=(200, 4))
    res = compare_probes(X, F, y, [(train, test)], top_k=[1], cfg=CFG, n_bootstrap=0)
    assert res.folds["selected"].to_list() == [[0]]
    # feature 1 would have scored ~1.0 on this test fold; the honest probe on feature 0 is near chance
    assert res.summary["auroc_sae"][0] < 0.7


def test_feature_auroc_matches_the_probe_auroc_and_handles_ties() -> None:
    rng = np.random.default_rng(3)
    F = np.where(rng.random((50, 5)) < 0.6, 0.0, rng.random((50, 5)))  # many tied zeros
    y = rng.random(50) < 0.4
    np.testing.assert_allclose(feature_auroc(F, y, chunk=2), [auroc(y, F[:, j]) for j in range(5)])
    assert np.isnan(feature_auroc(F, np.zeros(50, bool))).all()


def test_both_arms_use_identical_folds(monkeypatch) -> None:
    _, F, X = planted(n=300)
    y = F[:, 5] > 0
    folds = interleaved_folds(300, 4)
    seen: list[tuple[int, np.ndarray, object]] = []
    fit = probe_compare.fit_logistic

    def spy(Xa, ya, masks, cfg, C=None):
        seen.append((np.asarray(Xa).shape[-1], np.asarray(masks).copy(), C))
        return fit(Xa, ya, masks, cfg, C=C)

    monkeypatch.setattr(probe_compare, "fit_logistic", spy)
    grid = (0.01, 1.0)
    res = compare_probes(X, F, y, folds, top_k=[2, 8], cfg=CFG, n_bootstrap=50, C_grid=grid)
    expected = np.zeros((4, 300), dtype=bool)
    for f, (train, _) in enumerate(folds):
        expected[f, train] = True
    final = [(w, m, C) for w, m, C in seen if m.shape == expected.shape and np.array_equal(m, expected)]
    assert [w for w, _, _ in final] == [X.shape[1], 2, 8]  # one final fit per arm, on the folds' training rows
    for _, _, C in final:  # each fold refitted with its own chosen C
        assert np.asarray(C).shape == (4,) and set(np.asarray(C).tolist()) <= set(grid)
    inner = [(w, m, C) for w, m, C in seen if not np.array_equal(m, expected)]
    assert len(inner) == 3 * len(grid)  # per arm, one inner fit per grid value
    test_of = [np.zeros(300, dtype=bool) for _ in folds]
    for f, (_, te) in enumerate(folds):
        test_of[f][te] = True
    for _, masks, C in inner:  # inner probes train inside one fold's training rows: no test row seen
        assert float(C) in grid and masks.shape[0] == 4 * 3
        for row in masks:
            assert any(not (row & t).any() for t in test_of)
    assert res.folds["fold"].to_list() == [0, 1, 2, 3] * 2
    assert res.folds["n_test"].to_list() == [75] * 8 and res.folds["n_train"].to_list() == [225] * 8
    # the raw arm's per-fold AUROC is one fit, reported identically beside every k
    by_k = res.folds.pivot(on="k", index="fold", values="auroc_raw")
    np.testing.assert_array_equal(by_k["2"].to_numpy(), by_k["8"].to_numpy())
    # with an empty grid each arm is one fit at cfg.C
    seen.clear()
    untuned = compare_probes(X, F, y, folds, top_k=[2, 8], cfg=CFG, n_bootstrap=0, C_grid=())
    assert [w for w, _, _ in seen] == [X.shape[1], 2, 8]
    assert set(untuned.folds["C_raw"]) == set(untuned.folds["C_sae"]) == {CFG.C}


def test_inner_fits_choose_the_sae_features_on_their_own_training_rows(monkeypatch) -> None:
    """The fits that choose C for the SAE arm read the k features ranked on their inner training rows, not on
    the whole fold (whose ranking saw the inner validation rows' labels: with many features and a null label
    that made the inner AUROC about 0.8 instead of 0.5)."""
    rng = np.random.default_rng(5)
    n, m, k = 160, 400, 4
    F = np.abs(rng.normal(size=(n, m)))
    X = rng.normal(size=(n, 6))
    y = rng.random(n) < 0.3  # a null label
    folds = interleaved_folds(n, 4)
    inner_inputs: list[tuple[np.ndarray, np.ndarray]] = []
    fit = probe_compare.fit_logistic

    def spy(Xa, ya, masks, cfg, C=None):
        Xa, masks = np.asarray(Xa), np.asarray(masks)
        if Xa.ndim == 3 and Xa.shape[-1] == k and masks.shape[0] > len(folds):
            inner_inputs.append((Xa.copy(), masks.copy()))
        return fit(Xa, ya, masks, cfg, C=C)

    monkeypatch.setattr(probe_compare, "fit_logistic", spy)
    compare_probes(X, F, y, folds, top_k=[k], cfg=CFG, n_bootstrap=0, C_grid=(0.01, 1.0))
    assert len(inner_inputs) == 2  # one inner fit per grid value
    fold_sets = [set(train.tolist()) for train, _ in folds]
    differs = 0
    for Xa, masks in inner_inputs:
        for q in range(masks.shape[0]):
            rows = np.flatnonzero(masks[q])
            np.testing.assert_array_equal(Xa[q], F[:, select_top_features(F, y, rows, k)])
            fold = next(f for f, rows_f in enumerate(fold_sets) if set(rows.tolist()) <= rows_f)
            differs += not np.array_equal(select_top_features(F, y, rows, k),
                                          select_top_features(F, y, folds[fold][0], k))
    assert differs > 0  # the two choices do differ here, so the check above can fail


def nuisance_cancelling(seed: int, n: int = 300):
    """The label is carried by s; the first column reads s + 2 * noise and the second the noise itself, so
    only a weakly penalised raw probe (w ~ (1, -2)) recovers s; a strongly penalised one keeps the mean
    difference direction (the first column alone)."""
    rng = np.random.default_rng(seed)
    s, noise = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([s + 2 * noise, noise, rng.normal(size=(n, 8))])
    y = rng.random(n) < 1 / (1 + np.exp(-3 * s))
    return X, np.abs(rng.normal(size=(n, 6))), y


@pytest.mark.parametrize("seed", range(3))
def test_each_arm_chooses_its_own_C_and_a_bad_fixed_C_no_longer_decides(seed: int) -> None:
    """A fixed C of 1e-4 (shared by both arms) cripples the raw probe here (AUROC about 0.65); chosen per
    arm on inner folds, the raw arm takes the weak penalty and reads the label (about 0.9)."""
    X, F, y = nuisance_cancelling(seed)
    cfg = ProbeConfig(C=1e-4, max_iter=200, seed=0)
    fixed = compare_probes(X, F, y, interleaved_folds(300), top_k=[1], cfg=cfg, n_bootstrap=0, C_grid=())
    tuned = compare_probes(X, F, y, interleaved_folds(300), top_k=[1], cfg=cfg, n_bootstrap=0,
                           C_grid=(1e-4, 0.01, 1.0))
    assert fixed.summary["auroc_raw"][0] < 0.72
    assert tuned.summary["auroc_raw"][0] > 0.82
    assert tuned.folds["C_raw"].to_list() == [1.0] * 5 and tuned.summary["C_raw"][0] == 1.0


def test_chosen_C_matches_scikit_learn_inner_cv() -> None:
    """The C chosen in each fold is the argmax of the mean inner-fold AUROC of scikit-learn's
    LogisticRegression on standardised features (the objective fit_logistic documents)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 60))  # 5 of 60 columns carry the label: the best C differs between folds
    y = rng.random(120) < 1 / (1 + np.exp(-1.5 * X[:, :5].sum(1) / np.sqrt(5)))
    F = np.abs(rng.normal(size=(120, 4)))
    grid = (1e-3, 0.03, 1.0)
    folds = interleaved_folds(120)
    res = compare_probes(X, F, y, folds, top_k=[1], cfg=CFG, n_bootstrap=0, C_grid=grid)
    assert len(set(res.folds["C_raw"])) == 3  # measured: every grid value chosen in some fold
    for f, (train, _) in enumerate(folds):
        means = []
        for C in grid:
            scores = []
            for tr, va in probe_compare.stratified_inner_folds(y, train, probe_compare.N_INNER_FOLDS, CFG.seed):
                scaler = StandardScaler().fit(X[tr])
                model = LogisticRegression(C=C, max_iter=2000, tol=1e-10).fit(scaler.transform(X[tr]), y[tr])
                scores.append(auroc(y[va], model.decision_function(scaler.transform(X[va]))))
            means.append(np.mean(scores))
        assert res.folds["C_raw"][f] == grid[int(np.argmax(np.round(means, 6)))], (f, means)


def test_block_inner_folds_hold_out_contiguous_runs_without_overlap_leaks() -> None:
    n = 60
    start = np.arange(n) * 50
    end = start + 100  # each window overlaps the next by half
    contig = np.array(["chr1"] * n)
    train = np.setdiff1d(np.arange(n), np.arange(20, 30))  # an outer fold's training rows
    inner = probe_compare.block_inner_folds(train, contig, start, end, n_inner=3)
    assert len(inner) == 3
    held = np.concatenate([va for _, va in inner])
    assert np.array_equal(np.sort(held), train)  # every training window validated exactly once
    for tr, va in inner:
        assert set(tr) <= set(train) and set(va) <= set(train) and not set(tr) & set(va)
        assert np.all(np.diff(np.sort(va)) >= 1) and va.size >= 15
        for i in tr:  # no inner training window overlaps a validation window
            assert not np.any((start[va] < end[i]) & (start[i] < end[va]))


def test_fold_without_both_classes_is_skipped_for_both_arms() -> None:
    _, F, X = planted(n=200)
    y = np.zeros(200, dtype=bool)
    y[:100:3] = True  # positives only in the first half
    folds = [(np.arange(100, 200), np.arange(100)), (np.arange(100), np.arange(100, 200)),
             (np.arange(0, 200, 2), np.arange(1, 200, 2))]
    res = compare_probes(X, F, y, folds, top_k=[1], cfg=CFG, n_bootstrap=20)
    assert res.summary["n_folds_used"][0] == 1 and res.summary["n_folds_skipped"][0] == 2
    assert res.folds["fold"].to_list() == [2]


def test_window_features_average_raw_and_sae_activations_per_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(40, 6)).astype(np.float32)
    win = np.repeat([10, 11, 12, 13], 10)
    writer = TokenStoreWriter(tmp_path / "l.zarr", 6, [], "m", "l", chunk_rows=7)
    writer.append(acts, win, np.zeros(40, np.int32), {})
    writer.close()
    sae = TopKSAE(6, 12, 3)
    X, F = window_features(tmp_path / "l.zarr", sae, np.array([12, 10, 11, 13]))
    with torch.inference_mode():
        codes = sae.encode(torch.from_numpy(acts)).numpy()
    for row, w in enumerate([12, 10, 11, 13]):
        np.testing.assert_allclose(X[row], acts[win == w].mean(0), rtol=1e-6)
        np.testing.assert_allclose(F[row], codes[win == w].mean(0), rtol=1e-5, atol=1e-7)
    with pytest.raises(Exception, match="no tokens"):
        window_features(tmp_path / "l.zarr", sae, np.array([10, 99]))


def test_stage_writes_window_and_sample_rows(tmp_path: Path) -> None:
    """The `probe_sae` stage on a token store, an SAE and a cohort folder: one row per (level, target, k)."""
    rng = np.random.default_rng(0)
    n_win, per, d = 60, 8, 8
    sae = TopKSAE(d, 16, 4)
    save_sae(sae, tmp_path / "sae.safetensors")
    acts = rng.normal(size=(n_win * per, d)).astype(np.float32)
    writer = TokenStoreWriter(tmp_path / "tokens" / "m" / "block2.zarr", d, [], "m", "block2")
    writer.append(acts, np.repeat(np.arange(n_win), per), np.zeros(n_win * per, np.int32), {})
    writer.close()
    pooled = acts.reshape(n_win, per, d).mean(1)
    windows = pl.DataFrame({"window_index": np.arange(n_win), "contig": ["chr1"] * n_win,
                            "start": np.arange(n_win) * 100, "end": np.arange(n_win) * 100 + 100,
                            "block": np.arange(n_win) // 12, "exon": pooled[:, 0] > 0})
    windows.write_parquet(tmp_path / "windows.parquet")
    n_s = 80
    obs = pd.DataFrame({"causal": (np.arange(n_s) % 2).astype(float)}, index=[f"s{i}" for i in range(n_s)])
    obs.loc["s0", "causal"] = np.nan  # a missing phenotype is left out
    emb = tmp_path / "cohort" / "m"
    emb.mkdir(parents=True)
    ad.AnnData(X=rng.normal(size=(n_s, d)).astype(np.float32), obs=obs,
               uns={"model": "m", "layer": "block2"}).write_h5ad(emb / "block2.samples.h5ad")
    ad.AnnData(X=rng.random((n_s, 16)).astype(np.float32), obs=obs,
               uns={"model": "m", "layer": "block2"}).write_h5ad(emb / "sae.features.h5ad")
    out = {"parquet": tmp_path / "o.parquet", "tsv": tmp_path / "o.tsv", "folds": tmp_path / "f.parquet"}
    job = stages.Job(input={"windows": str(tmp_path / "windows.parquet"),
                            "tokens_dirs": [str(tmp_path / "tokens" / "m")],
                            "sae_weights": [str(tmp_path / "sae.safetensors")], "cohort_emb_dirs": [str(emb)]},
                     output={k: str(v) for k, v in out.items()},
                     params={"probe": {"targets": ["exon"], "C": 1.0, "max_iter": 100, "sae_top_k": [1, 4],
                                       "sae_bootstrap": 50, "sae_sample_folds": 4},
                             "sae_layer": "block2", "seed": 7, "phenotypes": ["causal"]})
    stages.probe_sae(job)
    table = pl.read_parquet(out["parquet"])
    assert table.select("level", "target", "k").rows() == [("window", "exon", 1), ("window", "exon", 4),
                                                            ("sample", "causal", 1), ("sample", "causal", 4)]
    assert set(table["winner"]) <= {"sae", "raw", "tie"}
    window = table.filter(pl.col("level") == "window")
    assert window["n_folds_used"][0] + window["n_folds_skipped"][0] == 5  # the probe's genome-block folds
    assert window["auroc_raw"][0] > 0.9  # exon is planted as a raw-activation direction
    sample = table.filter(pl.col("level") == "sample")
    assert (sample["n_pos"] + sample["n_neg"]).to_list() == [79, 79]
    assert sample["n_missing"].to_list() == [1, 1] and window["n_missing"].to_list() == [0, 0]
    folds = pl.read_parquet(out["folds"])
    assert folds.filter(pl.col("level") == "sample")["n_test"].sum() == 79 * 2
    win_folds = contiguous_folds(windows["block"].to_numpy(), windows["contig"].to_numpy(),
                                 windows["start"].to_numpy(), windows["end"].to_numpy())
    wf = folds.filter((pl.col("level") == "window") & (pl.col("k") == 1))
    assert wf["n_train"].to_list() == [len(win_folds[f][0]) for f in wf["fold"].to_list()]
    assert (tmp_path / "o.tsv").read_text().startswith("model\tlayer\tlevel\ttarget\tk")


@pytest.mark.parametrize("with_rows", [True, False])
def test_report_table_only_when_the_run_has_the_comparison(with_rows: bool) -> None:
    report, figs, layers, _, cfg = rs.report_parts()
    rows = [{"model": "tiny-dnalm", "layer": "block2", "target": "exon", "level": "window", "k": 8,
             "auroc_raw": 0.91, "auroc_sae": 0.84, "difference": -0.07, "ci_low": -0.12, "ci_high": -0.02,
             "winner": "raw", "n_folds_used": 5}]
    first = summary.assemble(report, layers, None)
    report = dict(report, probe_sae_vs_raw=rows if with_rows else [], limitations=first.pop("_all_caveats"),
                  summary=first, methods=summary.methods(cfg))
    html = render_html(report, figs, "synthetic", cfg)
    assert ("Probes on SAE features vs raw activations" in html) is with_rows
    if with_rows:
        assert "-0.070" in html and "[-0.120, -0.020]" in html


def test_window_features_encode_bounded_blocks_and_do_not_depend_on_them(tmp_path: Path) -> None:
    """At 32,768 features a read of 16,384 tokens was 2 GB of codes plus a 4 GB float64 copy: codes are now
    made a bounded block at a time (`token_rows_for`: 1,024 tokens here); the window means agree whatever the
    block up to the last bits of the codes' matrix product (each window's sum runs token by token in store
    order), and are the same bits for the same block."""
    from interp.sae.concepts import token_rows_for

    rng = np.random.default_rng(2)
    n, d, n_features = 3000, 4, 32768
    acts = (rng.normal(size=(n, d)) * 10.0 ** rng.integers(-6, 3, size=(n, 1))).astype(np.float32)
    win = np.repeat(np.arange(30), 100)
    writer = TokenStoreWriter(tmp_path / "l.zarr", d, [], "m", "l", chunk_rows=700)
    writer.append(acts, win, np.zeros(n, np.int32), {})
    writer.close()
    torch.manual_seed(0)
    sae = TopKSAE(d, n_features, 8)
    blocks = []
    original = sae.encode

    def counting(x):
        blocks.append(x.shape[0])
        return original(x)

    sae.encode = counting
    wanted = np.array([5, 0, 29, 14, 13, 3, 7, 8, 9, 10, 11, 20, 21, 22, 23])  # 1,500 tokens
    X, F = window_features(tmp_path / "l.zarr", sae, wanted)
    assert max(blocks) <= token_rows_for(n_features, d) == 1024
    X_small, F_small = window_features(tmp_path / "l.zarr", sae, wanted, chunk_rows=37)
    np.testing.assert_array_equal(X_small, X)
    # the sums run token by token, but the codes of a 37-token block and a 1,024-token block may differ in the
    # last bits on some CPUs (torch's matrix product); a bug in the accumulation would be far larger
    np.testing.assert_allclose(F_small, F, rtol=1e-6, atol=1e-12)
    X_again, F_again = window_features(tmp_path / "l.zarr", sae, wanted)
    np.testing.assert_array_equal(F_again, F)  # same settings, same bits
    with torch.inference_mode():
        codes = original(torch.from_numpy(acts)).numpy()
    for row, w in enumerate(wanted):
        np.testing.assert_allclose(X[row], acts[win == w].astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(F[row], codes[win == w].astype(np.float64).mean(0), rtol=1e-5, atol=1e-9)


def equal_arms(seed: int, raw_effect: float = 1.2, sae_effect: float = 1.2, n: int = 300, d: int = 8):
    """Two arms with a readable label: X [n, d] and F [n, d] each = effect x y x (a random unit direction)
    + row noise + noise shared by runs of 10 rows (which share the label, as neighbouring windows do), drawn
    independently; 5 contiguous blocks of 60 rows as folds. With equal effects and k = d (the SAE arm uses
    every feature) the arms are exchangeable: the same true AUROC (about 0.74 at 1.2), a true difference 0."""
    rng = np.random.default_rng(50_000 + seed)
    run = np.arange(n) // 10
    y = (rng.random(run.max() + 1) < 0.3)[run]

    def arm(effect: float) -> np.ndarray:
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
        return effect * y[:, None] * u + rng.normal(size=(n, d)) + 0.5 * rng.normal(size=(run.max() + 1, d))[run]

    X, F = arm(raw_effect), arm(sae_effect)
    idx = np.arange(n)
    return X, F, y, [(idx[idx // 60 != f], idx[idx // 60 == f]) for f in range(5)]


@pytest.mark.slow
def test_winner_between_equally_good_arms_is_called_at_most_at_its_level() -> None:
    """Rate, not seed: two arms with the same true, better-than-chance AUROC (about 0.74; exchangeable by
    construction) must be called a winner in at most about 5% of replicates at 95% (the existing null test
    only covers labels neither arm can read). 400 replicates, each C chosen on inner folds as in the pipeline:
    measured 15/400 = 3.8% (exact 95% CI 2.1-6.1%; AUROC 0.74 per arm); the bound is the 99% binomial
    quantile at 5% (31). Power at a planted difference (SAE arm effect 1.5, AUROC 0.81; raw 0.6, AUROC 0.59):
    "sae" in 20/80 = 25% (CI 16-36%), "raw" never: with 5 folds even a 0.2 AUROC gap is usually a tie."""
    from scipy.stats import binom, binomtest

    cfg = ProbeConfig(C=1.0, max_iter=100, seed=0)
    n_null = 400
    called = 0
    for seed in range(n_null):
        X, F, y, folds = equal_arms(seed)
        res = compare_probes(X, F, y, folds, top_k=[8], cfg=cfg, n_bootstrap=0, seed=seed)
        called += res.summary["winner"][0] != "tie"
    assert called <= binom.ppf(0.99, n_null, 0.05), f"equal arms: a winner in {called}/{n_null}"
    n_power = 80
    wins = []
    for seed in range(n_power):
        X, F, y, folds = equal_arms(10_000 + seed, raw_effect=0.6, sae_effect=1.5)
        res = compare_probes(X, F, y, folds, top_k=[8], cfg=cfg, n_bootstrap=0, seed=seed)
        wins.append(res.summary["winner"][0])
    assert "raw" not in wins, wins
    n_sae = wins.count("sae")
    assert binomtest(n_sae, n_power).proportion_ci(method="exact").low > 0.05, f"power {n_sae}/{n_power}"


@pytest.mark.slow
def test_winner_on_null_labels_is_called_at_most_at_its_level() -> None:
    """Rate, not seed: on a label neither arm can read (rows in correlated runs, as neighbouring windows),
    a winner is a false call. Before the winning arm had to beat chance itself, one arm's fold-mean AUROC
    strayed far from 0.5 (0.19-0.36) and the other "won" against it: 76 of 1,000 seeds at k = 1 (7.6%, CI
    6.0-9.4%) and 66 at k = 8, above the nominal 5%; with the condition 20 and 16 of 1,000 (measured over
    seeds 0-999 in the thirty-fourth session). Here 400 seeds: at most 5% (20) per k, which the old rule
    (about 30 expected) fails; the winner's own AUROC interval lies above 0.5 whenever one is called."""
    cfg = ProbeConfig(C=1.0, max_iter=100, seed=0)
    calls = {1: 0, 8: 0}
    for seed in range(400):
        X, F, y, folds = null_in_runs(seed)
        s = compare_probes(X, F, y, folds, top_k=[1, 8], cfg=cfg, n_bootstrap=0, seed=seed).summary
        for row in s.iter_rows(named=True):
            if row["winner"] != "tie":
                calls[row["k"]] += 1
                assert row[f"auroc_{row['winner']}_ci_low"] > 0.5, row
    assert max(calls.values()) <= 20, calls
