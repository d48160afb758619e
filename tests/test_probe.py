"""Lightning logistic probes: scikit-learn agreement, batching, planted signals, leak-free folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from Bio import SeqIO
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, roc_auc_score
from sklearn.preprocessing import StandardScaler

from interp.errors import InputError
from interp.probe import (
    ProbeConfig,
    auroc,
    beats_controls,
    block_folds,
    classification_metrics,
    contiguous_folds,
    cross_validate,
    fit_logistic,
    fold_interval,
    fold_p_greater,
    kmer_frequencies,
    predict_proba,
    probe_table,
)

FASTA = Path(__file__).resolve().parents[1] / "resources" / "demo" / "hg19_chr17_1-40000.fa"


def demo_windows(width: int = 200) -> pl.DataFrame:
    """Tiled windows of the demo chr17 slice with repeat = lowercase (soft-masked) fraction >= 0.5."""
    seq = str(next(SeqIO.parse(FASTA, "fasta")).seq)
    starts = np.arange(0, len(seq) - width + 1, width)
    seqs = [seq[s : s + width] for s in starts]
    lower = np.array([sum(c.islower() for c in s) / width for s in seqs])
    gc = np.array([sum(c in "GCgc" for c in s) / width for s in seqs])
    return pl.DataFrame({
        "window_index": np.arange(starts.size),
        "contig": ["chr17"] * starts.size,
        "start": starts,
        "end": starts + width,
        "sequence": seqs,
        "block": (np.arange(starts.size) * 5) // starts.size,  # 5 contiguous blocks
        "repeat": lower >= 0.5,
        "gc_high": gc >= np.median(gc),
    })


def test_matches_sklearn_on_kmer_features_of_demo_genome():
    w = demo_windows()
    X = kmer_frequencies(w["sequence"].to_list(), k=3)
    y = w["repeat"].to_numpy().astype(int)
    assert 20 < y.sum() < y.size - 20  # both classes well represented
    folds = contiguous_folds(w["block"].to_numpy(), w["contig"].to_numpy(), w["start"].to_numpy(),
                             w["end"].to_numpy())
    masks = np.zeros((len(folds), y.size), dtype=bool)
    for f, (train, _) in enumerate(folds):
        masks[f, train] = True
    probes = fit_logistic(X, y, masks, ProbeConfig(C=1.0, max_iter=500))
    proba = predict_proba(probes, X)
    for f, (train, test) in enumerate(folds):
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd < 1e-12] = 1.0
        sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit((X[train] - mu) / sd, y[train])
        sk_score = sk.predict_proba((X[test] - mu) / sd)[:, 1]
        assert abs(auroc(y[test], proba[f, test]) - roc_auc_score(y[test], sk_score)) < 0.02
        np.testing.assert_allclose(probes.coef[f], sk.coef_[0], atol=1e-3)
        assert abs(probes.intercept[f] - sk.intercept_[0]) < 1e-3
        np.testing.assert_allclose(proba[f, test], sk_score, atol=1e-4)


def test_batched_fit_equals_fitting_each_probe_alone():
    rng = np.random.default_rng(1)
    n, d, P = 200, 12, 50
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    Y = (X @ rng.normal(size=(d, P)) + rng.normal(scale=2.0, size=(n, P)) > 0).T.astype(int)
    masks = rng.random((P, n)) < 0.7
    cfg = ProbeConfig(C=0.5, max_iter=300)
    batched = fit_logistic(X, Y, masks, cfg)
    per_probe_X = fit_logistic(np.broadcast_to(X, (P, n, d)), Y, masks, cfg)
    np.testing.assert_allclose(per_probe_X.coef, batched.coef, atol=1e-4)
    for p in range(0, P, 5):
        alone = fit_logistic(X, Y[p], masks[p : p + 1], cfg)
        np.testing.assert_allclose(alone.coef[0], batched.coef[p], atol=1e-4)
        np.testing.assert_allclose(alone.intercept[0], batched.intercept[p], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_probe_does_not_depend_on_the_probes_fitted_beside_it(seed):
    """On correlated activations with weak regularisation (C = 100), one L-BFGS over the sum of 21
    objectives (a probe and its shuffled-label controls, as probe_table batches them) stopped short of the
    probe's own minimum: 16-23% of its coefficients' norm away from scikit-learn's (1.6-2.1% fitted alone, in
    200 iterations). Probes not converged are now refitted until each one's gradient is below gtol."""
    rng = np.random.default_rng(seed)
    n, d = 400, 96
    latent = rng.normal(size=(n, 8))
    X = latent @ rng.normal(size=(8, d)) + 0.3 * rng.normal(size=(n, d))
    y = (latent[:, 0] + rng.normal(size=n) > 0.8).astype(float)
    train = np.arange(n) < 300
    Y = np.stack([y] + [y[rng.permutation(n)] for _ in range(20)])
    cfg = ProbeConfig(C=100.0)
    scaler = StandardScaler().fit(X[train])
    reference = LogisticRegression(C=100.0, max_iter=100_000, tol=1e-12).fit(scaler.transform(X[train]), y[train])
    for companions in (0, 20):
        probes = fit_logistic(X, Y[: companions + 1], np.repeat(train[None], companions + 1, 0), cfg)
        error = np.linalg.norm(probes.coef[0] - reference.coef_[0]) / np.linalg.norm(reference.coef_[0])
        assert error < 0.01, (companions, error)
        assert (probes.grad_max < cfg.gtol).all()


