"""Baselines that evaluation treats like the generator: DeepESD (the benchmark reference) and bilinear.

Both take predictors (B, C, h, w) and return (B, 1, H, W) in normalised target space, and expose
``sample(x_lr, n_members, static_hr=None) -> (B, n_members, H, W)``; being deterministic, their members
are identical. Neither uses static covariates (the argument is accepted and ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.amp import autocast, optimizer_step


def _check_x(x_lr: torch.Tensor, channels: int, shape: tuple[int, int]) -> None:
    if x_lr.ndim != 4 or x_lr.shape[1] != channels or tuple(x_lr.shape[-2:]) != tuple(shape):
        raise ValueError(f"x_lr: expected (batch, {channels}, {shape[0]}, {shape[1]}), found {tuple(x_lr.shape)}")


class _Deterministic(nn.Module):
    """``sample`` for deterministic models: the single prediction repeated ``n_members`` times."""

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None) -> torch.Tensor:
        y = self(x_lr, static_hr)  # (B, 1, H, W)
        return y.repeat(1, n_members, 1, 1)


class DeepESD(_Deterministic):
    """DeepESD: 3x3 convs C->50->25->1 (padding 1, ReLU after each), flatten, Linear(h*w -> H*W).

    The output vector is reshaped C-order to (B, 1, H, W) (target rows, then columns). Trained with the
    masked MSE (:func:`train_regression_step`).
    """

    def __init__(self, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int]):
        super().__init__()
        self.in_channels, self.in_shape, self.out_shape = in_channels, tuple(in_shape), tuple(out_shape)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 50, 3, padding=1), nn.ReLU(),
            nn.Conv2d(50, 25, 3, padding=1), nn.ReLU(),
            nn.Conv2d(25, 1, 3, padding=1), nn.ReLU(),
        )
        self.dense = nn.Linear(in_shape[0] * in_shape[1], out_shape[0] * out_shape[1])

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None) -> torch.Tensor:
        _check_x(x_lr, self.in_channels, self.in_shape)
        h = self.features(x_lr).flatten(1)
        return self.dense(h).reshape(-1, 1, *self.out_shape)


class BilinearBaseline(_Deterministic):
    """Bilinear interpolation (align_corners=False) of predictor ``channel`` to the target grid.

    No trainable parameters. The predictor is standardised, so its interpolated standardised anomaly is
    taken as the standardised target: a physically motivated zero-skill-in-detail reference (t_850 for
    tasmax, q_850 for pr), not a calibrated model.
    """

    def __init__(self, channel: int, in_shape: tuple[int, int], out_shape: tuple[int, int]):
        super().__init__()
        self.channel, self.in_shape, self.out_shape = channel, tuple(in_shape), tuple(out_shape)

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None) -> torch.Tensor:
        if x_lr.ndim != 4 or x_lr.shape[1] <= self.channel or tuple(x_lr.shape[-2:]) != self.in_shape:
            raise ValueError(f"x_lr: expected (batch, >{self.channel}, {self.in_shape[0]}, {self.in_shape[1]}), "
                             f"found {tuple(x_lr.shape)}")
        x = x_lr[:, self.channel:self.channel + 1]
        return F.interpolate(x, size=self.out_shape, mode="bilinear", align_corners=False)


def train_regression_step(batch, model: nn.Module, optimizer: torch.optim.Optimizer, settings,
                          scaler: torch.amp.GradScaler | None = None) -> dict[str, torch.Tensor]:
    """One masked-MSE update of a regression model (DeepESD); returns detached 0-dim tensors.

    ``settings`` is a :class:`~ml_benchmark_spategan.model.spagan2d.GanStepSettings` (only
    ``precision`` and ``grad_clip_norm`` are read); fp16 needs ``scaler``.
    """
    mask = batch["mask"]
    if settings.precision == "fp16" and scaler is None:
        raise ValueError("precision fp16 needs a GradScaler (scaler=...); use make_grad_scalers")
    with autocast(settings.precision, batch["x_lr"].device.type):
        y_pred = model(batch["x_lr"]).float()
    loss = losses.masked_mse(y_pred, batch["y_hr"], mask)
    grad_norm = optimizer_step(loss, optimizer, model.parameters(), scaler, settings.grad_clip_norm)
    logs = {"g/loss": loss.detach(), "g/loss_mse": loss.detach()}
    if grad_norm is not None:
        logs["g/grad_norm"] = grad_norm
    return logs
