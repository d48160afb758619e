"""Calibrated association statistics for candidate biomarkers, adjusted for genotype PCs and covariates.

The phenotype is always the outcome; every feature (a variant's dosage, one dimension of a window's
embedding, one SAE feature of a window) is one predictor beside the covariates [1, PCs, covariates]:

* binary phenotype (0/1): logistic regression. The null model y ~ 1 + covariates is fitted once; every
  column is then tested by the efficient score test, vectorised over tens of thousands of columns. In
  the tail (|z| > `spa_cutoff`) the normal approximation of the score is replaced by a saddle-point
  approximation (SPA) of its exact null distribution given the fitted probabilities (Dey, Schmidt,
  Abecasis & Lee 2017, AJHG 101:37, as in SPAtest / SAIGE), which keeps p calibrated for features
  carried by few individuals when cases are unbalanced, where the normal (or t) approximation is far
  too small. Method "score_spa". The effect is the log odds ratio per feature SD (per allele for a
  variant): the one-step estimate U/I from the score for every column, and for the best `refit_top`
  columns of each family a full logistic fit (statsmodels; Firth's penalised likelihood when the fit
  separates), with its 95% Wald CI (`effect_method` "score", "logit" or "firth").
* quantitative phenotype: ordinary least squares y ~ feature + covariates (vectorised through
  Frisch-Waugh-Lovell; exact Student-t p). Method "ols". By default (`quantitative_transform: "rint"`) y is
  first replaced by its rank-based inverse normal transform (`inverse_normal`): the t-test of a feature carried
  by few individuals compares the mean of a handful of phenotype values with the rest, which a skewed phenotype
  (a lognormal biomarker, say) makes far too small in the tail (tests/test_rank.py, 5e4 null tests at n = 1,000
  with 10-40 carriers: P(p < 1e-3) 1.2e-2 for a lognormal phenotype as given, 1.3e-3 transformed). Effects (per feature SD; per allele for a
  variant) are then in SD units of the transformed phenotype; "none" keeps phenotype units.

A feature carried by fewer than `min_carriers` individuals (individuals whose value differs from the
column's modal value: a window's features take a handful of values, one per haplotype pair; a variant's
carriers among its called genotypes, however many copies each carries) is not tested; it keeps a
`filtered` reason and no p. Where 1-4 samples lack the phenotype's value the count compared is the cohort's
less all of them, so which columns are tested does not tell those few people's genotypes.

Benjamini-Hochberg q-values are computed within one phenotype and one feature family (the variants;
the embedding of one model layer; the SAE features of one model layer); `rank` is 1-based within it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import special, stats

from interp.genome.regions import positions_by_contig
from interp.multiplicity import benjamini_hochberg  # noqa: F401  (re-exported: rank's BH scope)

_Z975 = float(stats.norm.ppf(0.975))


# ----------------------------------------------------------------------------- null models


@dataclass
class NullModel:
    """The covariates-only model of one phenotype, fitted once and shared by every column's test.

    binary: logistic (True) or linear (False). y [n]. design [n, r] = [1, covariates] (full column rank).
    mu [n]: fitted probabilities (binary) or fitted values. basis [n, r]: orthonormal basis of
    sqrt(w) * design (w = mu (1 - mu) for binary, 1 for linear), the projection every column is
    residualised against. df: residual degrees of freedom of y ~ feature + covariates (linear).
    """

    binary: bool
    y: np.ndarray
    design: np.ndarray
    mu: np.ndarray
    basis: np.ndarray
    df: int

    @property
    def sqrt_w(self) -> np.ndarray:
        return np.sqrt(self.mu * (1.0 - self.mu)) if self.binary else np.ones_like(self.y)


def _design(covariates: np.ndarray) -> np.ndarray:
    """[1, standardised covariates] [n, 1 + r] with linearly dependent covariate columns dropped (pivoted QR of
    the centred covariates, so the intercept always stays first and a redundant covariate costs no degree
    of freedom). Centred, because a covariate far from 0 relative to its spread (a year, a position) makes
    X^T W X so ill-conditioned that Newton's least-squares step cuts off a direction and stops at the
    intercept-only fit; the kept columns are then scaled to SD 1, because covariates in very different units
    (read depth beside a call rate) do the same to the smaller one. The column span, and so every fit and
    test, is the same."""
    from scipy.linalg import qr

    n = covariates.shape[0]
    if covariates.shape[1] == 0:
        return np.ones((n, 1))
    centred = covariates - covariates.mean(axis=0)
    _, r, piv = qr(centred, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    keep = d > max(d[0], 1e-300) * max(centred.shape) * np.finfo(float).eps * 10 if d[0] > 0 else d > np.inf
    kept = centred[:, np.sort(piv[keep])]
    return np.column_stack([np.ones(n), kept / kept.std(axis=0)])


def _orthonormal(a: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(a)
    return q


def logistic_null_fit(y: np.ndarray, design: np.ndarray, max_iter: int = 100,
                      tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood logistic regression y ~ design by Newton-Raphson with step halving.

    y [n] 0/1, design [n, r] (with intercept). Returns the fitted probabilities mu [n], clipped to
    [1e-12, 1 - 1e-12] (a covariate level made only of cases drives some mu to 0 or 1; those
    individuals then carry no information, as in the limit of the MLE).
    """
    beta = np.zeros(design.shape[1])
    eta = design @ beta
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    for _ in range(max_iter):
        mu = special.expit(eta)
        w = mu * (1.0 - mu)
        info = design.T @ (design * w[:, None])
        step = np.linalg.lstsq(info, design.T @ (y - mu), rcond=None)[0]
        size = 1.0
        while size > 1e-8:
            cand = beta + size * step
            eta_c = design @ cand
            ll_c = float(np.sum(y * eta_c - np.logaddexp(0.0, eta_c)))
            if ll_c >= loglik - 1e-12:
                break
            size /= 2
        beta, eta, gain = cand, eta_c, ll_c - loglik
        loglik = ll_c
        if np.max(np.abs(size * step)) < tol or abs(gain) < tol * 1e-2:
            break
    return np.clip(special.expit(eta), 1e-12, 1.0 - 1e-12)


class NullModelError(ValueError):
    """The data cannot carry a covariates-only model (no individuals, one class, too few for the covariates...):
    the phenotype, or a half-sample, is skipped with this reason, where any other error is a fault."""


