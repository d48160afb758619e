"""Wall time of one audit run (3 phenotypes x 1 embedding) and the cost of its parts, and the ratio of a
refitted leave-one-out ridge probe to a refitted batched L2 logistic probe (`interp.probe.fit_logistic`, 5-fold)
per null replicate, both measured in this run.

Run: `OMP_NUM_THREADS=1 python benchmarks/bench_audit.py [n] [d]` (defaults 1000, 128). Three phenotypes on
one synthetic cohort: a causal variant (PASS, runs to the maximum null replicates), an ancestry-only
phenotype (INCONCLUSIVE; its within-ancestry nulls stop early) and a null one (stops early). Nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from interp.audit import AuditConfig, RidgeProbe, assign_verdicts, audit_phenotype, null_replicates_needed
from interp.probe import ProbeConfig, fit_logistic


def cohort(n: int, d: int, seed: int = 0, with_genotype: bool = False):
    """(X, population, pcs, phenotypes), and the causal dosage g [n] with `with_genotype`."""
    rng = np.random.default_rng(seed)
    pop_idx = rng.integers(0, 3, n)
    population = np.array(["AFR", "EUR", "EAS"])[pop_idx]
    pcs = np.array([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]])[pop_idx] + rng.normal(scale=0.5, size=(n, 2))
    pcs = np.hstack([pcs, rng.normal(size=(n, 3))])
    g = rng.binomial(2, np.array([0.05, 0.3, 0.6])[pop_idx])
    X = pcs[:, :2] @ rng.normal(size=(2, d)) + np.outer(g, rng.normal(size=d)) / 3 + rng.normal(size=(n, d))
    causal = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + np.log(2.0) * g)))).astype(float)
    ancestry = (rng.random(n) < np.array([0.3, 0.12, 0.2])[pop_idx]).astype(float)
    null = (rng.random(n) < 0.3).astype(float)
    phenotypes = {"causal": causal, "ancestry": ancestry, "null": null}
    return (X, population, pcs, phenotypes, g) if with_genotype else (X, population, pcs, phenotypes)


def main(n: int = 1000, d: int = 128) -> None:
    X, population, pcs, phenotypes = cohort(n, d)
    cfg = AuditConfig()
    b = null_replicates_needed(len(phenotypes), cfg.alpha, cfg.max_null_replicates)
    t0 = time.perf_counter()
    results = []
    for name, y in phenotypes.items():
        t = time.perf_counter()
        r = audit_phenotype(X, y, population, pcs, cfg, max_null_replicates=b)
        r["phenotype"] = name
        results.append(r)
        print(f"{name}: {time.perf_counter() - t:.2f} s, null replicates {r['n_null_replicates']} (within), "
              f"{r['n_signal_replicates']} (signal)")
    assign_verdicts(results, cfg)
    total = time.perf_counter() - t0
    print(f"audit of 3 phenotypes, n={n}, d={d}, B_max={b}: {total:.2f} s wall; verdicts "
          + ", ".join(f"{r['phenotype']} {r['verdict']}" for r in results))
    y = phenotypes["causal"]
    rng = np.random.default_rng(1)
    Y = np.stack([rng.permutation(y) for _ in range(64)])
    probe = RidgeProbe.from_embeddings(X)
    t = time.perf_counter()
    probe.loo_scores(Y)
    ridge = (time.perf_counter() - t) / 64
    folds = np.arange(n) % 5
    masks = np.stack([folds != f for _ in range(8) for f in range(5)])
    t = time.perf_counter()
    fit_logistic(X, np.repeat(Y[:8], 5, axis=0), masks, ProbeConfig())
    logistic = (time.perf_counter() - t) / 8
    print(f"per null replicate: ridge LOO (9 penalties) {ridge * 1e3:.1f} ms, 5-fold L2 logistic {logistic * 1e3:.1f} ms, "
          f"ratio {logistic / ridge:.0f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
