"""Time per tested column: the vectorised score test with saddle-point tail (interp.rank.association)
versus one statsmodels logistic fit per column with a likelihood-ratio test (the per-variant approach the
rank stage used before).

Run: `python benchmarks/bench_rank_score.py [n] [m]`. Prints the seconds per column of each and their
ratio, measured in this run; nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import statsmodels.api as sm

from interp.rank import association, null_model


def main(n: int = 1000, m: int = 20_000, m_logit: int = 100) -> None:
    rng = np.random.default_rng(0)
    cov = np.column_stack([rng.normal(size=(n, 3)), rng.integers(0, 3, size=n) == 1]).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.4 + 0.5 * cov[:, 0])))).astype(float)
    x = np.zeros((n, m))
    carriers = rng.integers(10, 60, size=m)
    for j in range(m):
        x[rng.choice(n, size=carriers[j], replace=False), j] = rng.normal()
    start = time.perf_counter()
    association(x, null_model(y, cov, binary=True))
    score = (time.perf_counter() - start) / m
    start = time.perf_counter()
    null = sm.Logit(y, sm.add_constant(cov)).fit(disp=0)
    for j in range(m_logit):
        sm.Logit(y, sm.add_constant(np.column_stack([x[:, j], cov]))).fit(disp=0).llf - null.llf
    logit = (time.perf_counter() - start) / m_logit
    print(f"n={n}: score+SPA {score * 1e6:.1f} us/column ({m} columns), statsmodels Logit + LR "
          f"{logit * 1e6:.0f} us/column ({m_logit} columns); ratio {logit / score:.0f}x")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
