"""CPU time of `interp.rank_inputs.annotate_loci` (genes, exon flag, nearby variants and holding window of every
ranked locus) at n and 4n variants, and the ratio.

Run: `python benchmarks/annotate_loci_scale.py [n_variants]` (default 20,000). One contig, a model window per
500 bases (n / 5 windows), a gene row of 15 kb and an exon of 200 bases every 20 kb; every variant and window is
a ranked locus. Cost should follow the loci (ratio about 4); nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import polars as pl

from interp.rank_inputs import annotate_loci


def inputs(n_var: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_win = n_var // 5
    length = n_win * 500
    v_pos0 = np.sort(rng.choice(length, n_var, replace=False)).astype(np.int64)
    v_contig = np.array(["chr1"] * n_var, dtype=object)
    v_ids = np.array([f"chr1:{p + 1}:A:C" for p in v_pos0], dtype=object)
    w = np.arange(n_win) * 500
    t = pl.concat([
        pl.DataFrame({"kind": "variant", "contig": "chr1", "start": v_pos0, "end": v_pos0 + 1}),
        pl.DataFrame({"kind": "embedding", "contig": "chr1", "start": w, "end": w + 500}),
    ])
    genes = np.arange(0, length, 20000)
    annotation = pl.DataFrame({"contig": "chr1", "start": np.concatenate([genes, genes + 100]),
                               "end": np.concatenate([genes + 15000, genes + 300]),
                               "feature": ["gene"] * genes.size + ["exon"] * genes.size,
                               "gene": [f"g{i}" for i in range(genes.size)] * 2})
    return t, annotation, v_contig, v_pos0, v_ids


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    seconds = []
    for n_var in (n, 4 * n):
        args = inputs(n_var)
        started = time.process_time()
        annotate_loci(*args)
        seconds.append(time.process_time() - started)
        print(f"{n_var:>7} variants, {n_var // 5:>6} windows: {seconds[-1]:.2f} s CPU")
    print(f"4x / 1x: {seconds[1] / max(seconds[0], 1e-9):.2f}")


if __name__ == "__main__":
    main()
