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
mode clamp, where it fires) in windows of the test blocks holding that motif must raise the LM's probability of
the motif's own bases (each scored once while masked) more than the 95th percentile of the same
intervention along random directions of the same norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from interp.sae.model import SparseAutoencoder
    from interp.sae.splits import BlockSplit

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
    from interp.sae.concepts import at_least, nan_last

    best = (units.filter(pl.col("kind") == kind)
            .sort(["concept", nan_last("validation_f1"), "unit"], descending=[False, True, False], nulls_last=True)
            .group_by("concept", maintain_order=True).first())
    # an undefined (NaN) F1 or lift, a type absent from the test blocks, is never matched
    return best.select(
        "concept", pl.col("unit").alias("feature"), "threshold", "validation_f1", "f1", "precision", "recall", "lift",
        "auprc", "prevalence", "density", "true_positives",
        (at_least("f1", targets.min_f1) & at_least("lift", targets.min_lift)).alias("matched"),
    ).sort("concept")


def match_verdict(match: pl.DataFrame, targets: PlantedTargets) -> dict:
    """{n_types, n_matched, share_matched, pass, targets}; share_matched None (undefined) without types."""
    n = match.height
    matched = int(match["matched"].sum()) if n else 0
    share = matched / n if n else None
    return {"n_types": n, "n_matched": matched, "share_matched": share, "pass": bool(n > 0 and share >= targets.min_share),
            "targets": {"min_f1": targets.min_f1, "min_lift": targets.min_lift, "min_share": targets.min_share}}


INSTANCE_COLUMNS = ["concept", "instance_feature", "instance_threshold", "instance_validation_f1",
                    "instance_precision", "instance_recall", "instance_f1", "instance_lift", "n_test_instances"]


#: per-type baselines beside the SAE's match, from the SAE stage's own concept analysis (`interp.sae.concepts`,
#: same blocks): a logistic probe on the raw activations and the best single neuron
BASELINE_COLUMNS = {"probe_f1": "probe_f1", "probe_lift": "probe_lift", "best_neuron_f1": "neuron_f1",
                    "best_neuron_unit": "neuron", "direction_f1": "direction_f1", "subspace8_f1": "subspace8_f1",
                    "subspace32_f1": "subspace32_f1", "subspace_dim": "subspace_dim"}


def baseline_columns(sae_metrics: dict) -> pl.DataFrame:
    """One row per concept: `probe_f1`, `probe_lift` (logistic regression on the standardised raw activations,
    threshold chosen on validation blocks, test blocks) and `neuron_f1`, `neuron` (the raw neuron of best
    validation F1, read either way), `direction_f1`, `subspace8_f1`, `subspace32_f1`, `subspace_dim` (is the
    type one direction or a subspace: `interp.sae.concept_geometry`), from `sae_metrics["labels"]["concepts"]`
    of the planted SAE; null where the SAE stage did not compute them. Does any SAE feature come close to what
    the activations hold, and could one?"""
    schema = {"concept": pl.String, "probe_f1": pl.Float64, "probe_lift": pl.Float64, "neuron_f1": pl.Float64,
              "neuron": pl.Int64, "direction_f1": pl.Float64, "subspace8_f1": pl.Float64,
              "subspace32_f1": pl.Float64, "subspace_dim": pl.Int64}
    rows = [{"concept": c["concept"], **{new: c.get(old) for old, new in BASELINE_COLUMNS.items()}}
            for c in (sae_metrics.get("labels") or {}).get("concepts") or []]
    return pl.DataFrame(rows, schema=schema)


def base_split(windows: pl.DataFrame, split: BlockSplit, contig: str, length: int,
               tokens: bool = False) -> np.ndarray:
    """int8 [length]: the split code (TRAIN / VALIDATION / TEST) of every base of `contig` that some window
    covers (the block of the base, `split.of_bases`), -1 where no window reaches. With `tokens`, a base
    counts only where some window lying wholly in its split covers it (`split.of_tokens`: the bases whose
    model tokens are in that split), else -1."""
    code = np.full(length, -1, dtype=np.int8)
    for row in windows.filter(pl.col("contig") == contig).iter_rows(named=True):
        offsets = np.arange(row["end"] - row["start"], dtype=np.int64)
        where = np.full(offsets.size, row["window_index"])
        if tokens:  # a base's block is one split: any window's non-negative code is that split
            np.maximum(code[row["start"]:row["end"]], split.of_tokens(where, offsets),
                       out=code[row["start"]:row["end"]])
        else:
            code[row["start"]:row["end"]] = split.of_bases(where, offsets)
    return code


