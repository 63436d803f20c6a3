"""Plot functions: computed arrays in, Axes (or a Figure) out; the caller saves. No torch here."""

from ml_benchmark_spategan.visualization.curves import (
    plot_bars,
    plot_histogram,
    plot_lines,
    plot_psd,
    plot_qq,
    plot_rank_histogram,
    plot_spread_skill,
)
from ml_benchmark_spategan.visualization.figures import (
    diagnostics_figure,
    diagnostics_history_figure,
    losses_figure,
    sample_figure,
)
from ml_benchmark_spategan.visualization.maps import (
    MapGrid,
    add_gridlines,
    add_map_axes,
    add_map_features,
    configure_cartopy_data,
    draw_outline,
    map_grid,
    map_grid_for_domain,
    map_grid_from_xarray,
    plot_map,
)

__all__ = [
    "MapGrid",
    "add_gridlines",
    "add_map_axes",
    "add_map_features",
    "configure_cartopy_data",
    "diagnostics_figure",
    "diagnostics_history_figure",
    "draw_outline",
    "losses_figure",
    "map_grid",
    "map_grid_for_domain",
    "map_grid_from_xarray",
    "plot_bars",
    "plot_histogram",
    "plot_lines",
    "plot_map",
    "plot_psd",
    "plot_qq",
    "plot_rank_histogram",
    "plot_spread_skill",
    "sample_figure",
]
