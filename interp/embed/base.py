"""The one interface every model back-end implements.

An `Embedder` turns DNA strings into per-token activations of named layers, and says
which bases of its sequence every token covers, so pooling, token stores, SAEs and
concept scores work the same whatever the tokenizer (characters, k-mers or BPE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class TokenActivations:
    """Per-token activations of one layer for a batch of sequences.

    values:    float32 [n_tokens_total, d]; tokens of all sequences, concatenated.
    offsets:   int64 [n_seqs + 1]; tokens of sequence i are values[offsets[i]:offsets[i+1]].
    base_span: int32 [n_tokens_total, 2]; half-open [start, end) in bases, within its own
               sequence, of the bases a token covers. Special tokens (CLS, SEP, pads) have
               (-1, -1) and are left out of pooling and token stores.
    """

    values: np.ndarray
    offsets: np.ndarray
    base_span: np.ndarray

    @property
    def n_seqs(self) -> int:
        return len(self.offsets) - 1

    def real_token_mask(self) -> np.ndarray:
        """bool [n_tokens_total]: tokens that cover at least one base."""
        return self.base_span[:, 1] > self.base_span[:, 0]

    def mean_pool(self) -> np.ndarray:
        """float32 [n_seqs, d]: mean over each sequence's real (base-covering) tokens."""
        real = self.real_token_mask()
        seq_of_token = np.repeat(np.arange(self.n_seqs), np.diff(self.offsets))
        d = self.values.shape[1]
        sums = np.zeros((self.n_seqs, d), dtype=np.float64)
        np.add.at(sums, seq_of_token[real], self.values[real].astype(np.float64))
        counts = np.bincount(seq_of_token[real], minlength=self.n_seqs).astype(np.float64)
        if np.any(counts == 0):
            raise ValueError("a sequence has no base-covering token; cannot mean-pool it")
        return (sums / counts[:, None]).astype(np.float32)


class Embedder(Protocol):
    """What a model back-end offers.

    name:    model name (the card's `name`).
    layers:  hookable layer names, in depth order.
    context: the longest sequence, in bases, the model takes in one pass.
    device:  torch device string the model runs on.
    """

    name: str
    layers: list[str]
    context: int
    device: str

    def embed(self, seqs: list[str], layers: list[str]) -> dict[str, TokenActivations]:
        """Run the model on upper-case DNA strings; return activations of `layers`."""
        ...