def null_model(y: np.ndarray, covariates: np.ndarray | None, binary: bool) -> NullModel:
    """Fit the covariates-only model of phenotype y [n] on covariates [n, c] (None: intercept only)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    n = y.size
    if n == 0:
        raise NullModelError("no individual has a value")
    if not np.all(np.isfinite(y)):
        raise NullModelError("phenotype contains missing or non-finite values; drop those individuals first")
    c = np.zeros((n, 0)) if covariates is None else np.asarray(covariates, dtype=np.float64).reshape(n, -1)
    if not np.all(np.isfinite(c)):
        raise NullModelError("covariates contain missing or non-finite values")
    design = _design(c)
    df = n - design.shape[1] - 1
    if df < 1:
        raise NullModelError(f"too few individuals ({n}) for {c.shape[1]} covariates")
    if binary:
        if not np.all((y == 0) | (y == 1)):
            raise NullModelError("binary phenotype must be coded 0/1")
        if y.min() == y.max():
            raise NullModelError("binary phenotype has only one class")
        mu = logistic_null_fit(y, design)
        basis = _orthonormal(design * np.sqrt(mu * (1.0 - mu))[:, None])
    else:
        basis = _orthonormal(design)
        mu = basis @ (basis.T @ y)
        if np.sum((y - mu) ** 2) <= 1e-12 * max(1.0, float(y @ y)):
            raise NullModelError("phenotype is constant or fully explained by the covariates")
    return NullModel(binary=binary, y=y, design=design, mu=mu, basis=basis, df=df)


def with_covariate(null: NullModel, extra: np.ndarray) -> NullModel:
    """The null model refitted with one more covariate column extra [n] (conditional tests)."""
    c = np.column_stack([null.design[:, 1:], np.asarray(extra, dtype=np.float64)])
    return null_model(null.y, c, null.binary)


# ----------------------------------------------------------------------------- saddle point


def _cgf(t: np.ndarray, g: np.ndarray, eta: np.ndarray, mu: np.ndarray):
    """Cumulant generating function K(t) of S = sum_i g_i (y_i - mu_i), y_i ~ Bernoulli(mu_i) independent,
    and its first two derivatives, for one t per column. t [k], g [n, k], eta = logit(mu) [n]."""
    a = eta[:, None] + g * t[None, :]
    p = special.expit(a)
    k0 = np.sum(np.logaddexp(0.0, a) - np.logaddexp(0.0, eta)[:, None], axis=0) - t * (mu @ g)
    k1 = np.einsum("ik,ik->k", g, p - mu[:, None])
    k2 = np.einsum("ik,ik->k", g * g, p * (1.0 - p))
    return k0, k1, k2


def _spa_root(q: np.ndarray, g: np.ndarray, eta: np.ndarray, mu: np.ndarray, k2_0: np.ndarray,
              max_iter: int = 100) -> np.ndarray:
    """Solve K'(t) = q per column: safeguarded Newton (K' is increasing; a Newton step that leaves the
    current bracket is replaced by bisection, or by doubling while the bracket is open)."""
    t = q / k2_0
    lo = np.full_like(q, -np.inf)
    hi = np.full_like(q, np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        return _spa_newton(t, lo, hi, q, g, eta, mu, max_iter)


def _spa_newton(t, lo, hi, q, g, eta, mu, max_iter):
    # a q beyond the score's range (handled by the caller) has no root: t runs off, harmlessly
    for _ in range(max_iter):
        _, k1, k2 = _cgf(t, g, eta, mu)
        f = k1 - q
        hi = np.where(f > 0, np.minimum(hi, t), hi)
        lo = np.where(f < 0, np.maximum(lo, t), lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = t - f / k2
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        both = np.isfinite(lo) & np.isfinite(hi)
        fallback = np.where(both, 0.5 * (lo + hi),
                            np.where(np.isfinite(lo), 2.0 * np.abs(lo) + 1.0, -2.0 * np.abs(hi) - 1.0))
        t_new = np.where(inside, newton, fallback)
        done = np.abs(t_new - t) <= 1e-10 * (1.0 + np.abs(t))
        t = t_new
        if np.all(done | (np.abs(f) <= 1e-12 * (1.0 + np.abs(q)))):
            break
    return t


def _spa_tail(q: np.ndarray, g: np.ndarray, eta: np.ndarray, mu: np.ndarray, k2_0: np.ndarray) -> np.ndarray:
    """Saddle-point tail probability: P(S >= q) for q > 0, P(S <= q) for q < 0 (Lugannani-Rice form
    of Barndorff-Nielsen: 1 - Phi(w + log(v / w) / w), w = sign(t) sqrt(2 (t q - K(t))), v = t sqrt(K''(t)))."""
    # the score's range: every y_i at the end of its Bernoulli that maximises (minimises) g_i (y_i - mu_i)
    s_max = np.sum(np.maximum(g * (1.0 - mu[:, None]), -g * mu[:, None]), axis=0)
    s_min = np.sum(np.minimum(g * (1.0 - mu[:, None]), -g * mu[:, None]), axis=0)
    span = s_max - s_min
    t = _spa_root(q, g, eta, mu, k2_0)
    k0, _, k2 = _cgf(t, g, eta, mu)
    w = np.sign(t) * np.sqrt(np.maximum(2.0 * (t * q - k0), 0.0))
    v = t * np.sqrt(k2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = w + np.log(v / w) / w
    out = np.where(q > 0, stats.norm.sf(stat), stats.norm.cdf(stat))
    # where the saddle point degenerates (w ~ 0) the normal approximation is exact enough
    normal = stats.norm.sf(np.abs(q) / np.sqrt(k2_0))
    out = np.where(np.isfinite(out) & (v != 0), out, normal)
    # at the end of the range the tail is the probability of that one configuration; beyond it, zero
    tol = 1e-9 * (1.0 + span)
    log_mu, log_1mu = np.log(mu)[:, None], np.log1p(-mu)[:, None]
    at_max = np.exp(np.sum(np.where(g > 0, log_mu, np.where(g < 0, log_1mu, 0.0)), axis=0))
    at_min = np.exp(np.sum(np.where(g < 0, log_mu, np.where(g > 0, log_1mu, 0.0)), axis=0))
    out = np.where((q > 0) & (q >= s_max - tol), np.where(q > s_max + tol, 0.0, at_max), out)
    return np.where((q < 0) & (q <= s_min + tol), np.where(q < s_min - tol, 0.0, at_min), out)


def spa_pvalues(score: np.ndarray, g_adj: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Two-sided SPA p-values [k] = P(S >= |s|) + P(S <= -|s|) of observed scores s [k].

    g_adj [n, k]: the columns adjusted for the covariates (g - X (X'WX)^-1 X'W g), so S = g_adj' (y - mu)
    has the covariates' uncertainty accounted for; mu [n]: null-model probabilities.
    """
    eta = special.logit(mu)
    k2_0 = np.einsum("ik,ik->k", g_adj * g_adj, (mu * (1.0 - mu))[:, None])
    s = np.abs(score)
    p = _spa_tail(s, g_adj, eta, mu, k2_0) + _spa_tail(-s, g_adj, eta, mu, k2_0)
    return np.clip(p, 0.0, 1.0)


