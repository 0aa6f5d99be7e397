"""Figure of notebook 05: each claim's effect with its 95 % interval, coloured by verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

VERDICT_COLORS = {"supported": "#2ca02c", "contradicted": "#d62728", "undecided": "#7f7f7f"}


def claims_figure(claims: pd.DataFrame, title: str | None = None) -> Figure:
    """One row per claim of :func:`geoloc_lib.analysis.claims.claims_table`: the effect ``a - b``
    (points) as a dot, its interval as a bar, a line at 0; the claimed side is marked by an
    arrow beside the label, the colour is the verdict."""
    n = len(claims)
    fig = Figure(figsize=(8.5, 0.34 * n + 1.4))
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    for yi, (_, row) in zip(y, claims.iterrows(), strict=True):
        color = VERDICT_COLORS.get(str(row["verdict"]), "black")
        ax.plot([row["effect lo"], row["effect hi"]], [yi, yi], color=color, lw=2.2)
        ax.plot([row["effect"]], [yi], "o", color=color, ms=5)
    ax.axvline(0.0, color="black", lw=0.8)
    arrows = ["→" if c == "a > b" else "←" for c in claims["claimed"]]
    ax.set_yticks(y, [f"{c} {a}" for c, a in zip(claims["claim"], arrows, strict=True)], fontsize=7)
    ax.set_xlabel("effect a - b (points; → / ←: the paper claims it above / below 0)")
    handles = [ax.plot([], [], color=c, lw=2.2, label=v)[0] for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    seeds = sorted(set(int(s) for s in claims["n_seeds"]))
    ax.set_title(title or f"claims: effect and 95 % interval ({'/'.join(map(str, seeds))} seeds)")
    fig.tight_layout()
    return fig
