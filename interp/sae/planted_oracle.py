"""The ceiling of the planted match table: what a detector that knows the planted motifs can reach.

For a planted motif type, the Bayes-ideal scanner scores every start position i of the synthetic
contig with the log-likelihood ratio of "a motif instance starts here" against the background the
genome was drawn from (`interp.sae.planted_genome`):

    LLR(i) = sum_j log f[b_(i+j), j] - sum_j log P_bg(b_(i+j) | previous `order` bases),

on both strands (the reverse-complement matrix f[::-1, ::-1], A/C/G/T coded 0..3), taking the
larger. The bases covered by starts with LLR above a threshold are called "inside the motif"; the
threshold is the one of best per-base F1 on the validation blocks, and per-base precision, recall,
F1 (and the instance-level recall and F1 of `interp.sae.planted.instance_scores`) are reported on
the test blocks, the bases the SAE features are scored on (those some window lying wholly in the split
covers: `interp.sae.planted.base_split(..., tokens=True)`; each once here, where the SAE's tokens of two
overlapping windows count a base twice). Because every instance is drawn
from the motif's frequency matrix, some instances look like background and some background looks
like an instance: this F1 is the most any per-base detector (an SAE feature included) can reach.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from interp.lm.markov import encode_acgt
from interp.sae.splits import TEST, VALIDATION

ORACLE_COLUMNS = ["concept", "oracle_threshold", "oracle_validation_f1", "oracle_precision", "oracle_recall",
                  "oracle_f1", "oracle_instance_recall", "oracle_instance_f1"]


def background_logprob(codes: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """float64 [n]: log P(base i | previous k bases) under the order-k chain `transition` [4**k, 4]
    (the first k bases and any base after an N within k: log of the chain's mean base frequency; N: 0)."""
    order = int(round(np.log(transition.shape[0]) / np.log(4)))
    n = codes.size
    marginal = np.log(transition.mean(axis=0) / transition.mean(axis=0).sum())
    out = np.where(codes >= 0, marginal[np.maximum(codes, 0)], 0.0)
    if n <= order:
        return out
    ctx = np.zeros(n - order, dtype=np.int64)
    ok = codes[order:] >= 0
    for j in range(order):
        part = codes[j:n - order + j]
        ctx = ctx * 4 + np.maximum(part, 0)
        ok &= part >= 0
    lp = np.log(transition)[ctx, np.maximum(codes[order:], 0)]
    out[order:] = np.where(ok, lp, out[order:])
    return out


def motif_llr(codes: np.ndarray, freq: np.ndarray, bg_logprob: np.ndarray) -> np.ndarray:
    """float64 [n - w + 1]: LLR of an instance of `freq` [4, w] starting at each position, the larger of
    the two strands, against the background log-probabilities [n] (windows holding an N: -inf)."""
    w = freq.shape[1]
    n = codes.size
    m = n - w + 1
    if m <= 0:
        return np.zeros(0)
    logf = np.log(freq)
    logr = np.log(freq[::-1, ::-1])
    fwd = np.zeros(m)
    rev = np.zeros(m)
    bad = np.zeros(m, dtype=bool)
    for j in range(w):
        c = codes[j:j + m]
        fwd += logf[np.maximum(c, 0), j]
        rev += logr[np.maximum(c, 0), j]
        bad |= c < 0
    cum = np.concatenate([[0.0], np.cumsum(bg_logprob)])
    bg = cum[w:w + m] - cum[:m]
    return np.where(bad, -np.inf, np.maximum(fwd, rev) - bg)


def covered(starts: np.ndarray, width: int, n: int) -> np.ndarray:
    """bool [n]: the bases of [i, i + width) for every start i where `starts` (bool [n - width + 1]) holds."""
    diff = np.zeros(n + 1, dtype=np.int64)
    idx = np.flatnonzero(starts)
    np.add.at(diff, idx, 1)
    np.add.at(diff, idx + width, -1)
    return np.cumsum(diff[:-1]) > 0


def _f1(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) per base; NaN where undefined: precision with nothing called, recall and F1
    with no motif base in the split (F1 is 0 when there are motif bases and nothing is called)."""
    tp = float((pred & truth).sum())
    fired, pos = float(pred.sum()), float(truth.sum())
    precision = tp / fired if fired else float("nan")
    recall = tp / pos if pos else float("nan")
    f1 = 2 * tp / (fired + pos) if pos else float("nan")
    return precision, recall, f1


def oracle_table(sequence: str, elements: pl.DataFrame, transition: np.ndarray, freqs: dict[str, np.ndarray],
                 split_code: np.ndarray, n_thresholds: int = 200) -> pl.DataFrame:
    """One row per motif type (`motif_<NAME>` for each NAME of `freqs`): the PWM oracle's per-base test F1.

    sequence: the planted contig; elements: its planted BED (contig, start, end, name); transition:
    the background chain [4**k, 4]; freqs: NAME -> [4, w] motif frequencies; split_code: int8 [n] the
    split of each base (TRAIN / VALIDATION / TEST, -1 outside every window). The threshold is chosen
    among `n_thresholds` evenly spaced LLR levels from 0 to the validation maximum (best validation
    per-base F1; ties: the lowest). Instance recall: share of the test instances (wholly in test
    blocks) holding at least one called base; instance F1: its harmonic mean with per-base precision.
    Undefined statistics are NaN (`_f1`; no test instance: instance recall and F1), never 0.
    """
    codes = encode_acgt(sequence.upper())
    n = codes.size
    bg = background_logprob(codes, transition)
    rows = []
    for name, freq in freqs.items():
        concept = f"motif_{name}"
        w = freq.shape[1]
        llr = motif_llr(codes, freq, bg)
        truth = np.zeros(n, dtype=bool)
        sub = elements.filter(pl.col("name") == concept).select("start", "end").to_numpy()
        for s, e in sub:
            truth[s:e] = True
        val, test = split_code == VALIDATION, split_code == TEST
        # the grid's top from starts that call a validation base, so test bases cannot move the threshold
        starts = np.arange(llr.size)
        cum = np.concatenate([[0], np.cumsum(val)])
        graded = llr[np.isfinite(llr) & (cum[np.minimum(starts + w, n)] > cum[np.minimum(starts, n)])]
        top = float(graded.max()) if graded.size else 0.0
        levels = np.linspace(0.0, max(top, 1e-9), n_thresholds, endpoint=False)
        val_f1 = np.array([_f1(covered(llr > t, w, n)[val], truth[val])[2] for t in levels])
        best = int(np.nan_to_num(val_f1, nan=-1.0).argmax())  # no motif base in validation: the lowest level
        call = covered(llr > levels[best], w, n)
        precision, recall, f1 = _f1(call[test], truth[test])
        inst = [bool(call[s:e].any()) for s, e in sub if test[s:e].all()]
        # undefined (NaN) without a test instance, and where the per-base precision is
        inst_recall = float(np.mean(inst)) if inst else float("nan")
        inst_f1 = (2 * precision * inst_recall / (precision + inst_recall) if precision + inst_recall > 0
                   else float("nan") if np.isnan(precision + inst_recall) else 0.0)
        rows.append({"concept": concept, "oracle_threshold": float(levels[best]),
                     "oracle_validation_f1": float(val_f1[best]), "oracle_precision": precision,
                     "oracle_recall": recall, "oracle_f1": f1, "oracle_instance_recall": inst_recall,
                     "oracle_instance_f1": inst_f1})
    return pl.DataFrame(rows, schema={c: (pl.String if c == "concept" else pl.Float64) for c in ORACLE_COLUMNS})
