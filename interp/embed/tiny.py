"""`TinyEmbedder`: per-token activations of the built-in `tiny-dnalm` from its safetensors checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from interp.embed.base import TokenActivations
from interp.embed.pieces import check_finite, clean_sequences
from interp.errors import InputError
from interp.io import read_safetensors_metadata
from interp.lm.model import PAD_ID, TinyDNALM, TinyLMConfig, encode


def load_tiny_checkpoint(path: Path) -> TinyDNALM:
    """Rebuild TinyDNALM from a safetensors file whose metadata holds the architecture as JSON."""
    path = Path(path)
    meta = read_safetensors_metadata(path, "tiny-dnalm checkpoint (a safetensors file from the pretrain step)")
    try:
        if "config" not in meta:
            raise InputError(f"{path}: safetensors metadata has no 'config' (not a tiny-dnalm checkpoint)")
        model = TinyDNALM(TinyLMConfig(**json.loads(meta["config"])))
        model.load_state_dict(load_file(str(path)))
    except InputError:
        raise
    except Exception as err:  # corrupt file, wrong tensors: the user gave us a bad checkpoint
        raise InputError(f"{path}: cannot load tiny-dnalm checkpoint: {err}") from err
    return model.eval()


class TinyEmbedder:
    """Character-level embedder: one token per base, base_span [i, i+1), no special tokens returned.

    Sequences longer than `context` are cut into context-sized pieces, run separately and
    re-joined, so base_span is always in the original sequence's coordinates.
    """

    def __init__(self, checkpoint: Path, name: str = "tiny-dnalm", device: str = "cpu",
                 context: int | None = None, batch_pieces: int = 64, pooling: str = "mean") -> None:
        self.model = load_tiny_checkpoint(checkpoint).to(device)
        self.name = name
        self.device = device
        self.layers = self.model.layer_names
        self.context = min(context or self.model.cfg.max_len, self.model.cfg.max_len)
        self.d = self.model.cfg.d_model
        self.batch_pieces = batch_pieces
        self.pooling = pooling  # the card's: mean over the bases' tokens, or the last one
        self.input_counts: dict[str, int] = {}
        self.provenance = {"checkpoint": str(checkpoint), "trust_remote_code": False}

    @torch.inference_mode()
    def embed(self, seqs: list[str], layers: list[str]) -> dict[str, TokenActivations]:
        """DNA strings (any case) -> {layer: TokenActivations} with every base a token."""
        unknown = set(layers) - set(self.layers)
        if unknown:
            raise InputError(f"model {self.name}: unknown layers {sorted(unknown)}; it has {self.layers}")
        seqs, _ = clean_sequences(seqs, self.name, self.input_counts)  # refuse IUPAC codes instead of silently reading N
        pieces = [(i, s[a:a + self.context]) for i, s in enumerate(seqs) for a in range(0, len(s), self.context)]
        outputs: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        for start in range(0, len(pieces), self.batch_pieces):
            batch = [encode(p) for _, p in pieces[start:start + self.batch_pieces]]
            tokens = torch.full((len(batch), max(len(t) for t in batch)), PAD_ID, dtype=torch.long)
            for row, t in enumerate(batch):
                tokens[row, :len(t)] = t
            found = self.model.forward_layers(tokens.to(self.device), layers)
            for name in layers:
                acts = found[name].float().cpu().numpy()
                # a diverged checkpoint would otherwise carry NaN into every store, probe and SAE downstream
                last = pieces[min(start + self.batch_pieces, len(pieces)) - 1][0]
                check_finite(acts, self.name, name, f"sequences {pieces[start][0]}-{last}")
                outputs[name].extend(acts[row, :len(t)] for row, t in enumerate(batch))
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        positions = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]) if len(seqs) else \
            np.zeros(0, dtype=np.int32)
        base_span = np.stack([positions, positions + 1], axis=1).astype(np.int32)
        result = {}
        for name in layers:
            values = np.concatenate(outputs[name]) if outputs[name] else np.zeros((0, self.d), np.float32)
            result[name] = TokenActivations(values=values.astype(np.float32, copy=False), offsets=offsets,
                                            base_span=base_span)
        return result
