"""Mixed precision on the model side: resolving ``training.precision`` and the autocast context.

Precisions: ``fp32`` (no autocast), ``bf16`` (autocast, no scaler: bf16 has fp32's range), ``fp16``
(autocast plus one grad scaler per optimiser; the scalers and the optimiser update live in
:mod:`ml_benchmark_spategan.training.optim`).
"""

from __future__ import annotations

import contextlib

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
