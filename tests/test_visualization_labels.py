"""What a reader sees: titles, axis labels with quantity and unit, colour-bar labels, tick labels, reference
lines, gridline labels and no empty panels, read back from the figure objects after drawing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from cartopy.mpl.gridliner import Gridliner

from ml_benchmark_spategan.cordex import predictor_coords
from ml_benchmark_spategan.visualization import (
    diagnostics_figure,
    diagnostics_history_figure,
    losses_figure,
    map_grid_for_domain,
    sample_figure,
)
from ml_benchmark_spategan.visualization.evaluation_figures import (
    bars_figure,
    distribution_figure,
    histogram_bins,
    rank_histogram_figure,
)
from ml_benchmark_spategan.visualization.figures import LOSS_YLABEL, LOSS_YLABEL_MIXED, map_units_label


def _draw(fig):
    fig.savefig(io.BytesIO(), format="png", dpi=30)
    return fig


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _has_content(ax) -> bool:
    return bool(ax.collections or ax.images or ax.lines or ax.patches or ax.texts)


def _tick_texts(axis) -> list[str]:
    """Labels of the ticks inside the axis' view limits."""
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, loc in zip(axis.get_ticklabels(), axis.get_ticklocs(), strict=True)
            if t.get_text() and lo - 1e-9 <= loc <= hi + 1e-9]


def _gridline_labels(ax) -> list[str]:
    gridliners = [a for a in ax.get_children() if isinstance(a, Gridliner)]
    return [a.get_text() for gl in gridliners for a in gl.label_artists if a.get_visible()]


def test_training_diagnostics_figure_title_panels_units_psd_axis():
    grid = map_grid_for_domain("ALPS")
    rng = np.random.default_rng(0)
    maps = {"rmse (ensemble mean)": rng.gamma(2.0, 1.0, grid.shape), "bias of mean (member 0)": rng.normal(size=grid.shape),
            "std ratio (member 0)": np.exp(rng.normal(0.0, 0.2, grid.shape))}
    k = np.arange(0, 65) / (128 * 12.5)
    psd = {"target": (k, np.r_[1.0, k[1:] ** -2.0]), "member 0": (k, np.r_[1.0, k[1:] ** -2.5])}
    fig = _draw(diagnostics_figure(maps, {"val/rmse": 1.5, "val/ralsd": 3.0, "val/std_ratio": 0.9}, grid, "pr",
                                   psd=psd, units="mm/day",
                                   title="run 20260101_000000_abcdef, epoch 7: validation diagnostics"))
    assert "epoch 7" in fig.get_suptitle() and "20260101_000000_abcdef" in fig.get_suptitle()
    panels = _panels(fig)
    assert len(panels) == 5 and all(_has_content(ax) for ax in panels)  # 3 maps, PSD, scores: none empty
    cbar = {ax.get_title(): ax.collections[0].colorbar.ax.get_ylabel() for ax in panels[:3]}
    assert cbar == {"pr rmse (ensemble mean)": "rmse (mm/day)", "pr bias of mean (member 0)": "bias of mean (mm/day)",
                    "pr std ratio (member 0)": "std ratio (1)"}
    psd_ax = panels[3]
    assert psd_ax.get_xlabel() == "wavenumber (cycles/km)" and psd_ax.get_ylabel() == "power of pr ((mm/day)²)"
    assert psd_ax.child_axes[0].get_xlabel() == "wavelength (km)"
    lons_lats = _gridline_labels(panels[0])
    assert any("°E" in t for t in lons_lats) and any("°N" in t for t in lons_lats)
    assert panels[4].texts[0].get_text().splitlines() == ["val/rmse: 1.5 mm/day", "val/ralsd: 3 dB²", "val/std_ratio: 0.9"]


