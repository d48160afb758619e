"""Association statistics for candidate biomarkers, adjusted for genotype PCs and covariates.

Two directions of test:

* `adjusted_association`: a model-derived feature is the outcome, the phenotype the predictor
  (feature_j ~ 1 + phenotype + covariates), for tens of thousands of columns at once through
  Frisch-Waugh-Lovell: residualise phenotype and features on [1, covariates] once, then every
  slope, SE and p-value is a column-wise dot product.
* `variant_association`: the phenotype is the outcome (phenotype ~ 1 + dosage_j + covariates),
  OLS for a quantitative phenotype and logistic regression for a binary one.

Separation in logistic regression (a variant, possibly with the covariates, predicts the
phenotype perfectly) makes the maximum-likelihood log-OR infinite. Such fits are detected
(statsmodels' separation / convergence warnings, non-finite or huge estimates) and redone with
Firth's penalised likelihood (Jeffreys-prior penalty); the p-value is then the penalised
likelihood-ratio test against the covariates-only Firth fit (chi-square, 1 df), as recommended by
Heinze & Schemper (2002), and the CI a Wald interval from the penalised information.
Such rows carry method "firth"; ordinary fits carry "logit" or "ols".
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import polars as pl
from scipy import stats

Kind = Literal["feature", "variant_linear", "variant_logistic"]

_Z975 = float(stats.norm.ppf(0.975))


def _as_2d(a: np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows, got shape {a.shape}")
    return a


def _check_inputs(matrix: np.ndarray, phenotype: np.ndarray, covariates: np.ndarray | None,
                  name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and NaNs; return float64 (matrix [n, m], phenotype [n], covariates [n, c])."""
    y = np.asarray(phenotype, dtype=np.float64).ravel()
    n = y.shape[0]
    x = _as_2d(matrix, n, name)
    c = np.zeros((n, 0)) if covariates is None else _as_2d(covariates, n, "covariates")
    if not np.all(np.isfinite(y)):
        raise ValueError("phenotype contains missing or non-finite values; drop those individuals first")
    if not np.all(np.isfinite(c)):
        raise ValueError("covariates contain missing or non-finite values")
    return x, y, c


def _intercept_basis(covariates: np.ndarray) -> np.ndarray:
    """Orthonormal basis Q [n, r] of the span of [1, covariates] (rank-revealing, so redundant
    covariates cost a degree of freedom only once)."""
    n = covariates.shape[0]
    z = np.column_stack([np.ones(n), covariates])
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(z.shape) * np.finfo(float).eps))
    return u[:, :rank]


