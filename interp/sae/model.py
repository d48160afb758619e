"""`TopKSAE`: a sparse autoencoder that keeps the k largest ReLU pre-activations per token.

Shapes: inputs x [n, d_in] in the activation scale of the store; features [n, F] dense tensors with
at most k non-zeros per row. Internally inputs are multiplied by `input_scale` (chosen at training
time so the mean squared norm of a token is d_in); `encode`/`decode`/`forward` take and return the
original scale, the `*_normalized` variants work in the scaled space used by the loss.
The decoder W_dec [F, d_in] has unit-norm rows (one direction per feature).
"""

from __future__ import annotations

import torch
from torch import nn


class TopKSAE(nn.Module):
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
        """ReLU(W_enc (x - b_dec) + b_enc): [n, F], before the top-k selection."""
        return torch.relu(self.encoder(x_normalized - self.b_dec))

    def select_top_k(self, pre: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Keep the k largest entries of each row of pre [n, F], zero the rest."""
        values, indices = pre.topk(k or self.k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter(1, indices, values)

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        return self.select_top_k(self.pre_activations(x_normalized))

    def decode_normalized(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.W_dec + self.b_dec

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, d_in] (store scale) -> features [n, F], at most k non-zero per row."""
        return self.encode_normalized(x * self.input_scale)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """features [n, F] -> reconstruction [n, d_in] in the store scale."""
        return self.decode_normalized(features) / self.input_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [n, d_in] -> (reconstruction [n, d_in], features [n, F])."""
        features = self.encode(x)
        return self.decode(features), features
