"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): the loss is the mean
reconstruction loss of nested prefixes of the dictionary, so the first features learn general
directions and later ones refine them. Encoding is BatchTopK's."""

from __future__ import annotations

import torch

from interp.sae.batchtopk import BatchTopKSAE


class MatryoshkaSAE(BatchTopKSAE):
    architecture = "matryoshka"

    def __init__(self, d_in: int, n_features: int, k: int, threshold_momentum: float = 0.99,
                 prefixes: tuple[float, ...] = (0.0625, 0.25, 1.0)) -> None:
        super().__init__(d_in, n_features, k, threshold_momentum)
        self.prefixes = [float(p) for p in prefixes]
        self.prefix_sizes = sorted({max(1, round(p * n_features)) for p in self.prefixes})

    def hparams(self) -> dict:
        return {"threshold_momentum": self.threshold_momentum, "prefixes": self.prefixes}

    def reconstruction_loss(self, x_normalized: torch.Tensor, features: torch.Tensor,
                            token_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over prefixes m of the normalised MSE of features[:, :m] @ W_dec[:m] + b_dec;
        the error returned is the full dictionary's (for AuxK)."""
        denom = x_normalized.shape[0] * token_variance
        recon = self.b_dec.expand_as(x_normalized)
        losses, start = [], 0
        for size in self.prefix_sizes:
            recon = recon + features[:, start:size] @ self.W_dec[start:size]
            losses.append((x_normalized - recon).pow(2).sum() / denom)
            start = size
        return torch.stack(losses).mean(), x_normalized - recon
