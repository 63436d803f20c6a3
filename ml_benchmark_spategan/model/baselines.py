"""Baselines that evaluation treats like the generator: DeepESD (the benchmark reference) and bilinear.

Both take predictors (B, C, h, w) and return (B, 1, H, W) in normalised target space, and expose
``sample(x_lr, n_members, static_hr=None) -> (B, n_members, H, W)``; being deterministic, their members
are identical. Neither uses static covariates (the argument is accepted and ignored). Both take the day of year
(``doy``): the bilinear baseline for its monthly correction, DeepESD when built with day-of-year FiLM
(ignored otherwise); call generators through :func:`sample_members` to pass it to those that take it.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.amp import autocast
from ml_benchmark_spategan.model.blocks import apply_film, film_or_none
from ml_benchmark_spategan.training.optim import optimizer_step


def _check_x(x_lr: torch.Tensor, channels: int, shape: tuple[int, int]) -> None:
    if x_lr.ndim != 4 or x_lr.shape[1] != channels or tuple(x_lr.shape[-2:]) != tuple(shape):
        raise ValueError(f"x_lr: expected (batch, {channels}, {shape[0]}, {shape[1]}), found {tuple(x_lr.shape)}")


class _Deterministic(nn.Module):
    """``sample`` for deterministic models: the single prediction repeated ``n_members`` times."""

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
               doy: torch.Tensor | None = None) -> torch.Tensor:
        y = self(x_lr, static_hr, doy)  # (B, 1, H, W)
        return y.repeat(1, n_members, 1, 1)


class DeepESD(_Deterministic):
    """DeepESD: 3x3 convs C->50->25->1 (padding 1, ReLU after each), flatten, Linear(h*w -> H*W).

    The output vector is reshaped C-order to (B, 1, H, W) (target rows, then columns). Trained with the
    masked MSE (:func:`train_regression_step`). With ``doy_film`` the 25 feature maps are modulated by
    the day of year (:class:`~.blocks.DoyFiLM`) before the last conv.
    """

    def __init__(self, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int],
                 doy_film: bool = False):
        super().__init__()
        self.in_channels, self.in_shape, self.out_shape = in_channels, tuple(in_shape), tuple(out_shape)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 50, 3, padding=1), nn.ReLU(),
            nn.Conv2d(50, 25, 3, padding=1), nn.ReLU(),
            nn.Conv2d(25, 1, 3, padding=1), nn.ReLU(),
        )
        self.dense = nn.Linear(in_shape[0] * in_shape[1], out_shape[0] * out_shape[1])
        self.doy_film = film_or_none(doy_film, 25)

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                doy: torch.Tensor | None = None) -> torch.Tensor:
        _check_x(x_lr, self.in_channels, self.in_shape)
        h = apply_film(self.doy_film, self.features[:4](x_lr), doy)  # the 25 maps after the second ReLU
        h = self.features[4:](h).flatten(1)
        return self.dense(h).reshape(-1, 1, *self.out_shape)


class BilinearBaseline(_Deterministic):
    """The interpolation baseline: a matching predictor, bilinearly interpolated in physical units to every
    target cell, plus a per-cell, per-month correction fitted on the training years::

        y[b, i] = gain[m_b, i] * sum_k weight[i, k] * p[b, index[i, k]] + offset[m_b, i]

    ``p`` is predictor ``channel`` with its normalisation undone (``channel = -1``: no predictor, the
    prediction is ``offset``: the monthly training climatology); ``m_b`` the month of the day of year
    ``doy[b]`` (row 12, the all-days fit, when no ``doy`` is given). The output is returned in normalised
    target space like every generator (non-negative first for precipitation). No trainable parameters:
    everything lives in buffers, filled by :meth:`load_fit` from
    :func:`ml_benchmark_spategan.dataloader.baseline_fit.fit_bilinear_baseline` and saved in checkpoints.
    """

    def __init__(self, in_shape: tuple[int, int], out_shape: tuple[int, int]):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        (h, w), (H, W) = self.in_shape, self.out_shape
        self.register_buffer("channel", torch.tensor(-1, dtype=torch.int64))
        self.register_buffer("index", torch.zeros(H * W, 4, dtype=torch.int64))
        self.register_buffer("weight", torch.zeros(H * W, 4))
        self.register_buffer("gain", torch.zeros(13, H, W))
        self.register_buffer("offset", torch.zeros(13, H, W))
        self.register_buffer("pred_shift", torch.zeros(h, w))
        self.register_buffer("pred_scale", torch.ones(h, w))
        self.register_buffer("pred_log1p_scale", torch.tensor(0.0))  # 0: no log1p
        self.register_buffer("target_shift", torch.zeros(H, W))
        self.register_buffer("target_scale", torch.ones(H, W))
        self.register_buffer("target_log1p_scale", torch.tensor(0.0))
        self.register_buffer("nonnegative", torch.tensor(False))
        months = torch.repeat_interleave(torch.arange(12), torch.tensor([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]))
        self.register_buffer("month_of_doy", torch.cat([torch.tensor([12]), months, torch.tensor([11])]))

    def load_fit(self, fit, predictor_params: dict, target_params: dict) -> None:
        """Fill the buffers: ``fit`` (a ``BaselineFit``), the predictor and target normaliser ``params()``."""
        self.channel.fill_(int(fit.channel))
        self.index.copy_(torch.from_numpy(fit.index))
        self.weight.copy_(torch.from_numpy(fit.weight))
        self.gain.copy_(torch.from_numpy(fit.gain))
        self.offset.copy_(torch.from_numpy(fit.offset))
        if fit.channel >= 0:
            c = fit.channel
            for buf, key in ((self.pred_shift, "shift"), (self.pred_scale, "scale")):
                arr = predictor_params[key]
                buf.copy_(torch.from_numpy(arr[c if arr.shape[0] > 1 else 0]).expand_as(buf))
            self.pred_log1p_scale.fill_(float(predictor_params.get("log1p_scale", 1.0)) if predictor_params["log1p"] else 0.0)
        for buf, key in ((self.target_shift, "shift"), (self.target_scale, "scale")):
            buf.copy_(torch.from_numpy(target_params[key][0]).expand_as(buf))
        self.target_log1p_scale.fill_(float(target_params.get("log1p_scale", 1.0)) if target_params["log1p"] else 0.0)
        self.nonnegative.fill_(bool(target_params.get("nonnegative", target_params["log1p"])))

    def physical(self, x_lr: torch.Tensor, doy: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction (B, H, W) in the target's physical units."""
        months = self.month_of_doy[doy.long().clamp(0, 366)] if doy is not None else \
            torch.full((x_lr.shape[0],), 12, dtype=torch.int64, device=x_lr.device)
        y = self.offset[months]
        if int(self.channel) >= 0:
            p = x_lr[:, int(self.channel)].float() * self.pred_scale + self.pred_shift
            if float(self.pred_log1p_scale) > 0:
                p = torch.expm1(p) / self.pred_log1p_scale
            p = (p.flatten(1)[:, self.index] * self.weight).sum(-1).view(-1, *self.out_shape)
            y = y + self.gain[months] * p
        return y.clamp_min(0.0) if bool(self.nonnegative) else y

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                doy: torch.Tensor | None = None) -> torch.Tensor:
        if x_lr.ndim != 4 or tuple(x_lr.shape[-2:]) != self.in_shape or x_lr.shape[1] <= int(self.channel):
            raise ValueError(f"x_lr: expected (batch, >{int(self.channel)}, {self.in_shape[0]}, {self.in_shape[1]}), "
                             f"found {tuple(x_lr.shape)}")
        y = self.physical(x_lr, doy)
        if float(self.target_log1p_scale) > 0:
            y = torch.log1p(y * self.target_log1p_scale)
        return ((y - self.target_shift) / self.target_scale).unsqueeze(1)

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
               doy: torch.Tensor | None = None) -> torch.Tensor:
        return self(x_lr, static_hr, doy).repeat(1, n_members, 1, 1)


