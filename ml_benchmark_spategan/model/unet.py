"""A deterministic U-Net: coarse predictors (and the static field) -> one high-resolution field.

Shapes as everywhere in :mod:`ml_benchmark_spategan.model`: predictors ``x_lr`` (B, C, h, w), static
covariates ``static_hr`` (B or 1, S, H, W), output (B, 1, H, W) in normalised target space.

The predictors are bilinearly interpolated to the *working grid* (the target grid rounded up to a
multiple of 2**(levels - 1), so every level halves exactly; the output is resized back to (H, W)), the
static field is area-resized to it and concatenated. Encoder: per level ``convs_per_level`` x [3x3 conv
with replicate padding, GroupNorm, LeakyReLU], 2x2 average pooling between levels. Decoder: bilinear x2,
concatenation with the encoder's features of that level (skip), the same conv layers. A 1x1 conv gives
the (linear) output. Replicate padding keeps the field's edge values at the domain border instead of
pulling them towards zero. Optional day-of-year FiLM on the bottleneck features. Trained with the masked
MSE like DeepESD (:func:`~ml_benchmark_spategan.model.baselines.train_regression_step`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ml_benchmark_spategan.config.schema import UNetConfig
from ml_benchmark_spategan.model.baselines import _check_x, _Deterministic
from ml_benchmark_spategan.model.blocks import (
    LEAKY_SLOPE,
    apply_film,
    check_static,
    film_or_none,
    group_norm,
    init_weights,
    resize_area,
    resize_bilinear,
)


def _level(c_in: int, c_out: int, n_convs: int) -> nn.Sequential:
    """``n_convs`` x [3x3 conv (replicate padding), GroupNorm, LeakyReLU]; c_in -> c_out channels."""
    layers: list[nn.Module] = []
    for k in range(n_convs):
        layers += [nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, padding=1, padding_mode="replicate"),
                   group_norm(c_out), nn.LeakyReLU(LEAKY_SLOPE)]
    return nn.Sequential(*layers)


class UNet(_Deterministic):
    """Predictors (B, C, h, w) [+ static (B or 1, S, H, W)] [+ doy (B,)] -> normalised field (B, 1, H, W)."""

    def __init__(self, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int], cfg: UNetConfig,
                 static_channels: int = 0, doy_film: bool = False):
        super().__init__()
        if not cfg.channels:
            raise ValueError("model.unet.channels: expected at least one level, found ()")
        self.in_channels, self.static_channels = in_channels, static_channels
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        f = 2 ** (len(cfg.channels) - 1)
        self.working_grid = (math.ceil(out_shape[0] / f) * f, math.ceil(out_shape[1] / f) * f)
        chans = tuple(cfg.channels)
        ins = (in_channels + static_channels,) + chans[:-1]
        self.encoder = nn.ModuleList(_level(a, b, cfg.convs_per_level) for a, b in zip(ins, chans, strict=True))
        self.decoder = nn.ModuleList(_level(chans[i + 1] + chans[i], chans[i], cfg.convs_per_level)
                                     for i in reversed(range(len(chans) - 1)))
        self.doy_film = film_or_none(doy_film, chans[-1])
        self.head = nn.Conv2d(chans[0], 1, 1)
        init_weights(self)

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                doy: torch.Tensor | None = None) -> torch.Tensor:
        _check_x(x_lr, self.in_channels, self.in_shape)
        static_hr = check_static(static_hr, self.static_channels, self.out_shape, x_lr.shape[0])
        h = resize_bilinear(x_lr, self.working_grid)
        if static_hr is not None:
            h = torch.cat([h, resize_area(static_hr, self.working_grid).to(h.dtype)], dim=1)
        skips = []
        for k, level in enumerate(self.encoder):
            h = level(h if k == 0 else F.avg_pool2d(h, 2))
            skips.append(h)
        h = apply_film(self.doy_film, skips.pop(), doy)
        for level in self.decoder:
            skip = skips.pop()
            h = level(torch.cat([resize_bilinear(h, skip.shape[-2:]), skip], dim=1))
        return resize_bilinear(self.head(h), self.out_shape)
