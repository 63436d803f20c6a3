"""Optimiser plumbing: building optimisers, fp16 grad scalers, and the update shared by all training steps.

Scalers exist for fp16 only (bf16 has fp32's range): one ``torch.amp.GradScaler`` per optimiser, because
G and D have different gradient magnitudes and one network's overflow must not skip the other's step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ml_benchmark_spategan.config.schema import OptimizerConfig


def build_optimizer(params, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW from ``cfg``; fused kernels on CUDA (one launch for all parameters), foreach on CPU."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    kwargs = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return cls(params, lr=float(cfg.learning_rate), betas=(float(cfg.beta1), float(cfg.beta2)),
               weight_decay=float(cfg.weight_decay), **kwargs)


def make_grad_scalers(precision: str, device_type: str,
                      names: Sequence[str] = ("g", "d")) -> dict[str, torch.amp.GradScaler] | None:
    """``{name: GradScaler}`` (independent scalers, one per optimiser name) for fp16, else None.

    The caller owns them (their state belongs in checkpoints) and passes them to every step.
    """
    if precision != "fp16":
        return None
    return {name: torch.amp.GradScaler(device_type) for name in names}


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
