"""CPU cost of the label test's circular-shift null (`interp.sae.shift_null.ShiftNull.add`, the third pass of
`interp.sae.concepts.feature_table`, test tokens only) against the test split's threshold counts with their pairs
(`ThresholdCounts.add`, the second pass's work on the same tokens), in this process, one thread.

Run: `python benchmarks/label_shift_null_cost.py [n_shifts]` (default 199). Each case adds one read of codes
three times (random levels; the SAE's sparse codes: k active features per token; the neurons' dense read-out) with
10 concepts (runs of about 100 bases covering 10% of a circle of 200,000 bases), each unit's candidate one of
them at a random threshold level of 32, and prints seconds per read for both and their ratio. Nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from concept_pairs_cost import CASES, random_codes  # the same reads as the pair counts' benchmark

from interp.sae.concepts import ThresholdCounts
from interp.sae.shift_null import ShiftNull

CIRCLE = 200_000


def _seconds(add, repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        add()
    return (time.perf_counter() - start) / repeats


def main(n_shifts: int) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    values = np.zeros((CIRCLE, 10), dtype=bool)
    for c in range(10):
        for start in rng.integers(0, CIRCLE - 100, CIRCLE // 1000):
            values[start:start + 100, c] = True
    for units, rows, active in CASES:
        scores = random_codes(rng, units, rows, active)
        position = np.sort(rng.integers(0, CIRCLE, rows))
        span = np.ones(rows, dtype=np.int64)
        concepts = values[position]
        counts = ThresholdCounts(np.ones(units), 10, 32, pairs=True)
        follows = np.r_[True, np.ones(rows - 1, dtype=bool)]
        null = ShiftNull.build(rng.integers(0, 10, units), rng.integers(0, 8, units), np.ones(units), 32, values,
                               n_shifts, 0)
        base = _seconds(lambda: counts.add(scores, concepts, follows))  # noqa: B023
        shifted = _seconds(lambda: null.add(scores, position, span))  # noqa: B023
        kind = "dense" if active is None else f"sparse, {active} active"
        print(f"{units} units x {rows} rows ({kind}): counts with pairs {base:.2f} s, shift null ({n_shifts} shifts) "
              f"{shifted:.2f} s ({shifted / base:.2f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 199)
