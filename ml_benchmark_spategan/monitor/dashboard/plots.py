"""Bokeh figures of a run's epoch curves (metrics.csv), redrawn by the live page as the run writes."""

from __future__ import annotations

import math

from bokeh.models import ColumnDataSource, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

LOSS_SUFFIX = "loss"


def loss_keys(columns: dict) -> list[str]:
    train = [k for k in columns if k.startswith("train/") and k.split("/")[-1].startswith(LOSS_SUFFIX)]
    return train + [k for k in ("val/loss_l1", "val/loss_mse") if k in columns]


def validation_keys(columns: dict) -> list[str]:
    return [k for k in columns if k.startswith("val/") and not k.split("/")[-1].startswith(LOSS_SUFFIX)]


def curves(columns: dict, keys: list[str], title: str, height: int = 300):
    """One line per key over epochs; click a legend entry to hide its line."""
    fig = figure(title=title, height=height, sizing_mode="stretch_width", x_axis_label="epoch",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    epochs = columns.get("epoch", [])
    for i, key in enumerate(keys):
        values = [v if math.isfinite(v) else float("nan") for v in columns[key]]
        source = ColumnDataSource({"epoch": epochs, "value": values})
        color = Category10_10[i % 10]
        fig.line("epoch", "value", source=source, legend_label=key, color=color, line_width=2)
        fig.scatter("epoch", "value", source=source, legend_label=key, color=color, size=5)
    fig.add_tools(HoverTool(tooltips=[("epoch", "@epoch"), ("value", "@value{0.0000}")]))
    if keys and len(keys) > 1:
        legend = fig.legend[0]
        legend.click_policy = "hide"
        legend.label_text_font_size = "8pt"
        fig.add_layout(legend, "right")  # beside the plot, not over the lines
    elif keys:
        fig.legend.visible = False
    return fig


def small_multiples(columns: dict, keys: list[str], per_row: int = 3, height: int = 170):
    """One small plot per score (they have different units and scales), shared epoch axis."""
    from bokeh.layouts import gridplot

    figs = [curves(columns, [k], k, height=height) for k in keys]
    for fig in figs[1:]:
        fig.x_range = figs[0].x_range
    return gridplot(figs, ncols=per_row, sizing_mode="stretch_width", toolbar_location=None) if figs else None
