"""Order-k Markov chain baselines for per-base cross-entropy (nats).

A left-context Markov chain of order k predicts base i from bases i-k..i-1. Counts come
from training sequences; add-pseudocount smoothing keeps every probability positive.
Where the full context is unavailable (the sequence start, or an N among the previous k
bases) the prediction backs off to the longest clean context that is available.
"""

from __future__ import annotations

import numpy as np

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


def markov_cross_entropy(train_seqs: list[str], test_seqs: list[str], order: int,
                         pseudocount: float = 1.0) -> tuple[float, int]:
    """Mean per-base cross-entropy (nats) of an order-`order` Markov chain on the test ACGT bases.

    Returns (cross-entropy, number of bases scored). Every A/C/G/T of `test_seqs` is scored
    once; N and other letters are skipped and break contexts.
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    if pseudocount <= 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    counts = count_contexts(train_seqs, order)
    log_probs = [np.log((c + pseudocount) / (c.sum(axis=1, keepdims=True) + 4 * pseudocount))
                 for c in counts]
    total, n = 0.0, 0
    for seq in test_seqs:
        codes = encode_acgt(seq)
        run = clean_run_before(codes)
        scored = np.flatnonzero(codes >= 0)
        used_order = np.minimum(run[scored], order)
        for j in range(order + 1):
            pos = scored[used_order == j]
            total -= float(log_probs[j][context_index(codes, pos, j), codes[pos]].sum())
        n += len(scored)
    if n == 0:
        raise ValueError("no A/C/G/T bases to score in the test sequences")
    return total / n, n
