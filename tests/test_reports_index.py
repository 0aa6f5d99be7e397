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
    index = write_reports_index(tmp_path, "default", commit="abc123", notebooks=["00", "01", "02"])
    text = index.read_text()
    assert "profile `default` (notebooks 00, 01, 02)" in text and "commit: `abc123`" in text
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


def test_each_section_names_the_profile_and_commit_that_wrote_it(tmp_path):
    import json

    import pytest

    from geoloc_lib.core.errors import ConfigError

    out = ReportDir(tmp_path)
    out.table(pd.DataFrame({"set": ["a"], "images": [3]}), "00_counts")
    out.table(pd.DataFrame({"x": [1]}), "04_table5")
    write_reports_index(tmp_path, "default", commit="aaa111", notebooks=["00", "04"])
    out.table(pd.DataFrame({"claim": ["c1"], "verdict": ["undecided"]}), "claims")
    out.table(pd.DataFrame({"x": [2]}), "05_per_seed_r1")
    out.table(pd.DataFrame({"x": [3]}), "03_heatmap_stats")  # written by no recorded run
    text = write_reports_index(
        tmp_path, "claims", commit="bbb222", notebooks=["00", "05"]
    ).read_text()
    sections = {s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]}
    assert "`geoloc run --profile claims` at commit `bbb222`" in sections["Claims"]
    assert "`geoloc run --profile claims` at commit `bbb222`" in sections["00 · Data preparation"]
    assert (
        "`geoloc run --profile default` at commit `aaa111`" in sections["04 · Ablations and cost"]
    )
    assert "profile and commit unknown" in sections["03 · Heatmaps"]
    recorded = json.loads((tmp_path / "provenance.json").read_text())
    assert recorded["04"] == {"profile": "default", "commit": "aaa111"}
    (tmp_path / "provenance.json").write_text("{not json")
    with pytest.raises(ConfigError, match="provenance.json is not valid JSON"):
        write_reports_index(tmp_path, "claims", commit="c", notebooks=["05"])


def test_a_malformed_provenance_entry_is_named_and_an_index_only_run_writes_nothing(tmp_path):
    import json

    import pytest

    from geoloc_lib.core.errors import ConfigError
    from geoloc_lib.pipeline.reports_index import update_provenance

    path = tmp_path / "provenance.json"
    update_provenance(tmp_path, [], "default", commit="aaa111")
    assert not path.exists()  # no notebook executed: nothing to record, no file written
    update_provenance(tmp_path, ["01"], "default", commit="aaa111")
    before = path.stat().st_mtime_ns
    assert update_provenance(tmp_path, [], "claims", commit="bbb222") == {
        "01": {"profile": "default", "commit": "aaa111"}
    }
    assert path.stat().st_mtime_ns == before
    path.write_text(json.dumps({"01": {"profile": "default"}}))  # hand-edited, commit missing
    with pytest.raises(ConfigError, match=r"provenance.json: entry '01' must be an object"):
        write_reports_index(tmp_path, "default", commit="c", notebooks=["02"])
    path.write_text("[]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        update_provenance(tmp_path, ["02"], "default", commit="c")
