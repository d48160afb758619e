"""`SparseAutoencoder`: the shared encoder / unit-norm decoder of every SAE architecture.

Shapes: inputs x [n, d_in] in the activation scale of the store; features [n, F] dense tensors.
Internally inputs are multiplied by `input_scale` (chosen at training time so the mean squared
norm of a training token is d_in); `encode`/`decode`/`forward` take and return the original scale,
the `*_normalized` variants work in the scaled space used by the loss. The decoder
W_dec [F, d_in] has unit-norm rows (one direction per feature).

An architecture (topk.py, relu.py, batchtopk.py, jumprelu.py, matryoshka.py) subclasses this and
defines `encode_normalized` (inference, batch-independent), `train_encode` (training-time code
and its sparsity penalty, a `TrainCode`) and, where needed, `reconstruction_loss`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TrainCode(NamedTuple):
    """What `SparseAutoencoder.train_encode` returns for one batch of n normalised tokens."""

    dense: torch.Tensor | None
    """[n, F] the code, dense (zeros where a feature is off), where the architecture computes it; None where
    `active` holds it (then `features` builds it, only for a caller that needs it)."""
    pre: torch.Tensor
    """[n, F] pre-activations, before any non-linearity (AuxK reads the dead features' from them)."""
    penalty: torch.Tensor
    """Scalar sparsity penalty added to the loss (zero for the k-sparse architectures)."""
    active: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
    """The code's non-zeros, where the architecture has them without a search, so that the reconstruction sums
    their decoder rows (`decode_active_normalized`) instead of multiplying by the whole dictionary: (values [n, m],
    feature indices [n, m], None) with m per token (TopK: m = k), or (values [nnz], feature indices [nnz],
    offsets [n]) grouped by token, token i's starting at offsets[i] (BatchTopK). Entries of value 0 may be among
    them."""

    @property
    def features(self) -> torch.Tensor:
        """[n, F] the code, dense: `dense`, or `active` scattered into zeros (differentiable in the values)."""
        if self.dense is not None:
            return self.dense
        values, indices, offsets = self.active
        n, n_features = self.pre.shape
        if offsets is None:
            return SparseAutoencoder.scatter_rows((values, indices), n_features)
        token = torch.repeat_interleave(torch.arange(n, device=values.device), self.counts())
        return values.new_zeros(n, n_features).index_put((token, indices), values)

    def counts(self) -> torch.Tensor:
        """int64 [n]: entries of `active` per token."""
        values, _, offsets = self.active
        if offsets is None:
            return torch.full((values.shape[0],), values.shape[1], dtype=torch.long, device=values.device)
        return torch.diff(offsets, append=offsets.new_tensor([values.numel()]))

    def fired(self) -> torch.Tensor:
        """bool [F]: features above 0 on some token of the batch (from `active` without the dense code)."""
        if self.active is None:
            return (self.dense > 0).any(dim=0)
        values, indices, _ = self.active
        fired = torch.zeros(self.pre.shape[1], dtype=torch.bool, device=values.device)
        return fired.index_fill_(0, indices[values > 0], True)

    def mean_l0(self) -> float:
        """Mean number of features above 0 per token."""
        on = self.dense > 0 if self.active is None else self.active[0] > 0
        return int(on.sum()) / max(self.pre.shape[0], 1)


class SparseAutoencoder(nn.Module, ABC):
    architecture = "base"

    def __init__(self, d_in: int, n_features: int, k: int) -> None:
        super().__init__()
        self.d_in, self.n_features, self.k = d_in, n_features, k
        self.encoder = nn.Linear(d_in, n_features)
        self.encoder.bias.data.zero_()
        # Decoder starts as the transpose of the encoder (rows of W_dec = rows of W_enc).
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.set_decoder_norm_to_unit()

    def hparams(self) -> dict:
        """Architecture-specific constructor arguments beyond (d_in, n_features, k), stored in checkpoints."""
        return {}

    @torch.no_grad()
    def set_decoder_norm_to_unit(self) -> None:
        """Rescale each decoder row to unit L2 norm."""
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self) -> None:
        """Drop the gradient component along each decoder row: it could only change the row's norm,
        which the renormalisation after each step undoes anyway."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data

    def pre_activations(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """W_enc (x - b_dec) + b_enc: [n, F], before any non-linearity.

        Computed as W_enc x + b_enc - W_enc b_dec: the same numbers up to rounding, but the backward pass then
        gets b_dec's gradient from a vector product instead of the [n, F] x [F, d] product that the gradient of
        the input (x - b_dec) would cost."""
        return self.encoder(x_normalized) - F.linear(self.b_dec, self.encoder.weight)

    @staticmethod
    def top_k_rows(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the k largest entries [n, k], their column indices [n, k]) of each row of values [n, F]."""
        return values.topk(k, dim=1, sorted=False)

    @staticmethod
    def scatter_rows(rows: tuple[torch.Tensor, torch.Tensor], n_features: int) -> torch.Tensor:
        """Dense [n, F] tensor holding (values [n, m], indices [n, m]) and zeros elsewhere."""
        values, indices = rows
        return values.new_zeros(values.shape[0], n_features).scatter(1, indices, values)

    @abstractmethod
    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """Inference-time features [n, F] of normalised inputs [n, d_in]; each architecture defines it."""

    def encode_active_normalized(self, x_normalized: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """`encode_normalized`'s code as its entries per token, in `TrainCode.active`'s layout, where the architecture
        has them without a search (TopK: its k (value, index) pairs, values >= 0, zeros among them); None where the
        code is dense (then use `encode_normalized`)."""
        return None

    @torch.no_grad()
    def init_from_sample(self, x_normalized: torch.Tensor) -> None:
        """Data-dependent initialisation after b_dec is set (sample [n, d_in], normalised); default none."""

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        """Training-time code of a batch (`TrainCode`: features, pre-activations, sparsity penalty)."""
        pre = self.pre_activations(x_normalized)
        return TrainCode(self.encode_normalized(x_normalized), pre, pre.new_zeros(()))

    def decode_normalized(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.W_dec + self.b_dec

    def decode_active_normalized(self, values: torch.Tensor, indices: torch.Tensor,
                                 offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Sum over each token's active features of value x decoder row (no b_dec): [n, d_in], O(nnz d)
        (`F.embedding_bag`, as EleutherAI's sparsify decodes on CPU) where the dense product costs O(n F d).
        values, indices: [n, m] (m per token; offsets None), or [nnz] grouped by token with offsets [n]."""
        return F.embedding_bag(indices, self.W_dec, offsets, per_sample_weights=values, mode="sum")

    def reconstruction_loss(self, x_normalized: torch.Tensor, code: TrainCode,
                            token_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised MSE: sum of squared errors / (n * token variance), error [n, d] of the full code)."""
        recon = (self.decode_normalized(code.features) if code.active is None
                 else self.decode_active_normalized(*code.active) + self.b_dec)
        error = x_normalized - recon
        return error.pow(2).sum() / (x_normalized.shape[0] * token_variance), error

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, d_in] (store scale) -> non-negative features [n, F]."""
        return self.encode_normalized(x * self.input_scale)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """features [n, F] -> reconstruction [n, d_in] in the store scale."""
        return self.decode_normalized(features) / self.input_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [n, d_in] -> (reconstruction [n, d_in], features [n, F])."""
        features = self.encode(x)
        return self.decode(features), features
