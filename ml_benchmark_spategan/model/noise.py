"""Latent noise of the generator: the source of its ensemble members.

Two mechanisms, both drawing from torch's global RNG (so a seed fixes the members and a checkpoint's RNG
state continues them exactly), both independent per sample of the batch (a batch repeated member-major
gives independent members):

* :class:`LatentNoise` — ``channels`` maps of N(0, 1) noise drawn on a grid half as fine as the generator's
  coarse working grid (at least 1x1) and bilinearly upsampled to it, so the noise is spatially correlated
  over a few working-grid cells (the scale of weather systems, not of pixels). Interpolation averages
  independent values, less so near the border (a border cell copies one value): the upsampled maps are
  divided by their exact per-cell standard deviation, so every cell's noise is N(0, 1) and the corners
  (which had 2.6 times the variance of the interior on a 16x16 working grid) get no wider members. The
  maps are concatenated to the trunk's input: every layer sees them, and G cannot remove them with a
  learned gain as it can with per-pixel dropout (Leinonen et al. 2020; Harris et al. 2022).
* :class:`StageNoise` — one N(0, 1) map per sample at a stage's resolution, added to every feature channel
  with a learned per-channel scale (StyleGAN, Karras et al. 2019), initialised to ``stage_noise_init`` (0): fine-scale
  texture, which G turns on as far as the losses reward it.

``std`` multiplies both (1 = as trained; 0 = a deterministic generator when dropout is 0 too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def set_noise_std(module: nn.Module, std: float) -> None:
    """Set ``std`` of every noise module inside ``module`` (0: members differ only by dropout, if any)."""
    for m in module.modules():
        if isinstance(m, LatentNoise | StageNoise):
            m.std = float(std)


class LatentNoise(nn.Module):
    """Spatially correlated noise (B, channels, *grid): N(0, 1) on ceil(grid / 2), bilinearly upsampled."""

    def __init__(self, channels: int, grid: tuple[int, int], std: float = 1.0):
        super().__init__()
        self.channels, self.grid, self.std = int(channels), tuple(int(g) for g in grid), float(std)
        self.coarse = (max(1, math.ceil(self.grid[0] / 2)), max(1, math.ceil(self.grid[1] / 2)))
        # not persistent: a function of the grid, so checkpoints stay as they were
        self.register_buffer("inv_std", upsampled_inverse_std(self.coarse, self.grid), persistent=False)

    def forward(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        z = torch.randn(batch, self.channels, *self.coarse, device=device)
        if self.coarse != self.grid:
            z = F.interpolate(z, size=self.grid, mode="bilinear", align_corners=False) * self.inv_std.to(device)
        return (self.std * z).to(dtype)


def _interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in): the weights of 1-D linear interpolation as ``F.interpolate(align_corners=False)`` does it."""
    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(1)  # (n_in, 1, n_in): one basis vector per row
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False).squeeze(1).T


def upsampled_inverse_std(coarse: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(grid) float32: 1 / standard deviation of bilinearly upsampled i.i.d. N(0, 1) noise from ``coarse``.

    Bilinear weights are separable, so the variance at (i, j) is ``sum_k wy[i, k]^2 * sum_l wx[j, l]^2``.
    """
    vy = _interpolation_matrix(coarse[0], grid[0]).square().sum(1)
    vx = _interpolation_matrix(coarse[1], grid[1]).square().sum(1)
    return torch.outer(vy, vx).rsqrt().float()


class StageNoise(nn.Module):
    """``h + scale[c] * std * n`` with one N(0, 1) map ``n`` (B, 1, H, W) per sample; ``scale`` starts at ``init``."""

    def __init__(self, channels: int, std: float = 1.0, init: float = 0.0):
        super().__init__()
        self.std = float(std)
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(init)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(h.shape[0], 1, *h.shape[-2:], device=h.device, dtype=h.dtype)
        return h + (self.std * self.scale).to(h.dtype) * noise
