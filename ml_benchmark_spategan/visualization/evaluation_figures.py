"""Figure builders of the evaluation and comparison command-line tools; each returns a ``Figure``.

They arrange the curve functions of :mod:`.curves` (which do the drawing) on new figures; maps use
:func:`.figures.sample_figure` and :func:`.figures.diagnostics_figure` directly. No science here: every
input is already computed. Figures are ``matplotlib.figure.Figure`` objects (Agg, no pyplot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ml_benchmark_spategan.cordex import TARGET_UNITS
from ml_benchmark_spategan.visualization.curves import (
    plot_bars,
    plot_histogram,
    plot_psd,
    plot_qq,
    plot_rank_histogram,
    plot_spread_skill,
    power_label,
)
from ml_benchmark_spategan.visualization.maps import pr_log_vmin


def _figure(ncols: int = 1, width: float = 5.5, height: float = 4.2) -> Figure:
    return Figure(figsize=(width * ncols, height), layout="constrained")


def psd_figure(curves: Mapping[str, tuple], var: str, title: str = "",
               xlabel: str = "wavenumber (cycles/km)", units: str | None = None) -> Figure:
    """Log-log power spectra, ``curves[label] = (wavenumber (n,), power (n,))``; ``units`` of ``var``
    (default: its CORDEX units) label the power axis."""
    fig = _figure()
    units = TARGET_UNITS.get(var, "") if units is None else units
    ax = plot_psd(fig.add_subplot(1, 1, 1), curves, xlabel=xlabel, ylabel=power_label(var, units))
    ax.set_title(title or f"{var} radially averaged power spectrum", fontsize=10)
    return fig


def _is_precipitation(var: str, kind: str | None) -> bool:
    return kind == "precipitation" if kind is not None else var == "pr"


def histogram_bins(values: np.ndarray, var: str, n_bins: int = 60, *, kind: str | None = None,
                   units: str | None = None) -> np.ndarray:
    """Shared histogram bin edges over the finite ``values``. Precipitation (``kind``, default from the name
    ``var``): log-spaced from 0.1 mm/day (in ``units``; drier values fall outside) to the maximum, so the
    wet-day distribution is not squeezed into the first bin; otherwise linear from the minimum."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if _is_precipitation(var, kind):
        lo = pr_log_vmin(TARGET_UNITS.get(var, "mm/day") if units is None else units)
        return np.geomspace(lo, max(hi, 10.0 * lo), n_bins + 1)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)


def distribution_figure(values_by_label: Mapping[str, np.ndarray], bins: np.ndarray, quantiles_true: Sequence[float],
                        quantiles_by_label: Mapping[str, Sequence[float]], var: str, *, units: str | None = None,
                        kind: str | None = None) -> Figure:
    """Value histograms (density, log y for precipitation) and a QQ plot (log axes for precipitation) side by
    side; ``units`` default to the CORDEX units of ``var``, ``kind`` to the one of its name. Precipitation
    histograms use a log x axis (give log-spaced ``bins``, see :func:`histogram_bins`)."""
    units, log = (TARGET_UNITS.get(var, "") if units is None else units), _is_precipitation(var, kind)
    fig = _figure(2)
    ylabel = f"density (1/({units}))" if units else "density"
    ax = plot_histogram(fig.add_subplot(1, 2, 1), values_by_label, bins, log=log, xlabel=f"{var} ({units})",
                        logx=log, ylabel=ylabel)
    dry = f" (values >= {bins[0]:.3g} {units})" if log else ""
    ax.set_title(f"{var} value distribution{dry}", fontsize=10)
    ax = plot_qq(fig.add_subplot(1, 2, 2), quantiles_true, quantiles_by_label, log=log, units=units)
    ax.set_title(f"{var} quantile-quantile", fontsize=10)
    return fig


def qq_figure(quantiles_true: Sequence[float], quantiles_by_label: Mapping[str, Sequence[float]], var: str,
              title: str = "", *, units: str | None = None, kind: str | None = None) -> Figure:
    """One QQ panel (log axes for precipitation), e.g. several runs against the same truth."""
    fig = _figure()
    ax = plot_qq(fig.add_subplot(1, 1, 1), quantiles_true, quantiles_by_label, log=_is_precipitation(var, kind),
                 units=TARGET_UNITS.get(var, "") if units is None else units)
    ax.set_title(title or f"{var} quantile-quantile", fontsize=10)
    return fig


def rank_histogram_figure(counts: Sequence[int], title: str = "rank histogram") -> Figure:
    """Rank histogram of ``counts (m + 1,)`` as relative frequencies."""
    fig = _figure(height=3.8)
    plot_rank_histogram(fig.add_subplot(1, 1, 1), counts, title=title)
    return fig


def spread_skill_figure(spread: Sequence[float], rmse: Sequence[float], var: str, label: str = "",
                        ratio: float | None = None, *, units: str | None = None) -> Figure:
    """Binned ensemble spread against the RMSE of the ensemble mean, with the 1:1 line."""
    fig = _figure(height=4.5, width=4.8)
    ax = plot_spread_skill(fig.add_subplot(1, 1, 1), spread, rmse, label=label)
    units = TARGET_UNITS.get(var, "") if units is None else units
    ax.set_xlabel(f"ensemble spread ({units})")
    ax.set_ylabel(f"RMSE of ensemble mean ({units})")
    suffix = f" (spread/skill = {ratio:.3g})" if ratio is not None else ""
    ax.set_title(f"{var} spread-skill{suffix}", fontsize=10)
    return fig


def bars_figure(values_by_label: Mapping[str, Mapping[str, float]], ylabel: str = "", title: str = "",
                units: Mapping[str, str] | None = None) -> Figure:
    """Grouped bars (one group per score, one bar per label, e.g. run).

    ``units[score]``: scores of different units get separate panels side by side, each y axis labelled
    ``"<ylabel> (<unit>)"``; without ``units`` all scores share one panel labelled ``ylabel``.
    """
    names = list(dict.fromkeys(name for values in values_by_label.values() for name in values))
    by_unit: dict[str, list[str]] = {}
    for name in names:
        by_unit.setdefault((units or {}).get(name, ""), []).append(name)
    widths = [max(2.8, 0.9 * len(group) * max(len(values_by_label), 1) ** 0.5) for group in by_unit.values()]
    fig = Figure(figsize=(max(5.5, sum(widths) + 1.0), 4.2), layout="constrained")
    axes = fig.subplots(1, len(by_unit), squeeze=False, width_ratios=widths)[0]
    for ax, (unit, group) in zip(axes, by_unit.items(), strict=True):
        subset = {label: {k: v for k, v in values.items() if k in group} for label, values in values_by_label.items()}
        label = f"{ylabel} ({unit})" if unit else ylabel
        plot_bars(ax, subset, ylabel=label)
        if ax is not axes[-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(title, fontsize=10)
    return fig