def accepts_doy(generator: nn.Module, method: str = "sample") -> bool:
    """Whether ``generator.<method>`` takes the day of year (``doy=``); a DDP wrapper is looked through."""
    return "doy" in inspect.signature(getattr(getattr(generator, "module", generator), method)).parameters


def sample_members(generator: nn.Module, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
                   doy: torch.Tensor | None = None) -> torch.Tensor:
    """``generator.sample(x_lr, n_members, static_hr=...)``, passing ``doy`` (day of year, (B,) int) to
    generators that take it (e.g. the bilinear baseline's monthly correction)."""
    if doy is not None and accepts_doy(generator):
        return generator.sample(x_lr, n_members, static_hr=static_hr, doy=doy)
    return generator.sample(x_lr, n_members, static_hr=static_hr)


def train_regression_step(batch, model: nn.Module, optimizer: torch.optim.Optimizer, settings,
                          scaler: torch.amp.GradScaler | None = None,
                          static_hr: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One masked-MSE update of a regression model (DeepESD, U-Net); returns detached 0-dim tensors.

    ``model`` is called as ``model(x_lr, static_hr, doy=batch['doy'])`` (the day of year only when the
    batch has it). ``settings`` is a :class:`~ml_benchmark_spategan.model.spagan2d.GanStepSettings` (only
    ``precision`` and ``grad_clip_norm`` are read); fp16 needs ``scaler``.
    """
    mask = batch["mask"]
    if settings.precision == "fp16" and scaler is None:
        raise ValueError("precision fp16 needs a GradScaler (scaler=...); use make_grad_scalers")
    with autocast(settings.precision, batch["x_lr"].device.type):
        doy = batch.get("doy")
        kwargs = {"doy": doy} if doy is not None and accepts_doy(model, "forward") else {}
        y_pred = model(batch["x_lr"], static_hr, **kwargs).float()
    loss = losses.masked_mse(y_pred, batch["y_hr"], mask)
    grad_norm = optimizer_step(loss, optimizer, model.parameters(), scaler, settings.grad_clip_norm)
    logs = {"g/loss": loss.detach(), "g/loss_mse": loss.detach()}
    if grad_norm is not None:
        logs["g/grad_norm"] = grad_norm
    return logs
