"""`TinyDNALM`: a small bidirectional pre-LN transformer over DNA characters, trained by masked LM.

Tokens are single characters: A C G T N plus [MASK] and [PAD]. Input is upper-cased here,
so soft-masked (lower-case) repeats look exactly like the rest of the genome to the model;
letters other than ACGT become N. The MLM head predicts one of the 4 bases.

Named layers (for hooks and embedders): "embed" is token + position embedding, "block<i>"
(1-based) the residual stream after block i. All are [batch, length, d_model].

Option `conv_kernel` (default 0 = off, the original architecture, bit for bit): a depthwise
convolution over neighbouring positions as the first residual branch of each block. Positions are
otherwise only the learned absolute embeddings, from which attention to "the base next to me" must
be learned separately at every position; on weakly structured sequence (an order-3 Markov
background) masked-LM training then sits at the base-composition (order-0) loss for thousands of
steps. The convolution gives every block relative position from the start.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interp.lm.config import TinyLMConfig

BASES = "ACGT"
VOCAB = ["A", "C", "G", "T", "N", "[MASK]", "[PAD]"]
N_ID, MASK_ID, PAD_ID = 4, 5, 6

_TOKEN_OF_BYTE = np.full(256, N_ID, dtype=np.int64)
for _i, _b in enumerate(BASES):
    _TOKEN_OF_BYTE[ord(_b)] = _i
    _TOKEN_OF_BYTE[ord(_b.lower())] = _i


def encode(seq: str) -> torch.Tensor:
    """LongTensor [L] of token ids; upper-cases first, non-ACGT letters -> N."""
    raw = np.frombuffer(seq.upper().encode("ascii", errors="replace"), dtype=np.uint8)
    return torch.from_numpy(_TOKEN_OF_BYTE[raw].copy())


class SelfAttention(nn.Module):
    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """x [b, L, d]; keep bool [b, L] (False = padding, never attended to)."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class LocalConv(nn.Module):
    """Depthwise Conv1d over positions (same padding); padded positions are zeroed before it, so they add nothing."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.conv_kernel, padding=cfg.conv_kernel // 2,
                              groups=cfg.d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if keep is not None:
            x = x * keep[..., None]
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    With cfg.conv_kernel > 0 a local mixer comes first: x + conv(ln(x)), a depthwise convolution
    over the neighbouring positions (relative position, which learned absolute embeddings learn slowly).
    """

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        if cfg.conv_kernel:
            self.ln0 = nn.LayerNorm(cfg.d_model)
            self.local = LocalConv(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                 nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.has_local = cfg.conv_kernel > 0

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if self.has_local:
            x = x + self.drop(self.local(self.ln0(x), keep))
        x = x + self.drop(self.attn(self.ln1(x), keep))
        return x + self.drop(self.mlp(self.ln2(x)))


class TinyDNALM(nn.Module):
    """Bidirectional character-level DNA transformer with a 4-way MLM head."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(len(VOCAB), cfg.d_model)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.d_model)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, len(BASES))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def layer_names(self) -> list[str]:
        return ["embed"] + [f"block{i + 1}" for i in range(self.cfg.n_layers)]

    def _keep(self, tokens: torch.Tensor) -> torch.Tensor | None:
        keep = tokens != PAD_ID
        return None if bool(keep.all()) else keep

    def _run(self, tokens: torch.Tensor, want: set[str],
             stop_early: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if tokens.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds max_len {self.cfg.max_len}")
        keep = self._keep(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)[None]
        found = {"embed": x} if "embed" in want else {}
        x = self.embed_drop(x)
        for i, block in enumerate(self.blocks):
            if stop_early and len(found) == len(want):  # the later blocks would change nothing returned
                break
            x = block(x, keep)
            if f"block{i + 1}" in want:
                found[f"block{i + 1}"] = x
        return x, found

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens long [b, L] -> logits [b, L, 4] over A, C, G, T."""
        x, _ = self._run(tokens, set())
        return self.head(self.ln_final(x))

    def forward_layers(self, tokens: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """tokens long [b, L] -> {layer name: float [b, L, d_model]} for the requested layers."""
        unknown = set(layers) - set(self.layer_names)
        if unknown:
            raise KeyError(f"unknown layers {sorted(unknown)}; this model has {self.layer_names}")
        _, found = self._run(tokens, set(layers), stop_early=True)
        return {name: found[name] for name in layers}

    def forward_from(self, hidden: torch.Tensor, layer: str, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [b, L, 4] from `hidden` [b, L, d_model] put in place of `layer`'s output ("embed": the
        embedding sum, fed to every block; "block<i>": the rest after block i): the remaining blocks, the final
        norm and the head, as `forward` runs them in eval mode (tokens [b, L]: the input, for its padding mask).
        With hidden = forward_layers(tokens, [layer])[layer] it equals forward(tokens)."""
        if layer not in self.layer_names:
            raise KeyError(f"unknown layer {layer!r}; this model has {self.layer_names}")
        keep = self._keep(tokens)
        x = hidden
        for block in self.blocks[self.layer_names.index(layer):]:
            x = block(x, keep)
        return self.head(self.ln_final(x))


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
