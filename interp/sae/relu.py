"""ReLU SAE with an L1 penalty (Bricken et al. 2023); decoder rows have unit norm, so the L1 of
the code is the L1 of the norm-weighted code."""

from __future__ import annotations

import torch

from interp.sae.model import SparseAutoencoder, TrainCode


class ReLUSAE(SparseAutoencoder):
    architecture = "relu"

    def __init__(self, d_in: int, n_features: int, k: int, l1_coefficient: float = 0.1) -> None:
        super().__init__(d_in, n_features, k)
        self.l1_coefficient = l1_coefficient

    def hparams(self) -> dict:
        return {"l1_coefficient": self.l1_coefficient}

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_activations(x_normalized))

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        pre = self.pre_activations(x_normalized)
        features = torch.relu(pre)
        # L1 per token relative to the input norm sqrt(d_in), so the coefficient is scale-free
        l1 = features.sum(dim=1).mean() / self.d_in**0.5
        return TrainCode(features, pre, self.l1_coefficient * l1)
