"""One SAE job end to end, as the workflow runs it: training, evaluation
(held-out FVU / L0 / dead and dense fractions, loss recovered in the LM), honest labels, and the
sweep's frontier (L0 vs FVU, L0 vs loss recovered)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from interp.io import atomic_path
from interp.sae.concept_tracks import ConceptConfig, ConceptTracks, concept_tracks
from interp.sae.concepts import UNLABELLED, LabelConfig, feature_table
from interp.sae.config import SAEConfig
from interp.sae.model import SparseAutoencoder
from interp.sae.splits import TEST, block_split, windows_within
from interp.sae.train import train_sae


def loss_recovered_on_test(lm_checkpoint: str | Path, layer: str, sae: SparseAutoencoder, windows: pl.DataFrame,
                           cfg: SAEConfig, max_windows: int = 200) -> dict:
    """Masked-LM losses (clean / zero / SAE) on up to `max_windows` windows lying wholly in test blocks."""
    from interp.embed.tiny import load_tiny_checkpoint
    from interp.sae.splice import masked_lm_losses

    split = block_split(windows, cfg.split_block_bases, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    test = windows.filter(pl.Series(windows_within(split, windows, TEST)))
    if test.height == 0:
        return {"loss_recovered": None, "n_loss_windows": 0}
    if test.height > max_windows:
        keep = np.sort(np.random.default_rng([cfg.seed, 5]).choice(test.height, max_windows, replace=False))
        test = test[keep]
    lm = load_tiny_checkpoint(Path(lm_checkpoint))
    out = masked_lm_losses(lm, layer, sae, test["sequence"].to_list(), seed=cfg.seed)
    return {"loss_recovered": out["loss_recovered"], "lm_loss_clean": out["clean"], "lm_loss_zero": out["zero"],
            "lm_loss_sae": out["sae"], "n_loss_windows": test.height, "n_loss_masked_bases": out["n_masked"]}


def train_and_evaluate(store: str | Path, windows: pl.DataFrame, cfg: SAEConfig, layer: str,
                       lm_checkpoint: str | Path | None, state_path: str | Path | None = None,
                       log_dir: str | Path | None = None, progress_bar: bool = False, accelerator: str = "cpu",
                       keep_state: bool = False) -> tuple[SparseAutoencoder, dict]:
    """Train (on `accelerator`: "cpu" or "gpu", the device the rule asked for), then add loss recovered (built-in
    LM only; None for other models) to the metrics. The model comes back on the CPU. keep_state: see
    `train_sae` (the stage removes the state once its outputs are written)."""
    model, metrics = train_sae(store, cfg, windows, threads=1, state_path=state_path, log_dir=log_dir,
                               progress_bar=progress_bar, accelerator=accelerator, keep_state=keep_state)
    if lm_checkpoint:
        metrics.update(loss_recovered_on_test(lm_checkpoint, layer, model, windows, cfg))
    else:
        metrics["loss_recovered"] = None
    return model, metrics


def label_features(model: SparseAutoencoder, store: str | Path, windows: pl.DataFrame, bases: pl.DataFrame,
                   cfg: SAEConfig, concepts: dict, labels: dict, top_n: int, n_top: int = 10,
                   tracks: ConceptTracks | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(features, units, summary) of `interp.sae.concepts.feature_table` with the run's split;
    summary gains top_features: the labelled features of highest test F1 (at most n_top).
    tracks: the concepts to match (default: `concept_tracks(bases, concepts)`; the planted
    calibration passes its planted elements)."""
    if tracks is None:
        tracks = concept_tracks(bases, ConceptConfig(**concepts))
    split = block_split(windows, cfg.split_block_bases, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    features, units, summary = feature_table(model, store, windows, split, tracks, LabelConfig(**labels),
                                             top_n=top_n, seed=cfg.seed)
    top = features.filter(pl.col("label") != UNLABELLED).sort(["f1", "feature"], descending=[True, False]).head(n_top)
    summary["top_features"] = [
        {"id": r["feature"], "label": r["label"], "f1": r["f1"], "lift": r["lift"], "auprc": r["auprc"],
         "precision": r["precision"], "recall": r["recall"], "prevalence": r["prevalence"],
         "density": r["density"]} for r in top.iter_rows(named=True)]
    return features, units, summary


def train_and_label(store: str | Path, windows: pl.DataFrame, bases: pl.DataFrame, cfg: SAEConfig, layer: str,
                    lm_checkpoint: str | Path | None, state_path: str | Path, concepts: dict, labels: dict,
                    top_n: int, planted_bed: str | Path | None = None, log_dir: str | Path | None = None,
                    accelerator: str = "cpu") -> tuple[SparseAutoencoder, pl.DataFrame, pl.DataFrame, dict]:
    """The main SAE of one layer: `train_and_evaluate` (keeping its training state, complete, at `state_path`,
    which the caller removes once its outputs are written: a failure in labelling reruns with no training),
    then `label_features` against the concept tracks of `bases`, or, with `planted_bed` (the planted
    calibration), against its planted elements. Returns (model, features, units, metrics), metrics holding the
    training metrics, `labels` and the summary counts the report reads."""
    model, metrics = train_and_evaluate(store, windows, cfg, layer, lm_checkpoint, state_path, log_dir,
                                        progress_bar=True, accelerator=accelerator, keep_state=True)
    tracks = None
    if planted_bed:
        from interp.sae.planted_genome import planted_tracks, read_planted_bed

        tracks = planted_tracks(bases, read_planted_bed(planted_bed))
    features, units, summary = label_features(model, store, windows, bases, cfg, concepts, labels, top_n,
                                              tracks=tracks)
    metrics = {**metrics, "labels": summary, "top_features": summary["top_features"],
               "n_concepts_matched_sae": summary["n_concepts_matched_sae"],
               "n_concepts_matched_neurons": summary["n_concepts_matched_neurons"]}
    return model, features, units, metrics


FRONTIER_COLUMNS = ["name", "architecture", "n_features", "k", "l1_coefficient", "l0_coefficient", "temporal_fraction",
                    "l0", "fvu", "loss_recovered", "dead_fraction", "dense_fraction"]


def frontier_table(metrics: list[dict]) -> pl.DataFrame:
    """One row per SAE of the sweep (the main one named "main"), sorted by L0."""
    rows = []
    for m in metrics:
        cfg = m.get("config", {})
        rows.append({"name": m.get("name", "main"), "architecture": m["architecture"], "n_features": m["n_features"],
                     "k": m["k"],
                     "l1_coefficient": cfg.get("l1_coefficient") if m["architecture"] == "relu" else None,
                     "l0_coefficient": cfg.get("l0_coefficient") if m["architecture"] == "jumprelu" else None,
                     "temporal_fraction": cfg.get("temporal_fraction", 0.0), "l0": m["l0"], "fvu": m["fvu"],
                     "loss_recovered": m.get("loss_recovered"), "dead_fraction": m["dead_fraction"],
                     "dense_fraction": m["dense_fraction"]})
    return pl.DataFrame(rows, schema={c: (pl.String if c in ("name", "architecture") else pl.Float64)
                                      for c in FRONTIER_COLUMNS}).sort(["l0", "name"])


def frontier_plots(table: pl.DataFrame, fvu_png: str | Path, loss_png: str | Path, title: str) -> None:
    """L0 vs FVU and L0 vs loss recovered, one marker per SAE, labelled by name and architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for column, path, ylabel in (("fvu", fvu_png, "held-out FVU (test blocks)"),
                                 ("loss_recovered", loss_png, "loss recovered")):
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
        for arch in sorted(set(table["architecture"].to_list())):
            sub = table.filter((pl.col("architecture") == arch) & pl.col(column).is_not_null())
            ax.plot(sub["l0"].to_numpy(), sub[column].to_numpy(), "o-", label=arch)
            for r in sub.iter_rows(named=True):
                ax.annotate(r["name"], (r["l0"], r[column]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("mean L0 (test blocks)")
        ax.set_ylabel(ylabel)
        if column == "fvu":
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, metadata={"Software": None})
        plt.close(fig)


def steer_on_test(lm_checkpoint: str | Path, layer: str, sae: SparseAutoencoder, windows: pl.DataFrame,
                  features: pl.DataFrame, cfg: SAEConfig, steer_params: dict) -> pl.DataFrame:
    """`interp.sae.steer.steer_table` on up to max_windows windows lying wholly in test blocks."""
    from interp.embed.tiny import load_tiny_checkpoint
    from interp.sae.steer import SteerConfig, steer_table

    steer_cfg = SteerConfig(**steer_params)
    split = block_split(windows, cfg.split_block_bases, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    test = windows.filter(pl.Series(windows_within(split, windows, TEST)))
    if test.height > steer_cfg.max_windows:
        keep = np.sort(np.random.default_rng([cfg.seed, 6]).choice(test.height, steer_cfg.max_windows, replace=False))
        test = test[keep]
    lm = load_tiny_checkpoint(Path(lm_checkpoint))
    by_id = dict(zip(windows["window_id"].to_list(), windows["sequence"].to_list(), strict=True))
    return steer_table(lm, layer, sae, features, test["sequence"].to_list(), steer_cfg, seed=cfg.seed,
                       window_sequences=by_id)
