"""Figure of the MCGF restorer's quality: the weathered query and every DDIM step vs the clean image.

Draws the table :func:`geoloc_lib.eval.restoration.restoration_summary` returns (means and 95 %
cluster-bootstrap intervals over locations, computed by eval); nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.restoration import MEAN, PSNR_CAP_DB

AXIS_LABELS = {
    "corr": "Pearson corr. with the clean image (r, unitless)",
    "psnr": "PSNR vs the clean image (dB)",
    "ssim": "SSIM vs the clean image (unitless)",
}


def _stage_label(step: int, t: float) -> str:
    if step == 0:
        return "weathered input (step 0)"
    return f"step {step}: ẑ_0 predicted at t = {t:g}"


def restoration_quality_figure(
    summary: pd.DataFrame,
    metrics: Sequence[str] = ("corr", "psnr"),
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per metric: per condition, the weathered input and each DDIM step's ẑ_0.

    ``summary`` is :func:`~geoloc_lib.eval.restoration.restoration_summary`'s table; each point
    is a mean over the queries, its error bar the ``"<metric> lo"``/``"<metric> hi"`` interval.
    The ``"mean"`` condition is set apart by a dashed line. PSNR points at the cap (an input
    identical to the clean image, the weathered ``"normal"`` query) are drawn as an upward
    triangle at the top of the panel instead of stretching its scale; a mean that includes capped
    values (``psnr_capped`` between 0 and 1, e.g. the ``"mean"`` row's weathered input) is drawn
    hollow. Saved to ``path`` if given.
    """
    needed = {"condition", "step", "t", *metrics}
    missing = sorted(needed - set(summary.columns))
    if missing:
        raise ConfigError(
            f"restoration_quality_figure: the summary lacks {missing}; pass what "
            "restoration_summary returns"
        )
    conditions = list(dict.fromkeys(summary["condition"]))
    stages = summary[["step", "t"]].drop_duplicates("step").sort_values("step").to_numpy().tolist()
    steps = [int(s) for s, _ in stages]
    colors = ["#7f7f7f", *sns.color_palette("viridis", max(len(steps) - 1, 1))]
    fig = Figure(
        figsize=(max(7.0, 0.95 * len(conditions) + 2.5), 2.9 * len(metrics) + 1.2),
        layout="constrained",
    )
    axes = fig.subplots(len(metrics), 1, squeeze=False, sharex=True)[:, 0]
    width = 0.8 / len(steps)
    x = np.arange(len(conditions))
    for ax, metric in zip(axes, metrics, strict=True):
        lo_col, hi_col = f"{metric} lo", f"{metric} hi"
        notes: dict[str, str] = {}
        top = None
        if metric == "psnr":
            finite = summary.loc[summary[metric] < PSNR_CAP_DB, [metric, hi_col]]
            top = float(np.nanmax(finite.to_numpy())) + 2.0 if len(finite) else None
        for j, ((step, t), color) in enumerate(zip(stages, colors, strict=True)):
            rows = summary[summary["step"] == step].set_index("condition").reindex(conditions)
            pos = x - 0.4 + width * (j + 0.5)
            values = rows[metric].to_numpy(dtype=float)
            capped = (values >= PSNR_CAP_DB) if metric == "psnr" else np.zeros_like(values, bool)
            yerr = None
            if lo_col in rows.columns and hi_col in rows.columns:
                yerr = np.vstack(
                    [values - rows[lo_col].to_numpy(float), rows[hi_col].to_numpy(float) - values]
                ).clip(min=0)
                yerr[:, capped] = 0.0
            shown = values.copy()
            if capped.any() and top is not None:
                shown[capped] = np.nan
                ax.plot(pos[capped], np.full(capped.sum(), top - 0.7), "^", color=color, ms=6)
                notes["cap"] = f"▲ identical to the clean image (PSNR capped at {PSNR_CAP_DB:g} dB)"
            ax.errorbar(
                pos, shown, yerr=yerr, fmt="o", ms=4, color=color, capsize=2, elinewidth=0.9,
                label=_stage_label(int(step), float(t)),
            )  # fmt: skip
            if metric == "psnr" and "psnr_capped" in rows.columns:
                share = rows["psnr_capped"].to_numpy(dtype=float)
                partial = (share > 0) & (share < 1)
                if partial.any():  # a mean that includes capped values: drawn hollow
                    ax.plot(
                        pos[partial],
                        values[partial],
                        "o",
                        ms=6,
                        mfc="white",
                        mec=color,
                        mew=1.2,
                        zorder=3,
                    )
                    notes["partial"] = "○ the mean includes values at the cap (inflated)"
        if top is not None:
            ax.set_ylim(top=top)
        if notes:
            ax.text(
                0.995, 0.98, "\n".join(notes.values()), transform=ax.transAxes, ha="right",
                va="top", fontsize=7,
            )  # fmt: skip
        if MEAN in conditions:  # the mean is no weather condition: set it apart
            ax.axvline(conditions.index(MEAN) - 0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(AXIS_LABELS.get(metric, metric), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x, conditions)
    axes[-1].set_xlabel("weather condition applied to the drone query")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=7,
        title="step k = the restorer's k-th DDIM prediction of the clean image ẑ_0 "
        "(step 0: the weathered query itself)", title_fontsize=7,
    )  # fmt: skip
    fig.suptitle(
        title
        or "MCGF restorer: weathered drone query and each DDIM step vs the clean image\n"
        "(mean over queries, 95 % cluster-bootstrap interval over locations)",
        fontsize=10,
    )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
