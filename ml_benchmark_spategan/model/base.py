"""A network that predicts the departure from the interpolation baseline (``model.base: interpolation``).

``output = baseline(x_lr, doy) + net(x_lr, static_hr, [n_members,] doy)``, all in normalised target space.
The baseline is :class:`~.baselines.BilinearBaseline` (the matching predictor interpolated to the target
grid with a per-cell, per-month correction fitted on the training years; for precipitation from the CORDEX
predictors: the per-cell monthly training climatology). It has no trainable parameters; its statistics
live in buffers, are fitted when the session is built (``load_fit``) and travel in every checkpoint.

Why: what an interpolated, bias-corrected predictor already explains (the lapse-rate pattern of
temperature over the terrain, the climatological rain distribution) no longer has to be learnt from
scratch, so the network's capacity and the training budget go into the part interpolation cannot give,
the small-scale, unpredictable variability a generative model exists for. This is the residual idea
of ResGAN and CorrDiff with a mean that costs nothing to fit. The network's output layer starts scaled by
:data:`OUTPUT_INIT_SCALE`, so training starts from (nearly) the baseline instead of from random fields.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ml_benchmark_spategan.model.baselines import BilinearBaseline, accepts_doy, sample_members

#: Factor on the initial weights of the wrapped network's output convolution.
OUTPUT_INIT_SCALE = 0.1


def _shrink_output(net: nn.Module, factor: float) -> None:
    """Multiply the weights of ``net``'s last one-channel convolution (its output layer) by ``factor``."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 1]
    if convs:
        with torch.no_grad():
            convs[-1].weight.mul_(factor)


class BaselineResidual(nn.Module):
    """(x_lr, static_hr, [n_members], doy) -> baseline + ``net``'s output, shaped like ``net``'s output."""

    def __init__(self, net: nn.Module, in_shape: tuple[int, int], out_shape: tuple[int, int]):
        super().__init__()
        self.net = net
        self.base = BilinearBaseline(in_shape, out_shape)
        self._last_base: torch.Tensor | None = None
        self._takes_doy = accepts_doy(net, "forward")
        _shrink_output(net, OUTPUT_INIT_SCALE)
        if hasattr(net, "auxiliary_loss"):  # resgan's mean network: its MSE is on baseline + mean
            self.auxiliary_loss = self._auxiliary_loss

    def load_fit(self, fit, predictor_params: dict, target_params: dict) -> None:
        """Fill the baseline's statistics (see :meth:`BilinearBaseline.load_fit`)."""
        self.base.load_fit(fit, predictor_params, target_params)

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                n_members: int | None = None, doy: torch.Tensor | None = None) -> torch.Tensor:
        base = self._base(x_lr, doy)
        kwargs = {"doy": doy} if doy is not None and self._takes_doy else {}
        if n_members is None:
            return base + self.net(x_lr, static_hr, **kwargs)
        return base + self.net(x_lr, static_hr, n_members=n_members, **kwargs)

    def _base(self, x_lr: torch.Tensor, doy: torch.Tensor | None) -> torch.Tensor:
        """The baseline (B, 1, H, W), kept for :meth:`auxiliary_loss`."""
        self._last_base = self.base(x_lr, doy=doy).to(x_lr.dtype)
        return self._last_base

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
               doy: torch.Tensor | None = None) -> torch.Tensor:
        """``n_members`` members (B, n_members, H, W): one baseline, the network's members added to it (drawn
        through its ``forward(..., n_members=)`` when it has one, else through its ``sample``)."""
        if _stochastic(self.net):
            return self(x_lr, static_hr, n_members=n_members, doy=doy)
        return self._base(x_lr, doy) + sample_members(self.net, x_lr, n_members, static_hr, doy)

    def _auxiliary_loss(self, y_real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # the wrapped network's own loss against the departure from the baseline of the last forward pass
        if self._last_base is None:
            raise RuntimeError("BaselineResidual.auxiliary_loss: call the generator (forward or sample) first")
        base, self._last_base = self._last_base, None
        return self.net.auxiliary_loss(y_real - base.float(), mask)


def _stochastic(net: nn.Module) -> bool:
    """Whether ``net``'s forward draws members (takes ``n_members``), unlike the deterministic regressions."""
    return "n_members" in inspect.signature(net.forward).parameters
