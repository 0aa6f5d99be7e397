"""Figures of notebook 04: ablation bars (GeoViewMatch Tables 5/6) and R@1 by weather (MCGF).

Each bar carries its 95 % bootstrap interval over the queries as an error bar when the results
have the bound columns (``"R@1 lo"``, ``"R@1 hi"``: what the ablation runners return); the
intervals are computed by eval, drawn here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from geoloc_lib.analysis.ablations import STREET_METRICS, TABLE5, TABLE6


def _grouped_bars(
    ax: Axes,
    results: pd.DataFrame,
    x: str,
    order: Sequence[str],
    hue: str,
    hue_order: Sequence[str],
    metric_of: object,
    colors: Sequence,
) -> None:
    """Bars at ``x`` positions ``order``, one per ``hue`` value, with error bars from the bound
    columns where present. ``metric_of(hue_value)`` names the metric column of that hue and
    ``results`` filtered to a hue value: ``(value column, rows)``."""
    width = 0.8 / len(hue_order)
    for j, (h, color) in enumerate(zip(hue_order, colors, strict=True)):
        column, rows = metric_of(h)
        rows = rows.set_index(x).reindex(list(order))
        pos = np.arange(len(order)) - 0.4 + width * (j + 0.5)
        values = rows[column].to_numpy(dtype=float)
        yerr = None
        lo, hi = f"{column} lo", f"{column} hi"
        if lo in rows.columns and hi in rows.columns:
            yerr = np.vstack(
                [values - rows[lo].to_numpy(dtype=float), rows[hi].to_numpy(dtype=float) - values]
            ).clip(min=0)
        ax.bar(pos, values, width, color=color, label=str(h), yerr=yerr, capsize=1.5,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})  # fmt: skip
    ax.set_xticks(np.arange(len(order)), list(order))


def ablation_bars_figure(
    results: pd.DataFrame,
    groups: Sequence[tuple[str, Sequence[str]]] = (("Table 5", TABLE5), ("Table 6", TABLE6)),
    metrics: Sequence[str] = STREET_METRICS,
) -> Figure:
    """One panel per table: a bar per variant and metric (street->aerial recall, %), with its
    95 % interval as an error bar when ``results`` has the bounds."""
    fig = Figure(figsize=(5.2 * len(groups), 3.6))
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    colors = sns.color_palette("viridis", len(metrics))
    for ax, (title, labels) in zip(axes, groups, strict=True):
        part = results[results["variant"].isin(labels)]
        _grouped_bars(
            ax, part, "variant", labels, "metric", metrics, lambda m, p=part: (m, p), colors
        )
        ax.set_title(f"{title} (street -> aerial, ours)")
        ax.set_ylabel("recall (%)")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=7, title=None, loc="upper left")
    fig.tight_layout()
    return fig


def weather_recall_figure(results: pd.DataFrame, metrics: Sequence[str] = ("R@1", "AP")) -> Figure:
    """Drone->satellite R@1 and AP per weather condition, one bar per MCGF variant, with its
    95 % interval as an error bar when ``results`` has the bounds."""
    fig = Figure(figsize=(11, 2.9 * len(metrics)))
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    order = list(dict.fromkeys(results["condition"]))
    variants = list(dict.fromkeys(results["variant"]))
    colors = sns.color_palette("Set2", len(variants))
    for ax, metric in zip(axes, metrics, strict=True):
        _grouped_bars(
            ax, results, "condition", order, "variant", variants,
            lambda v, m=metric: (m, results[results["variant"] == v]), colors,
        )  # fmt: skip
        ax.set_ylabel(f"{metric} (%)")
        ax.legend(fontsize=7, title=None, ncols=3, loc="upper left")
        if "mean" in order:  # the mean is no weather condition: set it apart
            ax.axvline(order.index("mean") - 0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_title("MCGF ablations: drone -> satellite under each weather condition")
    fig.tight_layout()
    return fig
