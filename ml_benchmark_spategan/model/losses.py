"""Loss functions: pure functions of tensors, each with its objective in one line.

Masks are boolean, True = valid cell, broadcastable to the prediction (e.g. (B or 1, 1, H, W)). Masked
means divide by the number of valid cells, so invalid cells neither add to the loss nor to gradients,
whatever value (even NaN) the target holds there. Discriminator outputs are raw logits of any shape.
The discriminator losses return ``(loss_real, loss_fake)``; their sum is the objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
