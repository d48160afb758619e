"""Causal check of an SAE feature by steering the built-in LM.

A forward hook on block i adds `strength` x the feature's decoder direction (store scale) to the
layer's output at every position ("add"), or sets the feature's activation to `strength` while
keeping the SAE's error term ("clamp": h + (strength - a_f(h)) d_f). Every base is scored once
while masked (mask groups, as for loss recovered); we compare the LM's predicted base
distributions with and without the intervention: KL(steered || clean) and the change in the
probability of the sequence's own base, separately at positions where the feature fires on the
clean run and elsewhere. The same intervention along random directions of the same norm is the
control: a feature's effect counts only where it exceeds the control's 95th percentile.
"""

from __future__ import annotations

import numpy as np
import torch

from interp.lm.model import MASK_ID, PAD_ID, TinyDNALM, encode
from interp.sae.model import SparseAutoencoder
from interp.sae.splice import _layer_module


def _batches(sequences: list[str], context: int, n_mask_groups: int, seed: int, batch_size: int):
    rng = np.random.default_rng([seed, 505])
    items = []
    for piece in (encode(s[i:i + context]) for s in sequences for i in range(0, len(s), context)):
        offset = int(rng.integers(n_mask_groups))
        group = (torch.arange(len(piece)) + offset) % n_mask_groups
        for r in range(n_mask_groups):
            items.append((piece, (group == r) & (piece < 4)))
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        length = max(len(p) for p, _ in chunk)
        inputs = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)
        scored = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (p, m) in enumerate(chunk):
            inputs[row, :len(p)] = p
            scored[row, :len(p)] = m
        targets = inputs.clone()
        inputs[scored] = MASK_ID
        yield inputs, scored, targets


@torch.inference_mode()
def steer(lm: TinyDNALM, layer: str, sae: SparseAutoencoder, feature: int, sequences: list[str],
          strength: float, mode: str = "add", n_random: int = 8, n_mask_groups: int = 7, seed: int = 0,
          batch_size: int = 32) -> dict:
    """Effect of steering `feature` vs random directions of the same norm.

    Returns {kl_firing, kl_other, dp_firing, dp_other (mean change in p(own base)), n_firing,
    n_other, control_kl_firing / control_kl_other (lists over random directions), control_dp_*,
    exceeds_control (KL at firing positions above the controls' 95th percentile)}.
    """
    if mode not in ("add", "clamp"):
        raise ValueError(f"steering mode must be 'add' or 'clamp', got {mode!r}")
    lm, sae = lm.eval(), sae.eval()
    module = _layer_module(lm, layer)
    direction = (sae.W_dec[feature] / sae.input_scale).detach()
    gen = torch.Generator().manual_seed(seed)
    randoms = torch.randn(n_random, direction.numel(), generator=gen)
    randoms = randoms / randoms.norm(dim=1, keepdim=True) * direction.norm()
    state = {"dir": None, "fires": None}

    def hook(_module, _inputs, output):
        flat = output.reshape(-1, output.shape[-1])
        act = sae.encode(flat)[:, feature]
        if state["dir"] is None:
            state["fires"] = (act > 0).reshape(output.shape[:-1])
            return output
        amount = (strength - act) if mode == "clamp" else torch.full_like(act, strength)
        return (flat + amount[:, None] * state["dir"][None]).reshape(output.shape)

    directions = [direction] + list(randoms)
    sums = np.zeros((len(directions), 4))  # kl_firing, kl_other, dp_firing, dp_other
    n_firing = n_other = 0
    handle = module.register_forward_hook(hook)
    try:
        for inputs, scored, targets in _batches(sequences, lm.cfg.max_len, n_mask_groups, seed, batch_size):
            state["dir"] = None
            logp_clean = torch.log_softmax(lm(inputs).float(), dim=-1)[scored]
            fires = state["fires"][scored]
            own = targets[scored][:, None]
            p_own_clean = logp_clean.exp().gather(1, own)[:, 0]
            n_firing += int(fires.sum())
            n_other += int((~fires).sum())
            for j, d in enumerate(directions):
                state["dir"] = d
                logp = torch.log_softmax(lm(inputs).float(), dim=-1)[scored]
                kl = (logp.exp() * (logp - logp_clean)).sum(dim=1)
                dp = logp.exp().gather(1, own)[:, 0] - p_own_clean
                sums[j] += [float(kl[fires].sum()), float(kl[~fires].sum()),
                            float(dp[fires].sum()), float(dp[~fires].sum())]
    finally:
        handle.remove()
    means = sums / np.array([max(n_firing, 1), max(n_other, 1), max(n_firing, 1), max(n_other, 1)])
    control = means[1:]
    return {
        "feature": feature, "mode": mode, "strength": strength,
        "kl_firing": means[0, 0], "kl_other": means[0, 1], "dp_firing": means[0, 2], "dp_other": means[0, 3],
        "n_firing": n_firing, "n_other": n_other,
        "control_kl_firing": control[:, 0].tolist(), "control_kl_other": control[:, 1].tolist(),
        "control_dp_firing": control[:, 2].tolist(), "control_dp_other": control[:, 3].tolist(),
        "exceeds_control": bool(n_firing > 0 and means[0, 0] > np.quantile(control[:, 0], 0.95)),
    }
