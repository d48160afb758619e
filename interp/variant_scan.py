"""The audit's variant-direction scan: does the phenotype follow any of the region's variants *as the
embedding holds it*?

The audit's probe must find its direction in the embedding from the phenotype alone. With few cases (10%
of 1,000) a single causal variant at a moderate odds ratio is often missed, although the embedding holds
that variant well. The scan asks a narrower question with far fewer degrees of freedom: for every variant
v of the studied region, the leave-one-out ridge prediction of its dosage from the embedding (`RidgeProbe`,
fitted to the genotypes, never to the phenotype) is a fixed direction s_v [n]; the statistic is the
largest score-test |z| of s_v in the logistic model y ~ 1 + strata + PCs + covariates. Only what the
embedding carries can score: a variant the model does not see has s_v near noise.

Because s_v never depends on y, each z is a standard score test against the ancestry model; the maximum
over variants is calibrated, with the audit's within statistic, by the audit's own Monte Carlo null
(`interp.audit.audit_phenotype`). `effective_tests` gives the Li & Ji (2005) effective number of
independent directions, which puts the maximum on the scale of a single z before the two are combined.

Measured (calibration suite, built-in model, 100 replicates per cell rerun on their committed seeds,
twenty-second session): 10% cases causal PASS 84/100 against 69/100 with the probe statistic alone; the
ancestry-only and null PASS rates of the rerun cells stay within 0-6 in 100 (README, Calibration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: rows of Y scored at a time by `scan_statistics` (memory: chunk x n x q doubles)
SCAN_CHUNK = 64
#: variants predicted from the embedding at a time by `variant_directions`
VARIANT_CHUNK = 512


@dataclass
class VariantDirections:
    """Fixed directions of the scan, one per variant.

    S [V, n]: each variant's leave-one-out ridge prediction of its dosage from the embedding, centred and
    scaled to unit variance. ids [V]: variant IDs. r2 [V]: leave-one-out R^2 of each dosage from the
    embedding. n_candidates: variants offered before the cap. m_eff: `effective_tests` of S.
    """

    S: np.ndarray
    ids: list[str]
    r2: np.ndarray
    n_candidates: int
    m_eff: float


def variant_directions(probe, dosage: np.ndarray, ids: list[str], max_variants: int,
                       min_carriers: int = 5) -> VariantDirections | None:
    """The scan's directions from the audit's `RidgeProbe` and dosages [n, V] (NaN: missing, mean-imputed).

    Variants whose dosage does not vary, or that fewer than `min_carriers` of the n people carry (off the
    modal dosage among the called, `interp.rank.carrier_counts`), are dropped: the scan's hit is named in the
    audit row and reason, and a variant of 1-4 carriers is never named (README, Privacy); its direction would
    rest on those few people anyway. Of the rest, the max_variants whose dosage the
    embedding predicts best (leave-one-out R^2, a choice that never sees the phenotype) are kept. Variants
    are predicted VARIANT_CHUNK at a time and only the best are held, so memory follows n x max_variants
    however many variants the regions have. Returns None when no variant is left.
    """
    from interp.rank import carrier_counts

    D = dosage if hasattr(dosage, "ndim") else np.asarray(dosage)  # a lazy view is read a chunk at a time
    if D.ndim != 2 or D.shape[1] == 0:
        return None
    kept_S, kept_r2, kept_ids, n_candidates = np.zeros((0, D.shape[0])), np.zeros(0), [], 0
    for lo in range(0, D.shape[1], VARIANT_CHUNK):
        block = np.asarray(D[:, lo:lo + VARIANT_CHUNK], dtype=np.float64)
        carried = carrier_counts(block) >= min_carriers
        finite = np.isfinite(block)
        mean = np.where(finite, block, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
        block = np.where(finite, block, mean[None, :]).T  # [v, n]
        varies = (block.std(axis=1) > 1e-9) & carried
        block, names = block[varies], [i for i, k in zip(ids[lo:lo + VARIANT_CHUNK], varies, strict=True) if k]
        n_candidates += len(names)
        if not names:
            continue
        S, _ = probe.loo_scores(block)  # [v, n] predictions of the centred dosages
        centred = block - block.mean(axis=1, keepdims=True)
        r2 = 1.0 - ((centred - S) ** 2).sum(axis=1) / (centred**2).sum(axis=1)
        usable = S.std(axis=1) > 1e-12
        kept_S = np.vstack([kept_S, S[usable]])
        kept_r2 = np.concatenate([kept_r2, r2[usable]])
        kept_ids += [nm for nm, k in zip(names, usable, strict=True) if k]
        order = np.argsort(-kept_r2, kind="stable")[:max_variants]
        kept_S, kept_r2, kept_ids = kept_S[order], kept_r2[order], [kept_ids[i] for i in order]
    if not kept_ids:
        return None
    S = (kept_S - kept_S.mean(axis=1, keepdims=True)) / kept_S.std(axis=1, keepdims=True)
    return VariantDirections(S=S, ids=kept_ids, r2=kept_r2, n_candidates=n_candidates, m_eff=effective_tests(S))


def effective_tests(S: np.ndarray) -> float:
    """Li & Ji (2005) effective number of independent tests among the rows of S [V, n]: sum over the
    eigenvalues l of their correlation matrix of 1{l >= 1} + (l - floor(l))."""
    if S.shape[0] == 1:
        return 1.0
    lam = np.abs(np.linalg.eigvalsh(np.corrcoef(S)))
    lam = np.where(np.abs(lam - np.round(lam)) < 1e-8, np.round(lam), lam)  # 2.9999999 is 3, not 1 + 0.9999999
    # at most V: each term is at most its eigenvalue, and they sum to V, but rounding can add an ulp or two
    # (10.000000000000002 for 10 independent rows), which the Sidak exponent would then count
    return float(min(S.shape[0], max(1.0, ((lam >= 1).astype(float) + (lam - np.floor(lam))).sum())))


def scan_statistics(Y: np.ndarray, prob: np.ndarray, S: np.ndarray, nuisance: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Largest score-test |z| [B] over the directions S [V, n], and which direction [B], for responses Y
    [B, n] in logistic y ~ 1 + nuisance [n, q], prob [B, n] the fitted probabilities of that model.

    z_v = s_v'(y - p) / sqrt(s_v' W s_v - s_v' W A (A' W A)^-1 A' W s_v), A = [1, nuisance], W = p(1 - p):
    the efficient score of s_v's coefficient at the nuisance-only fit.
    """
    Y, prob = np.atleast_2d(Y), np.atleast_2d(prob)
    B, n = Y.shape
    A = np.hstack([np.ones((n, 1)), np.asarray(nuisance, dtype=np.float64).reshape(n, -1)])
    best, which = np.empty(B), np.empty(B, dtype=np.int64)
    for lo in range(0, B, SCAN_CHUNK):
        P = prob[lo:lo + SCAN_CHUNK]
        W = P * (1 - P)
        num = (Y[lo:lo + SCAN_CHUNK] - P) @ S.T  # [b, V]
        WA = W[:, :, None] * A[None]  # [b, n, q]
        G = np.matmul(A.T[None], WA) + 1e-9 * np.eye(A.shape[1])  # [b, q, q]
        H = np.matmul(WA.transpose(0, 2, 1), S.T)  # [b, q, V]
        proj = (H * np.linalg.solve(G, H)).sum(axis=1)  # [b, V]
        var = np.maximum(W @ (S * S).T - proj, 1e-12)
        z = np.abs(num) / np.sqrt(var)
        which[lo:lo + SCAN_CHUNK] = z.argmax(axis=1)
        best[lo:lo + SCAN_CHUNK] = z.max(axis=1)
    return best, which


