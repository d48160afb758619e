"""Multiplicity corrections shared by the audit (verdicts) and rank (feature families).

Both return adjusted p-values in the input order; NaN p-values stay NaN and are not counted in m.
Checked against statsmodels' `multipletests` in tests/test_audit.py and tests/test_rank.py.
"""

from __future__ import annotations

import numpy as np


def _sorted_finite(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p as float [m], an all-NaN output [m], indices of the finite p in ascending order of p)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    ok = np.flatnonzero(np.isfinite(p))
    return p, np.full(p.shape, np.nan), ok[np.argsort(p[ok], kind="stable")]


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values [m] (family-wise error control)."""
    p, out, order = _sorted_finite(p)
    m = order.size
    if m == 0:
        return out
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values [m] (false discovery rate): q_(i) = min over j >= i of p_(j) m / j."""
    p, out, order = _sorted_finite(p)
    m = order.size
    if m == 0:
        return out
    q = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(q[::-1])[::-1], 1.0)
    return out
