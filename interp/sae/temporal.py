"""Temporal SAE (T-SAE; Bhalla et al. 2025): a contrastive loss that pulls the activations of the
dictionary's first `temporal_fraction` features ("high-level" features) together on adjacent tokens of
one window and apart across windows, so a feature can stand for a span (a motif instance, an island)
rather than for one offset inside it. Pairs are `temporal_gap` tokens apart (1: adjacent, as in T-SAE).
With Matryoshka prefixes these features are also the first prefix, so they must reconstruct on their own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def adjacent_pair_starts(window_index: np.ndarray, keep: np.ndarray, gap: int = 1) -> np.ndarray:
    """int64 [p] rows i such that rows i and i + gap are tokens of one window, both kept, and i's
    offset from its window's first row in this block of rows is in the first half of a run of
    2 * gap (offset mod 2 gap < gap), so the pairs do not overlap and each token is in at most one.

    window_index: [m] window of each row (rows of a window are contiguous, in base order);
    keep: bool [m] rows eligible (e.g. in the training split).
    """
    m = window_index.shape[0]
    if m <= gap:
        return np.zeros(0, dtype=np.int64)
    new_window = np.r_[True, window_index[1:] != window_index[:-1]]
    first_row = np.maximum.accumulate(np.where(new_window, np.arange(m), 0))
    offset = np.arange(m) - first_row
    start = np.zeros(m, dtype=bool)
    start[:-gap] = (keep[:-gap] & keep[gap:] & (window_index[:-gap] == window_index[gap:])
                    & (offset[:-gap] % (2 * gap) < gap))
    return np.flatnonzero(start)


def temporal_contrastive_loss(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE on cosine similarity: first [B, H] and second [B, H] are the high-level
    feature activations of B adjacent-token pairs; row b of `second` is the positive of row b of
    `first`, the other B - 1 rows are its negatives. Rows of zeros have cosine 0 with everything."""
    a = F.normalize(first, dim=1, eps=1e-8)
    b = F.normalize(second, dim=1, eps=1e-8)
    logits = a @ b.T / temperature
    target = torch.arange(first.shape[0], device=first.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
