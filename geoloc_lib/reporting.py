"""Writing figures and tables under a reports folder, identically on every rerun."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from geoloc_lib.viz.samples import save_figure


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
    """``reports_dir/figures/*.png`` and ``reports_dir/tables/*.{csv,md}``."""

    def __init__(self, root: str | Path) -> None:
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
        (self.tables / f"{name}.md").write_text(markdown_table(df, floatfmt))
        return df
