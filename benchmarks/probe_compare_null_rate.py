"""How often the SAE-vs-raw probe comparison calls a winner on a null label (its false-call rate).

Rows in correlated runs of 10 sharing the label and a latent, as neighbouring windows are, with 5 contiguous
block folds (`tests/test_probe_compare.py::null_in_runs`); both arms tuned over the default C grid, k 1 and 8.
Prints, per k, the calls over the seeds and their Clopper-Pearson 95% interval, against the nominal 5%.

    python benchmarks/probe_compare_null_rate.py [first_seed] [last_seed_exclusive]   # default 0 1000, ~10 min
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.probe import ProbeConfig  # noqa: E402
from interp.sae.probe_compare import compare_probes  # noqa: E402
from tests.test_probe_compare import null_in_runs  # noqa: E402


def main() -> None:
    first = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    last = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    cfg = ProbeConfig(C=1.0, max_iter=100, seed=0)
    calls = {1: 0, 8: 0}
    start = time.perf_counter()
    for seed in range(first, last):
        X, F, y, folds = null_in_runs(seed)
        summary = compare_probes(X, F, y, folds, top_k=list(calls), cfg=cfg, n_bootstrap=0, seed=seed).summary
        for k, winner in zip(summary["k"], summary["winner"], strict=True):
            calls[k] += winner != "tie"
    n = last - first
    for k, c in calls.items():
        low = beta.ppf(0.025, c, n - c + 1) if c else 0.0
        high = beta.ppf(0.975, c + 1, n - c) if c < n else 1.0
        print(f"k {k}: a winner called in {c} of {n} null seeds ({c / n:.1%}, 95% CI {low:.1%}-{high:.1%}; "
              "nominal 5%)")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
