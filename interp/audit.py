"""Confound audit: does a model's view of a cohort lean on ancestry?

A probe that predicts a phenotype from sample embeddings may be reading ancestry instead of biology when
the phenotype's prevalence differs between populations. `audit_phenotype` compares cross-validation
schemes that do and do not let ancestry carry the signal:

* random CV (stratified by phenotype) - what a naive evaluation reports;
* CV stratified by population x phenotype;
* leave-one-population-out (LOPO) - the probe must work inside a population it never saw;
* X residualised on genotype PCs, the regression fitted on each fold's training rows only;
* PCs alone as features - how far ancestry by itself gets;
* a within-population label permutation test - permuting the phenotype inside each population keeps
  every ancestry-phenotype association and destroys only within-population signal, so a shortcut probe
  scores as well on permuted labels as on the real ones.

Every binary probe is an L2 logistic regression from `interp.probe` (Lightning, L-BFGS); all probes on
the shared embedding matrix go into one `fit_logistic` call, and all probes on per-fold residualised
matrices into another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from fairlearn.metrics import MetricFrame
from scipy import stats

from interp.errors import InputError
from interp.probe import ProbeConfig, auroc, fit_logistic, predict_proba

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class AuditConfig:
    """Audit settings; the thresholds decide the verdict (see `verdict`).

    n_folds: folds of the random and population-stratified CV. permutations: within-population label
    permutations. bootstrap: resamples for the per-population confidence intervals. C: probe inverse L2
    strength. min_auroc: random-CV AUROC that counts as apparent signal. alpha: permutation-test level.
    max_drop: largest tolerated AUROC drop from random CV to the best ancestry-robust scheme.
    ancestry_margin: PCs alone within this much of the probe's AUROC means ancestry can explain it.
    ridge_alpha: penalty of the closed-form ridge used for R^2 predictions (standardised features).
    """

    n_folds: int = 5
    permutations: int = 199
    bootstrap: int = 200
    C: float = 1.0
    min_auroc: float = 0.6
    alpha: float = 0.05
    max_drop: float = 0.1
    ancestry_margin: float = 0.05
    seed: int = 0
    ridge_alpha: float = 1.0
    max_iter: int = 200
    accelerator: str = "cpu"


# ----------------------------------------------------------------------------------------------- folds


def stratified_folds(strata: np.ndarray, n_folds: int, seed: int) -> Folds:
    """K folds with every stratum spread evenly, as (train_index, test_index); strata [n] any labels."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(strata.shape[0], dtype=np.int64)
    offset = 0
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        # continue the round-robin where the previous stratum stopped so fold sizes stay balanced
        fold_of[idx] = (offset + np.arange(idx.shape[0])) % n_folds
        offset += idx.shape[0]
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n_folds)]


def leave_one_group_out(groups: np.ndarray) -> tuple[list[str], Folds]:
    """One fold per group (sorted): test that group, train on the rest."""
    groups = np.asarray(groups).astype(str)
    names = [str(g) for g in np.unique(groups)]
    return names, [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in names]


