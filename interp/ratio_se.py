"""Standard error of a pooled ratio from independent clusters (replicates, blocks of bases)."""

from __future__ import annotations

import numpy as np


def cluster_se(counts: np.ndarray, totals: np.ndarray) -> float:
    """Between-cluster standard error of the pooled ratio sum(counts) / sum(totals) (ratio estimator), for
    clusters [r] that are independent while the units inside one are not (NaN for fewer than 2 clusters or
    no total): calibration replicates' type-I counts, blocks of held-out bases' loss differences."""
    counts, totals = np.asarray(counts, float), np.asarray(totals, float)
    r = len(counts)
    if r < 2 or totals.sum() == 0:
        return float("nan")
    ratio = counts.sum() / totals.sum()
    return float(np.sqrt(r / (r - 1) * ((counts - ratio * totals) ** 2).sum()) / totals.sum())