def _residualise(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """a - Q Q^T a: the part of each column of a [n, m] orthogonal to span(Q)."""
    return a - q @ (q.T @ a)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to mean 0, SD 1 (ddof=1); returns (scaled [n, m], constant mask [m])."""
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    constant = ~(sd > 1e-12 * np.maximum(1.0, np.abs(mean)))
    scaled = (x - mean) / np.where(constant, 1.0, sd)
    scaled[:, constant] = 0.0
    return scaled, constant


def adjusted_association(features: np.ndarray, phenotype: np.ndarray,
                         covariates: np.ndarray | None) -> pl.DataFrame:
    """Test every feature column for association with the phenotype, adjusted for covariates.

    Model per column j: z_j ~ 1 + phenotype + covariates, z_j the feature standardised to mean 0,
    SD 1, so `effect` is the change in feature SDs per unit of phenotype (for a 0/1 phenotype: the
    case-control difference in SDs). Equals statsmodels OLS on the standardised column exactly.

    features [n, m], phenotype [n] (binary 0/1 or quantitative), covariates [n, c] (PCs etc.; may be
    None or have 0 columns). Returns one row per column, in order: effect, se, ci_low, ci_high
    (95%, Student t), t, p. Constant columns, or columns fully explained by the covariates, get
    effect 0, t 0, p 1 and NaN se/CI.
    """
    x, y, c = _check_inputs(features, phenotype, covariates, "features")
    n = y.shape[0]
    q = _intercept_basis(c)
    df = n - q.shape[1] - 1
    if df < 1:
        raise ValueError(f"too few individuals ({n}) for {c.shape[1]} covariates")
    ry = _residualise(y[:, None], q)[:, 0]
    if ry @ ry <= 1e-12 * max(1.0, y @ y):
        raise ValueError("phenotype is constant or fully explained by the covariates")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain missing or non-finite values")
    z, constant = _standardise(x)
    rz = _residualise(z, q)
    # Feature is the outcome, phenotype the single predictor: slope_j = <ry, rz_j> / <ry, ry>.
    syy = float(ry @ ry)
    szy = ry @ rz
    szz = np.einsum("ij,ij->j", rz, rz)
    beta = szy / syy
    rss = np.maximum(szz - beta * szy, 0.0)
    se = np.sqrt(rss / df / syy)
    degenerate = constant | (szz <= 1e-20 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = beta / se
    t = np.where(degenerate | ~np.isfinite(t), 0.0, t)
    p = np.where(degenerate, 1.0, 2.0 * stats.t.sf(np.abs(t), df))
    beta = np.where(degenerate, 0.0, beta)
    se = np.where(degenerate, np.nan, se)
    half = stats.t.ppf(0.975, df) * se
    return pl.DataFrame({"effect": beta, "se": se, "ci_low": beta - half, "ci_high": beta + half,
                         "t": t, "p": p})


def _mean_impute(dosage: np.ndarray) -> np.ndarray:
    """Replace NaN dosages by the column mean of the observed ones (all-missing -> 0)."""
    d = np.array(dosage, dtype=np.float64, copy=True)
    missing = ~np.isfinite(d)
    if missing.any():
        counts = (~missing).sum(axis=0)
        sums = np.where(missing, 0.0, d).sum(axis=0)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        d[missing] = np.take(means, np.nonzero(missing)[1])
    return d


def _firth_fit(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-8):
    """Firth-penalised logistic regression: maximise l(b) + 0.5 log|X^T W X|.

    x [n, p] design (with intercept), y [n] 0/1. Returns (beta [p], cov [p, p], penalised loglik).
    Newton steps on the modified score X^T (y - mu + h (0.5 - mu)), h the hat-matrix diagonal,
    with step halving so the penalised log-likelihood never decreases.
    """
    def penalised(beta):
        eta = x @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        info = x.T @ (x * w[:, None])
        sign, logdet = np.linalg.slogdet(info)
        loglik = np.sum(y * eta - np.logaddexp(0.0, eta))
        return loglik + 0.5 * logdet if sign > 0 else -np.inf, mu, w, info

    beta = np.zeros(x.shape[1])
    value, mu, w, info = penalised(beta)
    for _ in range(max_iter):
        info_inv = np.linalg.pinv(info)
        xw = x * np.sqrt(w)[:, None]
        h = np.einsum("ij,jk,ik->i", xw, info_inv, xw)
        score = x.T @ (y - mu + h * (0.5 - mu))
        step = info_inv @ score
        step_size = 1.0
        while step_size > 1e-6:
            candidate = beta + step_size * step
            new_value, new_mu, new_w, new_info = penalised(candidate)
            if new_value >= value - 1e-12:
                break
            step_size /= 2
        beta, value, mu, w, info = candidate, new_value, new_mu, new_w, new_info
        if np.max(np.abs(step_size * step)) < tol:
            break
    return beta, np.linalg.pinv(info), value


def _logit_row(d: np.ndarray, y: np.ndarray, c: np.ndarray) -> tuple[float, float, float, float, str]:
    """One logistic fit phenotype ~ 1 + dosage + covariates -> (log-OR, se, z, p, method)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    design = np.column_stack([np.ones_like(d), d, c])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = sm.Logit(y, design).fit(disp=0, maxiter=100)
        beta, se = float(fit.params[1]), float(fit.bse[1])
        ok = (fit.mle_retvals.get("converged", False) and np.isfinite(beta) and np.isfinite(se)
              and abs(beta) < 15 and np.all(np.abs(fit.params) < 30))
        if ok:
            # likelihood-ratio p: Wald p-values shrink for large log-ORs (Hauck-Donner), which would
            # rank a strong causal variant below weaker ones
            null = sm.Logit(y, np.column_stack([np.ones_like(d), c])).fit(disp=0, maxiter=100)
            lr = max(2.0 * (float(fit.llf) - float(null.llf)), 0.0)
            return beta, se, float(fit.tvalues[1]), float(stats.chi2.sf(lr, 1)), "logit"
    except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError):
        pass
    beta_full, cov_full, pl_full = _firth_fit(design, y)
    _, _, pl_null = _firth_fit(np.column_stack([np.ones_like(d), c]), y)
    lr = max(2.0 * (pl_full - pl_null), 0.0)
    se = float(np.sqrt(cov_full[1, 1]))
    return float(beta_full[1]), se, float(beta_full[1] / se), float(stats.chi2.sf(lr, 1)), "firth"