def test_fit_is_reproducible():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 5))
    y = (X[:, 0] > 0).astype(int)
    mask = np.ones((2, 80), dtype=bool)
    a = fit_logistic(X, y, mask, ProbeConfig(seed=3))
    b = fit_logistic(X, y, mask, ProbeConfig(seed=3))
    np.testing.assert_array_equal(a.coef, b.coef)


def test_feature_constant_on_training_rows_gets_unit_scale_as_sklearn():
    """A feature constant on a probe's training rows (an unused unit, a fixed covariate) is standardised
    with sd 1, as StandardScaler does; E[x^2] - mean^2 left rounding noise (sd ~1e-8) in 3 of these 12
    draws, which scaled the feature's test values up ~1e8 (predictions off scikit-learn's by up to 0.06)."""
    rng = np.random.default_rng(0)
    n, n_fit = 200, 150
    for c in rng.uniform(0.01, 1.0, size=12):
        X = np.column_stack([rng.normal(size=n), np.full(n, c)])
        X[n_fit:, 1] = 2 * c  # the feature moves only on the held-out rows
        y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
        mask = np.zeros((1, n), dtype=bool)
        mask[0, :n_fit] = True
        probes = fit_logistic(X, y, mask, ProbeConfig())
        assert probes.scale[0, 1] == 1.0
        sd = X[:n_fit].std(0)
        sd[1] = 1.0
        mu = X[:n_fit].mean(0)
        sk = LogisticRegression(tol=1e-10, max_iter=10_000).fit((X[:n_fit] - mu) / sd, y[:n_fit])
        np.testing.assert_allclose(predict_proba(probes, X)[0, n_fit:],
                                   sk.predict_proba((X[n_fit:] - mu) / sd)[:, 1], atol=1e-4)
    # near-constant features with a large offset keep their sd (no cancellation)
    X = rng.normal(size=(50, 3)) * 1e-3 + 1e4
    probes = fit_logistic(X, rng.integers(0, 2, 50), np.ones((1, 50), bool), ProbeConfig())
    np.testing.assert_allclose(probes.scale[0], X.std(0), rtol=1e-6)


