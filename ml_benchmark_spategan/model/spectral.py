"""Spectral normalisation whose power iteration and σ are computed in fp32, also under bf16/fp16 autocast.

``W_sn = W / σ(W)`` with σ the largest singular value of W reshaped to (out_channels, -1), estimated by
power iteration (Miyato et al. 2018, "Spectral normalization for generative adversarial networks"): in
training mode every forward pass refines the singular vectors ``u``, ``v`` (one step by default), then
``σ = uᵀ W v``. Under autocast a matrix-vector product may run in bf16 (8 bits of mantissa, ~0.4 %
relative error per product), which makes σ, and so every weight of the discriminator, jitter from step to
step; here autocast is switched off inside the parametrisation and W, u, v, σ are fp32. The layer that
uses the weight still runs under autocast.

The buffers are named as in ``torch.nn.utils.parametrizations.spectral_norm`` (``_u``, ``_v`` beside
``original``), so state dicts are interchangeable with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

INIT_POWER_ITERATIONS = 15  # at registration: start from a good estimate, as torch's spectral_norm does


class SpectralNormFP32(nn.Module):
    """Parametrisation ``weight -> weight / σ(weight)`` with fp32 power iteration (see module docstring)."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        if weight.ndim < 2:
            raise ValueError(f"spectral norm: expected a weight with at least 2 dims, found {weight.ndim}")
        if n_power_iterations < 1:
            raise ValueError(f"spectral norm: n_power_iterations must be positive, found {n_power_iterations}")
        self.n_power_iterations, self.eps = n_power_iterations, eps
        w = weight.detach().float().flatten(1)
        self.register_buffer("_u", F.normalize(w.new_empty(w.shape[0]).normal_(), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(w.new_empty(w.shape[1]).normal_(), dim=0, eps=eps))
        self._power_iteration(w, INIT_POWER_ITERATIONS)

    @torch.no_grad()
    def _power_iteration(self, w: torch.Tensor, n: int) -> None:
        for _ in range(n):
            self._u.copy_(F.normalize(torch.mv(w, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(w.t(), self._u), dim=0, eps=self.eps))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """σ = uᵀ W v (fp32, 0-dim, differentiable w.r.t. ``weight``) for the current u, v; no iteration."""
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = weight.float().flatten(1)
            return torch.dot(self._u.clone(), torch.mv(w, self._v.clone()))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            if self.training:
                self._power_iteration(weight.detach().float().flatten(1), self.n_power_iterations)
            return (weight.float() / self.sigma(weight)).to(weight.dtype)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value  # assigning a weight stores it as the unnormalised original


def spectral_norm_fp32(module: nn.Module, name: str = "weight", n_power_iterations: int = 1,
                       eps: float = 1e-12) -> nn.Module:
    """Register :class:`SpectralNormFP32` on ``module.<name>``; returns ``module``."""
    parametrize.register_parametrization(module, name, SpectralNormFP32(getattr(module, name), n_power_iterations, eps))
    return module
