"""TopK SAE (Gao et al. 2024): keep the k largest ReLU pre-activations of each token."""

from __future__ import annotations

import torch

from interp.sae.model import SparseAutoencoder, TrainCode


class TopKSAE(SparseAutoencoder):
    architecture = "topk"

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """[n, d_in] -> [n, F] with at most k non-zeros per row."""
        values, indices, _ = self.encode_active_normalized(x_normalized)
        return self.scatter_rows((values, indices), self.n_features)

    def encode_active_normalized(self, x_normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        """(values [n, k] >= 0, feature indices [n, k], None): the ReLU of each token's k largest pre-activations."""
        return self._top_k_entries(self.pre_activations(x_normalized))

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        """The code as its k (value, index) pairs per token (`TrainCode.active`, a k-row decode; the dense code is
        not built), the pre-activations kept for AuxK, zero penalty."""
        pre = self.pre_activations(x_normalized)
        return TrainCode(None, pre, pre.new_zeros(()), self._top_k_entries(pre))

    def _top_k_entries(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        """The top k of pre [n, F], then ReLU on those k: the same code as the top k of ReLU(pre) (entries it would
        pick instead are zeros either way), without a ReLU (and its backward) over all [n, F]."""
        values, indices = self.top_k_rows(pre, self.k)
        return torch.relu(values), indices, None