def variant_association(dosage: np.ndarray, phenotype: np.ndarray, covariates: np.ndarray | None,
                        binary: bool) -> pl.DataFrame:
    """Test each variant for association with the phenotype, adjusted for covariates.

    Model per variant j: phenotype ~ 1 + dosage_j + covariates; OLS if not `binary`, else
    logistic regression with `effect` the log odds ratio per allele (Firth fallback under
    separation, see module docstring). dosage [n, v] in allele counts 0..2, NaN = missing
    (mean-imputed per variant); phenotype [n] (0/1 when binary); covariates [n, c] or None.

    Returns one row per variant, in order: effect (per allele), se, ci_low, ci_high (95%; Student t
    for OLS, normal for logistic), z_or_t, p, method ("ols", "logit", "firth" or "monomorphic").
    Monomorphic variants (after imputation) get effect 0, p 1, NaN se/CI.
    """
    d_raw, y, c = _check_inputs(dosage, phenotype, covariates, "dosage")
    d = _mean_impute(d_raw)
    n, v = d.shape
    if binary and not np.all((y == 0) | (y == 1)):
        raise ValueError("binary phenotype must be coded 0/1")
    monomorphic = d.std(axis=0) <= 1e-12
    q = _intercept_basis(c)
    if not binary:
        df = n - q.shape[1] - 1
        if df < 1:
            raise ValueError(f"too few individuals ({n}) for {c.shape[1]} covariates")
        rd = _residualise(d, q)
        ry = _residualise(y[:, None], q)
        sdd = np.einsum("ij,ij->j", rd, rd)
        sdy = ry[:, 0] @ rd
        syy = float(ry[:, 0] @ ry[:, 0])
        degenerate = monomorphic | (sdd <= 1e-20 * n)
        safe = np.where(degenerate, 1.0, sdd)
        beta = np.where(degenerate, 0.0, sdy / safe)
        se = np.sqrt(np.maximum(syy - beta * sdy, 0.0) / df / safe)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = beta / se
        t = np.where(degenerate | ~np.isfinite(t), 0.0, t)
        p = np.where(degenerate, 1.0, 2.0 * stats.t.sf(np.abs(t), df))
        se = np.where(degenerate, np.nan, se)
        half = stats.t.ppf(0.975, df) * se
        method = np.where(degenerate, "monomorphic", "ols")
        return pl.DataFrame({"effect": beta, "se": se, "ci_low": beta - half, "ci_high": beta + half,
                             "z_or_t": t, "p": p, "method": method.tolist()})
    if y.min() == y.max():
        raise ValueError("binary phenotype has only one class")
    rows = []
    for j in range(v):
        if monomorphic[j]:
            rows.append((0.0, np.nan, 0.0, 1.0, "monomorphic"))
        else:
            rows.append(_logit_row(d[:, j], y, c))
    beta, se, z, p, method = (list(col) for col in zip(*rows, strict=True)) if rows else ([],) * 5
    beta, se = np.asarray(beta, dtype=float), np.asarray(se, dtype=float)
    return pl.DataFrame({"effect": beta, "se": se, "ci_low": beta - _Z975 * se,
                         "ci_high": beta + _Z975 * se, "z_or_t": np.asarray(z, dtype=float),
                         "p": np.asarray(p, dtype=float), "method": list(method)},
                        schema_overrides={"method": pl.String})


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values [m] for p-values [m] (NaN p stays NaN and is not counted)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return q
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    # Step-up: q_(i) = min over j >= i of p_(j) m / j.
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(monotone, 1.0)
    q[ok] = out
    return q


