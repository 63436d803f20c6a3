"""Figure builders: each returns a ``matplotlib.figure.Figure``; the caller saves it.

Figures are made with ``matplotlib.figure.Figure`` directly (no pyplot), so they render with the Agg
canvas in any process (workers, no display) and are freed when dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ml_benchmark_spategan.cordex import PREDICTOR_UNITS, TARGET_UNITS
from ml_benchmark_spategan.evaluation.report import index_units
from ml_benchmark_spategan.visualization.curves import plot_lines, plot_psd, power_label
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
#: Losses are computed on the normalised target (and the adversarial ones are cross-entropies): no unit.
LOSS_YLABEL = "loss (dimensionless, normalised target)"
#: Logged losses that do have a unit; their legend entries carry it and the panel's y label says so.
LOSS_UNITS = {"g/loss_spectral": "dB²"}
LOSS_YLABEL_MIXED = "loss (units in legend, else none)"
#: Validation diagnostics (history names without ``val/``) -> (quantity, unit or None = the target's, ideal).
DIAGNOSTIC_AXES = {
    "rmse": ("RMSE of ensemble mean", None, None),
    "bias_mean": ("|bias| of time mean", None, None),
    "bias_q95": ("|bias| of 95th percentile", None, None),
    "bias_q98": ("|bias| of 98th percentile", None, None),
    "std_ratio": ("std ratio pred/true", "1", 1.0),
    "corr": ("correlation", "1", 1.0),
    "ralsd": ("RALSD", "dB²", 0.0),
    "crps": ("CRPS", None, None),
    "spread_skill": ("spread/skill", "1", 1.0),
    "loss_l1": ("L1 loss", "dimensionless", None),
    "loss_mse": ("MSE loss", "dimensionless", None),
}
#: Diverging (bias) maps: colour limits at this percentile of |bias|; beyond it the colour saturates.
BIAS_COLOUR_PERCENTILE = 98.0


def _target_kind(var: str, kind: str | None = None) -> str:
    """Map colour scale of a target: from its kind (precipitation / temperature / generic), else its name."""
    if kind is not None:
        return {"precipitation": "pr", "temperature": "tasmax"}.get(kind, "sequential")
    return "pr" if var == "pr" else "tasmax" if var == "tasmax" else "sequential"


def _units(var: str, units: str | None) -> str:
    return TARGET_UNITS.get(var, "") if units is None else units


def _predictor_kind(name: str) -> str:
    return "diverging" if name.split("_")[0] in ("u", "v") else "sequential"


def predictor_label(name: str, units: str | None = None) -> str:
    """Colour-bar label of a predictor: ``q_850 (kg/kg)``; ``units`` default: the CORDEX predictor units."""
    units = PREDICTOR_UNITS.get(name.split("_")[0], "") if units is None else units
    return f"{name} ({units})" if units else name


def diagnostic_axis(name: str, units: str) -> tuple[str, float | None]:
    """(y-axis label with quantity and unit, ideal value or None) of a validation diagnostic history."""
    quantity, unit, ideal = DIAGNOSTIC_AXES.get(name.removeprefix("val/"), (name, None, None))
    unit = units if unit is None else unit
    return (f"{quantity} ({unit})" if unit else quantity), ideal


def sample_figure(grid: MapGrid, predictor2d, predictor_grid_latlon, predictor_name: str, target2d, members,
                  title: str = "", var: str = "pr", *, units: str | None = None, kind: str | None = None,
                  predictor_units: str | None = None) -> Figure:
    """One sample: a predictor, the target, up to three members, the ensemble mean, its error and the spread.

    Panels (filling their rows): 3+ members: predictor, target, 3 members, mean, mean - target, spread;
    2 members: predictor, target, 2 members, mean, spread; 1 member: predictor, target, member, error.

    ``predictor2d (16, 16)`` on ``predictor_grid_latlon`` (a lat/lon :class:`MapGrid` or a ``(lat, lon)``
    pair of 1-D degrees), drawn on the target's projection with the target domain outlined;
    ``target2d (ny, nx)`` and ``members (n, ny, nx)`` on ``grid``, in ``units`` (default: the CORDEX units of
    ``var``); ``kind`` (precipitation / temperature / generic; default from ``var``) picks the colour scale.
    Target, members and mean share one colour scale; the spread (member std) has its own.
    ``predictor_units`` label the predictor's colour bar (default: the CORDEX units of its name).
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
    m = members.shape[0]
    # plain mean/std: a masked cell is NaN in every member and stays NaN (nanmean would warn on it)
    mean = np.mean(members, axis=0)
    shared = [("target", target2d)] + [(f"member {i + 1}", f) for i, f in enumerate(members[:3])]
    shared += [(f"ensemble mean (n={m})", mean)] if m > 1 else []
    extra = []  # (title, field, map kind, colour-bar label): chosen so that the panels fill their rows
    if m != 2:
        extra.append(("ensemble mean - target", mean - target2d, "diverging", f"{var} error ({units})"))
    if m > 1:
        extra.append(("ensemble spread (std)", np.std(members, axis=0), "sequential", f"{var} std ({units})"))
    n_panels = 1 + len(shared) + len(extra)
    ncols = _columns(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(4 * ncols, 3.75 * nrows), layout="constrained")
    fig.suptitle(title)

    ax = add_map_axes(fig, grid if pgrid.is_geographic else pgrid, nrows, ncols, 1)
    plot_map(ax, predictor2d, pgrid, kind=_predictor_kind(predictor_name), title=f"predictor {predictor_name}",
             cbar_label=predictor_label(predictor_name, predictor_units))
    if grid.is_geographic:
        draw_outline(ax, grid)
    for index, (name, field) in enumerate(shared, start=2):
        plot_map(add_map_axes(fig, grid, nrows, ncols, index), field, grid, kind=kind, vmin=vmin, vmax=vmax,
                 title=f"{var} {name}", cbar_label=f"{var} ({units})")
    for index, (name, field, map_kind, label) in enumerate(extra, start=2 + len(shared)):
        cmap = "BrBG" if map_kind == "diverging" and kind == "pr" else None
        plot_map(add_map_axes(fig, grid, nrows, ncols, index), field, grid, kind=map_kind, cmap=cmap,
                 title=f"{var} {name}", cbar_label=label)
    return fig


