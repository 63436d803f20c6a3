"""Building blocks shared by the generator and the discriminator (pure torch).

Conventions: tensors are (batch, channels, rows, cols); activations are LeakyReLU(0.2); no batch norm
anywhere (GroupNorm in the generator, nothing in the spectrally normalised discriminator), so a sample's
output never depends on the other samples of its batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (the largest divisor of ``channels`` among 8, 4, 2, 1)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def init_weights(module: nn.Module, slope: float = LEAKY_SLOPE) -> None:
    """Kaiming-normal (fan_in, leaky_relu gain) weights and zero biases for every Conv2d/Linear.

    The rule: ``std = sqrt(2 / (1 + slope**2)) / sqrt(fan_in)``. Call it after all layers exist and
    before any weight parametrisation (spectral norm) is registered. Layers flagged ``zero_init = True``
    start with zero weights instead (a FiLM head that must start as the identity).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if getattr(m, "zero_init", False):
                nn.init.zeros_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of (B, C, h, w) to (B, C, *size); identity if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def resize_area(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area average when coarsening in both dims (adaptive average pooling), else bilinear."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(x, tuple(size))
    return resize_bilinear(x, size)


def check_static(static_hr: torch.Tensor | None, static_channels: int, out_shape: tuple[int, int],
                 batch: int) -> torch.Tensor | None:
    """The static field expanded to (batch, S, H, W), or None; ValueError when it does not match the model."""
    if static_channels == 0:
        if static_hr is not None:
            raise ValueError("static_hr: the model was built with static_channels=0 but received a static field")
        return None
    if static_hr is None:
        raise ValueError(f"static_hr: the model expects {static_channels} static channel(s), found None")
    if static_hr.ndim != 4 or static_hr.shape[1] != static_channels or tuple(static_hr.shape[-2:]) != tuple(out_shape) \
            or static_hr.shape[0] not in (1, batch):
        raise ValueError(f"static_hr: expected (1 or {batch}, {static_channels}, {out_shape[0]}, {out_shape[1]}), "
                         f"found {tuple(static_hr.shape)}")
    return static_hr.expand(batch, -1, -1, -1)


class MCDropout(nn.Module):
    """Element-wise dropout that stays active in eval mode while ``always_on`` is True.

    Monte-Carlo dropout is the generator's source of stochasticity: ensemble members are forward
    passes with independent dropout masks drawn from the global RNG (never reseeded here).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.always_on = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=self.training or self.always_on)


class GenResBlock(nn.Module):
    """Pre-activation residual block: x + conv(drop(act(gn(conv(act(gn(x))))))), channels kept."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels), nn.LeakyReLU(LEAKY_SLOPE), conv3x3(channels, channels),
            group_norm(channels), nn.LeakyReLU(LEAKY_SLOPE), MCDropout(dropout), conv3x3(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DiscResBlock(nn.Module):
    """Residual block of the discriminator: two 3x3 convs (the first with ``stride``) + a 1x1 skip.

    ``preactivate=False`` for the first block so the raw input field is not passed through LeakyReLU.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, preactivate: bool = True):
        super().__init__()
        self.act_in = nn.LeakyReLU(LEAKY_SLOPE) if preactivate else nn.Identity()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.conv2 = conv3x3(c_out, c_out)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.skip = conv1x1(c_in, c_out, stride) if (c_in != c_out or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.act(self.conv1(self.act_in(x))))
        return h + self.skip(x)


DAYS_PER_YEAR = 365.25


def doy_features(doy: torch.Tensor) -> torch.Tensor:
    """Day of year (B,) (1..366, any integer or float dtype) -> (B, 2) float32 [sin, cos](2π·doy/365.25).

    Cyclic: day 365 (31 December) and day 0 lie 2π/365.25 apart, as close as two consecutive days.
    """
    angle = doy.float() * (2.0 * math.pi / DAYS_PER_YEAR)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)


class DoyFiLM(nn.Module):
    """Feature-wise modulation by the day of year: ``h * (1 + scale(doy)) + shift(doy)`` per channel.

    [sin, cos] of the day of year -> Linear(2, hidden) -> LeakyReLU -> Linear(hidden, 2 * channels) =
    (scale, shift). The last layer starts at zero (``zero_init``; :func:`init_weights` keeps it so), so a
    new model starts as its unconditioned self and learns how much the season matters.
    """

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.channels = channels
        out = nn.Linear(hidden, 2 * channels)
        out.zero_init = True
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(LEAKY_SLOPE), out)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def forward(self, h: torch.Tensor, doy: torch.Tensor | None) -> torch.Tensor:
        """``h`` (B, channels, rows, cols), ``doy`` (B,) -> modulated ``h`` (same shape and dtype)."""
        if doy is None:
            raise ValueError("doy: this model was built with model.doy_conditioning=film and needs the day of "
                             "year of every sample (doy=..., int (batch,))")
        if doy.ndim != 1 or doy.shape[0] != h.shape[0]:
            raise ValueError(f"doy: expected shape ({h.shape[0]},) (one day of year per sample), found {tuple(doy.shape)}")
        scale, shift = self.mlp(doy_features(doy).to(h.device)).chunk(2, dim=1)
        return h * (1.0 + scale[:, :, None, None].to(h.dtype)) + shift[:, :, None, None].to(h.dtype)


def film_or_none(enabled: bool, channels: int) -> DoyFiLM | None:
    """A :class:`DoyFiLM` on ``channels`` when day-of-year conditioning is on, else None."""
    return DoyFiLM(channels) if enabled else None


def apply_film(film: DoyFiLM | None, h: torch.Tensor, doy: torch.Tensor | None) -> torch.Tensor:
    """``film(h, doy)``, or ``h`` unchanged for a model without day-of-year conditioning (``doy`` ignored)."""
    return h if film is None else film(h, doy)