# ----------------------------------------------------------------------------- column tests


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to mean 0, SD 1 (ddof=1); returns (scaled [n, m], constant mask [m])."""
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    constant = ~(sd > 1e-12 * np.maximum(1.0, np.abs(mean)))
    scaled = (x - mean) / np.where(constant, 1.0, sd)
    scaled[:, constant] = 0.0
    return scaled, constant


def association(x: np.ndarray, null: NullModel, spa_cutoff: float = 2.0, spa: bool = True,
                chunk: int = 4096) -> pl.DataFrame:
    """Test every column of x [n, m] against the phenotype of `null`, adjusted for its covariates.

    Columns are used as given (standardise them first for effects per SD). Returns one row per column:
    effect, se, ci_low, ci_high (95%), z (score z for binary, t for linear), p, method ("score_spa" or
    "ols"). Binary: p from the score test with the SPA where |z| > spa_cutoff (spa=False: the normal
    approximation everywhere, for ranking only); effect = U / I, the one-step log-OR, se = 1/sqrt(I)
    (the score interval). Columns with no variation left after the covariates get p = NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, m = x.shape
    if n != null.y.size:
        raise ValueError(f"expected {null.y.size} rows, got {n}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain missing or non-finite values")
    out = {k: np.full(m, np.nan) for k in ("effect", "se", "z", "p")}
    sw = null.sqrt_w
    resid = null.y - null.mu
    for lo in range(0, m, chunk):
        xs = x[:, lo:lo + chunk]
        # sqrt(W) g_adj = (I - QQ') sqrt(W) g: the part of each column the covariates do not explain
        a = xs * sw[:, None]
        a -= null.basis @ (null.basis.T @ a)
        info = np.einsum("ij,ij->j", a, a)
        scale = np.einsum("ij,ij->j", xs, xs) / n + 1.0
        ok = info > 1e-10 * n * scale
        u = resid @ xs if null.binary else resid @ (a / sw[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            if null.binary:
                z = u / np.sqrt(info)
                effect, se = u / info, 1.0 / np.sqrt(info)
                p = 2.0 * stats.norm.sf(np.abs(z))
                tail = ok & (np.abs(z) > spa_cutoff)
                if spa and tail.any():
                    g_adj = a[:, tail] / sw[:, None]
                    p[tail] = spa_pvalues(u[tail], g_adj, null.mu)
            else:
                effect = u / info
                rss = np.maximum(float(resid @ resid) - effect * u, 0.0)
                se = np.sqrt(rss / null.df / info)
                z = effect / se
                p = 2.0 * stats.t.sf(np.abs(z), null.df)
        sl = slice(lo, lo + xs.shape[1])
        for k, v in (("effect", effect), ("se", se), ("z", z), ("p", p)):
            out[k][sl] = np.where(ok, v, np.nan)
    half = (_Z975 if null.binary else float(stats.t.ppf(0.975, null.df))) * out["se"]
    method = "score_spa" if null.binary else "ols"
    return pl.DataFrame({"effect": out["effect"], "se": out["se"], "ci_low": out["effect"] - half,
                         "ci_high": out["effect"] + half, "z": out["z"], "p": out["p"],
                         "method": [method] * m, "effect_method": ["score" if null.binary else "ols"] * m},
                        schema_overrides={"method": pl.String, "effect_method": pl.String})


# ----------------------------------------------------------------------------- logistic fits (effects)


def _firth_fit(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-8,
               fixed_zero: int | None = None):
    """Firth-penalised logistic regression: maximise l(b) + 0.5 log|X^T W X|.

    x [n, p] design (with intercept), y [n] 0/1. Returns (beta [p], cov [p, p], penalised loglik).
    Newton steps on the modified score X^T (y - mu + h (0.5 - mu)), h the hat-matrix diagonal,
    with step halving so the penalised log-likelihood never decreases. fixed_zero = j holds b_j at 0 and
    maximises over the other coefficients with the penalty of the whole design x: the restricted fit of
    the penalised likelihood-ratio test (Heinze & Schemper 2002, as logistf does). Refitting the design
    without column j instead would change the penalty and add its difference to the statistic.
    """
    free = np.ones(x.shape[1], dtype=bool)
    if fixed_zero is not None:
        free[fixed_zero] = False

    def penalised(beta):
        eta = x @ beta
        mu = special.expit(eta)
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
        step = np.zeros_like(beta)
        step[free] = np.linalg.pinv(info[np.ix_(free, free)]) @ score[free]
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


def logistic_effect(d: np.ndarray, y: np.ndarray, c: np.ndarray | None,
                    with_p: bool = True) -> tuple[float, float, float, str]:
    """One logistic fit y ~ 1 + d + c -> (log-OR of d, se, likelihood-ratio p, method "logit" | "firth").

    Maximum likelihood (statsmodels); when the fit separates or does not converge (non-finite or huge
    estimates), Firth's penalised likelihood instead, with the penalised likelihood-ratio p against the
    fit with d's coefficient held at 0 under the same (whole-design) penalty (Heinze & Schemper 2002) and a
    Wald se from the penalised information.
    with_p=False skips the restricted fit (p is then NaN): effects only.
    The covariates are centred and scaled to SD 1 first (d's coefficient, se and p do not change), so that
    the check for huge estimates does not depend on their units (a call rate with SD 0.01 and a real effect
    has a coefficient in the hundreds).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    d = np.asarray(d, dtype=np.float64).ravel()
    c = np.zeros((d.size, 0)) if c is None else np.array(c, dtype=np.float64).reshape(d.size, -1)
    sd = c.std(axis=0)
    varies = sd > 0
    c[:, varies] = (c[:, varies] - c[:, varies].mean(axis=0)) / sd[varies]
    design = np.column_stack([np.ones_like(d), d, c])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = sm.Logit(y, design).fit(disp=0, maxiter=100)
            null = sm.Logit(y, np.column_stack([np.ones_like(d), c])).fit(disp=0, maxiter=100) if with_p else None
        beta, se = float(fit.params[1]), float(fit.bse[1])
        ok = (fit.mle_retvals.get("converged", False) and np.isfinite(beta) and np.isfinite(se)
              and abs(beta) < 15 and np.all(np.abs(fit.params) < 30))
        if ok:
            if null is None:
                return beta, se, float("nan"), "logit"
            lr = max(2.0 * (float(fit.llf) - float(null.llf)), 0.0)
            return beta, se, float(stats.chi2.sf(lr, 1)), "logit"
    except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError):
        pass
    beta_full, cov_full, pl_full = _firth_fit(design, y)
    if not with_p:
        return float(beta_full[1]), float(np.sqrt(cov_full[1, 1])), float("nan"), "firth"
    _, _, pl_null = _firth_fit(design, y, fixed_zero=1)
    lr = max(2.0 * (pl_full - pl_null), 0.0)
    return float(beta_full[1]), float(np.sqrt(cov_full[1, 1])), float(stats.chi2.sf(lr, 1)), "firth"


# ----------------------------------------------------------------------------- carriers, BH, ranking


def carrier_counts(x: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Per column of x [n, m]: the number of individuals whose value differs from the column's modal
    (most frequent) value. A window feature takes one value per haplotype pair, so this counts the
    carriers of anything but the commonest pair; a continuous column gives n - 1. NaN (a missing genotype)
    is no value: it is not counted, and the mode is that of the observed values."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    n, m = x.shape
    out = np.zeros(m, dtype=np.int64)
    idx = np.arange(n)[:, None]
    for lo in range(0, m, chunk):
        s = np.sort(x[:, lo:lo + chunk], axis=0)
        new = np.ones(s.shape, dtype=bool)
        new[1:] = s[1:] != s[:-1]
        start = np.maximum.accumulate(np.where(new, idx, 0), axis=0)
        # NaNs sort last and never equal each other: runs of one, never longer than the modal run
        missing = np.isnan(s).sum(axis=0) if s.dtype.kind == "f" else 0
        out[lo:lo + s.shape[1]] = np.maximum(n - (idx - start + 1).max(axis=0) - missing, 0)
    return out


def mean_impute(dosage: np.ndarray) -> np.ndarray:
    """Replace NaN dosages by the column mean of the observed ones (all-missing -> 0)."""
    d = np.array(dosage, dtype=np.float64, copy=True)
    missing = ~np.isfinite(d)
    if missing.any():
        counts = (~missing).sum(axis=0)
        sums = np.where(missing, 0.0, d).sum(axis=0)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        d[missing] = np.take(means, np.nonzero(missing)[1])
    return d


def _ranking(table: pl.DataFrame) -> np.ndarray:
    """Row indices ordered by p ascending (NaN last), then |z| (or |effect|) descending, then index."""
    p = table["p"].to_numpy().astype(float)
    tie = table["z"] if "z" in table.columns else table["effect"]
    tie = np.abs(tie.to_numpy().astype(float))
    p = np.where(np.isnan(p), np.inf, p)
    tie = np.where(np.isnan(tie), 0.0, tie)
    return np.lexsort((np.arange(p.size), -tie, p))


def rank_features(table: pl.DataFrame) -> pl.DataFrame:
    """Order rows by p (ascending; NaN last), then |z| (descending); add 1-based `rank` (null where p is
    NaN: untested rows are listed, not ranked)."""
    if table.height == 0:
        return table.with_columns(pl.Series("rank", [], dtype=pl.Int64))
    order = _ranking(table)
    out = table[order]
    tested = np.isfinite(out["p"].to_numpy().astype(float))
    ranks = np.where(tested, np.cumsum(tested), 0)
    return out.with_columns(pl.Series("rank", ranks, dtype=pl.Int64).replace(0, None))


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


def _ranking_score(table: pl.DataFrame) -> np.ndarray:
    """float64 [m], larger first, ordering columns as `_ranking` does: -log p, and above every p > 0 the p
    that underflow to 0, by |z|; NaN where p is NaN (untested)."""
    p = table["p"].to_numpy().astype(float)
    z = np.abs(table["z"].to_numpy().astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, -np.log(p), np.where(p == 0, 1e3 + z, np.nan))


def stability(features: np.ndarray, phenotype: np.ndarray, covariates: np.ndarray | None, top_k: int,
              n_resamples: int, seed: int, binary: bool, spa_cutoff: float = 2.0) -> np.ndarray:
    """Stability selection: share [m] of half-sample resamples in which each column is in the top_k.

    Each resample keeps n//2 individuals (stratified by class for a binary phenotype), refits the null
    model there and ranks columns by p of the same test as `association` and the table's rank (score test
    with the SPA beyond `spa_cutoff` for binary, OLS t for quantitative; the normal |z| alone put a rare,
    case-enriched column, whose |z| the SPA corrects, above one the table ranks first). features [n, m] (only the
    columns that are tested); returns float64 [m] in [0, 1]: the share among the resamples whose null model
    could be fitted (a half-sample can have too few individuals for the covariates, or a constant
    quantitative phenotype, where the whole sample does not); all NaN when none could.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(phenotype, dtype=np.float64).ravel()
    c = None if covariates is None else np.asarray(covariates, dtype=np.float64).reshape(y.size, -1)
    if top_k < 1 or n_resamples < 1:
        raise ValueError("top_k and n_resamples must be >= 1")
    counts = np.zeros(x.shape[1])
    if x.shape[1] == 0:
        return counts
    fitted = 0
    for idx in half_samples(y, n_resamples, seed):
        try:
            null = null_model(y[idx], None if c is None else c[idx], binary)
        except NullModelError:  # this half cannot carry the null model: it does not vote
            continue
        fitted += 1
        counts += top_k_credit(_ranking_score(association(x[idx], null, spa_cutoff=spa_cutoff)), top_k)
    return counts / fitted if fitted else np.full(x.shape[1], np.nan)


def top_k_credit(score: np.ndarray, top_k: int, rtol: float = 1e-9) -> np.ndarray:
    """float64 [m]: 1 for the columns among the top_k by score [m] (NaN: never), and for a tie at the k-th
    place, the free places shared among the tied columns (within `rtol` of the k-th score): the chance that
    a random tie-break keeps the column. Columns carrying the same signal (every dimension of a window whose
    features take one value per haplotype pair is an affine map of one indicator) have scores equal but for
    rounding, and picking among them by rounding or by column order would make their stability arbitrary."""
    score = np.asarray(score, dtype=np.float64)
    credit = np.zeros(score.size)
    valid = np.isfinite(score)
    if valid.sum() <= top_k:
        credit[valid] = 1.0
        return credit
    kth = np.sort(score[valid])[::-1][top_k - 1]
    tol = rtol * max(abs(kth), np.finfo(np.float64).tiny)
    above = valid & (score > kth + tol)
    tied = valid & ~above & (score >= kth - tol)
    credit[above] = 1.0
    credit[tied] = (top_k - above.sum()) / tied.sum()
    return credit


# ----------------------------------------------------------------------------- one family of tests


@dataclass
class RankConfig:
    """Settings of the ranking (defaults live in workflow/schemas/config.schema.yaml; these match).

    min_carriers: fewest individuals off a column's modal value (a variant's carriers, not its alleles) for
    a column to be tested. alpha: BH level that makes a feature significant (linkage
    reporting). tag_r: |r| of feature vs variant dosage from which a variant counts as tagged.
    max_tags: tagged variants listed per feature. refit_top: columns per family whose effect is refitted
    by full logistic regression (binary phenotypes). spa_cutoff: |z| above which the SPA replaces the
    normal approximation. top_k, resamples: stability selection; stability_screen: the columns (best by p)
    for which it is computed. seed: resampling seed. quantitative_transform: "rint" (a quantitative phenotype is
    tested after its rank-based inverse normal transform, `inverse_normal`) or "none" (as given).
    """

    min_carriers: int = 10
    alpha: float = 0.05
    tag_r: float = 0.3
    max_tags: int = 5
    refit_top: int = 50
    spa_cutoff: float = 2.0
    top_k: int = 20
    resamples: int = 50
    stability_screen: int = 2000
    seed: int = 0
    quantitative_transform: str = "rint"

    def __post_init__(self) -> None:
        if self.quantitative_transform not in QUANTITATIVE_TRANSFORMS:
            raise ValueError(f"rank.quantitative_transform: expected one of {sorted(QUANTITATIVE_TRANSFORMS)}, "
                             f"got {self.quantitative_transform!r}")


#: rank.quantitative_transform values and what each does to a quantitative phenotype before it is tested
QUANTITATIVE_TRANSFORMS = {"rint": "rank-based inverse normal transform (Blom offsets, ties averaged)",
                           "none": "as given"}


def inverse_normal(y: np.ndarray) -> np.ndarray:
    """Rank-based inverse normal transform of y [n] (finite values): Phi^-1((rank - 3/8) / (n + 1/4)), Blom's
    offsets, tied values sharing their average rank. Returns [n] float64, mean about 0 and SD about 1."""
    y = np.asarray(y, dtype=np.float64).ravel()
    ranks = stats.rankdata(y, method="average")
    return stats.norm.ppf((ranks - 0.375) / (y.size + 0.25))


def outcome(y: np.ndarray, binary: bool, cfg: RankConfig) -> np.ndarray:
    """The phenotype y [n] as rank tests it: itself when binary or `cfg.quantitative_transform` is "none"; "rint":
    its inverse normal transform, the covariates staying in the test's model (the direct transform, D-INT of
    McCaw et al. 2020, Biometrics 76:1262). Not the two-stage transform of y's residual on the covariates: where a
    feature's spread follows a PC (carriers' values larger at one end of PC1) and the phenotype's noise is
    lognormal, that one measured 5-6x the nominal rate at 1e-3, the direct one 0.9-1.4x (tests/test_rank.py)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if binary or cfg.quantitative_transform == "none" or not np.all(np.isfinite(y)):
        return y  # a y with missing values: null_model refuses it, naming them
    return inverse_normal(y)


def columns_to_test(x: np.ndarray, min_carriers: int, count: np.ndarray, standardise: bool = True,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The columns of x [n, m] as `rank_family` tests them, and why any is not tested.

    count [m]: carriers (individuals, `carrier_counts`), compared with min_carriers. Returns (x scaled to
    mean 0, SD 1 when `standardise`, else as given [n, m]; filtered [m] object: "" for a tested column, else
    "constant" or "fewer than <min_carriers> carriers").
    """
    if standardise:
        xs, constant = _standardise(x)
    else:
        xs, constant = x, x.std(axis=0) <= 1e-12
    filtered = np.where(constant, "constant",
                        np.where(count < min_carriers, f"fewer than {min_carriers} carriers", "")).astype(object)
    return xs, filtered


#: columns of a model feature family read, standardised and tested at a time (memory ~ 4 x n x this x 8 B)
COLUMN_CHUNK = 2048


def rank_family(x: np.ndarray | Columns, y: np.ndarray, covariates: np.ndarray | None, binary: bool,
                cfg: RankConfig, n_carriers: np.ndarray | None = None, standardise: bool = True,
                null: NullModel | None = None, chunk: int | None = None, carrier_cap: np.ndarray | None = None,
                ) -> pl.DataFrame:
    """Test one feature family against one phenotype: filter, test, BH, stability, effects of the top.

    x: the family's columns [n, m], an array or a `Columns` reader (an on-disk table is then read `chunk`
    columns at a time, default `COLUMN_CHUNK`, so memory follows n x chunk, not m; variants: mean-imputed dosage,
    standardise=False so effects are per allele; model features: standardise=True, effects per SD);
    n_carriers [m] reported per column and compared with cfg.min_carriers (None: `carrier_counts` of each
    block as stored, so of the called genotypes when x is an `ImputedColumns`). carrier_cap [m]: where given, cfg.min_carriers is
    compared with min(n_carriers, carrier_cap) (`rank_phenotype`: the cohort's count less the 1-4 samples
    without a value, so that whether a column is tested does not tell those samples' values). Returns one row per
    column in input order: effect, se, ci_low, ci_high, z, p, q, method, effect_method, n_carriers,
    filtered ("" when tested), stability.
    """
    cols_in = x if isinstance(x, Columns) else Columns(np.asarray(x, dtype=np.float64))
    m, chunk = cols_in.n_columns, max(1, chunk or COLUMN_CHUNK)
    null = null or null_model(outcome(y, binary, cfg), covariates, binary)
    cols = {k: np.full(m, np.nan) for k in ("effect", "se", "ci_low", "ci_high", "z", "p")}
    method = np.full(m, "", dtype=object)
    eff_method = np.full(m, "", dtype=object)
    filtered = np.full(m, "", dtype=object)
    carriers = np.zeros(m, dtype=np.int64) if n_carriers is None else np.asarray(n_carriers, dtype=np.int64)
    for lo in range(0, m, chunk):
        sl = slice(lo, min(lo + chunk, m))
        block, as_stored = cols_in.read_with_stored(sl)
        if n_carriers is None:
            carriers[sl] = carrier_counts(as_stored)
        count = carriers[sl] if carrier_cap is None else np.minimum(carriers[sl], np.asarray(carrier_cap)[sl])
        xs, filt = columns_to_test(block, cfg.min_carriers, count, standardise)
        if carrier_cap is not None:
            # the reason too from the public count alone: "constant" among the people tested would tell that
            # the few left out hold the column's only carriers (a column constant there is below the cap anyway)
            filt = np.where(count < cfg.min_carriers, f"fewer than {cfg.min_carriers} carriers", filt).astype(object)
        tested = np.flatnonzero(filt == "")
        res = association(xs[:, tested], null, cfg.spa_cutoff)
        untestable = ~np.isfinite(res["p"].to_numpy())
        filt[tested[untestable]] = "explained by covariates"
        for k in cols:
            cols[k][lo + tested] = res[k].to_numpy()
        method[lo + tested] = res["method"].to_list()
        eff_method[lo + tested] = res["effect_method"].to_list()
        method[lo + tested[untestable]] = eff_method[lo + tested[untestable]] = ""
        filtered[sl] = filt

    def scaled(which: np.ndarray) -> np.ndarray:
        block = cols_in.read(which)
        return columns_to_test(block, cfg.min_carriers, np.zeros(which.size), standardise)[0]

    keep = np.flatnonzero(filtered == "")
    best_first = keep[np.lexsort((keep, -np.abs(cols["z"][keep]), cols["p"][keep]))]
    stab = np.full(m, np.nan)
    # a family of top_k or fewer tested columns puts every column in every top_k: stability would read 1 for all,
    # a null feature with p 0.99 included, so it is not computed (NaN) there
    if keep.size > cfg.top_k and cfg.resamples > 0:
        # screening: a column far down the full-sample ranking is essentially never in a half-sample's top_k;
        # columns beyond the best `stability_screen` keep NaN (not computed) rather than a guessed 0
        screened = best_first[:cfg.stability_screen]
        if keep.size > cfg.stability_screen:  # columns tied with the last screened one come in with it: cut by
            # column order, 60 of 120 equivalent dimensions of one window had stability and the others none
            beyond = best_first[cfg.stability_screen:]
            p_cut = cols["p"][screened[-1]]
            screened = np.concatenate([screened, beyond[np.isclose(cols["p"][beyond], p_cut, rtol=1e-9, atol=0)]])
        screened = np.sort(screened)
        stab[screened] = stability(scaled(screened), null.y, null.design[:, 1:], cfg.top_k, cfg.resamples, cfg.seed,
                                   binary, cfg.spa_cutoff)
    if binary and cfg.refit_top > 0 and keep.size:
        order = np.sort(best_first[:cfg.refit_top])
        top = scaled(order)
        for i, j in enumerate(order):
            beta, se, _, how = logistic_effect(top[:, i], null.y, null.design[:, 1:], with_p=False)
            cols["effect"][j], cols["se"][j] = beta, se
            cols["ci_low"][j], cols["ci_high"][j] = beta - _Z975 * se, beta + _Z975 * se
            eff_method[j] = how
    return pl.DataFrame({**cols, "q": benjamini_hochberg(cols["p"]), "method": method.tolist(),
                         "effect_method": eff_method.tolist(), "n_carriers": carriers,
                         "filtered": filtered.tolist(), "stability": stab},
                        schema_overrides={"method": pl.String, "effect_method": pl.String, "filtered": pl.String})


# ----------------------------------------------------------------------------- linkage


def tagged_variants(features: np.ndarray, dosage: np.ndarray | Columns, variant_ids: list[str], r_min: float,
                    max_tags: int) -> list[str]:
    """Per feature column of features [n, k]: the variants (dosage [n, v], mean-imputed; an array or a `Columns`
    reader, read `COLUMN_CHUNK` columns at a time, so memory follows k x chunk, not k x v) whose Pearson |r|
    with it is >= r_min, the strongest `max_tags` first (ties by variant order), as "id(r=0.82);id2(r=-0.41)"."""
    f, fc = _standardise(np.asarray(features, dtype=np.float64))
    cols = dosage if isinstance(dosage, Columns) else Columns(np.asarray(dosage, dtype=np.float64))
    n, m = f.shape[0], cols.n_columns
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (feature, variant, r) of each hit
    for lo in range(0, m, COLUMN_CHUNK):
        g, gc = _standardise(cols.read(slice(lo, min(lo + COLUMN_CHUNK, m))))
        r = (f.T @ g) / max(n - 1, 1)
        r[fc] = 0.0
        r[:, gc] = 0.0
        i, j = np.nonzero(np.abs(r) >= r_min)
        found.append((i, lo + j, r[i, j]))
    feat = np.concatenate([h[0] for h in found]) if found else np.zeros(0, dtype=np.int64)
    var = np.concatenate([h[1] for h in found]) if found else np.zeros(0, dtype=np.int64)
    r_hit = np.concatenate([h[2] for h in found]) if found else np.zeros(0)
    out = []
    for row in range(f.shape[1]):
        mine = feat == row
        hits, r_row = var[mine], r_hit[mine]
        best = np.lexsort((hits, -np.abs(r_row)))[:max_tags]
        out.append(";".join(f"{variant_ids[j]}(r={rr:.2f})" for j, rr in zip(hits[best], r_row[best], strict=True)))
    return out


def conditional_pvalues(x: np.ndarray, null: NullModel, lead_dosage: np.ndarray, spa_cutoff: float) -> np.ndarray:
    """p [k] of each column of x [n, k] with the lead variant's dosage [n] added to the covariates."""
    cond = with_covariate(null, lead_dosage)
    xs, _ = _standardise(np.asarray(x, dtype=np.float64))
    p = association(xs, cond, spa_cutoff)["p"].to_numpy()
    return np.where(np.isfinite(p), p, 1.0)  # nothing left beyond the lead variant


@dataclass
class Columns:
    """Columns of a feature matrix read on demand, as float64.

    source [N, m]: an array, or an on-disk 2-D dataset (an h5py Dataset, e.g. the X of a `<layer>.windows.h5ad`)
    that is only ever read a block of columns at a time; rows [n]: the row positions of source used, in the
    order wanted (None: all rows as stored).
    """

    source: Any
    rows: np.ndarray | None = None

    @property
    def n_columns(self) -> int:
        return int(self.source.shape[1])

    def read(self, cols: slice | np.ndarray) -> np.ndarray:
        """float64 [n, k] of the columns `cols` (a slice, or increasing column indices)."""
        if isinstance(cols, np.ndarray):
            cols = np.asarray(cols, dtype=np.int64)
            if cols.size == 0:
                n = self.source.shape[0] if self.rows is None else self.rows.size
                return np.zeros((n, 0))
            if isinstance(self.source, np.ndarray):
                block = self.source[:, cols]
            else:  # on disk: one hyperslab per run of nearby columns, never the span of all of them
                block = np.empty((self.source.shape[0], cols.size), dtype=np.float64)
                i = 0
                while i < cols.size:
                    j = int(np.searchsorted(cols, cols[i] + COLUMN_CHUNK))
                    span = self.source[:, int(cols[i]):int(cols[j - 1]) + 1]
                    block[:, i:j] = span[:, cols[i:j] - cols[i]]
                    i = j
        else:
            block = self.source[:, cols]
        block = np.asarray(block, dtype=np.float64)
        return block if self.rows is None else block[self.rows]

    def read_with_stored(self, cols: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the columns as `read` gives them, the same as stored): one array twice here; a reader that transforms
        them (`ImputedColumns`) returns both from one read."""
        block = self.read(cols)
        return block, block


class ImputedColumns(Columns):
    """Dosage columns (NaN = missing) read mean-imputed, as `mean_impute` of the whole matrix gives them: each
    column's missing entries take the mean of its observed ones among `rows`, whichever columns are read
    together (a column's sum runs down its rows in the same order in any block)."""

    def read(self, cols: slice | np.ndarray) -> np.ndarray:
        return mean_impute(super().read(cols))

    def read_with_stored(self, cols: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stored = super().read(cols)
        return mean_impute(stored), stored


@dataclass
class Family:
    """One feature family tested against each phenotype, BH-corrected on its own.

    name: "variant", "embedding:<model>/<layer>" or "sae:<model>/<layer>". kind: variant | embedding | sae.
    matrix [N, m]: dosages (NaN = missing) or window features; an array, or for window features possibly an
    on-disk dataset that rank reads a block of columns at a time (`Columns`). rows [n]: the rows of matrix
    in the order of the phenotype (None: matrix is already in that order).
    features: m full ids; short_names: m readable names; contig, start, end [m]: 0-based half-open span
    (a variant's base, a feature's window). model, layer: "" for variants. carriers [N, m] bool: who carries
    each column, where its values cannot tell (a burden of mean-imputed missing calls is above 0 without a
    called ALT); None: `carrier_counts` of the values.
    """

    name: str
    kind: str
    matrix: Any
    features: list[str]
    short_names: list[str]
    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray
    model: str = ""
    layer: str = ""
    rows: np.ndarray | None = None
    carriers: np.ndarray | None = None

    def _rows(self, keep: np.ndarray | None) -> np.ndarray:
        rows = np.arange(self.matrix.shape[0]) if self.rows is None else np.asarray(self.rows)
        return rows if keep is None else rows[np.asarray(keep, dtype=bool)]

    def columns(self, keep: np.ndarray | None = None) -> Columns:
        """A reader of this family's columns, rows in phenotype order, restricted to the boolean mask keep."""
        return Columns(self.matrix, None if (self.rows is None and keep is None) else self._rows(keep))

    def carrier_counts(self, keep: np.ndarray | None = None) -> np.ndarray | None:
        """[m] carriers per column among the rows keep selects, from `carriers`; None when it is not given."""
        if self.carriers is None:
            return None
        return np.asarray(self.carriers)[self._rows(keep)].sum(axis=0, dtype=np.int64)


def cohort_carrier_counts(fam: Family) -> np.ndarray:
    """`carrier_counts` of each of fam's columns over every sample of the cohort (its rows, none left out), read
    `COLUMN_CHUNK` columns at a time: `n_carriers_cohort`, the same in every phenotype's rows. rank's own
    `n_carriers` counts the samples with a value for the phenotype, so two phenotypes' counts of one column
    differ by the carriers among the samples one of them leaves out (a privacy leak where those are 1-4
    people, see README Privacy); the report shows this count instead. A family with `carriers` counts those."""
    given = fam.carrier_counts()
    if given is not None:
        return given
    cols = fam.columns()
    out = np.zeros(cols.n_columns, dtype=np.int64)
    for lo in range(0, cols.n_columns, COLUMN_CHUNK):
        sl = slice(lo, min(lo + COLUMN_CHUNK, cols.n_columns))
        out[sl] = carrier_counts(cols.read(sl))
    return out


def _family_frame(fam: Family, res: pl.DataFrame, phenotype: str, cohort_carriers: np.ndarray) -> pl.DataFrame:
    n_tested = int(np.isfinite(res["p"].to_numpy()).sum())
    return res.with_columns(
        pl.Series("n_carriers_cohort", np.asarray(cohort_carriers, dtype=np.int64)),
        pl.lit(phenotype).alias("phenotype"), pl.lit(fam.name).alias("family"),
        pl.lit(f"BH within phenotype '{phenotype}' and family '{fam.name}' ({n_tested} tests)").alias("bh_scope"),
        pl.Series("feature", fam.features, dtype=pl.String), pl.Series("short_name", fam.short_names, dtype=pl.String),
        pl.lit(fam.kind).alias("kind"), pl.lit(fam.model).alias("model"), pl.lit(fam.layer).alias("layer"),
        pl.Series("contig", np.asarray(fam.contig).astype(str), dtype=pl.String),
        pl.Series("start", np.asarray(fam.start, dtype=np.int64)), pl.Series("end", np.asarray(fam.end, dtype=np.int64)))


def _bh_threshold(p: np.ndarray, q: np.ndarray, alpha: float) -> float:
    """Largest p rejected at BH level alpha (None when nothing is)."""
    sig = np.isfinite(q) & (q < alpha)
    return float(np.max(p[sig])) if sig.any() else None


def lead_variant(by_contig: dict[str, tuple[np.ndarray, np.ndarray]], contig: str, start: int, end: int,
                 p: np.ndarray) -> int | None:
    """The index of the variant of smallest p [n] whose start lies in [start, end) on contig (the lowest index
    among equal p; by_contig: `interp.genome.regions.positions_by_contig` of the variants), or None: a sorted
    search, so the cost follows the variants in the window, not all of them (a scan per significant feature
    cost features x variants)."""
    starts, index = by_contig.get(contig, (None, None))
    if starts is None:
        return None
    inside = index[np.searchsorted(starts, start, side="left"):np.searchsorted(starts, end, side="left")]
    if inside.size == 0:
        return None
    best = p[inside].min()
    return int(inside[p[inside] == best].min())


def rank_phenotype(phenotype: str, y: np.ndarray, covariates: np.ndarray | None, variants: Family,
                   families: list[Family], cfg: RankConfig,
                   cohort_carriers: dict[str, np.ndarray] | None = None) -> tuple[pl.DataFrame, dict]:
    """Rank the variants and every model feature family for one phenotype, with linkage reporting.

    y [n] (0/1 = binary, otherwise quantitative; NaN = missing: those individuals are dropped and
    counted; where 1-4 are, a column is tested only when its cohort count less them reaches min_carriers, so
    that which columns are tested does not tell those few people's genotypes); covariates [n, c] (PCs and the covariate design, no intercept). Returns (table, summary):
    one row per (family, column) with the test, BH q and `rank` within the family, and for each model
    feature with q < alpha: `tags_variants` (variants with |r| >= tag_r), `lead_variant` (the variant of
    its window with the smallest p for this phenotype) and `p_conditional` (the feature's p with that
    variant's dosage added as a covariate); `conditional_significant` when p_conditional is at or below
    the family's BH threshold; `p_conditional_top_variant`: its p given the phenotype's top variant (the
    smallest variant p). Every row also has `n_carriers_cohort`: its column's carriers over every sample
    (`cohort_carrier_counts`), taken from cohort_carriers {family name: [m]} where given (rank_cohort counts each
    family once for all phenotypes), else counted here. summary: counts per phenotype and family, and how many
    significant model features the lead variant of their window, or the one top variant, explains (p above the
    threshold).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(y)
    y = y[keep]
    cov = None if covariates is None else np.asarray(covariates, dtype=np.float64)[keep]
    binary = bool(set(np.unique(y).tolist()) <= {0.0, 1.0})
    summary: dict = {"phenotype": phenotype, "n_individuals": int(keep.sum()),
                     "n_missing_phenotype": int((~keep).sum()),
                     "type": "binary" if binary else "quantitative", "families": {}}
    if binary:
        summary["n_cases"] = int(y.sum())
    else:
        summary["transform"] = cfg.quantitative_transform
    try:
        null = null_model(outcome(y, binary, cfg), cov, binary)
    except NullModelError as err:
        summary["skipped"] = str(err)
        return pl.DataFrame(), summary
    from interp.audit import MIN_REPORTED_GROUP

    cohort_carriers = dict(cohort_carriers or {})
    for fam in [variants, *families]:
        if fam.name not in cohort_carriers:
            cohort_carriers[fam.name] = cohort_carrier_counts(fam)
    # 1-4 samples without a value: a column's count among the others is the cohort's less its carriers among
    # those few, so testing it exactly when that count reaches min_carriers told their genotypes (a variant of 10
    # carriers tested for a phenotype everyone has, not for the one a carrier lacks). The filter then reads the
    # cohort's count less all of them: whether a column is tested follows from public counts alone.
    n_missing = int((~keep).sum())
    cap = ({k: np.asarray(c, dtype=np.int64) - n_missing for k, c in cohort_carriers.items()}
           if 0 < n_missing < MIN_REPORTED_GROUP else {})
    # the dosages read a block of columns at a time (the variant family may be on disk: rows x variants need not
    # fit in memory), mean-imputed among the samples kept
    raw = variants.columns(keep)
    dosage = ImputedColumns(raw.source, raw.rows)
    # carriers among the called genotypes (counted on the stored block, read once with the imputed one: the
    # mean-imputed dosage of a missing call is no carrier), individuals and not alleles: two homozygous carriers
    # and one heterozygous are 3 people, not a minor-allele count of 5
    vt = rank_family(dosage, y, cov, binary, cfg, standardise=False, null=null, carrier_cap=cap.get(variants.name))
    vt = _family_frame(variants, vt, phenotype, cohort_carriers[variants.name])
    tables = [vt]
    v_p = vt["p"].to_numpy()
    v_contig, v_start = np.asarray(variants.contig).astype(str), np.asarray(variants.start, dtype=np.int64)
    for fam in [variants, *families]:
        summary["families"][fam.name] = {}
    lead_counts: dict[str, dict] = {}
    n_sig_total = n_explained = n_no_lead = n_explained_top = 0
    v_tested = np.flatnonzero(np.isfinite(v_p))
    top_v = int(v_tested[np.lexsort((v_tested, -np.abs(vt["z"].to_numpy()[v_tested]), v_p[v_tested]))[0]]) \
        if v_tested.size else None
    top_dosage = dosage.read(np.array([top_v]))[:, 0] if top_v is not None else None
    tested_by_contig = positions_by_contig(v_contig[v_tested], v_start[v_tested], v_tested)
    for fam in families:
        x = fam.columns(keep)
        ft = rank_family(x, y, cov, binary, cfg, null=null, carrier_cap=cap.get(fam.name),
                         n_carriers=fam.carrier_counts(keep))
        p, q = ft["p"].to_numpy(), ft["q"].to_numpy()
        sig = np.flatnonzero(np.isfinite(q) & (q < cfg.alpha))
        threshold = _bh_threshold(p, q, cfg.alpha)
        tags = np.full(ft.height, None, dtype=object)
        lead = np.full(ft.height, None, dtype=object)
        p_cond = np.full(ft.height, np.nan)
        cond_sig = np.full(ft.height, None, dtype=object)
        p_top = np.full(ft.height, np.nan)
        for lo in range(0, sig.size, COLUMN_CHUNK):  # significant columns, a block at a time
            part = sig[lo:lo + COLUMN_CHUNK]
            block = x.read(part)
            if top_v is not None:
                # one variant for the whole phenotype: how many significant features does it alone explain?
                p_top[part] = conditional_pvalues(block, null, top_dosage, cfg.spa_cutoff)
            tags[part] = tagged_variants(block, dosage, variants.features, cfg.tag_r, cfg.max_tags)
        if sig.size and top_v is not None:
            n_explained_top += int((p_top[sig] > (threshold if threshold is not None else -1.0)).sum())
        if sig.size:
            groups: dict[int, list[int]] = {}
            for j in sig:
                lead_j = lead_variant(tested_by_contig, str(fam.contig[j]), int(fam.start[j]), int(fam.end[j]), v_p)
                if lead_j is None:
                    n_no_lead += 1
                    continue
                groups.setdefault(lead_j, []).append(int(j))
            for v_j, cols in groups.items():
                pc = conditional_pvalues(x.read(np.asarray(cols)), null, dosage.read(np.array([v_j]))[:, 0],
                                        cfg.spa_cutoff)
                vid = variants.features[v_j]
                lead[cols] = vid
                p_cond[cols] = pc
                stays = pc <= (threshold if threshold is not None else -1.0)
                cond_sig[cols] = stays.tolist()
                entry = lead_counts.setdefault(vid, {"lead_variant": vid, "n_significant_features": 0,
                                                     "n_explained": 0})
                entry["n_significant_features"] += len(cols)
                entry["n_explained"] += int((~stays).sum())
                n_explained += int((~stays).sum())
            n_sig_total += sig.size
        ft = ft.with_columns(pl.Series("tags_variants", tags.tolist(), dtype=pl.String),
                             pl.Series("lead_variant", lead.tolist(), dtype=pl.String),
                             pl.Series("p_conditional", p_cond), pl.Series("p_conditional_top_variant", p_top),
                             pl.Series("conditional_significant", cond_sig.tolist(), dtype=pl.Boolean))
        tables.append(_family_frame(fam, ft, phenotype, cohort_carriers[fam.name]))
    for t in tables:
        name = t["family"][0] if t.height else None
        if name is None:
            continue
        filt = t.filter(pl.col("filtered") != "").group_by("filtered").len().sort("filtered")
        summary["families"][name] = {
            "n_features": t.height, "n_tested": int(t["p"].is_not_nan().sum()),
            "filtered": {r["filtered"]: int(r["len"]) for r in filt.iter_rows(named=True)},
            "n_significant": int((t["q"] < cfg.alpha).sum()),
            "bh_threshold_p": _bh_threshold(t["p"].to_numpy(), t["q"].to_numpy(), cfg.alpha)}
    summary["linkage"] = {
        "n_significant_model_features": int(n_sig_total),
        "top_variant": None if top_v is None else variants.features[top_v],
        "n_explained_by_top_variant": int(n_explained_top),
        "n_explained_by_lead_variant": int(n_explained),
        "n_conditionally_significant": int(n_sig_total - n_explained - n_no_lead),
        "n_without_variant_in_window": int(n_no_lead),
        "by_lead_variant": sorted(lead_counts.values(), key=lambda e: (-e["n_significant_features"],
                                                                        e["lead_variant"]))[:20]}
    table = pl.concat([rank_features(t) for t in tables], how="diagonal_relaxed")
    return table, summary