def _instance_ids(elements: pl.DataFrame, names: list[str], contig: str, length: int,
                  split_code: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(inside bool [length, C], ids, splits): ids per concept int64 [length], the index of the instance
    covering the base or -1; splits per concept int8 [instances], the split holding the instance, -1
    when it straddles splits or leaves the windows (it then counts per base only, not as an instance)."""
    inside = np.zeros((length, len(names)), dtype=bool)
    ids, splits = [], []
    for j, name in enumerate(names):
        sub = elements.filter((pl.col("name") == name) & (pl.col("contig") == contig)).select("start", "end")
        idx = np.full(length, -1, dtype=np.int64)
        where = np.full(sub.height, -1, dtype=np.int8)
        for k, (s, e) in enumerate(sub.iter_rows()):
            inside[s:e, j] = True
            if e <= length and split_code[s] >= 0 and (split_code[s:e] == split_code[s]).all():
                idx[s:e] = k
                where[k] = split_code[s]
        ids.append(idx)
        splits.append(where)
    return inside, ids, splits


def instance_scores(model: SparseAutoencoder, store_path: str | Path, windows: pl.DataFrame, split: BlockSplit,
                    elements: pl.DataFrame, n_thresholds: int = 32, rows: int = 16384) -> pl.DataFrame:
    """InterPLM's instance-level match of SAE features to planted types, beside the per-base one.

    For every feature and planted type: precision per base (fires on a base inside an instance of the
    type), recall per instance (the share of instances on which the feature fires on at least one base;
    InterPLM's `recall_per_domain`), and their harmonic mean, the instance F1 (InterPLM's
    `f1_per_domain`). The threshold of each (feature, type) is the level of best validation instance
    F1 among `n_thresholds` levels from 0 to the feature's validation maximum (as `interp.sae.concepts`),
    the type's feature is the one of best validation instance F1 (ties: lowest feature), and everything
    reported is measured on the test blocks (instances wholly within test blocks). One row per type:
    INSTANCE_COLUMNS. model: the SAE; store_path: its layer's token store; windows / split: the
    windows and the SAE's block split; elements: the planted BED (one contig).
    """
    import torch

    from interp.sae.concepts import ThresholdCounts, _ratio
    from interp.sae.splits import TEST, VALIDATION
    from interp.sae.train import open_store

    store = open_store(store_path)
    model = model.cpu().eval()
    contigs = windows["contig"].unique().to_list()
    if len(contigs) != 1:
        raise ValueError(f"instance_scores: expected the planted genome's one contig, got {contigs}")
    contig = contigs[0]
    length = int(windows["end"].max())
    names = sorted(elements["name"].unique().to_list())
    split_code = base_split(windows, split, contig, length, tokens=True)
    inside, ids, inst_split = _instance_ids(elements, names, contig, length, split_code)
    w_all = np.asarray(store.window_index[:], dtype=np.int64)
    pos_all = split.window_start[w_all] + np.asarray(store.base_start[:], dtype=np.int64)
    # a token counts in its base's split only when its window lies in that split (`BlockSplit.of_tokens`)
    code_all = np.where(split.window_split[w_all] == split_code[pos_all], split_code[pos_all], -1)

    def encoded(want: int):
        for start in range(0, store.n_tokens, rows):
            sl = slice(start, min(start + rows, store.n_tokens))
            keep = code_all[sl] == want
            if keep.any():
                x = torch.from_numpy(np.asarray(store.activations[sl], dtype=np.float32)[keep])
                with torch.no_grad():
                    yield pos_all[sl][keep], model.encode(x)

    scale = np.zeros(model.n_features)
    for _, f in encoded(VALIDATION):
        scale = np.maximum(scale, f.max(dim=0).values.double().numpy())
    stats = {}
    for code in (VALIDATION, TEST):
        counts = ThresholdCounts(scale, len(names), n_thresholds, pairs=False)  # F1 only: no label test
        inst_max = [np.zeros((where.size, model.n_features), dtype=np.float32) for where in inst_split]
        for pos, f in encoded(code):
            counts.add(f, inside[pos])
            fn = f.numpy()
            for j, idx in enumerate(ids):
                sel = idx[pos] >= 0
                if sel.any():
                    np.maximum.at(inst_max[j], idx[pos][sel], fn[sel])
        fires, tp = counts.fires()                                     # [F, T], [C, F, T]
        levels = np.arange(n_thresholds)[None, :] * counts.scale.numpy()[:, None] / n_thresholds  # [F, T]
        hit = [(m[inst_split[j] == code][:, :, None] > levels[None]).sum(axis=0) for j, m in enumerate(inst_max)]
        n_used = [int((where == code).sum()) for where in inst_split]
        # undefined (NaN): precision where nothing fires, recall without instances in the split, F1 where
        # either is undefined (0 where both are 0), lift at prevalence 0
        precision = _ratio(tp, fires[None])
        recall = _ratio(np.stack(hit), np.array(n_used, dtype=np.float64)[:, None, None])
        f1 = np.where(precision + recall > 0, _ratio(2 * precision * recall, precision + recall),
                      np.where(np.isnan(precision + recall), np.nan, 0.0))
        stats[code] = {"precision": precision, "recall": recall, "f1": f1,
                       "prevalence": _ratio(counts.n_pos, counts.n_tokens), "n": n_used}
    chooser = np.nan_to_num(stats[VALIDATION]["f1"], nan=-1.0)       # an undefined F1 never wins a choice
    best = chooser.argmax(axis=2)                                     # [C, F]
    take = lambda a: np.take_along_axis(a, best[..., None], axis=2)[..., 0]  # noqa: E731
    v_f1 = take(stats[VALIDATION]["f1"])
    out = []
    for j, name in enumerate(names):
        u = int(np.argmax(take(chooser)[j]))                          # first maximum: lowest feature
        t = stats[TEST]
        precision = float(take(t["precision"])[j, u])
        out.append({"concept": name, "instance_feature": u,
                    "instance_threshold": float(best[j, u] * scale[u] / n_thresholds) if scale[u] > 0 else 0.0,
                    "instance_validation_f1": float(v_f1[j, u]), "instance_precision": precision,
                    "instance_recall": float(take(t["recall"])[j, u]), "instance_f1": float(take(t["f1"])[j, u]),
                    "instance_lift": float(_ratio(precision, t["prevalence"][j])),
                    "n_test_instances": int(t["n"][j])})
    return pl.DataFrame(out, schema={c: (pl.String if c == "concept" else pl.Int64 if c in (
        "instance_feature", "n_test_instances") else pl.Float64) for c in INSTANCE_COLUMNS})


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
                   elements: pl.DataFrame, strength_multiplier: float = 4.0, n_random: int = 19,
                   max_windows: int = 20, seed: int = 0, best_unmatched: bool = False) -> pl.DataFrame:
    """Per matched motif type: clamp its feature at `strength_multiplier` x its mean activation when
    firing, in up to `max_windows` of `windows` (the caller passes test-block windows) that hold the
    motif; dp = mean change of p(own base) at the motif's bases (each masked once), against random
    same-norm directions clamped at the same positions. `raises_motif` = dp above 0 and its Monte Carlo p
    against the controls (`interp.sae.steer.control_p`, column `control_p_motif`) <= 0.05: above all of at
    least 19 controls.

    The check clamps the feature where it fires on the unmasked window (`steer(positions="firing")`,
    `n_clamped` positions): the motif features of a small LM fire at one offset of each instance (a
    position, base and strand), and amplifying them there asks whether they carry the motif's base. The
    same clamp at every position of the window (writing that one base everywhere) is reported beside, in
    the `*_everywhere` columns, and does not decide.

    A type is steered when it is matched per base (`matched`, its `feature`) or, where the table has
    the instance-level columns, matched per instance only (`matched_instance`, its `instance_feature`);
    the column `rule` (`per_base` / `instance`) says which. With `best_unmatched`, each motif type not
    matched per base also has its best per-base feature (`feature`) steered, with rule `per_base_best`:
    reported beside, it does not enter the check (`check_rows`)."""
    from interp.sae.steer import CONTROL_ALPHA, control_p, steer

    mean_activation = dict(zip(features["feature"].to_list(), features["mean_activation"].to_list(), strict=True))
    rows = []
    picks = []
    for r in match.filter(pl.col("concept").str.starts_with("motif_")).iter_rows(named=True):
        if r["matched"]:
            picks.append((r["concept"], int(r["feature"]), "per_base"))
        elif r.get("matched_instance"):
            picks.append((r["concept"], int(r["instance_feature"]), "instance"))
        if best_unmatched and not r["matched"] and r.get("feature") is not None:
            picks.append((r["concept"], int(r["feature"]), "per_base_best"))
    for concept, feature, rule in picks:
        seqs, marks = windows_with(windows, elements, concept)
        if not seqs:
            continue
        if len(seqs) > max_windows:
            keep = np.sort(np.random.default_rng([seed, 8]).choice(len(seqs), max_windows, replace=False))
            seqs, marks = [seqs[i] for i in keep], [marks[i] for i in keep]
        strength = strength_multiplier * float(mean_activation.get(feature) or 0.0)
        row = {"concept": concept, "feature": feature, "rule": rule, "strength": strength, "n_windows": len(seqs)}
        for positions, suffix in (("firing", ""), ("all", "_everywhere")):
            out = steer(lm, layer, sae, feature, seqs, strength, mode="clamp", n_random=n_random, seed=seed,
                        marks=marks, positions=positions)
            control = np.asarray(out["control_dp_firing"])
            q95 = float(np.quantile(control, 0.95)) if control.size else float("nan")
            applied = out["n_firing"] > 0 and (positions == "all" or out["n_fired"] > 0)
            p = control_p(float(out["dp_firing"]), control)
            row.update({f"dp_motif{suffix}": float(out["dp_firing"]), f"dp_other{suffix}": float(out["dp_other"]),
                        f"control_dp_motif_median{suffix}": float(np.median(control)),
                        f"control_dp_motif_q95{suffix}": q95, f"kl_motif{suffix}": float(out["kl_firing"]),
                        f"control_kl_motif_q95{suffix}": float(np.quantile(out["control_kl_firing"], 0.95)),
                        f"control_p_motif{suffix}": p,
                        f"raises_motif{suffix}": bool(applied and out["dp_firing"] > 0.0 and p <= CONTROL_ALPHA)})
            if positions == "firing":
                row.update({"n_motif_bases": int(out["n_firing"]), "n_clamped": int(out["n_fired"])})
        rows.append(row)
    numbers = ("dp_motif", "dp_other", "control_dp_motif_median", "control_dp_motif_q95", "kl_motif",
               "control_kl_motif_q95", "control_p_motif")
    schema = {"concept": pl.String, "feature": pl.Int64, "rule": pl.String, "strength": pl.Float64,
              "n_windows": pl.Int64, "n_motif_bases": pl.Int64, "n_clamped": pl.Int64,
              **{k: pl.Float64 for k in numbers}, "raises_motif": pl.Boolean,
              **{f"{k}_everywhere": pl.Float64 for k in numbers}, "raises_motif_everywhere": pl.Boolean}
    return pl.DataFrame(rows, schema=schema).select(list(schema))


def check_rows(steering: pl.DataFrame) -> pl.DataFrame:
    """The steering rows the check counts: matched features (rule per_base or instance), not the
    per_base_best rows reported beside."""
    return steering.filter(pl.col("rule") != "per_base_best")


@dataclass
class PlantedGenome:
    """The planted genome as the calibration reads it: its sequence, planted BED, windows and what
    it was drawn from (the background chain and the motifs' frequency matrices, for the oracle)."""

    sequence: str
    elements: pl.DataFrame
    windows: pl.DataFrame
    transition: np.ndarray
    """float64 [4**k, 4] background chain."""
    motif_freqs: dict[str, np.ndarray]
    """NAME -> float64 [4, w] frequencies (A, C, G, T rows) of each planted motif."""


def load_planted_genome(fasta: str | Path, bed: str | Path, windows: str | Path, stats: str | Path) -> PlantedGenome:
    """The planted genome from the `planted_genome` stage's files (FASTA, BED, stats JSON) and its windows."""
    import json

    from interp.genome.fasta import read_fasta
    from interp.sae.planted_genome import motif_frequencies, read_planted_bed

    info = json.loads(Path(stats).read_text())
    return PlantedGenome(next(iter(read_fasta(fasta).values())), read_planted_bed(bed), pl.read_parquet(windows),
                         np.asarray(info["background_transition"]), motif_frequencies(info["config"]["motifs"]))


def planted_calibration(units: pl.DataFrame, genome: PlantedGenome, store_path: str | Path, lm, layer: str,
                        sae: SparseAutoencoder, features: pl.DataFrame, lm_metrics: dict, sae_metrics: dict,
                        targets: PlantedTargets, sae_cfg, steer: dict) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The whole planted check: (match table, steering table, summary).

    units: `label_units` output on the planted tracks; genome: the planted genome, its windows split into
    blocks as the SAE's training split (`sae_cfg`: split_block_bases, validation/test fractions, seed), so
    thresholds come from validation blocks and steering only sees test blocks; store_path: the layer's
    token store (for the instance-level statistics); lm / sae: the trained models; features: the SAE's
    per-feature table (mean_activation); lm_metrics: the pretrain stage's held-out CE and Markov
    baselines; steer: keyword settings of `steering_table`.

    The match table has per type the per-base match (`match_table`), InterPLM's instance-level match
    (`instance_scores`; `matched_instance` = instance F1 >= min_f1 and lift >= min_lift) and the PWM
    oracle's per-base test F1 (`interp.sae.planted_oracle`; null for the repeat and the islands). The
    summary passes (`pass`) when the LM beats order 3, the per-base match share reaches its target and
    every steered motif feature raises its motif; `pass_instance` is the same with the instance-level
    share.
    """
    from interp.sae.concepts import at_least
    from interp.sae.planted_oracle import oracle_table
    from interp.sae.splits import TEST, block_split, windows_within

    windows, elements = genome.windows, genome.elements
    split = block_split(windows, sae_cfg.split_block_bases, sae_cfg.validation_fraction, sae_cfg.test_fraction,
                        sae_cfg.seed)
    contig = windows["contig"][0]
    oracle = oracle_table(genome.sequence, elements.filter(pl.col("contig") == contig), genome.transition,
                          genome.motif_freqs, base_split(windows, split, contig, len(genome.sequence), tokens=True))
    instance = instance_scores(sae, store_path, windows, split, elements)
    match = (match_table(units, targets)
             .join(oracle.select("concept", "oracle_f1", "oracle_precision", "oracle_recall", "oracle_instance_f1"),
                   on="concept", how="left", maintain_order="left")
             .join(instance, on="concept", how="left", maintain_order="left")
             .join(baseline_columns(sae_metrics), on="concept", how="left", maintain_order="left")
             .with_columns((at_least("instance_f1", targets.min_f1) & at_least("instance_lift", targets.min_lift))
                           .alias("matched_instance")))
    verdict = match_verdict(match, targets)
    verdict_instance = match_verdict(match.with_columns(pl.col("matched_instance").alias("matched")), targets)
    test = windows.filter(pl.Series(windows_within(split, windows, TEST)))
    steering = steering_table(lm, layer, sae, match, features, test, elements, seed=sae_cfg.seed,
                              best_unmatched=True, **steer)
    lm_pass = bool(lm_metrics["heldout_ce"] < lm_metrics["baseline_order3_ce"])
    checked = check_rows(steering)
    steer_pass = bool(checked.height > 0 and checked["raises_motif"].all())
    summary = {
        "lm": {k: lm_metrics[k] for k in ("heldout_ce", "baseline_order0_ce", "baseline_order3_ce",
                                          "n_heldout_bases", "steps", "n_params")},
        "lm_beats_order3": lm_pass,
        "sae": {k: sae_metrics.get(k) for k in ("architecture", "fvu", "l0", "dead_fraction", "dense_fraction",
                                                "loss_recovered", "n_features", "k")},
        "match": match.to_dicts(), **{f"match_{k}": v for k, v in verdict.items()},
        **{f"match_instance_{k}": v for k, v in verdict_instance.items() if k != "targets"},
        "match_rule": {"per_base": "the type's feature of best validation per-base F1; matched when its test "
                                   "per-base F1 >= min_f1 and lift >= min_lift (the target)",
                       "instance": "InterPLM's f1_per_domain: per-base precision, recall per instance (fires on "
                                   ">= 1 base of it); the type's feature of best validation instance F1; matched "
                                   "when its test instance F1 >= min_f1 and lift >= min_lift (reported beside)",
                       "baselines": "probe_f1: a logistic probe on the raw activations (train blocks; threshold on "
                                    "validation, F1 on test); neuron_f1: the best raw neuron, chosen as the "
                                    "features are (reported beside, never substituted)"},
        "steering": steering.to_dicts(), "steering_pass": steer_pass,
        "pass": bool(lm_pass and verdict["pass"] and steer_pass),
        "pass_instance": bool(lm_pass and verdict_instance["pass"] and steer_pass),
        "layer": layer,
    }
    return match, steering, json_nulls(summary)


def json_nulls(obj):
    """`obj` with every NaN or infinite float (an undefined statistic) as None: null in JSON, where NaN is
    not a value (json.dumps would write the bare token NaN, which strict readers reject)."""
    from interp.sae.concepts import finite_or_none

    if isinstance(obj, dict):
        return {k: json_nulls(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_nulls(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    return obj
