"""Writing figures and tables under a reports folder, identically on every rerun.

A table's CSV keeps every column numeric, the interval bounds included (``"R@1 lo"``,
``"R@1 hi"``); its Markdown form, and :func:`with_intervals` for display, show a metric with its
bounds in one cell, ``4.84 [3.10, 6.60]``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from geoloc_lib.core.outputs import LIBRARY_FIX, claim_output_dir
from geoloc_lib.viz.samples import save_figure


def _bounds_of(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Columns ``c`` that have both ``"c lo"`` and ``"c hi"`` beside them."""
    cols = set(df.columns)
    return {
        c: (f"{c} lo", f"{c} hi")
        for c in df.columns
        if isinstance(c, str) and f"{c} lo" in cols and f"{c} hi" in cols
    }


def with_intervals(df: pd.DataFrame, floatfmt: str = ".2f") -> pd.DataFrame:
    """``df`` for reading: each metric with bound columns becomes one text cell
    ``"value [lo, hi]"`` and the bound columns are dropped; other columns are unchanged."""
    bounds = _bounds_of(df)
    if not bounds:
        return df
    out = df.drop(columns=[b for pair in bounds.values() for b in pair])

    def cell(v: object) -> str:
        return "—" if v is None or v != v else format(float(v), floatfmt)  # NaN: not defined

    for col, (lo, hi) in bounds.items():
        out[col] = [
            f"{cell(v)} [{cell(a)}, {cell(b)}]" if a == a else cell(v)
            for v, a, b in zip(df[col], df[lo], df[hi], strict=True)
        ]
    return out


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "—" if v != v else format(v, floatfmt)  # NaN: metric not defined here
        return str(v)

    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


class ReportDir:
    """``reports_dir/figures/*.png`` and ``reports_dir/tables/*.{csv,md}``.

    ``root`` must be geoloc's, new or empty (:func:`geoloc_lib.core.outputs.claim_output_dir`):
    a folder of someone else is refused before anything is written."""

    def __init__(self, root: str | Path) -> None:
        claim_output_dir(root, "reports folder", kind="reports", fix=LIBRARY_FIX)
        self.root = Path(root)
        self.figures = self.root / "figures"
        self.tables = self.root / "tables"

    def figure(self, fig: Figure, name: str) -> Path:
        path = self.figures / (name if name.endswith(".png") else f"{name}.png")
        save_figure(fig, path)
        return path

    def table(self, df: pd.DataFrame, name: str, floatfmt: str = ".2f") -> pd.DataFrame:
        self.tables.mkdir(parents=True, exist_ok=True)
        df.to_csv(self.tables / f"{name}.csv", index=False, float_format=f"%{floatfmt}")
        (self.tables / f"{name}.md").write_text(
            markdown_table(with_intervals(df, floatfmt), floatfmt)
        )
        return df
