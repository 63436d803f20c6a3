"""Learning-rate schedule: linear warm-up, plateau, exponential decay (stepped once per epoch)."""

from __future__ import annotations

import torch

from ml_benchmark_spategan.config.schema import ScheduleConfig


def lr_factor(epoch: int, cfg: ScheduleConfig, peak_lr: float) -> float:
    """Multiplier of ``peak_lr`` for a 0-based ``epoch``.

    Warm-up: linear from ``warmup_start_lr`` to ``peak_lr`` over ``warmup_epochs`` epochs; then
    ``plateau_epochs`` at ``peak_lr``; then ``decay_gamma ** (epochs since the plateau ended)``.
    """
    if epoch < cfg.warmup_epochs:
        start = min(cfg.warmup_start_lr / peak_lr, 1.0)
        return start + (1.0 - start) * epoch / cfg.warmup_epochs
    decay_epochs = epoch - cfg.warmup_epochs - cfg.plateau_epochs
    return cfg.decay_gamma ** max(decay_epochs, 0)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    peak = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg, peak))