def test_index_bias_maps_days_for_day_counts_and_no_empty_panel():
    grid = map_grid_for_domain("NZ")
    names = [f"bias of {i} ({s})" for i in ("mean", "sdii", "rx1day", "cwd") for s in ("member 0", "ensemble mean")]
    maps = {n: np.random.default_rng(1).normal(size=grid.shape) for n in names}
    fig = _draw(diagnostics_figure(maps, {"bias_cwd/member0": 0.4}, grid, "pr", ncols=4, units="mm/day",
                                   title="run x (best.pt, epoch 3), val: index biases"))
    panels = _panels(fig)
    assert len(panels) == 9 and all(_has_content(ax) for ax in panels)
    labels = {ax.get_title(): ax.collections[0].colorbar.ax.get_ylabel() for ax in panels[:8]}
    assert labels["pr bias of cwd (member 0)"] == "bias of cwd (days)"
    assert labels["pr bias of rx1day (ensemble mean)"] == "bias of rx1day (mm/day)"
    assert map_units_label("bias of su (member 0)", "K") == "bias of su (days)"
    assert map_units_label("bias of txx (member 0)", "K") == "bias of txx (K)"


def test_losses_figure_integer_epochs_units_plain_log_labels():
    history = {"g/loss": [3.2, 2.1, 1.4, 1.1], "d/loss": [0.7, 0.69, 0.68, 0.7], "val/loss_mse": [0.9, 0.7, 0.5, 0.45]}
    fig = _draw(losses_figure(history, [1, 2, 3, 4], title="run abc, epochs 1-4: losses"))
    assert fig.get_suptitle() == "run abc, epochs 1-4: losses"
    for ax in _panels(fig):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == LOSS_YLABEL
        locs = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert locs and all(float(t).is_integer() for t in locs)
        assert all("times" not in t and "^" not in t and "$" not in t for t in _tick_texts(ax.yaxis))
    g_ax = next(ax for ax in _panels(fig) if ax.get_title() == "generator losses")
    labels = _tick_texts(g_ax.yaxis)
    assert g_ax.get_yscale() == "log" and "2" in labels and all(float(t) > 0 for t in labels)  # plain numbers


def test_diagnostics_history_units_and_reference_lines():
    n = 5
    history = {f"val/{k}": list(np.linspace(0.5, 1.2, n)) for k in ("rmse", "std_ratio", "spread_skill", "ralsd", "crps")}
    fig = _draw(diagnostics_history_figure(history, list(range(1, n + 1)), units="mm/day", title="run abc: diagnostics"))
    axes = {ax.get_title(): ax for ax in _panels(fig)}
    assert len(axes) == 5 and all(_has_content(ax) for ax in axes.values())
    assert axes["val/rmse"].get_ylabel() == "RMSE of ensemble mean (mm/day)"
    assert axes["val/crps"].get_ylabel() == "CRPS (mm/day)"
    assert axes["val/std_ratio"].get_ylabel() == "std ratio pred/true (1)"
    assert axes["val/ralsd"].get_ylabel() == "RALSD (dB²)"
    for name, ideal in (("val/std_ratio", 1.0), ("val/spread_skill", 1.0), ("val/ralsd", 0.0)):
        refs = [line for line in axes[name].lines if line.get_linestyle() == "--"]
        assert len(refs) == 1 and set(refs[0].get_ydata()) == {ideal}
    assert not [line for line in axes["val/rmse"].lines if line.get_linestyle() == "--"]
    assert _tick_texts(axes["val/rmse"].xaxis) == ["1", "2", "3", "4", "5"]


def test_rank_histogram_ticks_are_ranks():
    fig = _draw(rank_histogram_figure([4, 6, 5, 5, 7, 3]))
    ax = _panels(fig)[0]
    assert _tick_texts(ax.xaxis) == ["0", "1", "2", "3", "4", "5"]
    assert "5 members" in ax.get_xlabel()


def test_precipitation_distribution_log_binned():
    rng = np.random.default_rng(2)
    values = np.where(rng.random(5000) < 0.5, 0.0, rng.gamma(0.6, 8.0, 5000))
    bins = histogram_bins(values, "pr", units="mm/day")
    assert bins[0] == pytest.approx(0.1) and bins[-1] == pytest.approx(values.max())
    np.testing.assert_allclose(np.diff(np.log(bins)), np.log(bins[1] / bins[0]))  # log-spaced
    q = np.quantile(values, [0.5, 0.9, 0.99])
    fig = _draw(distribution_figure({"target": values}, bins, q, {"member 0": q * 1.1}, "pr", units="mm/day"))
    hist_ax, qq_ax = _panels(fig)
    assert hist_ax.get_xscale() == "log" and hist_ax.get_xlabel() == "pr (mm/day)"
    assert hist_ax.get_ylabel() == "density (1/(mm/day))"
    assert all("$" not in t for t in _tick_texts(hist_ax.xaxis))
    assert qq_ax.get_xlabel() == "true quantile (mm/day)"
    t_bins = histogram_bins(rng.normal(290, 5, 100), "tasmax", units="K")
    np.testing.assert_allclose(np.diff(t_bins), t_bins[1] - t_bins[0])  # temperature: linear