def planted_windows(n: int = 400, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    starts = np.arange(n) * 100
    return X, y, starts


def test_planted_signal_is_found_and_shuffled_control_is_chance():
    X, y, starts = planted_windows()
    block = (np.arange(y.size) * 5) // y.size
    folds = contiguous_folds(block, np.array(["c1"] * y.size), starts, starts + 150)  # windows overlap
    res = cross_validate(X, y, folds, ProbeConfig(), n_shuffles=4)
    real = np.mean([r["auroc"] for r in res["real"]])
    shuffled = np.mean([r["auroc"] for r in res["shuffled"]])
    assert real > 0.9
    assert abs(shuffled - 0.5) < 0.1
    assert res["n_folds_used"] == 5 and res["n_folds_skipped"] == 0
    assert len(res["shuffled"]) == 20


def test_folds_without_both_classes_are_skipped_and_counted():
    X, y, starts = planted_windows(n=300)
    block = np.repeat(np.arange(3), 100)
    y = y.copy()
    y[100:200] = 0  # block 1 has only negatives: its fold cannot be scored
    folds = contiguous_folds(block, np.array(["c1"] * 300), starts, starts + 100)
    res = cross_validate(X, y, folds, ProbeConfig(), n_shuffles=1)
    assert res["n_folds_skipped"] == 1
    assert res["n_folds_used"] == 2
    assert sorted(r["fold"] for r in res["real"]) == [0, 2]
    # shuffle fits are counted as fits: the skipped fold's, and a shuffle whose labels lack a class (the shuffled
    # row copied the real label's count, and a shuffle fit dropped for a missing class was counted nowhere)
    assert res["n_shuffled_skipped"] + len(res["shuffled"]) == 3
    few = np.zeros(300, dtype=int)
    few[[5, 150]] = 1  # two positives: most shuffles leave a fold without one
    res = cross_validate(X, few, folds, ProbeConfig(), n_shuffles=4)
    assert res["n_shuffled_skipped"] + len(res["shuffled"]) == 3 * 4
    assert res["n_shuffled_skipped"] > 4 * res["n_folds_skipped"]


@pytest.mark.parametrize("seed", range(5))
def test_contiguous_folds_never_train_on_a_window_overlapping_the_test_block(seed):
    rng = np.random.default_rng(seed)
    n = 300
    contig = rng.choice(["chr1", "chr2", "chr3"], size=n)
    start = rng.integers(0, 20_000, size=n)
    end = start + rng.integers(1, 800, size=n)
    order = np.lexsort((start, contig))
    block = np.empty(n, dtype=np.int64)
    block[order] = (np.arange(n) * 6) // n  # 6 contiguous blocks in genome order
    folds = contiguous_folds(block, contig, start, end)
    assert len(folds) == 6
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(n))  # every window tested exactly once
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        overlap = (
            (contig[train][:, None] == contig[test][None, :])
            & (start[train][:, None] < end[test][None, :])
            & (start[test][None, :] < end[train][:, None])
        )
        assert not overlap.any()
        # and nothing is dropped that did not overlap
        others = np.setdiff1d(np.arange(n), test)
        hits = (
            (contig[others][:, None] == contig[test][None, :])
            & (start[others][:, None] < end[test][None, :])
            & (start[test][None, :] < end[others][:, None])
        ).any(axis=1)
        assert np.array_equal(np.sort(train), others[~hits])


