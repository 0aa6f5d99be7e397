"""Figures of notebook 04: ablation bars (GeoViewMatch Tables 5/6) and R@1 by weather (MCGF)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from geoloc_lib.analysis.ablations import STREET_METRICS, TABLE5, TABLE6


def ablation_bars_figure(
    results: pd.DataFrame,
    groups: Sequence[tuple[str, Sequence[str]]] = (("Table 5", TABLE5), ("Table 6", TABLE6)),
    metrics: Sequence[str] = STREET_METRICS,
) -> Figure:
    """One panel per table: a bar per variant and metric (street->aerial recall, %)."""
    long = results.melt(
        id_vars=["variant"], value_vars=list(metrics), var_name="metric", value_name="recall"
    )
    fig = Figure(figsize=(5.2 * len(groups), 3.6))
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    for ax, (title, labels) in zip(axes, groups, strict=True):
        part = long[long["variant"].isin(labels)]
        sns.barplot(
            data=part, x="variant", y="recall", hue="metric", order=list(labels), ax=ax,
            hue_order=list(metrics), palette="viridis",
        )  # fmt: skip
        ax.set_title(f"{title} (street -> aerial, ours)")
        ax.set_xlabel("")
        ax.set_ylabel("recall (%)")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=7, title=None, loc="upper left")
    fig.tight_layout()
    return fig


def weather_recall_figure(results: pd.DataFrame, metrics: Sequence[str] = ("R@1", "AP")) -> Figure:
    """Drone->satellite R@1 and AP per weather condition, one bar per MCGF variant."""
    fig = Figure(figsize=(11, 2.9 * len(metrics)))
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    order = list(dict.fromkeys(results["condition"]))
    for ax, metric in zip(axes, metrics, strict=True):
        sns.barplot(
            data=results, x="condition", y=metric, hue="variant", order=order, ax=ax,
            palette="Set2",
        )  # fmt: skip
        ax.set_xlabel("")
        ax.set_ylabel(f"{metric} (%)")
        ax.legend(fontsize=7, title=None, ncols=3, loc="upper left")
        if "mean" in order:  # the mean is no weather condition: set it apart
            ax.axvline(order.index("mean") - 0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_title("MCGF ablations: drone -> satellite under each weather condition")
    fig.tight_layout()
    return fig
