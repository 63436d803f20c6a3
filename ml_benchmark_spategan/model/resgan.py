"""Residual GAN: a U-Net predicts the conditional mean, a SpaGAN generator adds a stochastic residual.

``output = mean + residual``, with ``mean = UNet(x_lr, static_hr, doy)`` (B, 1, H, W) and ``residual =
Generator(x_lr, [static_hr, mean], doy)`` (one member (B, 1, H, W) or (B, n_members, H, W)); the residual
generator sees the mean as an extra static channel, so it knows where the mean puts rain.

Training (jointly, from the first step, in one optimiser): the mean network is trained ONLY by its own
masked MSE, :meth:`ResidualGenerator.auxiliary_loss`, weighted by ``training.loss.mean_weight`` in the
generator step; the mean enters the output and the residual's condition *detached*, so the content and
adversarial losses train the residual alone and cannot pull the mean away from the conditional mean.
The discriminator sees the full field (mean + residual). Jointly rather than pre-trained: one run, one
checkpoint, and the residual always learns against the current mean; the cost is a few early epochs in
which the residual chases a mean that still moves.
"""

from __future__ import annotations

import torch
from torch import nn

from ml_benchmark_spategan.config.schema import GeneratorConfig, UNetConfig
from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.blocks import check_static
from ml_benchmark_spategan.model.spagan2d import Generator
from ml_benchmark_spategan.model.unet import UNet


class ResidualGenerator(nn.Module):
    """(x_lr (B, C, h, w), static_hr, doy) -> mean + residual, (B, 1, H, W) or (B, n_members, H, W)."""

    def __init__(self, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int],
                 unet_cfg: UNetConfig, generator_cfg: GeneratorConfig, static_channels: int = 0,
                 doy_film: bool = False):
        super().__init__()
        self.static_channels, self.out_shape = static_channels, tuple(out_shape)
        self.mean_net = UNet(in_channels, in_shape, out_shape, unet_cfg, static_channels, doy_film)
        self.residual = Generator(in_channels, in_shape, out_shape, generator_cfg, static_channels + 1, doy_film)
        self._last_mean: torch.Tensor | None = None

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                n_members: int | None = None, doy: torch.Tensor | None = None) -> torch.Tensor:
        """Like :meth:`Generator.forward`; keeps the mean (with its graph) for :meth:`auxiliary_loss`."""
        mean = self.mean_net(x_lr, static_hr, doy)  # (B, 1, H, W)
        self._last_mean = mean
        cond = mean.detach()
        static = check_static(static_hr, self.static_channels, self.out_shape, x_lr.shape[0])
        if static is not None:
            cond = torch.cat([static.to(cond.dtype), cond], dim=1)
        return cond[:, -1:] + self.residual(x_lr, cond, n_members=n_members, doy=doy)

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
               doy: torch.Tensor | None = None) -> torch.Tensor:
        """``n_members`` members (B, n_members, H, W): one mean, ``n_members`` residuals."""
        return self(x_lr, static_hr, n_members=n_members, doy=doy)

    def auxiliary_loss(self, y_real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # min mean_{valid} (mean_net(x) - y)^2 on the mean of the last forward pass (then forgotten)
        if self._last_mean is None:
            raise RuntimeError("ResidualGenerator.auxiliary_loss: call the generator (forward or sample) first")
        mean, self._last_mean = self._last_mean, None
        return losses.masked_mse(mean.float(), y_real, mask)