@pytest.mark.parametrize("seed", range(3))
def test_contiguous_folds_leave_out_the_training_windows_within_the_gap(seed):
    """With gap g, a training window is dropped iff it overlaps a test window widened by g bases each side."""
    rng = np.random.default_rng(seed)
    n, gap = 300, 450
    contig = rng.choice(["chr1", "chr2"], size=n)
    start = rng.integers(0, 30_000, size=n)
    end = start + rng.integers(1, 400, size=n)
    order = np.lexsort((start, contig))
    block = np.empty(n, dtype=np.int64)
    block[order] = (np.arange(n) * 5) // n
    for train, test in contiguous_folds(block, contig, start, end, gap=gap):
        others = np.setdiff1d(np.arange(n), test)
        near = ((contig[others][:, None] == contig[test][None, :])
                & (start[others][:, None] < end[test][None, :] + gap)
                & (start[test][None, :] - gap < end[others][:, None])).any(axis=1)
        assert np.array_equal(np.sort(train), others[~near])
    # block_folds counts the gap in windows: the tiling's step (here 100 bases, windows of 200)
    windows = pl.DataFrame({"contig": ["c"] * 40, "start": np.arange(40) * 100, "end": np.arange(40) * 100 + 200,
                            "block": (np.arange(40) * 4) // 40})
    train, test = block_folds(windows, block_gap=3)[1]  # test: windows 10-19 (bases 1000-2100)
    assert test.tolist() == list(range(10, 20))
    assert train.tolist() == list(range(0, 6)) + list(range(24, 40))  # 1 overlapping + 3 more on each side


def test_a_label_in_runs_on_autocorrelated_activations_is_at_chance_with_the_gap():
    """A null label in runs (10% prevalence, runs of about 10 windows) on AR(1) activations (rho 0.8) drawn
    independently of it: trained right up to the test block, where both carry across the edge, the probe scored
    above chance (mean fold AUROC over 359 replicates 0.537, CI 0.520-0.553); with the default gap of 10 windows
    the interval holds 0.5 (0.511, 0.495-0.527; 20 windows: 0.510)."""
    n, d, R = 400, 32, 400
    means = {0: [], 10: []}
    for seed in range(R):
        rng = np.random.default_rng(50_000 + seed)
        y = np.zeros(n, dtype=bool)
        state = rng.random() < 0.1
        for i in range(n):  # a two-state chain: runs of mean 10, 10% of windows in the label
            y[i] = state
            state = rng.random() >= 0.1 if state else rng.random() < 0.1 / 0.9 / 10
        X = np.empty((n, d))
        noise = rng.standard_normal((n, d))
        X[0] = noise[0]
        for i in range(1, n):
            X[i] = 0.8 * X[i - 1] + 0.6 * noise[i]
        windows = pl.DataFrame({"contig": ["c"] * n, "start": np.arange(n) * 100, "end": np.arange(n) * 100 + 100,
                                "block": (np.arange(n) * 5) // n})
        for gap in means:
            res = cross_validate(X, y.astype(int), block_folds(windows, gap), ProbeConfig(seed=seed), n_shuffles=0)
            folds = [r["auroc"] for r in res["real"] if np.isfinite(r["auroc"])]
            if folds:
                means[gap].append(np.mean(folds))
    def interval(v):
        v = np.asarray(v)
        half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
        return v.mean() - half, v.mean() + half
    assert len(means[10]) > 300
    assert interval(means[0])[0] > 0.5, interval(means[0])  # the simulation does carry the leak
    low, high = interval(means[10])
    assert low < 0.5 < high and high < 0.53, (low, high)


def test_auroc_and_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=(6, 120))
    score = np.round(rng.random((6, 120)) + 0.3 * y, 1)  # rounding makes many ties
    ours = auroc(y, score)
    for i in range(6):
        assert ours[i] == pytest.approx(roc_auc_score(y[i], score[i]), abs=1e-12)
        m = classification_metrics(y[i], score[i])
        assert m["auroc"] == pytest.approx(roc_auc_score(y[i], score[i]), abs=1e-12)
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[i], score[i] >= 0.5))
        assert m["mcc"] == pytest.approx(matthews_corrcoef(y[i], score[i] >= 0.5))
    assert np.isnan(auroc(np.zeros(5), np.arange(5.0)))


def test_kmer_frequencies_counts_and_skips_n():
    f = kmer_frequencies(["ACGTNacg", "NN", "AAAA"], k=2)
    assert f.shape == (3, 16)
    # ACGTNacg -> AC CG GT (TN, NA skipped) AC CG
    expected = np.zeros(16)
    expected[[1, 6, 11]] = [2, 2, 1]
    np.testing.assert_allclose(f[0], expected / 5)
    assert f[1].sum() == 0
    assert f[2, 0] == 1.0
    np.testing.assert_allclose(kmer_frequencies(["ACGTACGT"], k=3).sum(), 1.0)


def test_probe_table_rows_and_planted_target():
    w = demo_windows(width=400)
    rng = np.random.default_rng(5)
    rep = w["repeat"].to_numpy().astype(float)
    strong = rng.normal(size=(w.height, 8)) + 3.0 * rep[:, None]  # carries the repeat label
    weak = rng.normal(size=(w.height, 8))  # carries nothing
    pooled = {("toy", "layer1"): strong, ("toy", "layer0"): weak}
    table = probe_table(pooled, w, ["repeat", "gc_high"], ProbeConfig(), n_shuffles=2)
    assert table.height == 2 * 2 * 2 + 2
    assert set(table["features"]) == {"embedding", "shuffled", "kmer3"}
    kmer = table.filter(pl.col("features") == "kmer3")
    assert kmer["model"].to_list() == ["kmer3", "kmer3"] and set(kmer["layer"]) == {"3-mer frequencies"}
    row = table.filter((pl.col("layer") == "layer1") & (pl.col("target") == "repeat")
                       & (pl.col("features") == "embedding")).row(0, named=True)
    assert row["auroc_mean"] > 0.95
    assert row["n_pos"] + row["n_neg"] == w.height and row["n_pos"] == int(rep.sum())
    assert row["n_folds_used"] + row["n_folds_skipped"] == 5
    weak_row = table.filter((pl.col("layer") == "layer0") & (pl.col("target") == "repeat")
                            & (pl.col("features") == "embedding")).row(0, named=True)
    assert abs(weak_row["auroc_mean"] - 0.5) < 0.2
    assert {"auroc_sd", "balanced_accuracy_sd", "mcc", "mcc_sd"} <= set(table.columns)


def test_bad_inputs_raise_input_error():
    w = demo_windows(width=2000)
    with pytest.raises(InputError, match="missing column"):
        probe_table({("m", "l"): np.zeros((w.height, 2))}, w.drop("block"), ["repeat"], ProbeConfig())
    with pytest.raises(InputError, match="rows"):
        probe_table({("m", "l"): np.zeros((3, 2))}, w, ["repeat"], ProbeConfig())
    X = np.ones((4, 2))
    X[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_logistic(X, np.array([0, 1, 0, 1]), np.ones((1, 4), bool), ProbeConfig())


def test_fold_p_greater_agrees_with_the_fold_interval():
    """The one-sided p of the paired fold comparison is below 0.025 exactly when the 95% fold interval lies
    above 0 (the same corrected t)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = rng.normal(rng.normal(0, 0.05), 0.05, size=5)
        low, high = fold_interval(d, [240] * 5, [60] * 5)
        p = fold_p_greater(d, [240] * 5, [60] * 5)
        assert (p < 0.025) == (low > 0), (d, p, low)
        assert (p > 0.975) == (high < 0), (d, p, high)
    assert np.isnan(fold_p_greater(np.array([0.1]), [240], [60]))


def _runs_windows(rng: np.random.Generator, n: int = 300, run: float = 10.0, prevalence: float = 0.3,
                  width: int = 100, gc_shift: float = 0.0) -> pl.DataFrame:
    """n windows tiled over one contig in 5 contiguous blocks; target t comes in runs (a two-state Markov chain
    of mean run length `run` windows), as labels along a genome do; a window's G+C share is 0.5 + gc_shift * t
    (0: the sequence knows nothing of t)."""
    t = np.zeros(n, dtype=bool)
    state = rng.random() < prevalence
    leave_pos, leave_neg = 1 / run, prevalence / (1 - prevalence) / run
    for i in range(n):
        t[i] = state
        state = (rng.random() >= leave_pos) if state else (rng.random() < leave_neg)
    seqs = ["".join(rng.choice(list("ACGT"), width, p=[(1 - g) / 2, g / 2, g / 2, (1 - g) / 2]))
            for g in 0.5 + gc_shift * t]
    start = np.arange(n) * width
    return pl.DataFrame({"window_index": np.arange(n), "contig": ["c"] * n, "start": start, "end": start + width,
                         "sequence": seqs, "block": np.repeat(np.arange(5), n // 5), "t": t})


def _control_claims(seed: int, effect: float, gc_shift: float = 0.0, n_layers: int = 6) -> dict:
    """beats_controls on one planted replicate: n_layers layers of 32 autocorrelated (AR(1), rho 0.8 along the
    windows) noise dimensions, the first shifted by `effect` SDs of the standardised target; with gc_shift the
    layers also hold the windows' 3-mer frequencies (the model knows what the k-mers know, nothing more)."""
    rng = np.random.default_rng(seed)
    w = _runs_windows(rng, gc_shift=gc_shift)
    y = w["t"].to_numpy().astype(float)
    pooled = {}
    for layer in range(n_layers):
        noise = rng.standard_normal((w.height, 32))
        X = np.empty_like(noise)
        X[0] = noise[0]
        for i in range(1, w.height):
            X[i] = 0.8 * X[i - 1] + 0.6 * noise[i]
        X[:, 0] += effect * (y - y.mean()) / max(y.std(), 1e-9)
        if gc_shift:
            X = np.hstack([kmer_frequencies(w["sequence"].to_list(), 3), X])
        pooled[("m", f"layer{layer}")] = X
    return beats_controls(probe_table(pooled, w, ["t"], ProbeConfig(seed=seed)).to_dicts())["t"]


def test_claims_that_probes_beat_their_controls_hold_their_level():
    """"The model represents t beyond the 3-mer / shuffled-label control" is a claim of the report (the caveats
    probes_vs_kmer3 / probes_vs_shuffled mark where it fails). It was made when the best layer's fold-mean
    AUROC exceeded the control by one fold-SD. Measured with this test's replicates (/work scripts, 2026-12-06):
    on null targets in runs with autocorrelated embeddings (6 layers, 5 blocks) that rule claimed both, in 204
    and 209 of 400 (51%); with layers holding the 3-mer counts and nothing more it claimed "beyond the 3-mer
    control" in 25 of 200 (12.5%). Now `beats_controls`: a paired, corrected t over the folds, the two-sided
    95% interval at Bonferroni over the layers lying above 0: null 18/400 (4.5%) vs the 3-mer control and
    16/400 (4.0%) vs the shuffled one; k-mer-only layers 0/200 vs the 3-mer control (169/200 beat the shuffled
    one); power vs the 3-mer / shuffled control 56 and 61 of 200 at effect 0.5 SD, 75 and 97 of 100 at 1.0,
    47 and 59 of 60 at 1.5. Here 40 null replicates (a true 5% gives more than 5 in 1.4% of runs; the old
    rule's 51% gives 5 or fewer in about 1e-7), 15 with the k-mer-only layers and 15 at effect 1.0 (each bound
    is missed in about 1% of runs or fewer at the measured rates); the 400-replicate figure is the slow test."""
    null = [_control_claims(seed, 0.0) for seed in range(40)]
    for control in ("kmer3", "shuffled"):
        claimed = sum(bool(c[control]) for c in null)
        assert claimed <= 5, (control, claimed)
    kmer_only = [_control_claims(1000 + seed, 0.0, gc_shift=0.1) for seed in range(15)]
    assert sum(bool(c["kmer3"]) for c in kmer_only) <= 2
    assert sum(bool(c["shuffled"]) for c in kmer_only) >= 9
    signal = [_control_claims(2000 + seed, 1.0) for seed in range(15)]
    assert sum(bool(c["kmer3"]) for c in signal) >= 7 and sum(bool(c["shuffled"]) for c in signal) >= 12



@pytest.mark.slow
def test_claims_that_probes_beat_their_controls_on_400_null_targets():
    """The null rate behind the README figure: 18/400 vs the 3-mer control and 16/400 vs the shuffled one
    (a true 5% gives more than 28 of 400 in 1% of runs)."""
    null = [_control_claims(seed, 0.0) for seed in range(400)]
    for control in ("kmer3", "shuffled"):
        assert sum(bool(c[control]) for c in null) <= 28, control


def test_a_nan_control_auroc_in_one_fold_drops_that_fold_not_the_comparison():
    """`_paired` dropped an embedding fold whose AUROC is NaN but averaged the control's folds as they came: one
    NaN control AUROC (one shuffle of a fold) made the mean difference, its interval and p NaN, so
    `beats_controls` said nothing for that row. A NaN control value is left out like a NaN embedding value: a
    fold counts when both arms have a finite AUROC there."""
    from interp.probe import _paired

    a = [{"fold": f, "auroc": 0.80 + 0.01 * f, "n_train": 80, "n_test": 20} for f in range(5)]
    b = [{"fold": f, "auroc": 0.60, "n_train": 80, "n_test": 20} for f in range(5)]
    clean = _paired(a, b)
    assert clean["n_folds"] == 5 and np.isfinite(clean["p"])
    # a NaN shuffle beside a finite one in fold 1: the fold keeps its finite shuffle
    with_nan_shuffle = _paired(a, b + [{"fold": 1, "auroc": float("nan"), "n_train": 80, "n_test": 20}])
    assert with_nan_shuffle == clean
    # the control's only AUROC of fold 2 is NaN: fold 2 is left out, the other four are compared
    b_nan = [dict(r, auroc=float("nan")) if r["fold"] == 2 else r for r in b]
    res = _paired(a, b_nan)
    assert res["n_folds"] == 4 and np.isfinite(res["diff"]) and np.isfinite(res["p"]) and np.isfinite(res["low"])
