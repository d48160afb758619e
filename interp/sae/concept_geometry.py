"""Is a concept one direction in the activations, or a subspace? A baseline beside the SAE's labels.

An SAE latent writes one decoder direction back into the activations. Some concepts are
multi-dimensional (Engels et al. 2024): a motif type, for instance, may be held as one direction per
offset and strand, so that its tokens share a subspace but little of any one direction. A linear probe
still reads it (one direction w, a signed sum of the offset directions), but writing w back reconstructs
little of any one token, so a dictionary trained to reconstruct has little reason to learn a latent that
fires on all of them. The read-outs below describe that geometry; they are not bounds on what a latent
can score. Both are fitted on the training
sample with the concept's labels (supervised, like the probe); thresholds are chosen for F1 on the
validation sample and F1 is reported on the test sample:

- `direction_f1`: the projection on the concept's mean difference (concept tokens minus the others,
  standardised activations), the one direction the concept's tokens share;
- `subspace{g}_f1`: the share of a token's squared norm (around the mean of the tokens of no concept)
  that lies in the top-g principal subspace of the concept's training tokens (around the same mean), for
  g in `SUBSPACE_DIMS`; `subspace_dim`: the smallest such g whose validation F1 reaches `min_f1`.

Shapes: samples {split code: ([m_i, d] activation blocks, [m_i, C] bool concept blocks)}.
"""

from __future__ import annotations

import numpy as np

from interp.sae.splits import TEST, TRAIN, VALIDATION

#: subspace dimensions tried
SUBSPACE_DIMS = (2, 4, 8, 16, 32)
#: above this many values (concept tokens x width) the principal directions come from a randomized SVD
EXACT_SVD_VALUES = 20_000_000
#: concept tokens used for its principal directions (evenly spaced over the training sample)
MAX_SVD_ROWS = 20_000


def best_threshold(score_val: np.ndarray, y_val: np.ndarray, n_levels: int = 201) -> tuple[float, float]:
    """(threshold t, validation F1) of "score >= t", t the validation-score quantile (of n_levels evenly
    spaced) with the best validation F1 (the first on ties). score_val [m] float, y_val [m] bool. Shared by
    the probe baseline (`interp.sae.concepts.probe_baseline`) and the read-outs here."""
    levels = np.unique(np.quantile(score_val, np.linspace(0.0, 1.0, n_levels)))
    f1_val = np.array([2 * (y_val & (score_val >= t)).sum() / ((score_val >= t).sum() + y_val.sum()) for t in levels])
    best = int(np.argmax(f1_val))
    return float(levels[best]), float(f1_val[best])


def best_threshold_f1(score_val: np.ndarray, y_val: np.ndarray, score_test: np.ndarray, y_test: np.ndarray,
                      n_levels: int = 201) -> tuple[float, float]:
    """(validation F1, test F1) of "score >= t", t chosen by `best_threshold` on validation.
    score_* [m] float, y_* [m] bool."""
    t, f1_val = best_threshold(score_val, y_val, n_levels)
    fire_test = score_test >= t
    f1_test = 2 * float((fire_test & y_test).sum()) / max(float(fire_test.sum() + y_test.sum()), 1.0)
    return f1_val, f1_test


