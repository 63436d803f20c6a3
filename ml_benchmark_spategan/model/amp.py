"""Mixed precision and the optimiser update shared by all training steps.

Precisions: ``fp32`` (no autocast), ``bf16`` (autocast, no scaler: bf16 has fp32's range), ``fp16``
(autocast plus a ``torch.amp.GradScaler`` per optimiser: G and D have separate scalers because their
gradient magnitudes differ and one network's overflow must not skip the other's step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device_type: str) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere; other values are checked and returned."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision: expected one of {('auto',) + PRECISIONS}, found {precision!r}")
    return precision


def autocast(precision: str, device_type: str):
    """Autocast context for a resolved precision (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])


def make_grad_scalers(precision: str, device_type: str) -> dict[str, torch.amp.GradScaler] | None:
    """``{'g': GradScaler, 'd': GradScaler}`` (two independent scalers) for fp16, else None.

    The caller owns them (their state belongs in checkpoints) and passes them to every step.
    """
    if precision != "fp16":
        return None
    return {"g": torch.amp.GradScaler(device_type), "d": torch.amp.GradScaler(device_type)}


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Iterable[torch.nn.Parameter],
    scaler: torch.amp.GradScaler | None = None,
    grad_clip_norm: float = 0.0,
) -> torch.Tensor | None:
    """zero_grad, backward, optional clipping, step (through ``scaler`` when given).

    Returns the total gradient norm before clipping (a 0-dim tensor, no host sync) when clipping is on,
    else None.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    grad_norm = None
    if grad_clip_norm > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(list(params), grad_clip_norm).detach()
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return grad_norm
