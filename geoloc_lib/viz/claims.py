"""Figure of notebook 05: each claim's effect with its 95 % interval, coloured by verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

VERDICT_COLORS = {
    "supported": "#2ca02c",
    "not reproduced": "#d62728",
    "undecided": "#7f7f7f",
    "measured": "#1f77b4",
}
ROLE_MARKS = {"primary": "■", "secondary": "□", "measured": "·"}


def _label(row: pd.Series, width: int = 70) -> str:
    """The claim's statement (shortened to ``width``) and what was compared on what."""
    text = str(row["statement"])
    text = text if len(text) <= width else text[: width - 1] + "…"
    mark = ROLE_MARKS.get(str(row.get("role", "")), "")
    arrow = "→" if row["claimed"] == "a > b" else "←"
    return f"{mark} {text} ({row['condition']}, {row['metric']}) {arrow}"


def claims_figure(claims: pd.DataFrame, title: str | None = None) -> Figure:
    """One row per claim of :func:`geoloc_lib.analysis.claims.claims_table`: the effect ``a - b``
    as a dot, its 95 % interval as a bar, a line at 0; each row is labelled by the claim's
    statement, its role (■ primary, □ secondary, · measured) and the claimed side (→ / ←); the
    colour is the verdict. Effects are in their metric's unit (R@1 points; correlation and PSNR
    rows are drawn on their own panel when present)."""
    retrieval = claims[claims["metric"].str.startswith(("R@", "top1"))]
    quality = claims.drop(retrieval.index)
    panels = [(retrieval, "effect a - b (R@1 points)")]
    panels += [(quality[quality["metric"] == m], f"effect a - b ({m})")
               for m in dict.fromkeys(quality["metric"])]  # fmt: skip
    panels = [(p, lab) for p, lab in panels if len(p)]
    heights = [len(p) + 1.5 for p, _ in panels]
    fig = Figure(figsize=(11.0, 0.3 * sum(heights) + 1.2))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (part, xlabel) in zip(axes, panels, strict=True):
        n = len(part)
        y = np.arange(n)[::-1]
        for yi, (_, row) in zip(y, part.iterrows(), strict=True):
            color = VERDICT_COLORS.get(str(row["verdict"]), "black")
            ax.plot([row["effect lo"], row["effect hi"]], [yi, yi], color=color, lw=2.2)
            ax.plot([row["effect"]], [yi], "o", color=color, ms=5)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(y, [_label(row) for _, row in part.iterrows()], fontsize=7)
        ax.set_xlabel(f"{xlabel}; → / ←: the paper claims it above / below 0", fontsize=8)
    handles = [axes[0].plot([], [], color=c, lw=2.2, label=v)[0] for v, c in VERDICT_COLORS.items()]
    # the row marks, explained in the legend so that the figure reads on its own
    handles += [axes[0].plot([], [], ls="none", label=f"{m} {r}")[0] for r, m in ROLE_MARKS.items()]
    axes[0].legend(handles=handles, fontsize=7, loc="lower right")
    counts = sorted(set(int(s) for s in claims["n_seeds"]))
    seeds = "/".join(str(s) for s in counts) + (" seed" if counts == [1] else " seeds")
    axes[0].set_title(
        title or f"claims: effect and 95 % seed-level interval ({seeds}; GeoSynth, CPU size)"
    )
    fig.tight_layout()
    return fig
