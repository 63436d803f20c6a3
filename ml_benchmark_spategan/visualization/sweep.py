"""Axes-level plots of a hyperparameter sweep: optimisation history, learning curves, parameter importance.

Each function takes already computed arrays, draws on ``ax`` and returns it; the sweep summary computes
the numbers (from the Optuna study) and saves the figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

STATE_STYLE = {"complete": ("tab:blue", "o"), "pruned": ("tab:gray", "x"), "fail": ("tab:red", "v")}


def _axis_label(metric: str, unit: str) -> str:
    return f"{metric} ({unit})"


def plot_optimization_history(ax, numbers: Sequence[int], values: Sequence[float], states: Sequence[str],
                              metric: str, unit: str, direction: str):
    """Objective per trial (complete: best epoch; pruned: last reported epoch) and the best so far.

    ``states`` are 'complete', 'pruned' or 'fail' (failed trials have no value and are drawn as ticks on
    the x axis).
    """
    numbers, values = np.asarray(numbers, dtype=int), np.asarray(values, dtype=np.float64)
    states = np.asarray(states)
    for state, (color, marker) in STATE_STYLE.items():
        keep = states == state
        if not keep.any():
            continue
        if state == "fail":
            ax.plot(numbers[keep], np.zeros(keep.sum()), linestyle="none", marker="|", markersize=12, color=color,
                    transform=ax.get_xaxis_transform(), label="failed", clip_on=False)
            continue
        label = "pruned (last reported epoch)" if state == "pruned" else "complete (best epoch)"
        ax.plot(numbers[keep], values[keep], linestyle="none", marker=marker, color=color, label=label)
    complete = (states == "complete") & np.isfinite(values)
    if complete.any():
        order = np.argsort(numbers[complete])
        xs, ys = numbers[complete][order], values[complete][order]
        best = np.minimum.accumulate(ys) if direction == "minimize" else np.maximum.accumulate(ys)
        last = int(numbers.max())  # the line runs on to the last trial shown
        if last > xs[-1]:
            xs, best = np.append(xs, last), np.append(best, best[-1])
        ax.step(xs, best, where="post", color="tab:orange", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(_axis_label(metric, unit))
    ax.set_title(f"optimisation history ({direction} {metric})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return ax


def plot_learning_curves(ax, curves: Sequence[tuple[int, Sequence[int], Sequence[float], str]], metric: str,
                         unit: str):
    """Per-epoch objective of every trial: ``curves`` = [(trial number, epochs, values, state)]; pruned
    trials end in an x."""
    for number, epochs, values, state in curves:
        epochs, values = np.asarray(epochs, dtype=int), np.asarray(values, dtype=np.float64)
        if epochs.size == 0:
            continue
        line, = ax.plot(epochs, values, marker=".", alpha=0.8, linewidth=1,
                        label=f"trial {number}" + (" (pruned)" if state == "pruned" else "") if len(curves) <= 10 else None)
        if state == "pruned":
            ax.plot(epochs[-1], values[-1], marker="x", color=line.get_color(), markersize=9, markeredgewidth=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_axis_label(metric, unit))
    ax.set_title("validation metric per epoch (x: pruned)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    return ax


def plot_param_importances(ax, names: Sequence[str], importances: Sequence[float], evaluator: str):
    """Horizontal bars of relative importances (fractions that sum to 1), the most important on top."""
    values = np.asarray(importances, dtype=np.float64)
    order = np.argsort(values)
    ax.barh(np.arange(values.size), values[order], color="tab:blue")
    ax.set_yticks(np.arange(values.size), [names[i] for i in order], fontsize=8)
    for y, v in enumerate(values[order]):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, float(values.max(initial=0.0)) * 1.15))
    ax.set_xlabel(f"relative importance ({evaluator}; fraction, sums to 1)")
    ax.set_title("hyperparameter importance")
    return ax
