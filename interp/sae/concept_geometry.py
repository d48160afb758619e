"""Is a concept one direction in the activations, or a subspace? A baseline beside the SAE's labels.

An SAE latent writes one decoder direction, so the best it can do for a concept is what one direction
does. Some concepts are multi-dimensional (Engels et al. 2024): a motif type, for instance, may be held as
one direction per offset and strand, so that the tokens of the type share a subspace but no direction.
Then no single latent marks every base of the type, whatever the dictionary, while a linear probe (a
signed read-out of many dimensions) still separates it. Both read-outs below are fitted on the training
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


def best_threshold_f1(score_val: np.ndarray, y_val: np.ndarray, score_test: np.ndarray, y_test: np.ndarray,
                      n_levels: int = 201) -> tuple[float, float]:
    """(validation F1, test F1) of "score >= t", t chosen among validation-score quantiles for the best
    validation F1. score_* [m] float, y_* [m] bool."""
    levels = np.unique(np.quantile(score_val, np.linspace(0.0, 1.0, n_levels)))
    fire = score_val[None, :] >= levels[:, None]  # [L, m]
    f1_val = 2 * (fire & y_val[None, :]).sum(1) / (fire.sum(1) + y_val.sum())
    best = int(np.argmax(f1_val))
    fire_test = score_test >= levels[best]
    f1_test = 2 * float((fire_test & y_test).sum()) / max(float(fire_test.sum() + y_test.sum()), 1.0)
    return float(f1_val[best]), f1_test


def concept_geometry(samples: dict[int, tuple[list, list]], names: list[str], min_f1: float = 0.8,
                     dims: tuple[int, ...] = SUBSPACE_DIMS) -> list[dict]:
    """Per concept: {concept, direction_f1, subspace{g}_f1 for g in dims, subspace_dim}; None where a split
    has no token of the concept (or the training sample has fewer than max(dims) of them)."""
    data = {code: (np.concatenate(xs).astype(np.float64), np.concatenate(ys)) if xs else (None, None)
            for code, (xs, ys) in samples.items()}
    x_tr, c_tr = data[TRAIN]
    empty = {"direction_f1": None, **{f"subspace{g}_f1": None for g in dims}, "subspace_dim": None}
    if x_tr is None or data[VALIDATION][0] is None or data[TEST][0] is None:
        return [{"concept": name, **empty} for name in names]
    mean, sd = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    z = {code: ((x - mean) / sd, c) for code, (x, c) in data.items()}
    z_tr = z[TRAIN][0]
    background = ~c_tr.any(axis=1)
    centre = z_tr[background].mean(axis=0) if background.any() else np.zeros(z_tr.shape[1])
    norm2 = {code: ((zz - centre) ** 2).sum(axis=1) + 1e-12 for code, (zz, _) in z.items()}
    out = []
    for j, name in enumerate(names):
        y = {code: c[:, j] for code, (_, c) in z.items()}
        row = {"concept": name, **empty}
        if y[TRAIN].sum() < max(dims) or not y[VALIDATION].any() or not y[TEST].any() or y[TRAIN].all():
            out.append(row)
            continue
        direction = z_tr[y[TRAIN]].mean(axis=0) - z_tr[~y[TRAIN]].mean(axis=0)
        proj = {code: zz @ direction for code, (zz, _) in z.items()}
        row["direction_f1"] = best_threshold_f1(proj[VALIDATION], y[VALIDATION], proj[TEST], y[TEST])[1]
        _, _, vt = np.linalg.svd(z_tr[y[TRAIN]] - centre, full_matrices=False)
        for g in dims:
            share = {code: (((zz - centre) @ vt[:g].T) ** 2).sum(axis=1) / norm2[code] for code, (zz, _) in z.items()}
            f1_val, f1_test = best_threshold_f1(share[VALIDATION], y[VALIDATION], share[TEST], y[TEST])
            row[f"subspace{g}_f1"] = f1_test
            if row["subspace_dim"] is None and f1_val >= min_f1:
                row["subspace_dim"] = g
        out.append(row)
    return out
