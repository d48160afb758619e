"""`SparseAutoencoder`: the shared encoder / unit-norm decoder of every SAE architecture.

Shapes: inputs x [n, d_in] in the activation scale of the store; features [n, F] dense tensors.
Internally inputs are multiplied by `input_scale` (chosen at training time so the mean squared
norm of a training token is d_in); `encode`/`decode`/`forward` take and return the original scale,
the `*_normalized` variants work in the scaled space used by the loss. The decoder
W_dec [F, d_in] has unit-norm rows (one direction per feature).

An architecture (topk.py, relu.py, batchtopk.py, jumprelu.py, matryoshka.py) subclasses this and
defines `encode_normalized` (inference, batch-independent), `train_encode` (training-time code
and its sparsity penalty) and, where needed, `reconstruction_loss`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


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
        """W_enc (x - b_dec) + b_enc: [n, F], before any non-linearity."""
        return self.encoder(x_normalized - self.b_dec)

    @staticmethod
    def select_top_k(values: torch.Tensor, k: int) -> torch.Tensor:
        """Keep the k largest entries of each row of values [n, F], zero the rest."""
        top, indices = values.topk(k, dim=1, sorted=False)
        return torch.zeros_like(values).scatter(1, indices, top)

    @abstractmethod
    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """Inference-time features [n, F] of normalised inputs [n, d_in]; each architecture defines it."""

    @torch.no_grad()
    def init_from_sample(self, x_normalized: torch.Tensor) -> None:
        """Data-dependent initialisation after b_dec is set (sample [n, d_in], normalised); default none."""

    def train_encode(self, x_normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training-time (features [n, F], pre-activations [n, F], sparsity penalty scalar)."""
        pre = self.pre_activations(x_normalized)
        return self.encode_normalized(x_normalized), pre, pre.new_zeros(())

    def decode_normalized(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.W_dec + self.b_dec

    def reconstruction_loss(self, x_normalized: torch.Tensor, features: torch.Tensor,
                            token_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised MSE: sum of squared errors / (n * token variance), error [n, d] of the full code)."""
        error = x_normalized - self.decode_normalized(features)
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
