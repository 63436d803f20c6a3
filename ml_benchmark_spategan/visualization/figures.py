"""Figure builders: each returns a ``matplotlib.figure.Figure``; the caller saves it.

Figures are made with ``matplotlib.figure.Figure`` directly (no pyplot), so they render with the Agg
canvas in any process (workers, no display) and are freed when dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ml_benchmark_spategan.cordex import TARGET_UNITS
from ml_benchmark_spategan.visualization.curves import plot_lines, plot_psd
from ml_benchmark_spategan.visualization.maps import (
    MapGrid,
    add_map_axes,
    draw_outline,
    map_grid,
    plot_map,
    pr_log_vmin,
)

#: History key prefixes (StyleGAN-style hierarchical log names) -> panel title in ``losses_figure``.
LOSS_GROUPS = {"d/": "discriminator losses", "g/": "generator losses", "val/": "validation"}


def _target_kind(var: str, kind: str | None = None) -> str:
    """Map colour scale of a target: from its kind (precipitation / temperature / generic), else its name."""
    if kind is not None:
        return {"precipitation": "pr", "temperature": "tasmax"}.get(kind, "sequential")
    return "pr" if var == "pr" else "tasmax" if var == "tasmax" else "sequential"


def _units(var: str, units: str | None) -> str:
    return TARGET_UNITS.get(var, "") if units is None else units


def _predictor_kind(name: str) -> str:
    return "diverging" if name.split("_")[0] in ("u", "v") else "sequential"


def sample_figure(grid: MapGrid, predictor2d, predictor_grid_latlon, predictor_name: str, target2d, members,
                  title: str = "", var: str = "pr", *, units: str | None = None, kind: str | None = None) -> Figure:
    """One sample: a predictor, the target, up to three members, ensemble mean and spread.

    ``predictor2d (16, 16)`` on ``predictor_grid_latlon`` (a lat/lon :class:`MapGrid` or a ``(lat, lon)``
    pair of 1-D degrees), drawn on the target's projection with the target domain outlined;
    ``target2d (ny, nx)`` and ``members (n, ny, nx)`` on ``grid``, in ``units`` (default: the CORDEX units of
    ``var``); ``kind`` (precipitation / temperature / generic; default from ``var``) picks the colour scale.
    Target, members and mean share one colour scale; the spread (member std) has its own.
    """
    members = np.asarray(members, dtype=np.float64)
    if members.ndim != 3 or members.shape[1:] != grid.shape:
        raise ValueError(f"sample_figure: members must be (n, ny, nx) with (ny, nx) = {grid.shape}, found {members.shape}")
    pgrid = predictor_grid_latlon if isinstance(predictor_grid_latlon, MapGrid) else map_grid(None, *predictor_grid_latlon)
    if not grid.is_geographic or not pgrid.is_geographic:  # no projection to share: plain images
        pgrid = map_grid(None, x=np.arange(pgrid.shape[1]), y=np.arange(pgrid.shape[0]))
    target2d = np.asarray(target2d, dtype=np.float64)
    units = _units(var, units)
    kind = _target_kind(var, kind)
    stacked = np.concatenate([target2d[None], members])
    lo, hi = np.nanmin(stacked), np.nanmax(stacked)
    vmin, vmax = (pr_log_vmin(units), hi) if kind == "pr" else (lo, hi)
    fig = Figure(figsize=(16, 7.5), layout="constrained")
    fig.suptitle(title)

    ax = add_map_axes(fig, grid if pgrid.is_geographic else pgrid, 2, 4, 1)
    plot_map(ax, predictor2d, pgrid, kind=_predictor_kind(predictor_name), title=f"predictor {predictor_name}")
    if grid.is_geographic:
        draw_outline(ax, grid)
    panels = [("target", target2d)] + [(f"member {i + 1}", m) for i, m in enumerate(members[:3])]
    # plain mean/std: a masked cell is NaN in every member and stays NaN (nanmean would warn on it)
    panels.append((f"ensemble mean (n={members.shape[0]})", np.mean(members, axis=0)))
    for index, (name, field) in enumerate(panels, start=2):
        plot_map(add_map_axes(fig, grid, 2, 4, index), field, grid, kind=kind, vmin=vmin, vmax=vmax,
                 title=f"{var} {name}", cbar_label=units)
    spread = np.std(members, axis=0) if members.shape[0] > 1 else np.full(grid.shape, np.nan)
    plot_map(add_map_axes(fig, grid, 2, 4, len(panels) + 2), spread, grid, kind="sequential",
             title=f"{var} ensemble spread (std)", cbar_label=units)
    return fig


def _check_lengths(history: Mapping[str, Sequence[float]], n: int, what: str) -> None:
    for key, values in history.items():
        if len(values) != n:
            raise ValueError(f"{what}: history[{key!r}] has {len(values)} values, expected {n} (one per epoch)")


def _positive(series: Mapping[str, Sequence[float]]) -> bool:
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in series.values()]) if series else np.array([])
    values = values[np.isfinite(values)]
    return values.size > 0 and bool(np.all(values > 0))


def losses_figure(history: Mapping[str, Sequence[float]], epochs: Sequence[float] | None = None) -> Figure:
    """Training losses per epoch: panels for ``d/*``, ``g/*``, ``val/*`` keys (other keys: one more panel).

    ``history[key]`` holds one value per epoch (NaN where not computed); ``epochs`` defaults to 1..n.
    Panels whose values are all positive use a log y axis.
    """
    if not history:
        raise ValueError("losses_figure: history is empty")
    n = len(next(iter(history.values())))
    epochs = np.arange(1, n + 1) if epochs is None else np.asarray(epochs)
    _check_lengths(history, len(epochs), "losses_figure")
    groups: dict[str, dict[str, Sequence[float]]] = {}
    for key, values in history.items():
        prefix = next((p for p in LOSS_GROUPS if key.startswith(p)), None)
        groups.setdefault(LOSS_GROUPS[prefix] if prefix else "other", {})[key] = values
    fig = Figure(figsize=(5 * len(groups), 3.8), layout="constrained")
    for i, (name, series) in enumerate(groups.items(), start=1):
        ax = fig.add_subplot(1, len(groups), i)
        plot_lines(ax, epochs, series, ylabel="loss" if name != "validation" else "value", logy=_positive(series))
        ax.set_title(name, fontsize=10)
    return fig


def diagnostics_history_figure(history: Mapping[str, Sequence[float]], epochs: Sequence[float] | None = None,
                               ncols: int = 4) -> Figure:
    """One small panel per validation diagnostic (``history[name]``, one value per epoch) against epoch."""
    if not history:
        raise ValueError("diagnostics_history_figure: history is empty")
    n = len(next(iter(history.values())))
    epochs = np.arange(1, n + 1) if epochs is None else np.asarray(epochs)
    _check_lengths(history, len(epochs), "diagnostics_history_figure")
    ncols = min(ncols, len(history))
    nrows = math.ceil(len(history) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows), layout="constrained")
    for i, (name, values) in enumerate(history.items(), start=1):
        ax = fig.add_subplot(nrows, ncols, i)
        plot_lines(ax, epochs, {name: values})
        ax.get_legend().remove()
        ax.set_title(name, fontsize=9)
    return fig


def _diagnostic_kind(name: str, var: str, kind: str | None = None) -> tuple[str, str | None]:
    lowered = name.lower()
    if "ratio" in lowered:
        return "ratio", None
    if "bias" in lowered:
        return "diverging", "BrBG" if _target_kind(var, kind) == "pr" else "RdBu_r"
    return "sequential", None


def _scalars_panel(ax, scalars: Mapping[str, float]):
    ax.axis("off")
    lines = [f"{name}: {value:.4g}" for name, value in scalars.items()]
    ax.text(0.02, 0.98, "\n".join(lines) or "(no scalars)", va="top", ha="left", family="monospace",
            fontsize=8, transform=ax.transAxes)
    ax.set_title("scores", fontsize=9)
    return ax


def diagnostics_figure(diag_maps: Mapping[str, np.ndarray], scalars: Mapping[str, float], grid: MapGrid,
                       var: str, psd: Mapping[str, tuple] | None = None, ncols: int = 3,
                       psd_xlabel: str = "wavenumber (cycles/km)", *, units: str | None = None,
                       kind: str | None = None) -> Figure:
    """Diagnostic maps on ``grid`` plus a score table and an optional PSD panel.

    ``diag_maps[name] (ny, nx)``: names containing "bias" use a diverging scale centred at 0 ('BrBG' for pr),
    names containing "ratio" a log scale centred at 1, the rest (RMSE, ...) a sequential scale.
    ``scalars``: domain-wide scores listed as text; ``psd[label] = (wavenumber, power)``. ``units`` (default:
    the CORDEX units of ``var``) label the colour bars; ``kind`` as in :func:`sample_figure`. Maps whose name
    counts days (SU) are labelled ``days``.
    """
    n_panels = len(diag_maps) + 1 + (psd is not None)
    ncols = min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.9 * nrows), layout="constrained")
    units = _units(var, units)
    for i, (name, field) in enumerate(diag_maps.items(), start=1):
        map_kind, cmap = _diagnostic_kind(name, var, kind)
        ax = add_map_axes(fig, grid, nrows, ncols, i)
        label = "" if map_kind == "ratio" else "days" if "of su" in name else units
        plot_map(ax, field, grid, kind=map_kind, cmap=cmap, title=f"{var} {name}", cbar_label=label)
    _scalars_panel(fig.add_subplot(nrows, ncols, len(diag_maps) + 1), scalars)
    if psd is not None:
        ax = fig.add_subplot(nrows, ncols, len(diag_maps) + 2)
        plot_psd(ax, psd, xlabel=psd_xlabel)
        ax.set_title(f"{var} power spectrum", fontsize=9)
    return fig