def test_sample_figure_predictor_units():
    grid = map_grid_for_domain("SA")
    pc = predictor_coords("SA")
    members = np.random.default_rng(3).gamma(0.6, 3.0, (3, *grid.shape))
    fig = _draw(sample_figure(grid, np.full((16, 16), 0.004), (pc["lat"], pc["lon"]), "q_850", members[0], members,
                              "run abc, epoch 2: validation day 1963-01-01", "pr", units="mm/day"))
    panels = _panels(fig)
    assert len(panels) == 8 and all(_has_content(ax) for ax in panels)  # 2 x 4, none empty
    assert panels[0].collections[0].colorbar.ax.get_ylabel() == "q_850 (kg/kg)"
    assert [ax.collections[0].colorbar.ax.get_ylabel() for ax in panels[1:]] == ["pr (mm/day)"] * 5 + [
        "pr error (mm/day)", "pr std (mm/day)"]
    assert "epoch 2" in fig.get_suptitle()
    for m, n_panels in ((1, 4), (2, 6)):  # fewer members: fewer panels, still no empty slot
        fig = _draw(sample_figure(grid, np.zeros((16, 16)), (pc["lat"], pc["lon"]), "t_850", members[0], members[:m],
                                  "x", "pr", units="mm/day"))
        gs = _panels(fig)[0].get_subplotspec().get_gridspec()
        assert len(_panels(fig)) == n_panels == gs.nrows * gs.ncols


def test_bias_bars_one_panel_per_unit():
    fig = _draw(bars_figure({"a": {"mean": 0.3, "cwd": 1.5}, "b": {"mean": 0.2, "cwd": 2.5}}, ylabel="|bias|",
                            units={"mean": "mm/day", "cwd": "days"}))
    assert [ax.get_ylabel() for ax in _panels(fig)] == ["|bias| (mm/day)", "|bias| (days)"]
    assert [[p.get_height() for p in ax.patches] for ax in _panels(fig)] == [[0.3, 0.2], [1.5, 2.5]]


def test_losses_with_a_unit_carry_it_in_the_legend():
    history = {"g/loss": [1.0, 0.8], "g/loss_crps": [0.05, 0.04], "g/loss_spectral": [0.008, 0.005],
               "d/loss": [1.38, 1.37]}
    fig = _draw(losses_figure(history, [1, 2]))
    by_title = {ax.get_title(): ax for ax in _panels(fig)}
    g_ax, d_ax = by_title["generator losses"], by_title["discriminator losses"]
    legend = [t.get_text() for t in g_ax.get_legend().get_texts()]
    assert "g/loss_spectral (dB²)" in legend and "g/loss_crps" in legend
    assert g_ax.get_ylabel() == LOSS_YLABEL_MIXED and d_ax.get_ylabel() == LOSS_YLABEL


def test_psd_wavelength_axis_has_plain_labels_on_a_coarse_grid():
    """A 64x64 grid at 25 km spans under two decades of wavelength: the top axis used to label its minor
    ticks '6x10^2 4x10^2 3x10^2 ...' on top of each other."""
    from matplotlib.figure import Figure

    from ml_benchmark_spategan.visualization.curves import plot_psd

    k = np.arange(1, 33) / (64 * 25.0)
    fig = Figure()
    ax = fig.add_subplot()
    plot_psd(ax, {"target": (k, k ** -3.0)}, ylabel="power of tasmax (K²)")
    _draw(fig)
    top = ax.child_axes[0].xaxis
    major = _tick_texts(top)
    assert major and all(float(t) > 0 for t in major)  # plain numbers: 50, 100, 200, ...
    assert not any(t.get_text() for t in top.get_minorticklabels())
