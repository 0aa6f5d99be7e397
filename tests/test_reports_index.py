"""reports/README.md lists every table (inline) and figure with captions, grouped by notebook."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from geoloc_lib.pipeline.reports_index import CAPTIONS, write_reports_index
from geoloc_lib.reporting import ReportDir


def test_index_lists_every_output_in_notebook_order(tmp_path):
    out = ReportDir(tmp_path)
    out.table(pd.DataFrame({"set": ["a"], "images": [3]}), "00_counts")
    out.table(pd.DataFrame({"x": [1.234]}), "02_new_table")
    out.figure(Figure(figsize=(1, 1)), "01_curves")
    index = write_reports_index(tmp_path, "default", commit="abc123")
    text = index.read_text()
    assert "profile: `default`" in text and "commit: `abc123`" in text
    assert CAPTIONS["00_counts"] in text and "| set | images |" in text
    assert "![01_curves](figures/01_curves.png)" in text
    assert "**02_new_table** — 02 new table" in text  # uncaptioned outputs are still listed
    assert text.index("## 00") < text.index("## 01") < text.index("## 02")
    assert "(tables/00_counts.csv)" in text


def test_the_claims_table_opens_the_index(tmp_path):
    out = ReportDir(tmp_path)
    out.table(pd.DataFrame({"set": ["a"], "images": [3]}), "00_counts")
    out.table(pd.DataFrame({"claim": ["c1"], "verdict": ["undecided"]}), "claims")
    text = write_reports_index(tmp_path, "claims", commit="abc123").read_text()
    assert text.index("## Claims") < text.index("## 00")
    assert "| claim | verdict |" in text and "(tables/claims.csv)" in text
    assert "## cl" not in text
