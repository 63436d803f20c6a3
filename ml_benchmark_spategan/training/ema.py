"""Exponential moving average of the generator's weights (G_ema), the network a GAN is evaluated with.

A GAN's generator oscillates from step to step with the discriminator; the average over the last few
hundred steps is a smoother, better generator (Karras et al. 2018; Yazıcı et al. 2019). After every
generator update ``t`` (0-based):

    decay_t = min(decay, (1 + t) / (10 + t))
    ema = decay_t * ema + (1 - decay_t) * weights

The warm-up makes early averages follow the fast-changing weights (decay 0.1 at the first update, 0.5
after ten) instead of staying near the random initialisation for ~1 / (1 - decay) steps. Buffers (e.g.
normalisation statistics) are copied, not averaged. The copy is never trained: its parameters do not
require grad and it stays in eval mode (its noise still draws members).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, updates: int) -> float:
    """Decay of update number ``updates`` (0-based): ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class EmaGenerator:
    """The averaged copy ``module`` of a generator, updated with :meth:`update` after each generator step."""

    def __init__(self, generator: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"training.ema.decay: expected a value in [0, 1), found {decay}")
        self.decay, self.updates = float(decay), 0
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """Move the average towards ``generator``'s current weights (the unwrapped module, not a DDP wrapper)."""
        d = ema_decay(self.decay, self.updates)
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in generator.parameters()]
        if ema_params:
            torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), generator.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
