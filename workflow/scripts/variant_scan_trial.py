"""A trial, not a stage (twenty-first session): does a variant-direction scan beside the audit's ridge probe recover
the 10%-cases cell's misses? The measurement behind README "A variant-direction scan, measured and not yet built";
to be replaced by the statistic built into `interp.audit` and a re-audit of every cell.

Per archived replicate and phenotype: the audit's within statistic (`interp.audit.within_statistic`, two
leave-one-out ridge probes) and T_var = the largest |score z| of the phenotype on each region variant's
leave-one-out ridge prediction from the embedding (directions from the genotypes, never the phenotype), both under
one parametric-bootstrap null (B draws of y ~ Bernoulli(p_hat | strata + PCs + covariates), the audit's null with
covariates); their min-p combination; Holm over the replicate's three phenotypes at 0.05.

Run: `PYTHONPATH=. OMP_NUM_THREADS=1 python workflow/scripts/variant_scan_trial.py <archive>/<cell> 0,1,2 out.jsonl`
(an archive of `calibration_local.py --archive`; replicates comma-separated; one JSON line per replicate appended).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np

from interp.audit import RidgeProbe, adjust, ancestry_strata, logistic_many, nuisance_design, within_statistic
from interp.calibration import cell_cohort, select_cells
from interp.config import check_config, load_workflow_config
from interp.covariates import covariate_design

B = 999
PHENOTYPES = ("causal", "confounded", "null")
CONFIGS = ["configs/demo.yaml", "configs/calibration.yaml"]


def score_z(Y: np.ndarray, P: np.ndarray, S: np.ndarray, A1: np.ndarray) -> np.ndarray:
    """|score z| [B, V] of each row of S [V, n] in logistic Y[b] ~ A1, fitted probabilities P [B, n]."""
    W, R = P * (1 - P), Y - P
    num = R @ S.T
    out = np.empty_like(num)
    for b in range(Y.shape[0]):
        w = W[b]
        AtWA = A1.T @ (A1 * w[:, None])
        AtWS = A1.T @ (S.T * w[:, None])
        proj = (AtWS * np.linalg.solve(AtWA + 1e-9 * np.eye(A1.shape[1]), AtWS)).sum(axis=0)
        out[b] = np.abs(num[b]) / np.sqrt(np.maximum((S * S * w[None]).sum(axis=1) - proj, 1e-12))
    return out


def empirical_p(T: np.ndarray) -> np.ndarray:
    """p of every row of T [B + 1] against the B null rows (row 0: the data), the row itself counted."""
    null = np.sort(T[1:])
    return (1 + (T.size - 1 - np.searchsorted(null, T, side="left"))) / T.size


def replicate(folder: Path, rep: int, cohort: dict) -> dict:
    t, g = ad.read_h5ad(folder / "block2.samples.h5ad"), ad.read_h5ad(folder / "geno.h5ad")
    D = np.asarray(g.layers["dosage"], dtype=float)[g.obs_names.get_indexer(t.obs_names)]
    D = np.where(np.isfinite(D), D, np.nanmean(D, axis=0))
    X = np.asarray(t.X, dtype=float)
    n = X.shape[0]
    probe = RidgeProbe.from_embeddings(X)
    S, _ = probe.loo_scores(D.T)  # [V, n] predicted dosages, never y
    S = (S - S.mean(axis=1, keepdims=True)) / np.maximum(S.std(axis=1, keepdims=True), 1e-12)
    column, covs = cohort.get("population_column"), list(cohort.get("covariates") or [])
    population = t.obs[column].astype(str).to_numpy() if column else np.array(["all"] * n)
    pcs = np.asarray(t.obsm["X_pca"], dtype=float)
    design = covariate_design({c: t.obs[c].to_numpy() for c in covs}, covs, missing="refuse",
                              sample_ids=t.obs_names.tolist(), categorical=[])
    strata, _ = ancestry_strata(population, pcs, 4, 0)
    nuis = nuisance_design(strata, pcs, design.matrix)
    A = np.hstack([nuis["ancestry"], nuis["covariates"]])
    A1 = np.hstack([np.ones((n, 1)), A])
    rng = np.random.default_rng([rep, 5])
    res = {}
    for ph in PHENOTYPES:
        y = t.obs[ph].to_numpy(dtype=float)
        p_hat = logistic_many(A, y[None])["prob"][0]
        Y = np.vstack([y[None], (rng.random((B, n)) < p_hat).astype(float)])
        pw = empirical_p(within_statistic(Y, probe, A))
        pv = empirical_p(score_z(Y, logistic_many(A, Y)["prob"], S, A1).max(axis=1))
        m = np.minimum(pw, pv)
        res[ph] = (float(pw[0]), float(pv[0]), float((1 + (m[1:] <= m[0]).sum()) / (B + 1)))
    line: dict = {"replicate": rep}
    for k, idx in (("within", 0), ("var", 1), ("combined", 2)):
        ps = np.array([res[ph][idx] for ph in PHENOTYPES])
        line[k] = {ph: [float(p), bool(a <= 0.05)] for ph, p, a in zip(PHENOTYPES, ps, adjust(ps, "holm"), strict=True)}
    return line


def main(argv: list[str]) -> None:
    archive, reps, out = Path(argv[0]), [int(r) for r in argv[1].split(",")], Path(argv[2])
    config = check_config(load_workflow_config(CONFIGS), source=", ".join(CONFIGS))
    cohort = cell_cohort(select_cells([archive.name])[0], config["cohort"])
    with out.open("a") as handle:
        for rep in reps:
            handle.write(json.dumps(replicate(archive / str(rep), rep, cohort)) + "\n")
            handle.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
