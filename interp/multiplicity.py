"""Multiplicity corrections shared by the audit (verdicts) and rank (feature families).

Both return adjusted p-values in the input order; NaN p-values stay NaN and are not counted in m.
Checked against statsmodels' `multipletests` in tests/test_audit.py and tests/test_rank.py.
"""

from __future__ import annotations

import numpy as np


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values [m] (family-wise error control)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values [m] (false discovery rate): q_(i) = min over j >= i of p_(j) m / j."""
    p = np.asarray(p, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    q = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(q[::-1])[::-1], 1.0)
    return out
