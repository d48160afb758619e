"""BatchTopK SAE (Bussmann et al. 2024): training keeps the k * n largest activations of a batch
of n tokens, so k is an average per token; inference uses a threshold, the mean over batches of the
smallest activation kept, so a token's code does not depend on its batch. A running mean is kept during
training; after training `calibrate_threshold` re-estimates it with the final weights (the running mean
also averages the early steps' smaller activations, which left inference L0 at 1.8x k after 55 steps)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from interp.sae.model import SparseAutoencoder, TrainCode


class BatchTopKSAE(SparseAutoencoder):
    architecture = "batchtopk"

    def __init__(self, d_in: int, n_features: int, k: int, threshold_momentum: float = 0.99) -> None:
        super().__init__(d_in, n_features, k)
        self.threshold_momentum = threshold_momentum
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("threshold_updates", torch.tensor(0, dtype=torch.long))

    def hparams(self) -> dict:
        return {"threshold_momentum": self.threshold_momentum}

    def _batch_top(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the k * n largest entries of relu(pre) [n, F] over the whole batch [k n], their flat indices [k n])."""
        flat = torch.relu(pre).flatten()
        return flat.topk(min(self.k * pre.shape[0], flat.numel()), sorted=False)

    def batch_top_k(self, pre: torch.Tensor) -> torch.Tensor:
        """Keep the k * n largest entries of relu(pre) [n, F] over the whole batch."""
        top, flat_index = self._batch_top(pre)
        return torch.zeros_like(pre).flatten().scatter(0, flat_index, top).view_as(pre)

    def batch_top_k_active(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`batch_top_k`'s entries grouped by token, as `TrainCode.active` holds them: values [k n], feature indices
        [k n], offsets [n] (the dense code is not built)."""
        n, n_features = pre.shape
        top, flat_index = self._batch_top(pre)
        flat_index, order = flat_index.sort()  # row-major: grouped by token
        token = flat_index // n_features
        offsets = torch.searchsorted(token, torch.arange(n, device=pre.device))
        return top[order], flat_index - token * n_features, offsets

    @torch.no_grad()
    def update_threshold(self, kept: torch.Tensor) -> None:
        """Move the running threshold towards the smallest positive entry of kept (the batch's kept activations)."""
        kept = kept[kept > 0]
        if kept.numel() == 0:
            return
        smallest = kept.min()
        if int(self.threshold_updates) == 0:
            self.threshold.copy_(smallest)
        else:
            m = self.threshold_momentum
            self.threshold.mul_(m).add_((1 - m) * smallest)
        self.threshold_updates += 1

    @torch.no_grad()
    def calibrate_threshold(self, batches: Iterable[torch.Tensor]) -> dict:
        """Set the inference threshold to the mean, over `batches` (normalised inputs [n, d_in]), of the smallest
        activation `batch_top_k` keeps; returns {threshold, threshold_running (the value it replaced),
        n_batches}. No batch (or none with a kept activation) leaves the running threshold in place."""
        running = float(self.threshold)
        smallest = []
        for x in batches:
            kept = self.batch_top_k(self.pre_activations(x))
            kept = kept[kept > 0]
            if kept.numel():
                smallest.append(float(kept.min()))
        if smallest:
            self.threshold.fill_(float(sum(smallest) / len(smallest)))
        return {"threshold": float(self.threshold), "threshold_running": running, "n_batches": len(smallest)}

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(self.pre_activations(x_normalized))
        return acts * (acts > self.threshold)

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        pre = self.pre_activations(x_normalized)
        active = self.batch_top_k_active(pre)
        self.update_threshold(active[0])
        return TrainCode(None, pre, pre.new_zeros(()), active)
