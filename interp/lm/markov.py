"""Order-k Markov chain baselines for per-base cross-entropy (nats).

A left-context Markov chain of order k predicts base i from bases i-k..i-1. Counts come
from training sequences; add-pseudocount smoothing keeps every probability positive.
Where the full context is unavailable (the sequence start, or an N among the previous k
bases) the prediction backs off to the longest clean context that is available.
"""

from __future__ import annotations

import numpy as np

from interp.ratio_se import cluster_se

_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate("ACGT"):
    _CODE[ord(_b)] = _i
    _CODE[ord(_b.lower())] = _i


def encode_acgt(seq: str) -> np.ndarray:
    """int64 [L]: A,C,G,T (any case) -> 0..3, anything else -> -1."""
    return _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def clean_run_before(codes: np.ndarray) -> np.ndarray:
    """int64 [L]: number of consecutive ACGT bases immediately before each position."""
    run = np.zeros(len(codes), dtype=np.int64)
    count = 0
    for i, c in enumerate(codes):
        run[i] = count
        count = count + 1 if c >= 0 else 0
    return run


def context_index(codes: np.ndarray, positions: np.ndarray, order: int) -> np.ndarray:
    """int64 [m]: base-4 number of the `order` bases before each position (all must be ACGT)."""
    index = np.zeros(len(positions), dtype=np.int64)
    for back in range(order, 0, -1):
        index = index * 4 + codes[positions - back]
    return index


def count_contexts(train_seqs: list[str], order: int) -> list[np.ndarray]:
    """Counts per order j = 0..order: float64 [4**j, 4] of (context, next base) over training bases."""
    counts = [np.zeros((4**j, 4), dtype=np.float64) for j in range(order + 1)]
    for seq in train_seqs:
        codes = encode_acgt(seq)
        run = clean_run_before(codes)
        for j in range(order + 1):
            pos = np.flatnonzero((codes >= 0) & (run >= j))
            np.add.at(counts[j], (context_index(codes, pos, j), codes[pos]), 1.0)
    return counts


def markov_base_losses(train_seqs: list[str], test_seqs: list[str], order: int,
                       pseudocount: float = 1.0) -> np.ndarray:
    """Per-base cross-entropy (nats) [n] of an order-`order` Markov chain on the test ACGT bases, in sequence
    order then position order (N and other letters are skipped and break contexts)."""
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    if pseudocount <= 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    counts = count_contexts(train_seqs, order)
    log_probs = [np.log((c + pseudocount) / (c.sum(axis=1, keepdims=True) + 4 * pseudocount))
                 for c in counts]
    out = []
    for seq in test_seqs:
        codes = encode_acgt(seq)
        run = clean_run_before(codes)
        scored = np.flatnonzero(codes >= 0)
        used_order = np.minimum(run[scored], order)
        losses = np.empty(len(scored), dtype=np.float64)
        for j in range(order + 1):
            sel = used_order == j
            pos = scored[sel]
            losses[sel] = -log_probs[j][context_index(codes, pos, j), codes[pos]]
        out.append(losses)
    return np.concatenate(out) if out else np.zeros(0)


def markov_cross_entropy(train_seqs: list[str], test_seqs: list[str], order: int,
                         pseudocount: float = 1.0) -> tuple[float, int]:
    """Mean per-base cross-entropy (nats) of an order-`order` Markov chain on the test ACGT bases.

    Returns (cross-entropy, number of bases scored). Every A/C/G/T of `test_seqs` is scored
    once; N and other letters are skipped and break contexts (`markov_base_losses`).
    """
    losses = markov_base_losses(train_seqs, test_seqs, order, pseudocount)
    if losses.size == 0:
        raise ValueError("no A/C/G/T bases to score in the test sequences")
    return float(losses.mean()), int(losses.size)


def block_mean_interval(differences: np.ndarray, lengths: list[int], block: int = 1000,
                        confidence: float = 0.95) -> dict:
    """Interval of the mean of per-base differences [n] (e.g. LM - Markov loss, nats) from blocks of consecutive
    bases (batch means): the bases of each sequence (`lengths` [n_seqs] scored bases, in order, summing to n)
    cut into blocks of `block` bases (the last of a sequence shorter); the mean is the ratio sum / bases, its
    standard error the between-block (cluster-robust) one, the interval a t with blocks - 1 degrees of freedom.
    Neighbouring bases' losses are correlated (a motif, a repeat): treating bases as independent would make
    the interval far too narrow; blocks much longer than that correlation are nearly independent. On AR(1)
    series of 8,000 bases in blocks of 500, 1,000 replicates each: coverage 95.6% (correlation length 10
    bases), 95.3% (20), 93.4% (100), 88.6% (200); 94.7% with 6 blocks (`tests/test_lm.py` checks the first
    two at 400 replicates); a percentile bootstrap of the same blocks covered 92.5% (20) and 90% (100).
    Returns {mean, low, high, n_blocks, block}; low/high NaN with fewer than 2 blocks.
    """
    from scipy.stats import t as student_t

    d = np.asarray(differences, dtype=np.float64)
    if sum(lengths) != d.size:
        raise ValueError(f"lengths sum to {sum(lengths)} but there are {d.size} differences")
    starts, cursor = [], 0
    for n in lengths:
        starts += list(range(cursor, cursor + n, block))
        cursor += n
    out = {"mean": float(d.mean()) if d.size else float("nan"), "low": float("nan"), "high": float("nan"),
           "n_blocks": len(starts), "block": int(block)}
    if len(starts) < 2:
        return out
    # the block starts of every sequence, so a block never spans two sequences (a sequence's last block may
    # be short)
    sums = np.add.reduceat(d, starts)
    sizes = np.diff(np.append(starts, d.size)).astype(np.float64)
    se = cluster_se(sums, sizes)
    half = float(student_t.ppf(0.5 + confidence / 2, sums.size - 1)) * se
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out
