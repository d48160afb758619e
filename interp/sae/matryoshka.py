"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): the loss is the mean
reconstruction loss of nested prefixes of the dictionary, so the first features learn general
directions and later ones refine them. Encoding is BatchTopK's."""

from __future__ import annotations

import torch

from interp.sae.batchtopk import BatchTopKSAE
from interp.sae.model import TrainCode


class MatryoshkaSAE(BatchTopKSAE):
    architecture = "matryoshka"

    def __init__(self, d_in: int, n_features: int, k: int, threshold_momentum: float = 0.99,
                 prefixes: tuple[float, ...] = (0.0625, 0.25, 1.0)) -> None:
        super().__init__(d_in, n_features, k, threshold_momentum)
        self.prefixes = [float(p) for p in prefixes]
        self.prefix_sizes = sorted({max(1, round(p * n_features)) for p in self.prefixes})

    def hparams(self) -> dict:
        return {"threshold_momentum": self.threshold_momentum, "prefixes": self.prefixes}

    def reconstruction_loss(self, x_normalized: torch.Tensor, code: TrainCode,
                            token_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over prefixes m of the normalised MSE of features[:, :m] @ W_dec[:m] + b_dec;
        the error returned is the full dictionary's (for AuxK). With the code's active entries
        (`TrainCode.active`, grouped by token in feature order) each token's entries in each prefix's new
        features are a contiguous run, summed as one bag of one `embedding_bag`; else dense products."""
        n, denom = x_normalized.shape[0], x_normalized.shape[0] * token_variance
        starts = [0, *self.prefix_sizes[:-1]]
        if code.active is None:
            parts = torch.stack([code.features[:, a:b] @ self.W_dec[a:b] for a, b in zip(starts, self.prefix_sizes,
                                                                                          strict=True)], dim=1)
        else:
            values, indices, offsets = code.active
            if self.prefix_sizes[-1] < self.n_features:  # features past the last prefix are in no prefix's loss
                values = values * (indices < self.prefix_sizes[-1])
            key = torch.repeat_interleave(torch.arange(n, device=values.device), code.counts()) * self.n_features + indices
            bounds = (torch.arange(n, device=values.device)[:, None] * self.n_features
                      + torch.tensor(starts, device=values.device)[None, :]).flatten()
            bags = torch.searchsorted(key, bounds)  # [n * prefixes]: token i, prefix p's first entry
            parts = self.decode_active_normalized(values, indices, bags).view(n, len(starts), -1)
        recon = self.b_dec + parts.cumsum(dim=1)  # [n, prefixes, d]: each prefix's reconstruction
        losses = (x_normalized[:, None, :] - recon).pow(2).sum(dim=(0, 2)) / denom
        return losses.mean(), x_normalized - recon[:, -1]
