"""TopK SAE (Gao et al. 2024): keep the k largest ReLU pre-activations of each token."""

from __future__ import annotations

import torch

from interp.sae.model import SparseAutoencoder, TrainCode


class TopKSAE(SparseAutoencoder):
    architecture = "topk"

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        """[n, d_in] -> [n, F] with at most k non-zeros per row."""
        return self.select_top_k(torch.relu(self.pre_activations(x_normalized)), self.k)

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        """The code with its k (value, index) pairs per token (`TrainCode.active`, a k-row decode), zero penalty;
        the pre-activations computed once for both."""
        pre = self.pre_activations(x_normalized)
        # the top k of pre, then ReLU on those k: the same code as top k of ReLU(pre) (entries it would pick
        # instead are zeros either way), without a ReLU and its backward over all [n, F]
        values, indices = self.top_k_rows(pre, self.k)
        values = torch.relu(values)
        return TrainCode(self.scatter_rows((values, indices), self.n_features), pre, pre.new_zeros(()),
                         (values, indices, None))