def permute_within(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """y [n] with its values shuffled inside each group, so group-level prevalences are kept."""
    out = np.array(y, copy=True)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = y[rng.permutation(idx)]
    return out


# ------------------------------------------------------------------------------------------ regression


def _design(Z: np.ndarray) -> np.ndarray:
    """[n, 1 + q] intercept plus covariates Z [n, q]."""
    Z = np.asarray(Z, dtype=np.float64).reshape(Z.shape[0], -1)
    return np.hstack([np.ones((Z.shape[0], 1)), Z])


def residualise_in_fold(X: np.ndarray, Z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """X [n, d] minus its OLS prediction from 1 + Z [n, q], coefficients fitted on rows `train` only.

    Fitting on all rows would let the test rows shape the correction (leakage), so every fold gets its own.
    """
    D = _design(Z)
    beta, *_ = np.linalg.lstsq(D[train], X[train], rcond=None)
    return X - D @ beta


def ridge_cv_r2(X: np.ndarray, T: np.ndarray, folds: Folds, ridge_alpha: float) -> np.ndarray:
    """Out-of-fold R^2 [q] of ridge predictions of targets T [n, q] from X [n, d].

    X is standardised and T centred with each fold's training rows; R^2 = 1 - SS_res / SS_tot over all
    out-of-fold predictions.
    """
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64).reshape(X.shape[0], -1)
    pred = np.full_like(T, np.nan)
    for train, test in folds:
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd < 1e-12] = 1.0
        Xtr, Xte = (X[train] - mu) / sd, (X[test] - mu) / sd
        t_mu = T[train].mean(0)
        gram = Xtr.T @ Xtr + ridge_alpha * np.eye(X.shape[1])
        beta = np.linalg.solve(gram, Xtr.T @ (T[train] - t_mu))
        pred[test] = Xte @ beta + t_mu
    ok = np.isfinite(pred).all(axis=1)
    ss_res = ((T[ok] - pred[ok]) ** 2).sum(0)
    ss_tot = ((T[ok] - T[ok].mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


# ------------------------------------------------------------------------------------------ probe jobs


@dataclass
class _Jobs:
    """Binary probes queued for one `fit_logistic` call, each tagged with a scheme name and fold."""

    labels: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    keys: list = field(default_factory=list)  # (tag, fold, test_index)
    X_slices: list = field(default_factory=list)  # per-probe X [n, d] when X is not shared

    def add_folds(self, tag: str, y: np.ndarray, folds: Folds, X_per_fold: list | None = None) -> None:
        """Queue one probe per fold whose training rows have both classes."""
        n = y.shape[0]
        for f, (train, test) in enumerate(folds):
            if np.unique(y[train]).size < 2:
                continue
            mask = np.zeros(n, dtype=bool)
            mask[train] = True
            self.labels.append(y)
            self.masks.append(mask)
            self.keys.append((tag, f, test))
            if X_per_fold is not None:
                self.X_slices.append(X_per_fold[f])

    def run(self, X: np.ndarray | None, cfg: AuditConfig) -> dict[str, list]:
        """Fit every queued probe; returns {tag: [(fold, test_index, y_test, score_test)]}."""
        out: dict[str, list] = {}
        if not self.keys:
            return out
        X_all = np.stack(self.X_slices) if X is None else X
        pcfg = ProbeConfig(C=cfg.C, max_iter=cfg.max_iter, seed=cfg.seed, accelerator=cfg.accelerator)
        probes = fit_logistic(X_all, np.stack(self.labels).astype(np.float64), np.stack(self.masks), pcfg)
        proba = predict_proba(probes, X_all)
        for p, (tag, f, test) in enumerate(self.keys):
            out.setdefault(tag, []).append((f, test, self.labels[p][test], proba[p, test]))
        return out


def _fold_auroc(results: list) -> tuple[float, float, int]:
    """Mean and sd (ddof=1) of per-fold AUROC over folds whose test rows have both classes, and their count."""
    vals = np.array([auroc(yt, s) for _, _, yt, s in results], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan"), 0
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else float("nan"), int(vals.size)


def _oof_scores(results: list, n: int) -> np.ndarray:
    """Out-of-fold scores [n] (NaN for rows never tested)."""
    oof = np.full(n, np.nan)
    for _, test, _, s in results:
        oof[test] = s
    return oof


def _macro_ovr_auroc(results_by_class: dict[str, list], labels: np.ndarray, n: int) -> float:
    """Macro one-vs-rest AUROC of out-of-fold class scores (one binary probe per class)."""
    vals = []
    for c, res in results_by_class.items():
        oof = _oof_scores(res, n)
        ok = np.isfinite(oof)
        vals.append(auroc(labels[ok] == c, oof[ok]))
    vals = np.array(vals, dtype=np.float64)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


# ------------------------------------------------------------------------------------------ inputs


def _check_inputs(X, y, population, pcs, confounders):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"audit embeddings: expected a [n_samples, d] matrix, got shape {X.shape}")
    n = X.shape[0]
    y = np.asarray(y)
    population = np.asarray(population).astype(str)
    pcs = np.asarray(pcs, dtype=np.float64)
    if pcs.ndim == 1:
        pcs = pcs[:, None]
    for name, arr in [("phenotype", y), ("population", population), ("genotype PCs", pcs)]:
        if arr.shape[0] != n:
            raise InputError(f"audit {name}: {arr.shape[0]} samples but the embeddings have {n}")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(pcs)):
        raise InputError("audit inputs: embeddings or genotype PCs contain NaN/inf; expected finite values")
    try:
        y_num = y.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InputError("audit phenotype: expected binary 0/1 values") from err
    keep = ~np.isnan(y_num)  # samples without a phenotype are left out, not guessed
    if not np.all((y_num[keep] == 0) | (y_num[keep] == 1)):
        raise InputError("audit phenotype: expected binary 0/1 values (quantitative phenotypes are not supported)")
    if np.unique(y_num[keep]).size < 2:
        raise InputError("audit phenotype: needs both cases (1) and controls (0) among samples with a value")
    conf = {}
    for name, arr in (confounders or {}).items():
        arr = np.asarray(arr)
        if arr.shape[0] != n:
            raise InputError(f"audit confounder {name}: {arr.shape[0]} values but the embeddings have {n} samples")
        if arr.dtype.kind in "fiu" and not np.all(np.isfinite(arr[keep].astype(np.float64))):
            raise InputError(f"audit confounder {name}: contains NaN/inf")
        conf[name] = arr[keep]
    return X[keep], y_num[keep].astype(np.int64), population[keep], pcs[keep], conf, int((~keep).sum())


def _is_numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "fiu" and np.unique(arr).size > 2


def _confounder_design(arr: np.ndarray) -> np.ndarray:
    """Numeric confounder as one column; categorical as one-hot minus the first level."""
    if _is_numeric(arr):
        return arr.astype(np.float64)[:, None]
    levels = np.unique(arr.astype(str))
    return (arr.astype(str)[:, None] == levels[None, 1:]).astype(np.float64)


def _association(arr: np.ndarray, y: np.ndarray) -> dict:
    """Confounder-phenotype association: Pearson r (numeric) or chi-square / Cramer's V (categorical)."""
    if _is_numeric(arr):
        x = arr.astype(np.float64)
        if x.std() == 0:
            return {"kind": "numeric", "pearson_r": float("nan"), "p_value": float("nan")}
        r, p = stats.pearsonr(x, y)
        return {"kind": "numeric", "pearson_r": float(r), "p_value": float(p), "auroc": float(auroc(y, x))}
    labels = arr.astype(str)
    levels = np.unique(labels)
    table = np.array([[np.sum((labels == lv) & (y == c)) for c in (0, 1)] for lv in levels])
    if levels.size < 2:
        return {"kind": "categorical", "cramers_v": float("nan"), "p_value": float("nan")}
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    v = np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
    return {"kind": "categorical", "cramers_v": float(v), "p_value": float(p)}


# ------------------------------------------------------------------------------------------ by population


def _metric_auroc(y_true, y_pred) -> float:
    return float(auroc(np.asarray(y_true), np.asarray(y_pred)))


def _metric_accuracy(y_true, y_pred) -> float:
    return float(np.mean((np.asarray(y_pred) >= 0.5) == np.asarray(y_true).astype(bool)))


def _metric_prevalence(y_true, y_pred) -> float:
    return float(np.mean(y_true))


def _metric_count(y_true, y_pred) -> float:
    return float(len(y_true))


def bootstrap_ci(
    y: np.ndarray, score: np.ndarray, n_boot: int, rng: np.random.Generator, q: tuple = (0.025, 0.975)
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of AUROC and accuracy (threshold 0.5) for one group, vectorised.

    y, score [n]; resamples are drawn with replacement from this group only; resamples lacking a class
    are dropped from the AUROC quantiles.
    """
    idx = rng.integers(0, y.shape[0], size=(n_boot, y.shape[0]))
    yb, sb = y[idx], score[idx]
    aucs = np.asarray(auroc(yb, sb))
    accs = ((sb >= 0.5) == yb.astype(bool)).mean(axis=1)
    aucs = aucs[np.isfinite(aucs)]
    nan2 = (float("nan"), float("nan"))
    return {
        "auroc": tuple(float(v) for v in np.quantile(aucs, q)) if aucs.size else nan2,
        "accuracy": tuple(float(v) for v in np.quantile(accs, q)),
    }


def by_population(
    y: np.ndarray, score: np.ndarray, population: np.ndarray, n_boot: int, seed: int
) -> tuple[list[dict], dict[str, float]]:
    """Per-population AUROC / accuracy of out-of-fold scores (fairlearn MetricFrame) with bootstrap CIs.

    Returns ([{population, n, prevalence, auroc, auroc_ci_low, auroc_ci_high, accuracy, accuracy_ci_low,
    accuracy_ci_high}], {metric: between-group difference (max - min over populations)}).
    CIs are 2.5/97.5% quantiles of `n_boot` seeded resamples within each population (NaN when
    n_boot < 2); MetricFrame's own n_boot resamples the whole cohort and is ~50x slower.
    """
    ok = np.isfinite(score)
    y, score, population = y[ok], score[ok], population[ok]
    metrics = {"auroc": _metric_auroc, "accuracy": _metric_accuracy, "prevalence": _metric_prevalence,
               "n": _metric_count}
    frame = MetricFrame(metrics=metrics, y_true=y, y_pred=score, sensitive_features=population)
    table = frame.by_group
    rng = np.random.default_rng(seed)
    groups = []
    for g in table.index:
        row = {"population": str(g), "n": int(table.loc[g, "n"]), "prevalence": float(table.loc[g, "prevalence"])}
        sel = population == g
        ci = bootstrap_ci(y[sel], score[sel], n_boot, rng) if n_boot >= 2 else None
        for m in ("auroc", "accuracy"):
            row[m] = float(table.loc[g, m])
            row[f"{m}_ci_low"] = ci[m][0] if ci else float("nan")
            row[f"{m}_ci_high"] = ci[m][1] if ci else float("nan")
        groups.append(row)
    diff = frame.difference(method="between_groups")
    return groups, {m: float(diff[m]) for m in ("auroc", "accuracy", "prevalence")}


# ------------------------------------------------------------------------------------------ verdict


def verdict(r: dict, cfg: AuditConfig) -> tuple[str, list[str]]:
    """PASS / WARN / FAIL with the reasons that decided it.

    signal   = auroc_random_cv >= min_auroc
    within   = permutation_p <= alpha (signal survives permuting the phenotype inside populations)
    shortcut = auroc_ancestry_only >= auroc_random_cv - ancestry_margin  or  shortcut_drop > max_drop
    FAIL: signal and not within and shortcut. PASS: signal and within and shortcut_drop <= max_drop and
    no confounder removes more than max_drop when residualised out. WARN: everything else (no signal,
    partial shortcuts, confounder-driven signal).
    """
    a, p, drop, anc = r["auroc_random_cv"], r["permutation_p"], r["shortcut_drop"], r["auroc_ancestry_only"]
    signal = bool(np.isfinite(a) and a >= cfg.min_auroc)
    within = bool(np.isfinite(p) and p <= cfg.alpha)
    # ancestry and confounder explanations only matter for a signal there is
    anc_explains = bool(signal and np.isfinite(anc) and anc >= a - cfg.ancestry_margin)
    big_drop = bool(signal and np.isfinite(drop) and drop > cfg.max_drop)
    reasons = []
    if not signal:
        reasons.append(f"no apparent signal: auroc_random_cv {a:.3f} < min_auroc {cfg.min_auroc}")
    if signal and not within:
        reasons.append(f"signal not within populations: permutation_p {p:.3f} > alpha {cfg.alpha}")
    if within:
        reasons.append(f"within-population signal: permutation_p {p:.3f} <= alpha {cfg.alpha}")
    if anc_explains:
        # with a within-population signal, ancestry predicting as well is context, not the explanation
        what = "ancestry alone predicts as well" if within else "ancestry alone explains it"
        reasons.append(
            f"{what}: auroc_ancestry_only {anc:.3f} >= auroc_random_cv {a:.3f} - "
            f"ancestry_margin {cfg.ancestry_margin}"
        )
    if big_drop:
        reasons.append(f"shortcut_drop {drop:.3f} > max_drop {cfg.max_drop}")
    conf_drops = [
        (name, c["auroc_drop"]) for name, c in r.get("confounders", {}).items()
        if signal and np.isfinite(c["auroc_drop"]) and c["auroc_drop"] > cfg.max_drop
    ]
    for name, d in conf_drops:
        reasons.append(f"residualising on confounder {name} drops AUROC by {d:.3f} > max_drop {cfg.max_drop}")
    if signal and not within and (anc_explains or big_drop):
        return "FAIL", reasons
    if signal and within and np.isfinite(drop) and drop <= cfg.max_drop and not conf_drops:
        reasons.append(f"shortcut_drop {drop:.3f} <= max_drop {cfg.max_drop}")
        return "PASS", reasons
    return "WARN", reasons


# ------------------------------------------------------------------------------------------ audit


def audit_phenotype(
    X: np.ndarray,
    y: np.ndarray,
    population: np.ndarray,
    pcs: np.ndarray,
    cfg: AuditConfig,
    confounders: dict[str, np.ndarray] | None = None,
) -> dict:
    """Audit whether a phenotype probe on sample embeddings X [n, d] leans on ancestry.

    y [n] binary phenotype; population [n] labels; pcs [n, k] genotype PCs; confounders {name: [n]}
    (numeric, or categorical such as batch / sex / centre). Samples whose y is NaN are left out
    (counted in n_missing_phenotype). AUROCs are means of per-fold AUROCs.
    auroc_lopo_cv is the mean over held-out populations (those with both classes) of the AUROC inside
    that population. shortcut_drop = auroc_random_cv - max(auroc_residualised, auroc_lopo_cv): how much
    signal even the more favourable ancestry-robust scheme loses (drop_residualised / drop_lopo give
    each). permutation_p permutes y inside populations, reruns the random CV and counts permuted mean
    AUROCs >= the observed one: p = (1 + #) / (1 + permutations).
    """
    X, y, population, pcs, conf, n_missing = _check_inputs(X, y, population, pcs, confounders)
    n = X.shape[0]
    rng = np.random.default_rng(cfg.seed)
    pops = np.unique(population)
    random_folds = stratified_folds(y, cfg.n_folds, cfg.seed)
    strat_folds = stratified_folds(np.char.add(population, y.astype(str)), cfg.n_folds, cfg.seed + 1)
    pop_folds = stratified_folds(population, cfg.n_folds, cfg.seed + 2)
    lopo_names, lopo_folds = leave_one_group_out(population)

    # probes on the shared embedding matrix: one fit for all of them
    shared = _Jobs()
    shared.add_folds("random", y, random_folds)
    shared.add_folds("strat", y, strat_folds)
    shared.add_folds("lopo", y, lopo_folds)
    shared.add_folds("shuffled", y[rng.permutation(n)], random_folds)
    for i in range(cfg.permutations):
        shared.add_folds(f"perm{i}", permute_within(y, population, rng), random_folds)
    for c in pops:
        shared.add_folds(f"pop:{c}", (population == c).astype(np.int64), pop_folds)
    for name, arr in conf.items():
        if not _is_numeric(arr):
            for lv in np.unique(arr.astype(str)):
                shared.add_folds(f"conf:{name}:{lv}", (arr.astype(str) == lv).astype(np.int64), random_folds)
    res = shared.run(X, cfg)

    # probes on per-fold residualised matrices (PCs, then each confounder): a second fit
    per_fold = _Jobs()
    resid = [residualise_in_fold(X, pcs, train) for train, _ in random_folds]
    per_fold.add_folds("residualised", y, random_folds, resid)
    for name, arr in conf.items():
        Z = _confounder_design(arr)
        per_fold.add_folds(f"resid:{name}", y, random_folds, [residualise_in_fold(X, Z, tr) for tr, _ in random_folds])
    res.update(per_fold.run(None, cfg))

    anc_only = _Jobs()
    anc_only.add_folds("ancestry_only", y, random_folds)
    res.update(anc_only.run(pcs, cfg))

    out: dict = {"n_samples": n, "n_cases": int(y.sum()), "n_missing_phenotype": n_missing}
    out["ancestry_auroc"] = _macro_ovr_auroc({c: res.get(f"pop:{c}", []) for c in pops}, population, n)
    out["ancestry_pc_r2"] = float(np.nanmean(ridge_cv_r2(X, pcs, pop_folds, cfg.ridge_alpha)))
    out["auroc_random_cv"], out["auroc_random_cv_sd"], out["n_folds_used"] = _fold_auroc(res.get("random", []))
    out["auroc_ancestry_stratified_cv"] = _fold_auroc(res.get("strat", []))[0]
    lopo = {lopo_names[f]: auroc(yt, s) for f, _, yt, s in res.get("lopo", [])}
    out["auroc_lopo_by_population"] = {k: float(v) for k, v in lopo.items()}
    out["auroc_lopo_cv"] = _fold_auroc(res.get("lopo", []))[0]
    out["auroc_residualised"] = _fold_auroc(res.get("residualised", []))[0]
    out["auroc_ancestry_only"] = _fold_auroc(res.get("ancestry_only", []))[0]
    out["auroc_shuffled"] = _fold_auroc(res.get("shuffled", []))[0]

    perm = np.array([_fold_auroc(res.get(f"perm{i}", []))[0] for i in range(cfg.permutations)])
    perm = perm[np.isfinite(perm)]
    observed = out["auroc_random_cv"]
    out["permutation_auroc_mean"] = float(perm.mean()) if perm.size else float("nan")
    out["n_permutations"] = int(perm.size)
    out["permutation_p"] = (
        float((1 + np.sum(perm >= observed)) / (1 + perm.size)) if np.isfinite(observed) else float("nan")
    )

    out["drop_residualised"] = observed - out["auroc_residualised"]
    out["drop_lopo"] = observed - out["auroc_lopo_cv"]
    robust = np.nanmax([out["auroc_residualised"], out["auroc_lopo_cv"]]) if np.isfinite(
        [out["auroc_residualised"], out["auroc_lopo_cv"]]).any() else float("nan")
    out["shortcut_drop"] = float(observed - robust)

    oof = _oof_scores(res.get("random", []), n)
    out["by_population"], out["between_group_difference"] = by_population(
        y, oof, population, cfg.bootstrap, cfg.seed
    )

    out["confounders"] = {}
    for name, arr in conf.items():
        entry = {"association": _association(arr, y)}
        if _is_numeric(arr):
            entry["predictability_from_X"] = float(ridge_cv_r2(X, arr.astype(np.float64), random_folds,
                                                               cfg.ridge_alpha)[0])
            entry["predictability_metric"] = "cv_r2"
        else:
            levels = [str(lv) for lv in np.unique(arr.astype(str))]
            by_level = {lv: res.get(f"conf:{name}:{lv}", []) for lv in levels}
            entry["predictability_from_X"] = _macro_ovr_auroc(by_level, arr.astype(str), n)
            entry["predictability_metric"] = "cv_macro_ovr_auroc"
        entry["auroc_residualised"] = _fold_auroc(res.get(f"resid:{name}", []))[0]
        entry["auroc_drop"] = float(observed - entry["auroc_residualised"])
        out["confounders"][name] = entry

    out["thresholds"] = asdict(cfg)
    out["verdict"], out["reasons"] = verdict(out, cfg)
    return out


# ------------------------------------------------------------------------------------------ attribution


def _ssr(D: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Residual sum of squares [m] of OLS fits of every column of F [n, m] on design D [n, p]."""
    beta, *_ = np.linalg.lstsq(D, F, rcond=None)
    return ((F - D @ beta) ** 2).sum(axis=0)


def feature_attribution(
    F: np.ndarray, y: np.ndarray, pcs: np.ndarray, population: np.ndarray | None = None
) -> pl.DataFrame:
    """Per-feature ancestry leakage vs phenotype signal, from OLS fits F_j ~ 1 + y + PCs.

    F [n, m] per-sample feature activations; y [n] phenotype; pcs [n, k]; population [n] optional.
    partial_r2_ancestry = 1 - SSR(1+y+PCs) / SSR(1+y): variance the PCs explain beyond the phenotype;
    partial_r2_phenotype = 1 - SSR(1+y+PCs) / SSR(1+PCs): variance the phenotype explains beyond the PCs;
    ancestry_auroc_feature = max over populations of max(AUROC, 1 - AUROC) of F_j for that population
    vs the rest (NaN without `population`). Rows in feature order, column `feature` is the index.
    Samples whose y is NaN are left out.
    """
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise InputError(f"feature matrix: expected [n_samples, n_features], got shape {F.shape}")
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    pcs = np.asarray(pcs, dtype=np.float64)
    pcs = pcs.reshape(pcs.shape[0], -1)
    if y.shape[0] != F.shape[0] or pcs.shape[0] != F.shape[0]:
        raise InputError(f"feature attribution: {y.shape[0]} phenotype values / {pcs.shape[0]} PC rows "
                         f"for {F.shape[0]} samples")
    keep = ~np.isnan(y[:, 0])  # samples without a phenotype are left out
    F, y, pcs = F[keep], y[keep], pcs[keep]
    if population is not None:
        population = np.asarray(population)[keep]
    ones = np.ones((F.shape[0], 1))
    ssr_full = _ssr(np.hstack([ones, y, pcs]), F)
    ssr_no_pcs = _ssr(np.hstack([ones, y]), F)
    ssr_no_y = _ssr(np.hstack([ones, pcs]), F)
    with np.errstate(invalid="ignore", divide="ignore"):
        pr2_anc = np.where(ssr_no_pcs > 0, 1.0 - ssr_full / ssr_no_pcs, np.nan)
        pr2_phe = np.where(ssr_no_y > 0, 1.0 - ssr_full / ssr_no_y, np.nan)
    anc_auc = np.full(F.shape[1], np.nan)
    if population is not None:
        population = np.asarray(population).astype(str)
        best = np.zeros(F.shape[1])
        for c in np.unique(population):
            a = auroc(population == c, F.T)  # [m], one AUROC per feature
            best = np.maximum(best, np.maximum(a, 1.0 - a))
        anc_auc = best
    return pl.DataFrame({
        "feature": np.arange(F.shape[1], dtype=np.int64),
        "partial_r2_ancestry": np.clip(pr2_anc, 0.0, 1.0),
        "partial_r2_phenotype": np.clip(pr2_phe, 0.0, 1.0),
        "ancestry_auroc_feature": anc_auc,
    })
