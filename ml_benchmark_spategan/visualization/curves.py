"""Axes-level curve plots: spectra, quantiles, histograms, ensemble reliability, run comparisons.

Each function takes already computed arrays, draws on ``ax`` and returns it; nothing here computes a
diagnostic. Labels map to series so that several runs or models can share one panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator


def _as_1d(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, found shape {arr.shape}")
    return arr


def _same_length(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.size != b.size:
        raise ValueError(f"{what}: lengths differ ({a.size} vs {b.size})")


def plain_number(value: float, _pos=None) -> str:
    """Tick label without powers of ten for everyday magnitudes: 0.003, 0.5, 3, 40, 2000; 1e-05 beyond."""
    if value == 0 or not np.isfinite(value):
        return "0" if value == 0 else ""
    return f"{value:g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.0e}"


def plain_log_axis(axis) -> None:
    """Log-axis ticks labelled as plain numbers (``0.2``, ``3``, not ``3×10⁰``): round numbers within a
    decade, 1..9 or 1-2-5 per decade over a few decades, decades beyond. Call it once the axis has its data."""
    limits = axis.axes.get_xlim() if axis.axis_name == "x" else axis.axes.get_ylim()  # autoscaled now
    lo, hi = sorted(abs(v) for v in limits)
    decades = np.log10(hi / lo) if lo > 0 and np.isfinite(hi / lo) else 10.0
    if decades < 1.0:  # within a decade: evenly spaced round numbers (1.2, 1.4, ...) on the log axis
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    else:
        subs = tuple(range(1, 10)) if decades < 1.5 else (1.0, 2.0, 5.0) if decades < 4 else (1.0,)
        axis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=15))
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_formatter(FuncFormatter(lambda *_: ""))


def integer_ticks(axis) -> None:
    """Only whole-number ticks (epochs, ranks)."""
    axis.set_major_locator(MaxNLocator(integer=True))


def power_label(var: str, units: str) -> str:
    """y label of a power spectrum of ``var``: ``power of pr ((mm/day)²)``."""
    if not units:
        return f"power of {var}"
    squared = f"({units})²" if any(c in units for c in "/ *") else f"{units}²"
    return f"power of {var} ({squared})"


def plot_psd(ax, curves: Mapping[str, tuple], xlabel: str = "wavenumber (cycles/km)", ylabel: str = "power"):
    """Log–log power spectra: ``curves[label] = (wavenumber (n,), power (n,))``; k <= 0 or P <= 0 skipped."""
    for label, (k, power) in curves.items():
        k, power = _as_1d(k, f"plot_psd {label!r} wavenumber"), _as_1d(power, f"plot_psd {label!r} power")
        _same_length(k, power, f"plot_psd {label!r}")
        keep = (k > 0) & (power > 0) & np.isfinite(power)
        ax.plot(k[keep], power[keep], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if curves:
        plain_log_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if "cycles/km" in xlabel:  # the same axis read as wavelength: 1 / k
        top = ax.secondary_xaxis("top", functions=(_reciprocal, _reciprocal))
        top.set_xlabel("wavelength (km)")
        # plain labels at 1-2-5 per decade, none on minor ticks (a span of one or two decades otherwise gets
        # overlapping '6x10^2 4x10^2 ...' minor labels)
        top.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=15))
        top.xaxis.set_major_formatter(FuncFormatter(plain_number))
        top.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    ax.legend(fontsize=8)
    return ax


def _reciprocal(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x > 0, 1.0 / np.where(x > 0, x, 1.0), np.inf)


def plot_qq(ax, quantiles_true, quantiles_pred_by_label: Mapping[str, Sequence[float]], log: bool = False,
            units: str = ""):
    """Quantile–quantile plot of predicted against true quantiles (same probabilities), with the 1:1 line."""
    q_true = _as_1d(quantiles_true, "plot_qq quantiles_true")
    all_values = [q_true]
    for label, q_pred in quantiles_pred_by_label.items():
        q_pred = _as_1d(q_pred, f"plot_qq {label!r}")
        _same_length(q_true, q_pred, f"plot_qq {label!r} vs quantiles_true")
        ax.plot(q_true, q_pred, marker="o", markersize=3, label=label)
        all_values.append(q_pred)
    finite = np.concatenate(all_values)
    finite = finite[np.isfinite(finite) & ((finite > 0) if log else True)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.1, 1.0)
    ax.plot([lo, hi], [lo, hi], color="k", linestyle="--", linewidth=0.8, label="1:1")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis)
        plain_log_axis(ax.yaxis)
    suffix = f" ({units})" if units else ""
    ax.set_xlabel(f"true quantile{suffix}")
    ax.set_ylabel(f"predicted quantile{suffix}")
    ax.legend(fontsize=8)
    return ax


def plot_histogram(ax, values_by_label: Mapping[str, Sequence[float]], bins, log: bool = False, xlabel: str = "",
                   logx: bool = False, ylabel: str = "density"):
    """Density histograms (step lines) of several samples on shared ``bins``; NaN ignored; ``log``: log y;
    ``logx``: log x axis (give log-spaced ``bins``; values outside the bins are left out)."""
    for label, values in values_by_label.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(values[np.isfinite(values)], bins=bins, density=True, histtype="step", linewidth=1.2, label=label)
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def plot_rank_histogram(ax, counts, title: str = "rank histogram"):
    """Rank histogram: ``counts (n_members + 1,)`` drawn as relative frequencies with the flat reference."""
    counts = _as_1d(counts, "plot_rank_histogram counts")
    total = counts.sum()
    if total <= 0:
        raise ValueError("plot_rank_histogram: counts sum to zero")
    ranks = np.arange(counts.size)
    ax.bar(ranks, counts / total, width=0.9, color="0.55")
    step = max(1, int(np.ceil(counts.size / 16)))  # every rank up to 16 ranks, then every 2nd, 3rd, ...
    ax.set_xticks(ranks[::step])
    ax.set_xlim(-0.6, counts.size - 0.4)
    ax.axhline(1.0 / counts.size, color="k", linestyle="--", linewidth=1.0, label="flat (reliable)")
    ax.set_xlabel(f"rank of the observation among {counts.size - 1} members (0 = below all)")
    ax.set_ylabel("relative frequency")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return ax


def plot_spread_skill(ax, spread, skill, label: str = ""):
    """Ensemble spread against skill (RMSE of the ensemble mean), e.g. per bin, with the 1:1 line."""
    spread, skill = _as_1d(spread, "plot_spread_skill spread"), _as_1d(skill, "plot_spread_skill skill")
    _same_length(spread, skill, "plot_spread_skill spread vs skill")
    ax.plot(spread, skill, marker="o", markersize=3, label=label or None)
    both = np.concatenate([spread, skill])
    both = both[np.isfinite(both)]
    hi = float(both.max()) if both.size else 1.0
    ax.plot([0.0, hi], [0.0, hi], color="k", linestyle="--", linewidth=0.8, label="1:1")
    ax.set_xlabel("ensemble spread")
    ax.set_ylabel("RMSE of ensemble mean")
    ax.legend(fontsize=8)
    return ax


def plot_bars(ax, values_by_label: Mapping[str, Mapping[str, float]], ylabel: str = ""):
    """Grouped bars: one group per metric name, one bar per label (e.g. run); missing values are gaps."""
    names = list(dict.fromkeys(name for values in values_by_label.values() for name in values))
    if not names:
        raise ValueError("plot_bars: no values to draw")
    n_labels = max(len(values_by_label), 1)
    width = 0.8 / n_labels
    positions = np.arange(len(names), dtype=np.float64)
    for i, (label, values) in enumerate(values_by_label.items()):
        heights = [values.get(name, np.nan) for name in names]
        ax.bar(positions + (i - (n_labels - 1) / 2) * width, heights, width=width, label=label)
    ax.set_xticks(positions)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.axhline(0.0, color="k", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def plot_lines(ax, x, series: Mapping[str, Sequence[float]], ylabel: str = "", logy: bool = False,
               xlabel: str = "epoch", reference: float | None = None):
    """Several series over a shared ``x (n,)``; NaN values leave gaps; ``logy``: log y axis with plain
    labels. ``xlabel="epoch"`` gets whole-number ticks; ``reference``: a dashed horizontal line there (e.g.
    1 for a ratio whose ideal is 1)."""
    x = _as_1d(x, "plot_lines x")
    for label, y in series.items():
        y = _as_1d(y, f"plot_lines {label!r}")
        _same_length(x, y, f"plot_lines {label!r} vs x")
        ax.plot(x, y, marker="." if x.size < 50 else None, label=label)
    if reference is not None:
        ax.axhline(reference, color="k", linestyle="--", linewidth=0.8, label=f"ideal ({reference:g})")
    if logy:
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
    if xlabel == "epoch":
        integer_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=8)
    return ax
