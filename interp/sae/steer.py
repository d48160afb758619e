"""Causal check of an SAE feature by steering the built-in LM.

At the layer (block i, or "embed", the embedding sum) it adds `strength` x the feature's decoder direction (store scale) to the
layer's output at every position ("add"), or sets the feature's activation to `strength` while
keeping the SAE's error term ("clamp": h + (strength - a_f(h)) d_f), at every position
(`positions="all"`) or only where the feature fires on the clean, unmasked sequence (`positions="firing"`:
the feature amplified where it is present, not written where it never is). Every base is scored once
while masked (mask groups, as for loss recovered). The blocks up to the layer run once per batch and only the rest
of the model once per direction (`TinyDNALM.forward_from`), as a forward hook at the layer would. We compare the LM's predicted base
distributions with and without the intervention: KL(steered || clean) and the change in the
probability of the sequence's own base, separately at positions where the feature fires on the
clean, unmasked sequence and elsewhere. The same intervention along random directions of the same norm is the
control, read as a Monte Carlo test (`control_p`): p = (1 + controls at least as large) / (1 + controls), and a
feature's effect counts when p <= CONTROL_ALPHA, which takes at least 19 controls and an effect above all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from interp.lm.model import MASK_ID, PAD_ID, TinyDNALM, encode
from interp.sae.model import SparseAutoencoder
from interp.sae.splice import _layer_module

#: level of the steering control's Monte Carlo test (`control_p`)
CONTROL_ALPHA = 0.05
#: random directions per feature by default: the fewest with which p can reach CONTROL_ALPHA
N_RANDOM = 19


def control_p(effect: float, control: np.ndarray | list[float]) -> float:
    """Monte Carlo p [0, 1] of `effect` against same-norm random-direction effects `control` [n_random]:
    (1 + #{control >= effect}) / (1 + n_random); the random directions are exchangeable with the feature's under
    "the feature's direction is no more effective than a random one". NaN effect or no control: 1."""
    control = np.asarray(control, dtype=np.float64)
    if not np.isfinite(effect) or control.size == 0:
        return 1.0
    return float((1 + np.count_nonzero(control >= effect)) / (1 + control.size))


def _batches(sequences: list[str], context: int, n_mask_groups: int, seed: int, batch_size: int,
             marks: list[np.ndarray] | None = None):
    """(inputs, scored, targets, marked) batches; marked (bool, as scored) is all False without `marks`."""
    if marks is not None:
        if len(marks) != len(sequences):
            raise ValueError(f"marks: {len(marks)} arrays for {len(sequences)} sequences")
        for k, (s, m) in enumerate(zip(sequences, marks, strict=True)):
            if len(m) != len(s):
                raise ValueError(f"marks: sequence {k} has {len(s)} bases but {len(m)} marks")
    rng = np.random.default_rng([seed, 505])
    items = []
    for k, s in enumerate(sequences):
        for i in range(0, len(s), context):
            piece = encode(s[i:i + context])
            mark = (torch.from_numpy(np.asarray(marks[k][i:i + context], dtype=bool)) if marks is not None
                    else torch.zeros(len(piece), dtype=torch.bool))
            offset = int(rng.integers(n_mask_groups))
            group = (torch.arange(len(piece)) + offset) % n_mask_groups
            for r in range(n_mask_groups):
                items.append((piece, (group == r) & (piece < 4), mark))
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        length = max(len(p) for p, _, _ in chunk)
        inputs = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)
        scored = torch.zeros((len(chunk), length), dtype=torch.bool)
        marked = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (p, m, mk) in enumerate(chunk):
            inputs[row, :len(p)] = p
            scored[row, :len(p)] = m
            marked[row, :len(p)] = mk
        targets = inputs.clone()
        inputs[scored] = MASK_ID
        yield inputs, scored, targets, marked


@torch.inference_mode()
def steer(lm: TinyDNALM, layer: str, sae: SparseAutoencoder, feature: int, sequences: list[str],
          strength: float, mode: str = "add", n_random: int = N_RANDOM, n_mask_groups: int = 7, seed: int = 0,
          batch_size: int = 32, marks: list[np.ndarray] | None = None, positions: str = "all") -> dict:
    """Effect of steering `feature` vs random directions of the same norm.

    marks: optional bool array per sequence (one value per base); when given, the "firing" group is
    the marked bases (e.g. a planted motif's bases) instead of where the feature fires.
    positions: "all" (intervene at every position) or "firing" (only where the feature fires on the
    clean, unmasked sequence; the random directions are applied at the same positions).

    Returns {feature, mode, positions, strength, n_fired (scored positions where the feature fires on the
    unmasked sequence), kl_firing, kl_other, dp_firing, dp_other (mean change in p(own base)), n_firing,
    n_other, control_kl_firing / control_kl_other (lists over random directions), control_dp_*,
    control_p (`control_p` of the KL at firing positions), exceeds_control (control_p <= CONTROL_ALPHA, with
    positions scored)}.
    """
    if mode not in ("add", "clamp"):
        raise ValueError(f"steering mode must be 'add' or 'clamp', got {mode!r}")
    if positions not in ("all", "firing"):
        raise ValueError(f"steering positions must be 'all' or 'firing', got {positions!r}")
    lm, sae = lm.eval(), sae.eval()
    _layer_module(lm, layer)  # a layer of the LM, or a clear error
    device = next(lm.parameters()).device
    direction = (sae.W_dec[feature] / sae.input_scale).detach().to(device)
    # drawn on the CPU generator whatever the device, so a seed gives the same controls everywhere
    gen = torch.Generator().manual_seed(seed)
    randoms = torch.randn(n_random, direction.numel(), generator=gen).to(device)
    randoms = randoms / randoms.norm(dim=1, keepdim=True) * direction.norm()
    directions = [direction] + list(randoms)
    sums = np.zeros((len(directions), 4))  # kl_firing, kl_other, dp_firing, dp_other
    n_firing = n_other = n_fired = 0  # n_fired: positions where the feature fires (unmasked pass)

    def feature_of(hidden: torch.Tensor) -> torch.Tensor:
        """The feature's activation [b * L] (the SAE's dtype) on block output hidden [b, L, d] (read in the SAE's
        device and dtype)."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        return sae.encode(flat.to(sae.W_dec))[:, feature].to(flat.device)

    # the blocks up to the layer run once per batch; only the rest of the model runs once per direction
    for batch in _batches(sequences, lm.cfg.max_len, n_mask_groups, seed, batch_size, marks):
        inputs, scored, targets, marked = (t.to(device) for t in batch)
        fired = (feature_of(lm.forward_layers(targets, [layer])[layer]) > 0).reshape(targets.shape)
        n_fired += int(fired[scored].sum())  # on the real, unmasked bases
        hidden = lm.forward_layers(inputs, [layer])[layer]
        logp_clean = torch.log_softmax(lm.forward_from(hidden, layer, inputs).float(), dim=-1)[scored]
        act = feature_of(hidden)
        amount = (strength - act) if mode == "clamp" else torch.full_like(act, strength)
        if positions == "firing":
            amount = amount * fired.reshape(-1).to(amount.dtype)
        flat = hidden.reshape(-1, hidden.shape[-1])
        fires = (marked if marks is not None else fired)[scored]
        own = targets[scored][:, None]
        p_own_clean = logp_clean.exp().gather(1, own)[:, 0]
        n_firing += int(fires.sum())
        n_other += int((~fires).sum())
        for j, d in enumerate(directions):
            steered = (flat + amount[:, None] * d[None]).reshape(hidden.shape).to(hidden.dtype)
            logp = torch.log_softmax(lm.forward_from(steered, layer, inputs).float(), dim=-1)[scored]
            kl = (logp.exp() * (logp - logp_clean)).sum(dim=1)
            dp = logp.exp().gather(1, own)[:, 0] - p_own_clean
            sums[j] += [float(kl[fires].sum()), float(kl[~fires].sum()),
                        float(dp[fires].sum()), float(dp[~fires].sum())]
    means = sums / np.array([max(n_firing, 1), max(n_other, 1), max(n_firing, 1), max(n_other, 1)])
    control = means[1:]
    p = control_p(float(means[0, 0]), control[:, 0])
    return {
        "feature": feature, "mode": mode, "positions": positions, "strength": strength, "n_fired": n_fired,
        "kl_firing": means[0, 0], "kl_other": means[0, 1], "dp_firing": means[0, 2], "dp_other": means[0, 3],
        "n_firing": n_firing, "n_other": n_other,
        "control_kl_firing": control[:, 0].tolist(), "control_kl_other": control[:, 1].tolist(),
        "control_dp_firing": control[:, 2].tolist(), "control_dp_other": control[:, 3].tolist(),
        "control_p": p, "exceeds_control": bool(n_firing > 0 and p <= CONTROL_ALPHA),
    }


@dataclass
class SteerConfig:
    """Which features the workflow steers, and how hard."""

    n_features: int = 4
    """labelled features steered (highest test F1 first), topped up with the densest unlabelled ones."""
    mode: str = "clamp"
    """clamp (set the feature's activation) or add (add its decoder direction)."""
    strength_multiplier: float = 4.0
    """clamp value (or added amount) = this x the feature's mean activation when firing."""
    n_random: int = N_RANDOM
    """random directions of the same norm per feature (the control); at least 19, so that the control's Monte
    Carlo p can reach 0.05."""
    max_windows: int = 20
    """windows lying wholly in test blocks that are scored."""


def steer_table(lm: TinyDNALM, layer: str, sae: SparseAutoencoder, features: pl.DataFrame, sequences: list[str],
                cfg: SteerConfig, seed: int = 0, window_sequences: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per steered feature: label, strength, KL and dp at/away from firing positions, the
    control's median and 95th percentile, its Monte Carlo p (`control_p`), exceeds_control, and `flag` = labelled, fires in the scored
    windows (`judged`), yet no effect beyond the control. Each feature is scored on `sequences` plus
    its own top windows (`window_sequences`: window_id -> sequence), so it fires somewhere."""
    alive = features.filter(pl.col("density") > 0)
    labelled = alive.filter(pl.col("label") != "unlabelled").sort(["f1", "feature"], descending=[True, False])
    others = alive.filter(pl.col("label") == "unlabelled").sort(["density", "feature"], descending=[True, False])
    chosen = pl.concat([labelled, others]).head(cfg.n_features)
    rows = []
    for r in chosen.iter_rows(named=True):
        strength = cfg.strength_multiplier * float(r["mean_activation"])
        own = [window_sequences[w] for w in (r.get("top_windows") or "").split(",") if w and window_sequences
               and w in window_sequences]
        out = steer(lm, layer, sae, int(r["feature"]), own + sequences, strength, cfg.mode, cfg.n_random,
                    seed=seed)
        ctrl = np.asarray(out["control_kl_firing"])
        rows.append({"feature": int(r["feature"]), "label": r["label"], "mode": cfg.mode, "strength": strength,
                     "kl_firing": out["kl_firing"], "kl_other": out["kl_other"],
                     "dp_firing": out["dp_firing"], "dp_other": out["dp_other"],
                     "control_kl_firing_median": float(np.median(ctrl)),
                     "control_kl_firing_q95": float(np.quantile(ctrl, 0.95)),
                     "control_dp_firing_median": float(np.median(out["control_dp_firing"])),
                     "control_p": out["control_p"], "n_firing": out["n_firing"], "n_other": out["n_other"],
                     "exceeds_control": out["exceeds_control"], "judged": out["n_firing"] > 0,
                     "flag": r["label"] != "unlabelled" and out["n_firing"] > 0 and not out["exceeds_control"]})
    return pl.DataFrame(rows, schema={"feature": pl.Int64, "label": pl.String, "mode": pl.String,
                                      "strength": pl.Float64, "kl_firing": pl.Float64, "kl_other": pl.Float64,
                                      "dp_firing": pl.Float64, "dp_other": pl.Float64,
                                      "control_kl_firing_median": pl.Float64, "control_kl_firing_q95": pl.Float64,
                                      "control_dp_firing_median": pl.Float64, "control_p": pl.Float64,
                                      "n_firing": pl.Int64,
                                      "n_other": pl.Int64, "exceeds_control": pl.Boolean, "judged": pl.Boolean,
                                      "flag": pl.Boolean})
