"""Peak memory of the rank stage's variant family, at two variant counts 4x apart.

The rank stage leaves genotypes.h5ad's dosages on disk (`interp.cohort.genotype_file.GenotypeFile`) and
`interp.rank.rank_phenotype` reads them a block of `COLUMN_CHUNK` columns at a time, mean-imputed among the
phenotype's samples (`interp.rank.ImputedColumns`); before, the stage read the dosage matrix whole
(n x V float32) and rank made a mean-imputed float64 copy of it (n x V x 8 bytes) per phenotype. Each
measurement runs in a fresh process: read the file's metadata, rank every variant against one binary
phenotype adjusted for 4 PCs. Modes: `open` (import + metadata + open only: the fixed cost), `lazy` (the stage
now), `loaded` (the dosages read into memory first, `read_genotypes(path)`, then ranked by the same code:
this holds the float32 matrix, not the float64 copy the code before this change added on top).

Run: `OMP_NUM_THREADS=1 python benchmarks/rank_genotype_memory.py [n] [V]` (defaults 2,000 samples, 5,000 and
20,000 variants: 38 and 153 MiB of dosages). Prints peak RSS (VmHWM) and seconds per mode and size, and the
4x / 1x ratio per mode. Nothing is asserted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from fresh_process import measure_sizes
from sae_stream_memory import peak_rss_mib


def write_genotypes(path: Path, n: int, n_variants: int, seed: int = 0) -> None:
    """An ancestry-stage-shaped genotypes.h5ad: layers["dosage"] (1% missing) and X, obs with a binary
    phenotype, obsm["X_pca"] [n, 4]; one contig."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.02, 0.5, n_variants).astype(np.float32)
    dosage = np.empty((n, n_variants), dtype=np.float32)
    for lo in range(0, n_variants, 2048):  # a block at a time, so writing does not set this process's peak
        block = rng.binomial(2, freq[lo:lo + 2048], size=(n, freq[lo:lo + 2048].size)).astype(np.float32)
        block[rng.random(block.shape) < 0.01] = np.nan
        dosage[:, lo:lo + 2048] = block
    var = pd.DataFrame({"contig": "chr1", "pos": np.arange(n_variants) * 10 + 1},
                       index=[f"chr1:{j * 10 + 1}:A:G" for j in range(n_variants)])
    pcs = rng.normal(size=(n, 4))
    case = (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 0.3 * pcs[:, 0])))).astype(float)
    adata = ad.AnnData(X=np.zeros((n, n_variants), dtype=np.float32),
                       obs=pd.DataFrame({"case": case}, index=[f"s{i}" for i in range(n)]), var=var)
    adata.layers["dosage"] = dosage
    adata.obsm["X_pca"] = pcs
    adata.write_h5ad(path)


def child(path: str, mode: str) -> None:
    from interp.cohort.genotype_file import GenotypeFile, read_genotypes
    from interp.rank import RankConfig
    from interp.rank_inputs import rank_cohort, variant_family

    t0 = time.perf_counter()
    cfg = RankConfig(resamples=10, seed=1)
    extra = {}
    if mode == "loaded":
        geno = read_genotypes(path)
        table, _ = rank_cohort(geno, [], None, ["case"], [], cfg)
        extra = {"n_tested": int(table["p"].is_not_nan().sum())}
    else:
        geno = read_genotypes(path, dosage=False)
        with GenotypeFile(path) as genotypes:
            if mode == "lazy":
                table, _ = rank_cohort(geno, [], None, ["case"], [], cfg, variants=variant_family(geno, genotypes.matrix))
                extra = {"n_tested": int(table["p"].is_not_nan().sum())}
    print(json.dumps({"peak_rss_mb": peak_rss_mib(), "seconds": time.perf_counter() - t0, **extra}))


def main(n: int = 2000, n_variants: int = 5000) -> None:
    measure_sizes(__file__, write_genotypes, n, n_variants, "1% missing")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
