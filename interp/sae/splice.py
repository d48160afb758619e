"""Loss recovered: splice an SAE's reconstruction into the built-in LM at its layer.

A forward hook replaces the output of the layer ("block<i>", the residual stream after block i, or "embed",
the embedding sum)
with (a) itself (clean), (b) zeros (zero ablation) or (c) the SAE's reconstruction of it, and the
masked-LM cross-entropy is measured on the same masked positions of held-out windows:
loss recovered = (L_zero - L_sae) / (L_zero - L_clean); 1 means the SAE loses nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from interp.lm.model import MASK_ID, PAD_ID, TinyDNALM, encode
from interp.sae.model import SparseAutoencoder


def _layer_module(lm: TinyDNALM, layer: str) -> torch.nn.Module:
    """The module whose output is `layer`'s activation: block i for "block<i>"; for "embed" the embedding
    dropout, whose output in eval mode is the embedding sum itself (what `forward_layers` returns as "embed")."""
    if layer not in lm.layer_names:
        raise ValueError(f"{layer!r} is not a layer of the LM ({', '.join(lm.layer_names)})")
    return lm.embed_drop if layer == "embed" else lm.blocks[lm.layer_names.index(layer) - 1]


@torch.inference_mode()
def masked_lm_losses(lm: TinyDNALM, layer: str, sae: SparseAutoencoder, sequences: list[str],
                     n_mask_groups: int = 7, seed: int = 0, batch_size: int = 32) -> dict:
    """Mean masked-LM cross-entropy (nats per masked ACGT base) with the layer clean, zeroed and
    replaced by the SAE reconstruction; the same masks for all three.

    sequences: DNA strings, cut into pieces of the LM's context. Each piece is run n_mask_groups
    times, pass r masking positions (i + offset) % n_mask_groups == r (seeded offset per piece), so
    every ACGT base is scored once with about 1/n_mask_groups of the bases masked.
    Returns {clean, zero, sae, loss_recovered, n_masked}.
    """
    lm = lm.eval()
    sae = sae.eval()
    module = _layer_module(lm, layer)
    context = lm.cfg.max_len
    device = next(lm.parameters()).device
    rng = np.random.default_rng([seed, 404])
    pieces, masks = [], []
    for piece in (encode(s[i:i + context]) for s in sequences for i in range(0, len(s), context)):
        offset = int(rng.integers(n_mask_groups))
        group = (torch.arange(len(piece)) + offset) % n_mask_groups
        for r in range(n_mask_groups):
            pieces.append(piece)
            masks.append((group == r) & (piece < 4))
    mode = {"now": "clean"}

    def hook(_module, _inputs, output):
        if mode["now"] == "zero":
            return torch.zeros_like(output)
        if mode["now"] == "sae":
            flat = output.reshape(-1, output.shape[-1]).to(sae.W_dec)  # the SAE's device and dtype
            return sae.decode(sae.encode(flat)).reshape(output.shape).to(output)
        return output

    totals = {"clean": 0.0, "zero": 0.0, "sae": 0.0}
    n = 0
    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, len(pieces), batch_size):
            chunk, chunk_masks = pieces[start:start + batch_size], masks[start:start + batch_size]
            length = max(len(p) for p in chunk)
            inputs = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)
            scored = torch.zeros((len(chunk), length), dtype=torch.bool)
            for row, (p, m) in enumerate(zip(chunk, chunk_masks, strict=True)):
                inputs[row, :len(p)] = p
                scored[row, :len(p)] = m
            inputs, scored = inputs.to(device), scored.to(device)
            targets = inputs[scored]
            inputs[scored] = MASK_ID
            for name in totals:
                mode["now"] = name
                logp = torch.log_softmax(lm(inputs).float(), dim=-1)
                totals[name] -= float(logp[scored].gather(1, targets[:, None]).sum())
            n += int(scored.sum())
    finally:
        handle.remove()
    if n == 0:
        raise ValueError("no maskable A/C/G/T bases in the held-out windows")
    losses = {k: v / n for k, v in totals.items()}
    recovered = recovered_fraction(losses["clean"], losses["zero"], losses["sae"])
    return {**losses, "loss_recovered": recovered, "n_masked": n}


def recovered_fraction(clean: float, zero: float, sae: float) -> float:
    """(L_zero - L_sae) / (L_zero - L_clean); NaN when zero ablation does not hurt (undefined)."""
    gap = zero - clean
    return (zero - sae) / gap if gap > 0 else float("nan")
