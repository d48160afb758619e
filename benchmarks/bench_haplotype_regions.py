"""Time per region of `haplotype_sequences` in a job of many regions: with one `RecordIndex` of the job's
records shared by its regions (what `cohort_haplotype_windows` does since the thirty-fifth session) versus an
index built for each region, which costs a pass over every record of the job as the search before it did
(regions x records in all).

Run: `python benchmarks/bench_haplotype_regions.py [regions ...]` (default 50 200 800 regions, 100 SNVs each,
2 samples). Prints milliseconds per region of each and their ratio, measured in this run; nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from interp.cohort.haplotypes import RecordIndex, haplotype_sequences
from interp.cohort.vcf import Genotypes
from interp.genome.regions import Region

COMPLEMENT = {"A": "C", "C": "G", "G": "T", "T": "A"}


def synthetic_job(n_regions: int, per_region: int = 100, width: int = 1000, seed: int = 0):
    """A contig of n_regions regions of `width` bases, `per_region` SNVs in each, 2 phased samples."""
    rng = np.random.default_rng(seed)
    contig = "".join(rng.choice(list("ACGT"), n_regions * width))
    regions = [Region(f"r{i}", "c", i * width, (i + 1) * width) for i in range(n_regions)]
    pos0 = np.sort(np.concatenate([i * width + rng.choice(width, per_region, replace=False)
                                   for i in range(n_regions)]))
    n = pos0.size
    genotypes = Genotypes(samples=["s1", "s2"], contig=np.array(["c"] * n, dtype=object), pos=pos0 + 1,
                          ref=[contig[p] for p in pos0], alt=[COMPLEMENT[contig[p]] for p in pos0],
                          gt=rng.integers(0, 2, (n, 2, 2)).astype(np.int8), phased=np.ones((n, 2), dtype=bool))
    return {"c": contig}, genotypes, regions


def main(sizes: list[int]) -> None:
    for n_regions in sizes:
        reference, genotypes, regions = synthetic_job(n_regions)
        start = time.perf_counter()
        index = RecordIndex(genotypes)
        for region in regions:
            haplotype_sequences(reference, genotypes, region, index=index)
        shared = (time.perf_counter() - start) / n_regions
        start = time.perf_counter()
        for region in regions:
            haplotype_sequences(reference, genotypes, region)
        each = (time.perf_counter() - start) / n_regions
        print(f"{n_regions} regions, {genotypes.n_variants} records: shared index {shared * 1e3:.2f} ms/region, "
              f"an index per region {each * 1e3:.2f} ms/region; ratio {each / shared:.1f}x")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 200, 800])