def _check_lengths(history: Mapping[str, Sequence[float]], n: int, what: str) -> None:
    for key, values in history.items():
        if len(values) != n:
            raise ValueError(f"{what}: history[{key!r}] has {len(values)} values, expected {n} (one per epoch)")


def _positive(series: Mapping[str, Sequence[float]]) -> bool:
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in series.values()]) if series else np.array([])
    values = values[np.isfinite(values)]
    return values.size > 0 and bool(np.all(values > 0))


def losses_figure(history: Mapping[str, Sequence[float]], epochs: Sequence[float] | None = None,
                  title: str = "") -> Figure:
    """Training losses per epoch: panels for ``d/*``, ``g/*``, ``val/*`` keys (other keys: one more panel).

    ``history[key]`` holds one value per epoch (NaN where not computed); ``epochs`` defaults to 1..n.
    Panels whose values are all positive use a log y axis (plain tick labels); epochs are whole numbers.
    """
    if not history:
        raise ValueError("losses_figure: history is empty")
    n = len(next(iter(history.values())))
    epochs = np.arange(1, n + 1) if epochs is None else np.asarray(epochs)
    _check_lengths(history, len(epochs), "losses_figure")
    groups: dict[str, dict[str, Sequence[float]]] = {}
    for key, values in history.items():
        prefix = next((p for p in LOSS_GROUPS if key.startswith(p)), None)
        label = f"{key} ({LOSS_UNITS[key]})" if key in LOSS_UNITS else key
        groups.setdefault(LOSS_GROUPS[prefix] if prefix else "other", {})[label] = values
    fig = Figure(figsize=(5 * len(groups), 3.8), layout="constrained")
    for i, (name, series) in enumerate(groups.items(), start=1):
        ax = fig.add_subplot(1, len(groups), i)
        mixed = any(key in series for key in (f"{k} ({u})" for k, u in LOSS_UNITS.items()))
        plot_lines(ax, epochs, series, ylabel=LOSS_YLABEL_MIXED if mixed else LOSS_YLABEL, logy=_positive(series))
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def diagnostics_history_figure(history: Mapping[str, Sequence[float]], epochs: Sequence[float] | None = None,
                               ncols: int = 4, *, units: str = "", title: str = "") -> Figure:
    """One small panel per validation diagnostic (``history[name]``, one value per epoch) against epoch.

    Each y axis names its quantity and unit (``units``: the target's, for RMSE, biases, CRPS); ratios whose
    ideal is 1 (std ratio, spread/skill, correlation) and RALSD (ideal 0) get a dashed reference line.
    """
    if not history:
        raise ValueError("diagnostics_history_figure: history is empty")
    n = len(next(iter(history.values())))
    epochs = np.arange(1, n + 1) if epochs is None else np.asarray(epochs)
    _check_lengths(history, len(epochs), "diagnostics_history_figure")
    ncols = _columns(len(history), ncols)
    nrows = math.ceil(len(history) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows), layout="constrained")
    for i, (name, values) in enumerate(history.items(), start=1):
        ax = fig.add_subplot(nrows, ncols, i)
        ylabel, ideal = diagnostic_axis(name, units)
        plot_lines(ax, epochs, {name: values}, ylabel=ylabel, reference=ideal)
        ax.yaxis.label.set_fontsize(8)
        if ideal is None:
            ax.get_legend().remove()
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _columns(n: int, preferred: int) -> int:
    """Columns for ``n`` panels: from half of ``preferred`` up to ``preferred``, leaving as few empty slots
    as possible (then the most columns)."""
    preferred = max(1, min(preferred, n))
    choices = range(max(1, math.ceil(preferred / 2)), preferred + 1)
    return min(choices, key=lambda c: (math.ceil(n / c) * c - n, -c))