def _chunked_moments(x: np.ndarray, rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation [d] of x [m, d] in float64, without a float64 copy of x."""
    total = np.zeros(x.shape[1])
    for s in range(0, x.shape[0], rows):
        total += x[s:s + rows].sum(axis=0, dtype=np.float64)
    mean = total / x.shape[0]
    squares = np.zeros(x.shape[1])
    for s in range(0, x.shape[0], rows):
        squares += ((x[s:s + rows] - mean) ** 2).sum(axis=0)
    return mean, np.sqrt(squares / x.shape[0])


def _top_directions(m: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Top-k right singular vectors [k, d] of m [n, d]: exact for small inputs, randomized (fixed seed) for
    large ones, so a wide model's concept of 10^5 tokens costs O(n d k), not O(n d^2)."""
    if m.shape[0] * m.shape[1] <= EXACT_SVD_VALUES:
        return np.linalg.svd(m, full_matrices=False)[2][:k]
    from sklearn.utils.extmath import randomized_svd

    return randomized_svd(m, n_components=k, n_oversamples=16, random_state=seed)[2]


def concept_geometry(samples: dict[int, tuple[list, list]], names: list[str], min_f1: float = 0.8,
                     dims: tuple[int, ...] = SUBSPACE_DIMS, seed: int = 0) -> list[dict]:
    """Per concept: {concept, direction_f1, subspace{g}_f1 for g in dims, subspace_dim}; None where a split
    has no token of the concept (or the training sample has fewer than max(dims) of them), and for every g
    not below the activations' width d (narrow models).

    Memory: the training sample is read in place (float64 copies of at most MAX_SVD_ROWS of one concept's
    tokens, and 8,192-row blocks); the validation and test samples are standardised once.
    """
    data = {code: (np.concatenate(xs), np.concatenate(ys)) if xs else (None, None) for code, (xs, ys) in samples.items()}
    x_tr, c_tr = data[TRAIN]
    empty = {"direction_f1": None, **{f"subspace{g}_f1": None for g in dims}, "subspace_dim": None}
    if x_tr is None or data[VALIDATION][0] is None or data[TEST][0] is None:
        return [{"concept": name, **empty} for name in names]
    mean, sd = _chunked_moments(x_tr)
    sd = sd + 1e-8
    # a subspace as wide as the activations holds all of every token: only g below the width says anything
    fitted = tuple(g for g in dims if g < x_tr.shape[1])

    def standardised(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float64) - mean) / sd

    def standardised_sum(rows: np.ndarray) -> np.ndarray:
        """Column sums of the standardised training rows `rows`, 8,192 at a time."""
        total = np.zeros(x_tr.shape[1])
        for s in range(0, rows.size, 8192):
            total += standardised(x_tr[rows[s:s + 8192]]).sum(axis=0)
        return total

    background = np.flatnonzero(~c_tr.any(axis=1))
    centre = standardised_sum(background) / background.size if background.size else np.zeros(x_tr.shape[1])
    column_sum = standardised_sum(np.arange(x_tr.shape[0]))
    held = {}
    for code in (VALIDATION, TEST):
        zc = standardised(data[code][0]) - centre  # around the background mean
        held[code] = (zc, np.einsum("ij,ij->i", zc, zc) + 1e-12, data[code][1])
    out = []
    for j, name in enumerate(names):
        y_tr = c_tr[:, j]
        row = {"concept": name, **empty}
        n_pos = int(y_tr.sum())
        if n_pos < max(fitted, default=1) or n_pos == y_tr.size or not held[VALIDATION][2][:, j].any() \
                or not held[TEST][2][:, j].any():
            out.append(row)
            continue
        pos_rows = np.flatnonzero(y_tr)
        pos_sum = standardised_sum(pos_rows)
        direction = pos_sum / n_pos - (column_sum - pos_sum) / (y_tr.size - n_pos)
        # the principal directions from at most MAX_SVD_ROWS of the concept's tokens, evenly spaced
        keep = pos_rows[np.unique(np.linspace(0, n_pos - 1, min(n_pos, MAX_SVD_ROWS)).astype(np.int64))]
        vt = _top_directions(standardised(x_tr[keep]) - centre, max(fitted, default=1), seed)
        scores = {}
        for code, (zc, norm2, c) in held.items():
            energy = np.cumsum((zc @ vt.T) ** 2, axis=1)  # [m, max(fitted)]
            # the projection on the direction is taken around the background mean: a constant shift of
            # every score, which moves no threshold
            scores[code] = (zc @ direction, energy / norm2[:, None], c[:, j])
        (d_va, s_va, y_va), (d_te, s_te, y_te) = scores[VALIDATION], scores[TEST]
        row["direction_f1"] = best_threshold_f1(d_va, y_va, d_te, y_te)[1]
        for g in fitted:
            f1_val, f1_test = best_threshold_f1(s_va[:, g - 1], y_va, s_te[:, g - 1], y_te)
            row[f"subspace{g}_f1"] = f1_test
            if row["subspace_dim"] is None and f1_val >= min_f1:
                row["subspace_dim"] = g
        out.append(row)
    return out
