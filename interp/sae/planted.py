"""Planted-motif calibration of SAE features: the SAE counterpart of the cohort calibration.

On a synthetic genome with planted elements at known positions (`interp.sae.planted_genome`),
the built-in LM and an SAE are trained by the ordinary stages; here every planted element type is
matched to SAE features with the honest-label statistics of `interp.sae.concepts` (per feature and
type, the firing threshold of best F1 on validation blocks, statistics on test blocks). A type's
match is the feature of highest *validation* F1; its test F1, precision, recall and lift are what
is reported, so the choice of feature never sees the test blocks. A type is matched when that
feature's test F1 >= `min_f1` and lift >= `min_lift`; the calibration passes when at least
`min_share` of the types are matched.

Steering check: for each matched motif feature, clamping the feature (`interp.sae.steer.steer`,
mode clamp) in windows of the test blocks holding that motif must raise the LM's probability of
the motif's own bases (each scored once while masked) more than the 95th percentile of the same
intervention along random directions of the same norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

MATCH_COLUMNS = ["concept", "feature", "threshold", "validation_f1", "f1", "precision", "recall", "lift", "auprc",
                 "prevalence", "density", "true_positives", "matched"]


@dataclass
class PlantedTargets:
    """When a planted type counts as matched, and when the calibration passes."""

    min_f1: float = 0.8
    min_lift: float = 5.0
    min_share: float = 0.8
    """share of planted types that must be matched."""


def match_table(units: pl.DataFrame, targets: PlantedTargets, kind: str = "sae") -> pl.DataFrame:
    """One row per concept: the unit of highest validation F1 (ties: lowest unit) with its test statistics.

    units: the long table of `interp.sae.concepts.label_units` (columns kind, unit, concept,
    threshold, validation_f1, precision, recall, f1, lift, auprc, prevalence, density, true_positives).
    """
    best = (units.filter(pl.col("kind") == kind)
            .sort(["concept", "validation_f1", "unit"], descending=[False, True, False])
            .group_by("concept", maintain_order=True).first())
    return best.select(
        "concept", pl.col("unit").alias("feature"), "threshold", "validation_f1", "f1", "precision", "recall", "lift",
        "auprc", "prevalence", "density", "true_positives",
        ((pl.col("f1") >= targets.min_f1) & (pl.col("lift") >= targets.min_lift)).alias("matched"),
    ).sort("concept")


def match_verdict(match: pl.DataFrame, targets: PlantedTargets) -> dict:
    """{n_types, n_matched, share_matched, pass, targets}."""
    n = match.height
    matched = int(match["matched"].sum()) if n else 0
    share = matched / n if n else 0.0
    return {"n_types": n, "n_matched": matched, "share_matched": share, "pass": bool(n > 0 and share >= targets.min_share),
            "targets": {"min_f1": targets.min_f1, "min_lift": targets.min_lift, "min_share": targets.min_share}}


def windows_with(windows: pl.DataFrame, elements: pl.DataFrame, name: str) -> tuple[list[str], list[np.ndarray]]:
    """(sequences, marks) of the windows holding a base of element type `name`; marks: bool per base."""
    sub = elements.filter(pl.col("name") == name)
    seqs, marks = [], []
    for row in windows.iter_rows(named=True):
        inside = sub.filter((pl.col("contig") == row["contig"]) & (pl.col("end") > row["start"])
                            & (pl.col("start") < row["end"]))
        if inside.height == 0:
            continue
        mark = np.zeros(row["end"] - row["start"], dtype=bool)
        for s, e in inside.select("start", "end").iter_rows():
            mark[max(s, row["start"]) - row["start"]:min(e, row["end"]) - row["start"]] = True
        seqs.append(row["sequence"])
        marks.append(mark)
    return seqs, marks


def steering_table(lm, layer: str, sae, match: pl.DataFrame, features: pl.DataFrame, windows: pl.DataFrame,
                   elements: pl.DataFrame, strength_multiplier: float = 4.0, n_random: int = 8,
                   max_windows: int = 20, seed: int = 0) -> pl.DataFrame:
    """Per matched motif type: clamp its feature at `strength_multiplier` x its mean activation when
    firing, in up to `max_windows` of `windows` (the caller passes test-block windows) that hold the
    motif; dp = mean change of p(own base) at the motif's bases (each masked once), against random
    same-norm directions. `raises_motif` = dp above the controls' 95th percentile and above 0."""
    from interp.sae.steer import steer

    mean_activation = dict(zip(features["feature"].to_list(), features["mean_activation"].to_list(), strict=True))
    rows = []
    for r in match.filter(pl.col("matched") & pl.col("concept").str.starts_with("motif_")).iter_rows(named=True):
        seqs, marks = windows_with(windows, elements, r["concept"])
        if len(seqs) > max_windows:
            keep = np.sort(np.random.default_rng([seed, 8]).choice(len(seqs), max_windows, replace=False))
            seqs, marks = [seqs[i] for i in keep], [marks[i] for i in keep]
        strength = strength_multiplier * float(mean_activation.get(r["feature"]) or 0.0)
        out = steer(lm, layer, sae, int(r["feature"]), seqs, strength, mode="clamp", n_random=n_random, seed=seed,
                    marks=marks)
        control = np.asarray(out["control_dp_firing"])
        q95 = float(np.quantile(control, 0.95)) if control.size else float("nan")
        rows.append({"concept": r["concept"], "feature": int(r["feature"]), "strength": strength,
                     "n_windows": len(seqs), "n_motif_bases": int(out["n_firing"]),
                     "dp_motif": float(out["dp_firing"]), "dp_other": float(out["dp_other"]),
                     "control_dp_motif_median": float(np.median(control)), "control_dp_motif_q95": q95,
                     "kl_motif": float(out["kl_firing"]),
                     "control_kl_motif_q95": float(np.quantile(out["control_kl_firing"], 0.95)),
                     "raises_motif": bool(out["n_firing"] > 0 and out["dp_firing"] > max(q95, 0.0))})
    return pl.DataFrame(rows, schema={"concept": pl.String, "feature": pl.Int64, "strength": pl.Float64,
                                      "n_windows": pl.Int64, "n_motif_bases": pl.Int64, "dp_motif": pl.Float64,
                                      "dp_other": pl.Float64, "control_dp_motif_median": pl.Float64,
                                      "control_dp_motif_q95": pl.Float64, "kl_motif": pl.Float64,
                                      "control_kl_motif_q95": pl.Float64, "raises_motif": pl.Boolean})


