"""Figures of notebook 04: ablation bars (GeoViewMatch Tables 5/6) and R@1 by weather (MCGF).

Each bar carries its 95 % bootstrap interval over the queries as an error bar when the results
have the bound columns (``"R@1 lo"``, ``"R@1 hi"``: what the ablation runners return); the
intervals are computed by eval, drawn here. The GeoViewMatch bars carry the paper's values of
the same variant and metric (Tables 5 and 6) as markers, read on their own axis on the right.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from geoloc_lib.analysis.ablations import (
    PAPER_TABLE5,
    PAPER_TABLE6,
    STREET_METRICS,
    TABLE5,
    TABLE6,
)
from geoloc_lib.core.errors import ConfigError, choices_message


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


def _paper_values(dataset: str) -> dict[str, tuple[float, ...]]:
    """The paper's R@1/R@5/R@10/R@1% of every Table 5 and 6 variant on ``dataset``."""
    known = sorted(PAPER_TABLE5)
    if dataset not in known:
        raise ConfigError(
            f"ablation_bars_figure: {choices_message('paper dataset', dataset, known)}"
        )
    return {**PAPER_TABLE5[dataset], **PAPER_TABLE6[dataset]}


def ablation_bars_figure(
    results: pd.DataFrame,
    groups: Sequence[tuple[str, Sequence[str]]] = (("Table 5", TABLE5), ("Table 6", TABLE6)),
    metrics: Sequence[str] = STREET_METRICS,
    split: str | None = None,
    paper: str | None = "CVACT",
) -> Figure:
    """One panel per table: a bar per variant and metric (street->aerial recall, %), with its
    95 % interval as an error bar when ``results`` has the bounds.

    ``split``: the evaluated split, stated in the title (default: ``results["split"]`` when
    that column exists). ``paper``: the dataset (``CVACT`` or ``CVUSA``) whose values of the
    paper's Tables 5/6 are drawn as black markers on each bar, read on the right-hand axis
    (the paper's recall is near 90-99 %, GeoSynth's at CPU size a few percent: one axis would
    flatten one of them); ``None`` leaves them out.
    """
    if split is None and "split" in results.columns:
        split = ", ".join(str(x) for x in dict.fromkeys(results["split"]))
    reference = _paper_values(paper) if paper is not None else {}
    fig = Figure(figsize=(5.6 * len(groups), 4.0))
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    colors = sns.color_palette("viridis", len(metrics))
    top = 0.0
    for ax, (title, labels) in zip(axes, groups, strict=True):
        part = results[results["variant"].isin(labels)]
        _grouped_bars(
            ax, part, "variant", labels, "metric", metrics, lambda m, p=part: (m, p), colors
        )
        for m in metrics:
            column = f"{m} hi" if f"{m} hi" in part.columns else m
            top = max(top, float(np.nanmax(part[column].to_numpy(dtype=float), initial=0.0)))
        ax.set_title(f"{title}: ours (bars) and the paper (markers)", fontsize=10)
        ax.set_ylabel("recall (%), ours")
        ax.tick_params(axis="x", labelrotation=20)
    ours_top = max(top * 1.15, 1.0)
    ax_top = axes[0].get_ylim()[1]
    axes[0].set_ylim(0, max(ours_top, ax_top))
    ours_top = axes[0].get_ylim()[1]
    if reference:
        floor = 10.0 * np.floor(min(min(v) for v in reference.values()) / 10.0)

        def to_paper(y: np.ndarray) -> np.ndarray:
            return floor + np.asarray(y) / ours_top * (100.0 - floor)

        def to_ours(p: np.ndarray) -> np.ndarray:
            return (np.asarray(p) - floor) / (100.0 - floor) * ours_top

        width = 0.8 / len(metrics)
        for ax, (_, labels) in zip(axes, groups, strict=True):
            for i, label in enumerate(labels):
                values = reference.get(label)
                if values is None:
                    continue
                for j, m in enumerate(metrics):
                    if m not in STREET_METRICS:
                        continue
                    value = values[STREET_METRICS.index(m)]
                    ax.plot(
                        i - 0.4 + width * (j + 0.5), to_ours(value), marker="D", ms=4.5,
                        mfc="white", mec="black", mew=1.0, ls="none",
                        label=f"paper, {paper}" if (i, j) == (0, 0) else None,
                    )  # fmt: skip
        axes[0].set_ylim(0, ours_top * 1.04)  # room above the paper's 100 %
        right = axes[-1].secondary_yaxis("right", functions=(to_paper, to_ours))
        right.set_ylabel(f"recall (%), paper ({paper}, markers)", fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncols=len(names), fontsize=8, frameon=False)
    where = f"the {split} split" if split else "the evaluated split"
    fig.suptitle(f"GeoViewMatch ablations, street -> aerial recall on {where}", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _distinct_colors(n: int) -> list:
    """``n`` colours no two alike: the qualitative palettes repeat after 8 (Set2) or 10 (tab10)
    colours, and a repeated colour makes two bars of one group unreadable."""
    return sns.color_palette("tab10" if n <= 10 else "tab20", n)


def weather_recall_figure(results: pd.DataFrame, metrics: Sequence[str] = ("R@1", "AP")) -> Figure:
    """Drone->satellite R@1 and AP per weather condition, one bar per MCGF variant (each its own
    colour), with its 95 % interval as an error bar when ``results`` has the bounds. One legend
    for both panels sits below them, where it hides no bar."""
    order = list(dict.fromkeys(results["condition"]))
    variants = list(dict.fromkeys(results["variant"]))
    legend_rows = -(-len(variants) // 4)
    fig = Figure(figsize=(11, 2.9 * len(metrics) + 0.25 * legend_rows + 0.3))
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    colors = _distinct_colors(len(variants))
    for ax, metric in zip(axes, metrics, strict=True):
        _grouped_bars(
            ax, results, "condition", order, "variant", variants,
            lambda v, m=metric: (m, results[results["variant"] == v]), colors,
        )  # fmt: skip
        ax.set_ylabel(f"{metric} (%)")
        if "mean" in order:  # the mean is no weather condition: set it apart
            ax.axvline(order.index("mean") - 0.5, color="grey", lw=0.8, ls="--")
    axes[-1].set_xlabel("weather condition applied to the drone query (mean: of the conditions)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=4, fontsize=8, frameon=False)
    axes[0].set_title(
        "MCGF ablations: drone -> satellite under each weather condition "
        "(bars: one per variant, with 95 % intervals)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, (0.25 * legend_rows + 0.15) / fig.get_figheight(), 1, 1))
    return fig
