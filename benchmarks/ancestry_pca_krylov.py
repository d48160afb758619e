"""Large-cohort ancestry PCs: block Krylov (now) against the former range finder, both against the exact PCs.

Simulates a marker panel in memory (three Balding-Nichols populations, Fst 0.05, 0.05 and 0.1, plus an
admixed group with Dirichlet(1, 1, 1) ancestry, 2% missing, MAF >= 0.05) and computes its top PCs three ways:
`exact_genotype_pca` (the exact Gram route of `marker_pca` up to EXACT_MAX_SAMPLES samples), the former
`randomized_genotype_pca` (Halko et al. range finder: oversampling 10, 6 power iterations, copied below) and
the current one (randomized block Krylov, run to convergence), each with seeds 0, 1 and 2. Prints the
eigenvalue spectrum around PC10 (the eigengap the iterative methods must resolve), and per method and seed:
the smallest canonical correlation between its 10-PC subspace and the exact one, the smallest per-PC |r|,
the largest relative error of the variance ratios, passes over the markers, wall and CPU seconds, and the
CPU ratio against the former method measured in the same process.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/ancestry_pca_krylov.py                 # 1,500 x 20,000
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/ancestry_pca_krylov.py --per-pop 1100 --admixed 796 \\
        --markers 10000                                                                  # 4,096 samples
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from interp.cohort.ancestry import (
    MarkerDosages,
    _orient,
    _standardised_blocks,
    exact_genotype_pca,
    randomized_genotype_pca,
)
from interp.cohort.simulate import balding_nichols_markers


def panel(seed: int, n_per_pop: int, n_admixed: int, n_markers: int) -> MarkerDosages:
    return balding_nichols_markers(seed, n_per_pop, n_admixed, n_markers)


def former_randomized_pca(markers: MarkerDosages, n_pcs: int = 10, seed: int = 0, oversample: int = 10,
                          n_iter: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """`randomized_genotype_pca` as it was (commit 91c86b4): range finder with power iterations."""
    n = len(markers.samples)
    width = min(n_pcs + oversample, n, max(markers.n_kept, 1))
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, width)))
    for _ in range(n_iter):
        y = np.zeros((n, width))
        for z in _standardised_blocks(markers):
            y += z.T @ (z @ q.astype(np.float32))
        q, _ = np.linalg.qr(y)
    gram = np.zeros((width, width))
    total = 0.0
    for z in _standardised_blocks(markers):
        w = (z @ q.astype(np.float32)).astype(np.float64)
        gram += w.T @ w
        total += float(np.square(z, dtype=np.float64).sum())
    eigenvalues, vectors = np.linalg.eigh(gram)
    top = np.argsort(eigenvalues)[::-1][:n_pcs]
    singular = np.sqrt(np.clip(eigenvalues[top], 0, None))
    scores = (q @ vectors[:, top]) * singular
    scores = scores - scores.mean(axis=0)
    _orient(scores, np.zeros((0, scores.shape[1])))
    return scores.astype(np.float32), singular ** 2 / total


def agreement(exact: np.ndarray, ours: np.ndarray) -> tuple[float, float]:
    """(smallest canonical correlation of the two column spaces, smallest per-PC |r|), in float64."""
    a, _ = np.linalg.qr(exact.astype(np.float64) - exact.mean(axis=0))
    b, _ = np.linalg.qr(ours.astype(np.float64) - ours.mean(axis=0))
    canonical = np.linalg.svd(a.T @ b, compute_uv=False).min()
    per_pc = min(abs(np.corrcoef(exact[:, k], ours[:, k])[0, 1]) for k in range(exact.shape[1]))
    return float(canonical), float(per_pc)


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-pop", type=int, default=400)
    parser.add_argument("--admixed", type=int, default=300)
    parser.add_argument("--markers", type=int, default=20000)
    parser.add_argument("--pcs", type=int, default=10)
    args = parser.parse_args()
    k = args.pcs
    markers = panel(0, args.per_pop, args.admixed, args.markers)
    n = len(markers.samples)
    print(f"panel: {n} samples, {markers.n_kept} markers kept of {markers.n_read}, {k} PCs")
    gram = np.zeros((n, n))
    for z in _standardised_blocks(markers):
        gram += z.T @ z
    eigenvalues = np.linalg.eigvalsh(gram)[::-1]
    del gram
    print("eigenvalues / mean, PC1-PC12:", " ".join(f"{v:.3f}" for v in eigenvalues[:12] / eigenvalues.mean()))
    print(f"lambda{k + 1}/lambda{k} = {eigenvalues[k] / eigenvalues[k - 1]:.5f}, "
          f"lambda{k + 11}/lambda{k} = {eigenvalues[k + 10] / eigenvalues[k - 1]:.4f}")
    (exact, exact_ratio), wall, cpu = timed(exact_genotype_pca, markers, k)
    print(f"exact Gram: {wall:.1f} s wall, {cpu:.1f} s CPU, 1 pass")
    print("method   seed  min canonical r  min per-PC |r|  max ratio err  passes  wall s  CPU s  CPU / former")
    for seed in (0, 1, 2):
        (old, old_ratio), old_wall, old_cpu = timed(former_randomized_pca, markers, k, seed)
        info: dict = {}
        (new, new_ratio), new_wall, new_cpu = timed(randomized_genotype_pca, markers, k, seed, info=info)
        for name, scores, ratio, passes, wall, cpu in (("former", old, old_ratio, 7, old_wall, old_cpu),
                                                      ("krylov", new, new_ratio, info["n_passes"], new_wall, new_cpu)):
            canonical, per_pc = agreement(exact, scores)
            error = float(np.abs(ratio / exact_ratio - 1).max())
            print(f"{name:8s} {seed:4d}  {canonical:15.6f}  {per_pc:14.6f}  {error:13.1e}  {passes:6d}  "
                  f"{wall:6.1f}  {cpu:5.1f}  {cpu / old_cpu:12.2f}")
        print(f"         krylov converged: {info['converged']}, Davis-Kahan sin bound {info['sin_bound']:.1e}")


if __name__ == "__main__":
    main()
