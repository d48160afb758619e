"""Cost of the audit's variant-direction scan (`interp.variant_scan`): the audit of one phenotype with the
region's genotypes against the same audit without them (the probe statistic alone), in this process, one
thread, in CPU seconds (other load on the machine does not enter), for growing numbers of region variants V
(the scan keeps `audit.max_scan_variants`, 100, of them).

Run: `OMP_NUM_THREADS=1 python benchmarks/audit_variant_scan_cost.py [n] [d]` (defaults 1000, 128). The
cohort is `bench_audit.cohort`'s with V region variants (one causal, OR 2); the phenotype PASSes, so the
within test runs to the maximum null replicates of a 3-verdict run (239). Prints seconds for both, the
ratio, the scan's variants kept and their effective number, and peak RSS. Nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from bench_audit import cohort
from sae_stream_memory import peak_rss_mib

from interp.audit import AuditConfig, audit_phenotype, null_replicates_needed


def region(n: int, n_variants: int, g: np.ndarray, seed: int = 1) -> np.ndarray:
    """[n, n_variants] dosages: the causal one first, the rest at frequencies 0.05-0.5 with some LD to it."""
    rng = np.random.default_rng(seed)
    D = rng.binomial(2, rng.uniform(0.05, 0.5, n_variants), size=(n, n_variants)).astype(np.float32)
    D[:, 0] = g
    copy = rng.random((n, n_variants)) < 0.2  # partial LD with the causal variant
    D[:, 1:] = np.where(copy[:, 1:], g[:, None], D[:, 1:])
    return D


def main(n: int = 1000, d: int = 128) -> None:
    X, population, pcs, phenotypes, g = cohort(n, d, with_genotype=True)
    g = g.astype(np.float32)
    cfg = AuditConfig()
    b = null_replicates_needed(3, cfg.alpha, cfg.max_null_replicates)
    y = phenotypes["causal"]
    t = time.process_time()
    base = audit_phenotype(X, y, population, pcs, cfg, max_null_replicates=b)
    base_s = time.process_time() - t
    print(f"n={n} d={d} B_max={b}: probe alone {base_s:.2f} s (p_within {base['p_within']:.3g}, "
          f"{base['n_null_replicates']} replicates)")
    for n_variants in (10, 100, 1000, 5000):
        D = region(n, n_variants, g)
        ids = [f"v{j}" for j in range(n_variants)]
        t = time.process_time()
        r = audit_phenotype(X, y, population, pcs, cfg, max_null_replicates=b, variant_dosage=D, variant_ids=ids)
        s = time.process_time() - t
        print(f"V={n_variants}: with the scan {s:.2f} s, ratio {s / base_s:.2f}; kept {r['variant_scan_n_variants']}, "
              f"m_eff {r['variant_scan_m_eff']:.1f}, top {r['variant_scan_variant']}, p_within {r['p_within']:.3g} "
              f"({r['n_null_replicates']} replicates)")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
