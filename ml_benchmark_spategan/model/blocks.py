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
GEN_PADDING = "replicate"  # padding of every generator convolution


def conv3x3(c_in: int, c_out: int, stride: int = 1, padding_mode: str = "zeros") -> nn.Conv2d:
    """3x3 convolution, padding 1; ``padding_mode="replicate"`` in the generator (zero padding reads as a dry,
    cold frame around the domain and paints artefacts along the borders)."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, padding_mode=padding_mode)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (the largest divisor of ``channels`` among 8, 4, 2, 1)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def init_weights(module: nn.Module, slope: float = LEAKY_SLOPE) -> None:
    """Kaiming-normal (fan_in, leaky_relu gain) weights and zero biases for every Conv2d/Linear.

    The rule: ``std = sqrt(2 / (1 + slope**2)) / sqrt(fan_in)``. Call it after all layers exist and
    before any weight parametrisation (spectral norm) is registered.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
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
    """Pre-activation residual block: x + conv(drop(act(gn(conv(act(gn(x))))))), channels kept, replicate padding."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels), nn.LeakyReLU(LEAKY_SLOPE), conv3x3(channels, channels, padding_mode=GEN_PADDING),
            group_norm(channels), nn.LeakyReLU(LEAKY_SLOPE), MCDropout(dropout),
            conv3x3(channels, channels, padding_mode=GEN_PADDING),
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