def scan_z(t: np.ndarray, m_eff: float) -> np.ndarray:
    """The maximum |z| [B] of m_eff independent tests on the scale of one one-sided z: the Sidak-adjusted
    two-sided p, 1 - (1 - 2 Phi(-t))^m_eff, as a standard-normal upper quantile. Computed on the log scale,
    so a large t keeps its order instead of saturating."""
    log_p1 = np.minimum(np.log(2.0) + stats.norm.logsf(np.asarray(t, dtype=np.float64)), np.log1p(-1e-12))
    with np.errstate(divide="ignore"):
        exact = np.log(-np.expm1(m_eff * np.log1p(-np.exp(log_p1))))
    log_p = np.where(log_p1 < -30, np.log(m_eff) + log_p1, exact)  # m p1 where p1 is tiny
    return -_norm_ppf_log(np.minimum(log_p, np.log1p(-1e-12)))


def _norm_ppf_log(log_p: np.ndarray) -> np.ndarray:
    """Standard-normal quantile of exp(log_p), also for log_p below what exp can hold (tail expansion)."""
    log_p = np.asarray(log_p, dtype=np.float64)
    out = np.empty_like(log_p)
    small = log_p < -700
    out[~small] = stats.norm.ppf(np.exp(log_p[~small]))
    x = np.sqrt(-2.0 * log_p[small])
    out[small] = -(x - (np.log(x * x) + np.log(2 * np.pi)) / (2 * x))
    return out
