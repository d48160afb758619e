"""TopK SAE (Gao et al. 2024): keep the k largest ReLU pre-activations of each token."""

from __future__ import annotations

import torch

from interp.sae.model import SparseAutoencoder


class TopKSAE(SparseAutoencoder):
    architecture = "topk"

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """[n, d_in] -> [n, F] with at most k non-zeros per row."""
        return self.select_top_k(torch.relu(self.pre_activations(x_normalized)), self.k)

    def train_encode(self, x_normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features [n, F], pre-activations [n, F], zero penalty); the pre-activations computed once for both."""
        pre = self.pre_activations(x_normalized)
        return self.select_top_k(torch.relu(pre), self.k), pre, pre.new_zeros(())
