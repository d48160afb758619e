"""Probes on SAE features vs probes on raw activations, side by side under the same CV (issue 10).

Goodfire's question: a linear probe on a model's raw activations sometimes beats a probe on its SAE's
features. `compare_probes` answers it for one label: over the same folds it fits

* raw: an L2 logistic probe (`interp.probe.fit_logistic`) on the raw activations X [n, d];
* sae k: the same probe on only k SAE features, for each k in `top_k`. The k features are chosen
  inside each fold from the fold's training rows alone: the k with the largest |AUROC - 0.5| of the
  feature against the label on those rows (a feature that is lower in the positives counts as much as
  one that is higher; ties go to the lower feature index). Test rows never enter the choice; nor, in the
  inner folds that choose C (below), do the inner validation rows: there the features are chosen again on
  the inner training rows.

Both arms see the same training rows and are scored on the same test rows (folds where the training or
test rows lack a class are skipped for both). Each arm's L2 strength is its own: inside each fold, C is
chosen from `C_grid` by the mean AUROC over inner folds of that fold's training rows (`inner_folds`;
ties go to the smaller C), and the arm is refitted on all the fold's training rows with it. A single C
shared by a 1-feature and a d-dimensional probe would favour one of them by its regularisation alone.
The chosen values are reported per fold (`C_raw`, `C_sae`). With an empty grid both arms use cfg.C.
Per k the summary gives the fold-mean AUROC of each arm, their difference (SAE - raw), and a paired 95%
interval of that difference over the folds
(`fold_interval`): a t interval on the per-fold differences whose variance is inflated for the folds'
shared training rows (Nadeau & Bengio's corrected resampled t), so it carries refitting and
between-block variation. `winner` is "sae" when that interval lies above 0 and the SAE arm's own
fold-mean AUROC interval (the same corrected t, `auroc_sae_ci_low` / `_high`) lies above 0.5; "raw" when
it lies below 0 and the raw arm's AUROC interval lies above 0.5; else "tie" (always "tie" with fewer than
2 used folds). The second condition is there because on a label neither arm can read, one arm's fold-mean
AUROC strays far from 0.5 (down to 0.19 on null labels whose rows come in correlated runs, as
neighbouring windows do) and the other "won" against it: 7.6% of 1,000 null seeds at 95% (k = 1), 2.0%
with the condition; a winner that does not read the label itself is no answer to "which probe reads it
better". With 5 folds the interval is wide: a win needs a large, consistent difference.

`boot_ci_low` / `boot_ci_high` are a paired bootstrap interval over test rows (resampled within each
fold, stratified by class, the same draw scoring both arms, the fitted probes held fixed). It reflects
test-sample noise only and treats rows as independent, so it is far too narrow to call a winner: on a
null label with rows correlated in runs (as neighbouring windows are) it excluded 0 in 57-69% of seeds
(k = 8, 1; the fold interval with the winner above chance: 2%). It is kept for information only.

`window_features` builds the window-level inputs from a token store: the mean over each window's tokens
of the raw activations and of the SAE's feature activations (the same pooling as the cohort's
`sae.features.h5ad`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import rankdata

from interp.errors import InputError
from interp.probe import (
    ProbeConfig,
    auroc,
    block_folds,
    contiguous_folds,
    fit_logistic,
    fold_interval,
    predict_proba,
)

#: defaults of the `probe.sae_*` config keys
DEFAULT_TOP_K = (1, 8, 32)
DEFAULT_BOOTSTRAP = 1000
#: default of `probe.sae_C_grid`: the inverse L2 strengths each arm chooses from inside each fold
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0)
#: inner folds of a fold's training rows on which C is chosen
N_INNER_FOLDS = 3

Folds = Sequence[tuple[np.ndarray, np.ndarray]]

FOLD_SCHEMA = {
    "fold": pl.Int64, "k": pl.Int64, "n_train": pl.Int64, "n_test": pl.Int64, "auroc_raw": pl.Float64,
    "auroc_sae": pl.Float64, "difference": pl.Float64, "selected": pl.List(pl.Int64), "C_raw": pl.Float64,
    "C_sae": pl.Float64,
}
SUMMARY_SCHEMA = {
    "k": pl.Int64, "k_used": pl.Int64, "auroc_raw": pl.Float64, "auroc_sae": pl.Float64,
    "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "winner": pl.String,
    "auroc_raw_ci_low": pl.Float64, "auroc_raw_ci_high": pl.Float64, "auroc_sae_ci_low": pl.Float64,
    "auroc_sae_ci_high": pl.Float64,
    "boot_ci_low": pl.Float64, "boot_ci_high": pl.Float64, "n_folds_used": pl.Int64, "n_folds_skipped": pl.Int64, "n_folds_sae_better": pl.Int64,
    "n_pos": pl.Int64, "n_neg": pl.Int64, "n_missing": pl.Int64, "C_raw": pl.Float64, "C_sae": pl.Float64,
}


@dataclass
class ProbeComparison:
    """Result of `compare_probes`.

    folds: one row per (used fold, k): fold, k, n_train, n_test, auroc_raw, auroc_sae, difference and
    `selected`, the SAE feature indices chosen on that fold's training rows.
    summary: one row per k: k, k_used (k capped at the number of SAE features), fold-mean auroc_raw and
    auroc_sae, difference (SAE - raw), ci_low / ci_high (`fold_interval`), auroc_raw_ci_low / _high and
    auroc_sae_ci_low / _high (each arm's fold-mean AUROC with the same corrected t interval), winner ("sae",
    "raw", "tie": see the module doc), boot_ci_low / boot_ci_high (test-row bootstrap, test noise only),
    n_folds_used, n_folds_skipped, n_folds_sae_better, n_pos, n_neg, n_missing (rows left out before the
    comparison for a missing label, as the caller counted them), C_raw / C_sae (the median over folds of
    each arm's chosen C; per fold in `folds`).
    """

    folds: pl.DataFrame
    summary: pl.DataFrame


def feature_auroc(F: np.ndarray, y: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """AUROC [m] of each column of F [n, m] as a score for the 0/1 labels y [n] (ties count 1/2).

    NaN when y lacks a class. Columns are ranked `chunk` at a time, so memory stays O(n * chunk).
    """
    F = np.asarray(F)
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = np.full(F.shape[1], np.nan)
    if n_pos == 0 or n_neg == 0:
        return out
    for first in range(0, F.shape[1], chunk):
        ranks = rankdata(F[:, first:first + chunk], axis=0)
        out[first:first + chunk] = (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def rank_features(F: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The m columns of F [n, m] by |AUROC - 0.5| for y [n] on `rows` only (a fold's training rows), largest
    first; ties go to the lower index."""
    rows = np.asarray(rows)
    score = np.abs(feature_auroc(np.asarray(F)[rows], np.asarray(y)[rows]) - 0.5)
    score = np.nan_to_num(score, nan=0.0)
    return np.lexsort((np.arange(score.shape[0]), -score))  # by score descending, then index


def select_top_features(F: np.ndarray, y: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Indices [min(k, m)], ascending, of the k columns of F [n, m] that `rank_features` puts first on `rows`."""
    return np.sort(rank_features(F, y, rows)[:int(k)])


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


def _check(X: np.ndarray, F: np.ndarray, y: np.ndarray, top_k: Iterable[int]) -> tuple:
    X = np.asarray(X, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or F.ndim != 2 or y_arr.ndim != 1 or not (X.shape[0] == F.shape[0] == y_arr.shape[0]):
        raise InputError(f"probe comparison: expected X [n, d], F [n, m], y [n]; got X {X.shape}, F {F.shape}, "
                         f"y {y_arr.shape}")
    if not np.all((y_arr == 0) | (y_arr == 1)):
        raise InputError("probe comparison: labels must be 0/1")
    ks = sorted({int(k) for k in top_k})
    if not ks or ks[0] < 1:
        raise InputError(f"probe comparison: top_k must be positive integers, got {list(top_k)}")
    return X, F, y_arr.astype(bool), ks


def compare_probes(X: np.ndarray, F: np.ndarray, y: np.ndarray, folds: Folds,
                   top_k: Iterable[int] = DEFAULT_TOP_K, cfg: ProbeConfig | None = None,
                   n_bootstrap: int = DEFAULT_BOOTSTRAP, confidence: float = 0.95,
                   seed: int = 0, n_missing: int = 0, C_grid: Sequence[float] = DEFAULT_C_GRID,
                   inner_folds: Callable[[np.ndarray], Folds] | None = None) -> ProbeComparison:
    """Raw-activation probe vs sparse probe on the top-k SAE features, same folds (see the module doc).

    X: float [n, d] raw activations; F: float [n, m] SAE feature activations of the same rows;
    y: 0/1 [n]; folds: (train_index, test_index) integer arrays, used identically by both arms;
    top_k: the k values; cfg: the logistic probe's settings (max_iter, seed; C when C_grid is empty);
    n_bootstrap: paired bootstrap draws of the test rows for boot_ci_low / boot_ci_high (0: none);
    confidence: the interval's level; seed: the bootstrap's generator; n_missing: rows the caller left
    out for a missing label (reported only); C_grid: the C values each arm chooses from inside each fold
    (empty: cfg.C for both); inner_folds: maps a fold's training rows [t] to (train, validation) index
    arrays into the n rows, all within those rows (default `stratified_inner_folds`: for independent rows;
    rows correlated by position, as overlapping windows, need blocks: `block_inner_folds`).
    """
    X, F, y, ks = _check(X, F, y, top_k)
    cfg = cfg or ProbeConfig()
    n = y.shape[0]
    used = [(f, np.asarray(tr), np.asarray(te)) for f, (tr, te) in enumerate(folds)
            if _both_classes(y[np.asarray(tr)]) and _both_classes(y[np.asarray(te)])]
    n_skipped = len(folds) - len(used)
    k_used = {k: min(k, F.shape[1]) for k in ks}
    fold_rows: list[dict] = []
    summary_rows: list[dict] = []
    counts = {"n_pos": int(y.sum()), "n_neg": int((~y).sum()), "n_missing": int(n_missing)}
    if not used:
        for k in ks:
            summary_rows.append({"k": k, "k_used": k_used[k], "winner": "tie", "n_folds_used": 0,
                                 "n_folds_skipped": n_skipped, "n_folds_sae_better": 0, **counts})
        return ProbeComparison(pl.DataFrame(fold_rows, schema=FOLD_SCHEMA),
                               pl.DataFrame(summary_rows, schema=SUMMARY_SCHEMA))
    masks = np.zeros((len(used), n), dtype=bool)
    for p, (_, train, _) in enumerate(used):
        masks[p, train] = True
    grid = tuple(sorted({float(c) for c in C_grid}))
    inner = inner_folds or (lambda train: stratified_inner_folds(y, train, N_INNER_FOLDS, cfg.seed))
    inner_by_fold = [[(np.asarray(a), np.asarray(b)) for a, b in inner(train)] if grid else []
                     for _, train, _ in used]
    raw, C_chosen = _fit_tuned(X, y, masks, inner_by_fold, grid, cfg)  # [folds, n], {arm: [folds]}
    chosen = {"raw": C_chosen}
    test_scores = {"raw": [raw[p, te] for p, (_, _, te) in enumerate(used)]}
    selected: dict[int, list[np.ndarray]] = {}
    # the SAE arm's features are chosen on the rows each probe trains on: a fold's training rows for its
    # final fit, an inner fold's for the fits that choose C (chosen on the whole fold, they would have seen
    # the inner validation rows' labels: inner AUROC 0.8 on a null label with 2,000 features)
    order = [rank_features(F, y, train) for _, train, _ in used]
    inner_order = [[rank_features(F, y, tr) for tr, _ in inner] for inner in inner_by_fold]
    for k in ks:
        sel = [np.sort(o[:k]) for o in order]
        selected[k] = sel
        X_sel = np.stack([F[:, s] for s in sel])  # [folds, n, k]
        inner_sel = [[F[:, np.sort(o[:k])] for o in fold] for fold in inner_order]
        sae, chosen[k] = _fit_tuned(X_sel, y, masks, inner_by_fold, grid, cfg, inner_sel)
        test_scores[k] = [sae[p, te] for p, (_, _, te) in enumerate(used)]
    rng = np.random.default_rng(seed)
    draws = [_stratified_draws(y[te], n_bootstrap, rng) for _, _, te in used]
    raw_auc = np.array([auroc(y[te], s) for (_, _, te), s in zip(used, test_scores["raw"], strict=True)])
    raw_boot = _boot_auroc(used, y, test_scores["raw"], draws)
    alpha = 1.0 - confidence
    sizes = ([tr.shape[0] for _, tr, _ in used], [te.shape[0] for _, _, te in used])  # training, test rows per fold
    raw_lo, raw_hi = fold_interval(raw_auc - 0.5, *sizes, confidence)  # the raw arm's, the same for every k
    for k in ks:
        sae_auc = np.array([auroc(y[te], s) for (_, _, te), s in zip(used, test_scores[k], strict=True)])
        for p, (f, train, te) in enumerate(used):
            fold_rows.append({"fold": f, "k": k, "n_train": int(train.shape[0]), "n_test": int(te.shape[0]),
                              "auroc_raw": float(raw_auc[p]), "auroc_sae": float(sae_auc[p]),
                              "difference": float(sae_auc[p] - raw_auc[p]),
                              "selected": selected[k][p].tolist(), "C_raw": float(chosen["raw"][p]),
                              "C_sae": float(chosen[k][p])})
        diff = float(sae_auc.mean() - raw_auc.mean())
        lo, hi = fold_interval(sae_auc - raw_auc, *sizes, confidence)
        sae_lo, sae_hi = fold_interval(sae_auc - 0.5, *sizes, confidence)
        # a win needs the difference's interval away from 0 and the winning arm's own AUROC interval above
        # chance: on null labels one arm's AUROC strays far below 0.5 (fold means 0.19-0.36 in runs of
        # correlated rows) and the other "won" against it in 7.6% of seeds at 95%; gated, 2.0%
        winner = "sae" if lo > 0 and sae_lo > 0 else "raw" if hi < 0 and raw_lo > 0 else "tie"  # NaN: a tie
        boot_lo = boot_hi = float("nan")
        if n_bootstrap > 0:
            boot = _boot_auroc(used, y, test_scores[k], draws) - raw_boot
            boot_lo, boot_hi = (float(v) for v in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
        summary_rows.append({
            "k": k, "k_used": k_used[k], "auroc_raw": float(raw_auc.mean()), "auroc_sae": float(sae_auc.mean()),
            "difference": diff, "ci_low": lo, "ci_high": hi, "winner": winner,
            "auroc_raw_ci_low": 0.5 + raw_lo, "auroc_raw_ci_high": 0.5 + raw_hi,
            "auroc_sae_ci_low": 0.5 + sae_lo, "auroc_sae_ci_high": 0.5 + sae_hi, "boot_ci_low": boot_lo,
            "boot_ci_high": boot_hi, "n_folds_used": len(used),
            "n_folds_skipped": n_skipped, "n_folds_sae_better": int((sae_auc > raw_auc).sum()), **counts,
            "C_raw": float(np.median(chosen["raw"])), "C_sae": float(np.median(chosen[k])),
        })
    return ProbeComparison(pl.DataFrame(fold_rows, schema=FOLD_SCHEMA),
                           pl.DataFrame(summary_rows, schema=SUMMARY_SCHEMA))


def stratified_inner_folds(y: np.ndarray, train: np.ndarray, n_inner: int, seed: int) -> Folds:
    """Inner (train, validation) folds of the rows `train`, stratified by y: for independent rows (samples).
    Index arrays into y's rows; fewer folds when a class has fewer than n_inner rows; none below 2."""
    from interp.audit import stratified_folds

    train = np.asarray(train)
    y_train = np.asarray(y)[train].astype(bool)
    n_inner = min(int(n_inner), int(y_train.sum()), int((~y_train).sum()))
    if n_inner < 2:
        return []
    return [(train[a], train[b]) for a, b in stratified_folds(y_train, n_inner, seed)]


def block_inner_folds(train: np.ndarray, contig: np.ndarray, start: np.ndarray, end: np.ndarray,
                      n_inner: int = N_INNER_FOLDS) -> Folds:
    """Inner folds of the rows `train` for windows: the training windows in genome order cut into n_inner
    contiguous runs, each held out in turn, with every window that overlaps it left out of the inner
    training rows (`interp.probe.contiguous_folds`), so overlapping windows cannot leak into the choice of C.

    contig, start, end [n]: every row's coordinates (half-open); returns index arrays into the n rows.
    """
    train = np.asarray(train)
    contig = np.asarray(contig).astype(str)
    start, end = np.asarray(start), np.asarray(end)
    order = train[np.lexsort((start[train], contig[train]))]
    run = np.arange(order.size) * int(n_inner) // max(order.size, 1)
    inner = contiguous_folds(run, contig[order], start[order], end[order])
    return [(order[a], order[b]) for a, b in inner]


def _fit_tuned(Xa: np.ndarray, y: np.ndarray, masks: np.ndarray, inner_by_fold: list[Folds],
               grid: tuple[float, ...], cfg: ProbeConfig,
               inner_X: list[list[np.ndarray]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probe scores [folds, n] of one arm, each fold refitted on its training rows with the C [folds] that
    scored the best mean inner-fold AUROC (ties: the smaller C; no usable inner fold: cfg.C).

    Xa: [n, d] shared by the folds or [folds, n, d]; masks: bool [folds, n] the folds' training rows;
    inner_by_fold: per fold, (train, validation) index arrays within its training rows; inner_X: per fold and
    inner fold, the [n, d] inputs of that inner fit where they differ from the fold's (features chosen on the
    inner training rows); default: the fold's Xa.
    """
    n_folds = masks.shape[0]
    best = np.full(n_folds, float(cfg.C))
    pairs = [(p, i, tr, va) for p, inner in enumerate(inner_by_fold) for i, (tr, va) in enumerate(inner)
             if _both_classes(y[tr]) and _both_classes(y[va])]
    if grid and pairs:
        inner_masks = np.zeros((len(pairs), y.shape[0]), dtype=bool)
        for q, (_, _, tr, _) in enumerate(pairs):
            inner_masks[q, tr] = True
        fold_of = np.array([p for p, _, _, _ in pairs])
        if inner_X is not None:
            X_inner = np.stack([inner_X[p][i] for p, i, _, _ in pairs])
        else:
            X_inner = Xa if Xa.ndim == 2 else Xa[fold_of]
        score = np.zeros((len(grid), n_folds))
        counted = np.bincount(fold_of, minlength=n_folds)
        for g, C in enumerate(grid):
            prob = predict_proba(fit_logistic(X_inner, y, inner_masks, cfg, C=C), X_inner)
            for q, (p, _, _, va) in enumerate(pairs):
                score[g, p] += auroc(y[va], prob[q, va]) / counted[p]
        tuned = counted > 0
        # argmax takes the first maximum: the smallest C (strongest penalty) among equals
        best[tuned] = np.asarray(grid)[np.argmax(np.round(score[:, tuned], 12), axis=0)]
    return predict_proba(fit_logistic(Xa, y, masks, cfg, C=best), Xa), best


def _stratified_draws(y_test: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """[n_draws, n_test] row indices (into the fold's test rows): positives resampled among positives and
    negatives among negatives, so every draw keeps the fold's class counts."""
    pos, neg = np.flatnonzero(y_test), np.flatnonzero(~y_test)
    return np.concatenate([pos[rng.integers(0, pos.size, (n_draws, pos.size))],
                           neg[rng.integers(0, neg.size, (n_draws, neg.size))]], axis=1)


def _boot_auroc(used: list, y: np.ndarray, scores: list[np.ndarray], draws: list[np.ndarray]) -> np.ndarray:
    """[n_draws] fold-mean AUROC of one arm over the paired bootstrap draws."""
    if not draws or draws[0].shape[0] == 0:
        return np.zeros(0)
    per_fold = [auroc(y[te][d], s[d]) for (_, _, te), s, d in zip(used, scores, draws, strict=True)]
    return np.mean(per_fold, axis=0)


def window_features(store_path: str | Path, sae, window_index: np.ndarray, chunk_rows: int | None = None,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(X [n, d], F [n, m]) for the n windows `window_index` [n] (ids as in windows.parquet), in that
    order: the mean over each window's tokens in the token store of the raw activations and of
    `sae.encode` of them (float64). Tokens of other windows are ignored; a window without tokens is
    refused.

    chunk_rows: tokens encoded at a time (default `interp.sae.concepts.token_rows_for`: one float32 code block
    of about 128 MiB, 1,024 tokens at 32,768 features). The store is read through its stored chunks
    (`interp.embed.store.ChunkReader`, each decompressed once). Each window's sums are accumulated token by
    token in store order in float64 (only the non-zero codes are added), so the sums do not depend on
    chunk_rows. The codes come from one matrix product per block, and on some CPUs torch's product differs in
    the last bits between block sizes (measured: 22 of 491,520 window means, relative 1.1e-7); a rerun with the
    same settings gives the same bits.
    """
    import torch

    from interp.embed.store import TokenStore
    from interp.sae.concepts import token_rows_for

    store = TokenStore(store_path)
    ids = np.asarray(window_index, dtype=np.int64)
    n = ids.shape[0]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    sums_x = np.zeros((n, store.d))
    sums_f = np.zeros((n, int(sae.n_features)))
    counts = np.zeros(n)
    rows = token_rows_for(int(sae.n_features), store.d) if chunk_rows is None else int(chunk_rows)
    if rows < 1:
        raise ValueError(f"window_features: chunk_rows must be >= 1, got {chunk_rows}")
    index, activations = store.reader("window_index"), store.reader("activations")
    for start in range(0, store.n_tokens, rows):
        sl = slice(start, min(start + rows, store.n_tokens))
        w = index[sl].astype(np.int64)
        at = np.clip(np.searchsorted(sorted_ids, w), 0, max(n - 1, 0))
        keep = (sorted_ids[at] == w) if n else np.zeros(w.shape[0], dtype=bool)
        if not keep.any():
            continue
        target = order[at[keep]]  # the output row of each kept token, in store order
        acts = activations[sl][keep]
        with torch.inference_mode():
            feats = sae.encode(torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))).numpy()
        # unbuffered, in order: each (window, column) sum is 0 + t1 + t2 + ... over its tokens in store order
        np.add.at(sums_x, target, acts.astype(np.float64))
        tok, col = np.nonzero(feats)
        np.add.at(sums_f, (target[tok], col), feats[tok, col].astype(np.float64))
        counts += np.bincount(target, minlength=n)
    if np.any(counts == 0):
        missing = ids[counts == 0]
        raise InputError(f"{store_path}: {missing.size} window(s) have no tokens in the store "
                         f"(first window_index {int(missing[0])})")
    return sums_x / counts[:, None], sums_f / counts[:, None]


def comparison_rows(result: ProbeComparison, **keys: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(summary, folds) with the identifying columns `keys` (e.g. model, layer, level, target) first."""
    def tag(df: pl.DataFrame) -> pl.DataFrame:
        return df.select([pl.lit(v, dtype=pl.String).alias(k) for k, v in keys.items()] + df.columns)
    return tag(result.summary), tag(result.folds)


def compare_windows(window_table: pl.DataFrame, folds: Folds, targets: Sequence[str],
                    models: Sequence[tuple[str, str | Path, object]], layer: str,
                    **opts) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """Window-level comparison for every (model, target): `compare_probes` on window means of the token
    store's raw activations and SAE codes (`window_features`).

    window_table: the windows sorted by window_index (with contig, start, end), one column per target;
    folds: over its rows; models: (name, token store path, loaded SAE). C is chosen on contiguous runs of
    each fold's training windows (`block_inner_folds`). Returns `comparison_rows` pairs (summary, folds).
    """
    coords = [window_table[c].to_numpy() for c in ("contig", "start", "end")]
    opts = {"inner_folds": lambda train: block_inner_folds(train, *coords), **opts}
    out = []
    for name, store, sae in models:
        X, F = window_features(store, sae, window_table["window_index"].to_numpy())
        for t in targets:
            out.append(comparison_rows(compare_probes(X, F, window_table[t].to_numpy(), folds, **opts),
                                       model=name, layer=layer, level="window", target=t))
    return out


def compare_samples(raw, feats, phenotypes: Sequence[str], layer: str, n_folds: int,
                    **opts) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """Sample-level comparison for each cohort phenotype: pooled embeddings `raw` ([samples, windows x d]
    AnnData) against the samples' SAE features `feats` (same obs order), `n_folds` folds stratified by the
    phenotype (seeded by opts["seed"]). Samples without a phenotype value are left out, as in the audit, and
    counted in n_missing."""
    from interp.audit import stratified_folds

    if list(raw.obs_names) != list(feats.obs_names):
        raise InputError("probe_sae: the samples of the pooled embeddings and of the SAE features differ")
    out = []
    for phenotype in phenotypes:
        y = raw.obs[phenotype].to_numpy(dtype=float)
        keep = np.isfinite(y)
        folds = stratified_folds(y[keep], n_folds, int(opts.get("seed", 0)))
        result = compare_probes(np.asarray(raw.X)[keep], np.asarray(feats.X)[keep], y[keep], folds,
                                n_missing=int((~keep).sum()), **opts)
        out.append(comparison_rows(result, model=str(raw.uns["model"]), layer=layer, level="sample",
                                   target=phenotype))
    return out


def compare_run(windows: pl.DataFrame, tokens_dirs: Sequence[str | Path], sae_weights: Sequence[str | Path],
                cohort_emb_dirs: Sequence[str | Path], layer: str, section: dict, cfg: ProbeConfig,
                phenotypes: Sequence[str], seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(summary, folds) tables of the `probe_sae` rule: every probe target per window (`compare_windows` on
    the probe's genome-block folds, `interp.probe.contiguous_folds`) for each model's token store and SAE,
    and each phenotype per sample (`compare_samples`) for each cohort folder holding `<layer>.samples.h5ad`
    and `sae.features.h5ad` (a folder without them has no SAE features at this layer: window level only).

    section: the config's `probe` section (targets, block_gap, sae_top_k, sae_bootstrap, sae_sample_folds,
    sae_C_grid);
    cfg: the probe settings built from it.
    """
    import anndata as ad

    from interp.sae.train import load_sae

    opts = {"top_k": section["sae_top_k"], "cfg": cfg, "n_bootstrap": section["sae_bootstrap"], "seed": seed,
            "C_grid": section.get("sae_C_grid", DEFAULT_C_GRID)}
    win = windows.sort("window_index")
    folds = block_folds(win, section.get("block_gap", 0.0))
    models = [(Path(d).name, Path(d) / f"{layer}.zarr", load_sae(w))
              for d, w in zip(tokens_dirs, sae_weights, strict=True)]
    tables = compare_windows(win, folds, section["targets"], models, layer, **opts)
    for emb_dir in cohort_emb_dirs:
        raw, feats = Path(emb_dir) / f"{layer}.samples.h5ad", Path(emb_dir) / "sae.features.h5ad"
        if raw.exists() and feats.exists():
            tables += compare_samples(ad.read_h5ad(raw), ad.read_h5ad(feats), list(phenotypes), layer,
                                      section["sae_sample_folds"], **opts)
    if not tables:
        raise ValueError("probe_sae: no model to compare (no token store and SAE given)")
    return pl.concat([t for t, _ in tables]), pl.concat([f for _, f in tables])
