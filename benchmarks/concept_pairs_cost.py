"""CPU cost of the label test's pair counts (`interp.sae.concepts.ThresholdCounts` with `pairs`, the design
effect's autocorrelations at `LAGS`) against the counts without them, in this process, one thread.

Run: `python benchmarks/concept_pairs_cost.py`. Each case adds one read of codes three times (random levels; the
SAE's sparse codes: k active features per token; the neurons' dense read-out) with 10 concepts and 32
threshold levels, and prints seconds per read without and with the pairs and their ratio. Only the test split's
counts carry pairs (about 15% of the tokens). Nothing is asserted.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from interp.sae.concepts import ThresholdCounts

CASES = [  # (units, rows per read (feature_table's default for that width), active per token; None: dense)
    (32768, 1024, 64), (4096, 8192, 64), (512, 16384, 16), (512, 16384, None)]


def seconds_per_add(scores: torch.Tensor, concepts: np.ndarray, pairs: bool, repeats: int = 3) -> float:
    counts = ThresholdCounts(np.ones(scores.shape[1]), concepts.shape[1], 32, pairs=pairs)
    follows = np.r_[True, np.ones(scores.shape[0] - 1, dtype=bool)]
    start = time.perf_counter()
    for _ in range(repeats):
        counts.add(scores, concepts, follows)
    return (time.perf_counter() - start) / repeats


def random_codes(rng: np.random.Generator, units: int, rows: int, active: int | None) -> torch.Tensor:
    """[rows, units] float64 codes: `active` random units per row at random levels, or all of them (None)."""
    if active is None:
        return torch.from_numpy(rng.random((rows, units)))
    scores = torch.zeros(rows, units, dtype=torch.float64)
    scores.scatter_(1, torch.from_numpy(rng.integers(0, units, (rows, active))),
                    torch.from_numpy(rng.random((rows, active))))
    return scores


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for units, rows, active in CASES:
        scores = random_codes(rng, units, rows, active)
        concepts = rng.random((rows, 10)) < 0.1
        without, with_pairs = (seconds_per_add(scores, concepts, pairs) for pairs in (False, True))
        kind = "dense" if active is None else f"sparse, {active} active"
        print(f"{units} units x {rows} rows ({kind}): {without:.2f} s without pairs, {with_pairs:.2f} s with "
              f"({with_pairs / without:.2f}x)")


if __name__ == "__main__":
    main()