def planted_calibration(units: pl.DataFrame, windows: pl.DataFrame, elements: pl.DataFrame, lm, layer: str, sae,
                        features: pl.DataFrame, lm_metrics: dict, sae_metrics: dict, targets: PlantedTargets,
                        sae_cfg, steer: dict) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The whole planted check: (match table, steering table, summary).

    units: `label_units` output on the planted tracks; windows: the planted genome's windows, split into
    blocks as the SAE's training split (`sae_cfg`: split_block_bases, validation/test fractions, seed), so
    steering only sees test blocks; elements: the planted BED; lm / sae: the trained models; features: the
    SAE's per-feature table (mean_activation); lm_metrics: the pretrain stage's held-out CE and Markov
    baselines; steer: keyword settings of `steering_table`. The summary passes when the LM beats order-3,
    the match share reaches its target and every matched motif feature raises its motif.
    """
    from interp.sae.splits import TEST, block_split, windows_within

    match = match_table(units, targets)
    verdict = match_verdict(match, targets)
    split = block_split(windows, sae_cfg.split_block_bases, sae_cfg.validation_fraction, sae_cfg.test_fraction,
                        sae_cfg.seed)
    test = windows.filter(pl.Series(windows_within(split, windows, TEST)))
    steering = steering_table(lm, layer, sae, match, features, test, elements, seed=sae_cfg.seed, **steer)
    lm_pass = bool(lm_metrics["heldout_ce"] < lm_metrics["baseline_order3_ce"])
    steer_pass = bool(steering.height > 0 and steering["raises_motif"].all())
    summary = {
        "lm": {k: lm_metrics[k] for k in ("heldout_ce", "baseline_order0_ce", "baseline_order3_ce",
                                          "n_heldout_bases", "steps", "n_params")},
        "lm_beats_order3": lm_pass,
        "sae": {k: sae_metrics.get(k) for k in ("fvu", "l0", "dead_fraction", "dense_fraction", "loss_recovered",
                                                "n_features", "k")},
        "match": match.to_dicts(), **{f"match_{k}": v for k, v in verdict.items()},
        "steering": steering.to_dicts(), "steering_pass": steer_pass,
        "pass": bool(lm_pass and verdict["pass"] and steer_pass),
        "layer": layer,
    }
    return match, steering, summary