def _diagnostic_kind(name: str, var: str, kind: str | None = None) -> tuple[str, str | None]:
    lowered = name.lower()
    if "ratio" in lowered:
        return "ratio", None
    if "bias" in lowered:
        return "diverging", "BrBG" if _target_kind(var, kind) == "pr" else "RdBu_r"
    return "sequential", None


def map_units_label(name: str, units: str) -> str:
    """Colour-bar label of a diagnostic map: ``1`` for ratios, ``days`` for day-count indices (SU, CWD,
    CDD), else the variable's ``units``; with the quantity, e.g. ``bias of cwd (days)``."""
    lowered = name.lower()
    quantity = name.split(" (")[0]
    if "ratio" in lowered:
        return f"{quantity} (1)"
    index = re.search(r"\bof (\w+)", lowered)
    unit = index_units(index.group(1), units) if index else units
    return f"{quantity} ({unit})" if unit else quantity


def robust_half_range(field, percentile: float = BIAS_COLOUR_PERCENTILE) -> float | None:
    """Half-width of a diverging colour scale: the ``percentile`` of |field| (finite cells), so that a few
    extreme cells (e.g. a model's border artefacts) saturate, with arrows, instead of washing out the map."""
    values = np.abs(np.asarray(field, dtype=np.float64))
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    half = float(np.percentile(values, percentile))
    return half if half > 0 else (float(values.max()) or None)


def score_unit(name: str, units: str | None) -> str:
    """Unit of a listed score: none for ratios, correlations and normalised losses, dB² for RALSD (the
    benchmark's definition), days for the bias of a day-count index, else the variable's ``units`` (RMSE,
    biases, CRPS)."""
    lowered = name.lower()
    if any(word in lowered for word in ("ratio", "corr", "spread_skill", "loss")):
        return ""
    return "dB²" if "ralsd" in lowered else index_units(lowered.removeprefix("val/"), units)


def _scalars_panel(ax, scalars: Mapping[str, float], units: str | None):
    ax.axis("off")
    lines = [f"{name}: {value:.4g} {score_unit(name, units)}".rstrip() for name, value in scalars.items()]
    ax.text(0.02, 0.98, "\n".join(lines) or "(no scalars)", va="top", ha="left", family="monospace",
            fontsize=8, transform=ax.transAxes)
    ax.set_title("scores", fontsize=9)
    return ax


def diagnostics_figure(diag_maps: Mapping[str, np.ndarray], scalars: Mapping[str, float], grid: MapGrid,
                       var: str, psd: Mapping[str, tuple] | None = None, ncols: int = 3,
                       psd_xlabel: str = "wavenumber (cycles/km)", *, units: str | None = None,
                       kind: str | None = None, title: str = "") -> Figure:
    """Diagnostic maps on ``grid`` plus a score table and an optional PSD panel; no empty panel.

    ``diag_maps[name] (ny, nx)``: names containing "bias" use a diverging scale centred at 0 ('BrBG' for pr),
    names containing "ratio" a log scale centred at 1, the rest (RMSE, ...) a sequential scale. Bias limits
    are the 98th percentile of |bias| (:func:`robust_half_range`; the colour bar's arrows show values beyond).
    ``scalars``: domain-wide scores listed as text; ``psd[label] = (wavenumber, power)``. ``units`` (default:
    the CORDEX units of ``var``) label the colour bars (see :func:`map_units_label`: ratios ``1``, day
    counts ``days``); ``kind`` as in :func:`sample_figure`; ``title``: the figure's title (say which run and
    epoch). Maps and PSD fill a grid of at most ``ncols`` columns; the scores take the rest of the last row,
    or a column of their own when the rows are full.
    """
    n_panels = len(diag_maps) + (psd is not None)
    ncols = _columns(n_panels, ncols)
    nrows = math.ceil(n_panels / ncols)
    spare = nrows * ncols - n_panels
    side = spare == 0
    fig = Figure(figsize=(4.8 * ncols + (3.2 if side else 0.0), 3.9 * nrows), layout="constrained")
    gs = fig.add_gridspec(nrows, ncols + side, width_ratios=[1.0] * ncols + ([0.65] if side else []))
    slots = [gs[r, c] for r in range(nrows) for c in range(ncols)]
    units = _units(var, units)
    for slot, (name, field) in zip(slots, diag_maps.items(), strict=False):
        map_kind, cmap = _diagnostic_kind(name, var, kind)
        ax = fig.add_subplot(slot, projection=grid.crs())
        half = robust_half_range(field) if map_kind == "diverging" else None
        plot_map(ax, field, grid, kind=map_kind, cmap=cmap, title=f"{var} {name}", vmin=half and -half, vmax=half,
                 cbar_label=map_units_label(name, units))
    if psd is not None:
        ax = fig.add_subplot(slots[len(diag_maps)])
        plot_psd(ax, psd, xlabel=psd_xlabel, ylabel=power_label(var, units))
        ax.set_title(f"{var} power spectrum", fontsize=9)
    _scalars_panel(fig.add_subplot(gs[:, ncols] if side else gs[nrows - 1, ncols - spare:]), scalars, units)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
