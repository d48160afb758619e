"""JumpReLU SAE (Rajamanoharan et al. 2024): f = z * H(z - theta) per feature with a learned
threshold theta > 0, trained with an L0 penalty; the step function's gradient with respect to
theta is a straight-through estimate with a rectangle kernel of width `bandwidth`."""

from __future__ import annotations

import math

import torch
from torch import nn

from interp.sae.model import SparseAutoencoder, TrainCode


def _rectangle(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > threshold).to(z.dtype)
        grad_threshold = (-(threshold / eps) * _rectangle((z - threshold) / eps) * grad).sum(dim=0)
        return grad_z, grad_threshold, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = (-(1.0 / eps) * _rectangle((z - threshold) / eps) * grad).sum(dim=0)
        return torch.zeros_like(z), grad_threshold, None


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"

    def __init__(self, d_in: int, n_features: int, k: int, l0_coefficient: float = 0.01,
                 bandwidth: float = 0.05, init_threshold: float = 0.05) -> None:
        super().__init__(d_in, n_features, k)
        self.l0_coefficient, self.bandwidth, self.init_threshold = l0_coefficient, bandwidth, init_threshold
        self.log_threshold = nn.Parameter(torch.full((n_features,), math.log(init_threshold)))

    def hparams(self) -> dict:
        return {"l0_coefficient": self.l0_coefficient, "bandwidth": self.bandwidth,
                "init_threshold": self.init_threshold}

    @torch.no_grad()
    def init_from_sample(self, x_normalized: torch.Tensor) -> None:
        """Start each threshold at the (1 - k/F) quantile of its activations on the sample (at least
        init_threshold), so training starts near L0 = k instead of waiting for log-thresholds to
        climb at the optimiser's step size."""
        z = torch.relu(self.pre_activations(x_normalized))
        q = torch.quantile(z, 1 - self.k / self.n_features, dim=0)
        self.log_threshold.copy_(q.clamp_min(self.init_threshold).log())

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.pre_activations(x_normalized))
        return z * (z > self.log_threshold.exp())

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        pre = self.pre_activations(x_normalized)
        threshold = self.log_threshold.exp()
        # on pre itself, not relu(pre): the same values (theta > 0), but every token with pre <= 0 sits at
        # relu's 0, inside the kernel once theta < bandwidth / 2, and would push theta's gradient (a floor)
        features = _JumpReLU.apply(pre, threshold, self.bandwidth)
        l0 = _Step.apply(pre, threshold, self.bandwidth).sum(dim=1).mean()
        return TrainCode(features, pre, self.l0_coefficient * l0)