def _ranking(table: pl.DataFrame) -> np.ndarray:
    """Column indices ordered by p ascending, then |effect| descending, then index."""
    p = table["p"].to_numpy().astype(float)
    effect = np.abs(table["effect"].to_numpy().astype(float))
    p = np.where(np.isnan(p), np.inf, p)
    effect = np.where(np.isnan(effect), 0.0, effect)
    return np.lexsort((np.arange(p.size), -effect, p))


def rank_features(table: pl.DataFrame) -> pl.DataFrame:
    """Order rows by p (ascending; NaN last), then by |effect| (descending); add 1-based `rank`."""
    if table.height == 0:
        return table.with_columns(pl.Series("rank", [], dtype=pl.Int64))
    order = _ranking(table)
    return table[order].with_columns(pl.Series("rank", np.arange(1, table.height + 1), dtype=pl.Int64))


def _association(kind: Kind, features: np.ndarray, phenotype: np.ndarray,
                 covariates: np.ndarray | None) -> pl.DataFrame:
    if kind == "feature":
        return adjusted_association(features, phenotype, covariates)
    if kind == "variant_linear":
        return variant_association(features, phenotype, covariates, binary=False)
    if kind == "variant_logistic":
        return variant_association(features, phenotype, covariates, binary=True)
    raise ValueError(f"unknown association kind {kind!r}; expected feature, variant_linear, variant_logistic")


def half_samples(phenotype: np.ndarray, n_resamples: int, seed: int) -> list[np.ndarray]:
    """`n_resamples` index sets of size ~n/2 drawn without replacement.

    For a phenotype with two values (case/control) the halves are stratified (half of each class)
    so no half-sample loses a class; otherwise plain n//2 subsets.
    """
    y = np.asarray(phenotype).ravel()
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    out = []
    for _ in range(n_resamples):
        if classes.size == 2:
            parts = [rng.choice(np.flatnonzero(y == k), size=max(1, int((y == k).sum()) // 2), replace=False)
                     for k in classes]
            idx = np.concatenate(parts)
        else:
            idx = rng.choice(y.size, size=y.size // 2, replace=False)
        out.append(np.sort(idx))
    return out


def stability(features: np.ndarray, phenotype: np.ndarray, covariates: np.ndarray | None, top_k: int,
              n_resamples: int, seed: int, kind: Kind = "feature") -> np.ndarray:
    """Stability selection: share [m] of half-sample resamples in which each column is in the top_k.

    Each resample keeps n//2 individuals (stratified by class for a binary phenotype), reruns the
    association test of `kind` ("feature": `adjusted_association`; "variant_linear" /
    "variant_logistic": `variant_association`) and ranks columns as `rank_features` does.
    features [n, m]; returns float64 [m] in [0, 1].
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(phenotype, dtype=np.float64).ravel()
    c = None if covariates is None else _as_2d(covariates, y.size, "covariates")
    if top_k < 1 or n_resamples < 1:
        raise ValueError("top_k and n_resamples must be >= 1")
    counts = np.zeros(x.shape[1])
    for idx in half_samples(y, n_resamples, seed):
        table = _association(kind, x[idx], y[idx], None if c is None else c[idx])
        counts[_ranking(table)[:top_k]] += 1
    return counts / n_resamples
