"""README.md: a short front door whose results block is rendered from ``reports/tables/``
(``geoloc readme``), and kept in step with the tables."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.pipeline import readme as R
from geoloc_lib.pipeline.cli import main
from geoloc_lib.pipeline.runner import refresh_readme

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 200


def _copy_reports(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    shutil.copytree(REPO / "reports" / "tables", reports / "tables")
    shutil.copyfile(REPO / "reports" / "provenance.json", reports / "provenance.json")
    return reports


def _edit_cell(table: Path, method: str, column: str, value: str) -> str:
    with open(table, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    row = next(r for r in rows if r["method"] == method)
    old, row[column] = row[column], value
    with open(table, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return old


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"


def test_readme_block_matches_the_committed_tables():
    diff = R.check_readme()
    assert diff is None, f"README.md's results block is out of date; run `geoloc readme`:\n{diff}"


def test_the_block_follows_a_changed_table(tmp_path):
    reports = _copy_reports(tmp_path)
    readme = tmp_path / "README.md"
    shutil.copyfile(REPO / "README.md", readme)
    assert R.check_readme(readme, reports) is None
    table = reports / "tables" / R.DRONE_TABLE
    old = _edit_cell(table, "mcgf", "R@1", "99.99")
    block = R.render_results(reports)
    assert "99.99 [" in block and f"| {old} [" not in block
    diff = R.check_readme(readme, reports)
    assert diff is not None and "99.99" in diff
    text = readme.read_text(encoding="utf-8")
    before, _, after = R._split(text, readme)
    assert R.update_readme(readme, reports) is True
    new = readme.read_text(encoding="utf-8")
    assert new.startswith(before) and new.endswith(after)  # only the block changed
    assert R.check_readme(readme, reports) is None
    assert R.update_readme(readme, reports) is False


def test_paper_numbers_stand_beside_ours():
    block = R.render_results()
    assert f"{R.PAPER_MCGF_TABLE1['R@1']:.2f}" in block and "MCGF Table 1" in block
    from geoloc_lib.analysis.ablations import PAPER_TABLE5

    assert f"{PAPER_TABLE5['CVACT'][R.GEOVIEWMATCH_VARIANT][0]:.2f}" in block
    assert "random initialisation" in block and "pretrained" in block


def test_claims_in_the_current_format(tmp_path):
    reports = _copy_reports(tmp_path)
    fields = ["claim", "paper", "role", "where", "statement", "metric", "a", "b", "effect",
              "effect lo", "effect hi", "p adjusted", "n_seeds", "verdict"]  # fmt: skip
    rows = [
        ["c1", "MCGF", "primary", "MCGF §2.4", "pooling helps", "R@1", "x", "y", "5.33", "4.1",
         "6.2", "0.01", "3", "supported"],
        ["c2", "MCGF", "primary", "MCGF §2.1", "noise helps", "corr", "x", "z", "-0.0123",
         "-0.03", "0.005", "0.30", "3", "undecided"],
        ["c3", "MCGF", "secondary", "MCGF §2.3", "fog | rain", "R@1", "x", "w", "-2.0", "-4.0",
         "-1.0", "0.04", "3", "not reproduced"],
        ["c4", "MCGF", "measured", "deviation", "oracle", "R@1", "x", "v", "3.0", "1.0", "5.0",
         "", "3", "measured"],
    ]  # fmt: skip
    with open(reports / "tables" / "claims.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([fields, *rows])
    block = R.render_results(reports)
    assert "4 rows over 3 seeds): 1 supported, 1 not reproduced, 1 undecided, 1 measured" in block
    assert "pooling helps (MCGF §2.4)" in block and "+5.33 [+4.10, +6.20], R@1 | 0.01 |" in block
    assert "-0.012 [-0.030, +0.005], corr | 0.30 |" in block  # a correlation keeps 3 decimals
    assert "Holm-adjusted" in block and "| p (Holm) | verdict |" in block
    table = [line for line in block.splitlines() if line.startswith("| ")]
    assert any("noise helps" in line for line in table)
    assert not any("fog" in line or "oracle" in line for line in table)  # primary rows only
    # the finding names the primary claims by verdict (secondary and measured rows stay out)
    assert (
        "2 primary claims (one per paper section), 1 supported (MCGF §2.4); 1 undecided (MCGF §2.1)."
        in block
    )
    one_seed = [[*r[:12], "1", r[13]] for r in rows]  # n_seeds 1: "seed", not "seeds"
    with open(reports / "tables" / "claims.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([fields, *one_seed])
    assert "4 rows over 1 seed):" in R.render_results(reports)


def test_a_claims_table_without_roles_is_a_clear_error(tmp_path):
    reports = _copy_reports(tmp_path)
    with open(reports / "tables" / "claims.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["claim", "verdict", "effect", "effect lo", "effect hi"],
                                  ["c1", "supported", "1", "0.5", "1.5"]])  # fmt: skip
    with pytest.raises(ConfigError, match="lacks the column 'role'.*--profile claims"):
        R.render_results(reports)


def test_a_readme_without_the_block_is_a_clear_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no results block"):
        R.update_readme(readme)
    assert main(["readme", "--readme", str(readme)]) == 2
    assert "no results block" in capsys.readouterr().err


def test_check_exits_1_naming_the_difference(tmp_path, capsys):
    reports = _copy_reports(tmp_path)
    readme = tmp_path / "README.md"
    shutil.copyfile(REPO / "README.md", readme)
    args = ["readme", "--readme", str(readme), "--reports", str(reports)]
    assert main([*args, "--check"]) == 0
    _edit_cell(reports / "tables" / R.STREET_TABLE, "geoviewmatch", "R@1", "77.77")
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    assert "77.77" in capsys.readouterr().err
    assert main(args) == 0 and main([*args, "--check"]) == 0


def test_a_run_rewrites_the_block_only_for_the_repositorys_reports(tmp_path):
    reports = _copy_reports(tmp_path)
    readme = tmp_path / "README.md"
    shutil.copyfile(REPO / "README.md", readme)
    _edit_cell(reports / "tables" / R.DRONE_TABLE, "mcgf", "AP", "88.88")
    original = readme.read_text(encoding="utf-8")
    smoke = reports / "smoke"
    assert refresh_readme([smoke], readme=readme, reports=reports) is False
    assert readme.read_text(encoding="utf-8") == original
    assert refresh_readme([smoke, tmp_path / "x" / ".." / "reports"], readme, reports) is True
    assert "88.88" in readme.read_text(encoding="utf-8")
