"""Loss functions: pure functions of tensors, each with its objective in one line.

Masks are boolean, True = valid cell, broadcastable to the prediction (e.g. (B or 1, 1, H, W)). Masked
means divide by the number of valid cells, so invalid cells neither add to the loss nor to gradients,
whatever value (even NaN) the target holds there. Discriminator outputs are raw logits of any shape.
The discriminator losses return ``(loss_real, loss_fake)``; their sum is the objective.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ml_benchmark_spategan.spectral_bins import bin_weights


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the cells where ``mask`` (broadcast to ``values``) is True."""
    mask = mask.expand_as(values)
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / mask.sum().clamp_min(1)


def masked_l1(y_pred: torch.Tensor, y_true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # min mean_{valid} |y_pred - y_true|
    return _masked_mean((y_pred - torch.where(mask, y_true, 0.0)).abs(), mask)


def masked_mse(y_pred: torch.Tensor, y_true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # min mean_{valid} (y_pred - y_true)^2
    return _masked_mean((y_pred - torch.where(mask, y_true, 0.0)).square(), mask)


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0):
    # min_D BCE(D(real), 1 - label_smoothing) + BCE(D(fake), 0)   (one-sided label smoothing)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 1.0 - label_smoothing))
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return loss_real, loss_fake


def g_loss_bce(fake_logits: torch.Tensor) -> torch.Tensor:
    # min_G BCE(D(fake), 1) = -log sigmoid(D(fake))   (non-saturating)
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor):
    # min_D mean relu(1 - D(real)) + mean relu(1 + D(fake))
    return F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    # min_G -mean D(fake)
    return -fake_logits.mean()


def crps_fair(members: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Fair (ensemble) CRPS per cell: members (B, m, H, W), y_true (B, 1, H, W) -> (B, 1, H, W).

    ``crps = mean_i |x_i - y| - sum_ij |x_i - x_j| / (2 m (m - 1))`` (Ferro 2014): unbiased for the CRPS of
    the distribution the members are drawn from, so it is minimised by members drawn from the true
    conditional distribution, not by collapsed ones. The pair sum is computed in O(m log m) from the sorted
    members, ``sum_ij |x_i - x_j| = 2 sum_k (2k - m - 1) x_(k)`` (k = 1..m); m = 1 gives the absolute error.
    """
    m = members.shape[1]
    skill = (members - y_true).abs().mean(dim=1, keepdim=True)
    if m == 1:
        return skill
    ranks = torch.arange(1, m + 1, device=members.device, dtype=members.dtype).view(1, m, 1, 1)
    pair_sum = 2.0 * ((2.0 * ranks - m - 1.0) * members.sort(dim=1).values).sum(dim=1, keepdim=True)
    return skill - pair_sum / (2.0 * m * (m - 1))


def masked_crps_fair(members: torch.Tensor, y_true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # min mean_{valid} crps_fair(members, y_true)   (calibrated ensembles; y_true may be NaN where invalid)
    return _masked_mean(crps_fair(members, torch.where(mask, y_true, 0.0)), mask)


@lru_cache(maxsize=8)
def _bin_matrix(ny: int, nx: int, device: torch.device) -> torch.Tensor:
    """The benchmark's bin weights on ``device``, built once per grid and device (not copied every step)."""
    return torch.tensor(np.array(bin_weights(ny, nx, "benchmark")), dtype=torch.float32, device=device)


def radial_power(fields: torch.Tensor) -> torch.Tensor:
    """Radial power profile of (N, H, W) fields averaged over the N fields -> (nbins,), with the benchmark's
    bins (:mod:`ml_benchmark_spategan.spectral_bins`; no mean removal, as the benchmark's ``psd``)."""
    n, ny, nx = fields.shape
    spec = torch.fft.rfft2(fields.float())
    power = (spec.real.square() + spec.imag.square()).reshape(n, -1).mean(0)
    return power @ _bin_matrix(ny, nx, power.device)


def masked_log_spectral_distance(members: torch.Tensor, y_true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # min mean_k [10 log10(P_members,k / P_true,k)]^2   (the benchmark's RALSD on the batch; invalid cells = 0)
    """Members (B, m, H, W) against y_true (B, 1, H, W): batch-mean radial spectra of every member and of the
    truth, compared bin by bin in dB (the realism of single fields, which a per-cell loss cannot see)."""
    h, w = members.shape[-2:]
    fake = torch.where(mask, members, 0.0).reshape(-1, h, w)
    real = torch.where(mask, y_true, 0.0).reshape(-1, h, w)
    p_fake, p_real = radial_power(fake).clamp_min(1e-12), radial_power(real).clamp_min(1e-12)
    return (10.0 * torch.log10(p_fake / p_real)).square().mean()
