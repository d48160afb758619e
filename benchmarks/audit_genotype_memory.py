"""Peak memory of the audit's variant scan reading genotypes.h5ad, at two variant counts 4x apart.

The audit stage opens the ancestry stage's genotypes.h5ad (`interp.cohort.genotype_file.GenotypeFile`) and
reads the dosage columns a block at a time while `interp.variant_scan.variant_directions` predicts them from
the embedding; before, it loaded the AnnData whole (X standardised and layers["dosage"], n x V float32 each)
and copied the columns out. Each measurement runs in a fresh process: open the file, take every variant's
dosages for the cohort's samples (in another order than the file's, as an embedding table has them) and
compute the scan's directions. Modes: `open` (import + open only: the fixed cost), `lazy` (the stage now),
`loaded` (`anndata.read_h5ad` then the same, the stage before).

Run: `OMP_NUM_THREADS=1 python benchmarks/audit_genotype_memory.py [n] [V]` (defaults 2,000 samples,
5,000 and 20,000 variants: 38 and 153 MiB of dosages, as much again in X). Prints peak RSS (VmHWM)
and seconds per mode and size, and the 4x / 1x ratio per mode. Nothing is asserted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from fresh_process import measure_sizes
from sae_stream_memory import peak_rss_mib

D_EMBEDDING = 128


def write_genotypes(path: Path, n: int, n_variants: int, seed: int = 0) -> None:
    """An ancestry-stage-shaped genotypes.h5ad: X standardised and layers["dosage"], float32, one contig."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.02, 0.5, n_variants).astype(np.float32)
    dosage = np.empty((n, n_variants), dtype=np.float32)
    for lo in range(0, n_variants, 2048):  # a block at a time, so writing does not set this process's peak
        dosage[:, lo:lo + 2048] = rng.binomial(2, freq[lo:lo + 2048], size=(n, freq[lo:lo + 2048].size))
    var = pd.DataFrame({"contig": "chr1", "pos": np.arange(n_variants) * 10 + 1},
                       index=[f"v{j}" for j in range(n_variants)])
    standardised = (dosage - dosage.mean(axis=0)) / np.maximum(dosage.std(axis=0), 1e-6)
    adata = ad.AnnData(X=standardised, obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]), var=var)
    adata.layers["dosage"] = dosage
    adata.write_h5ad(path)


def child(path: str, mode: str) -> None:
    import anndata as ad

    from interp.audit import RidgeProbe
    from interp.cohort.genotype_file import GenotypeFile, dosage_columns
    from interp.variant_scan import variant_directions

    t0 = time.perf_counter()
    genotypes = GenotypeFile(path) if mode in ("open", "lazy") else ad.read_h5ad(path)
    extra = {}
    if mode != "open":
        n = genotypes.obs_names.size if mode == "lazy" else genotypes.n_obs
        rng = np.random.default_rng(1)
        ids = [f"s{i}" for i in rng.permutation(n)]
        view, variant_ids = dosage_columns(genotypes, ids)
        probe = RidgeProbe.from_embeddings(rng.normal(size=(n, D_EMBEDDING)))
        directions = variant_directions(probe, view, variant_ids, max_variants=100)
        extra = {"n_candidates": directions.n_candidates, "kept": len(directions.ids)}
    print(json.dumps({"peak_rss_mb": peak_rss_mib(), "seconds": time.perf_counter() - t0, **extra}))


def main(n: int = 2000, n_variants: int = 5000) -> None:
    measure_sizes(__file__, write_genotypes, n, n_variants, "as much again in X")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
