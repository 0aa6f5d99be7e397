"""The smoke runs' result tables against recorded values, within stated tolerances.

``make test`` executes the notebooks at the smoke profile (nbval), which writes every result
table to ``reports/smoke/tables/``. Cells whose printed numbers come from trained models are
not compared by nbval (tag ``nbval-ignore-output``): a trained model's numbers differ in the
last bits between CPUs, and a near-tie in a ranking turns that into a different recall. This
test compares those tables instead, against ``tests/smoke_reference/tables/`` (recorded by
``geoloc notebooks record``):

- the table's columns and every non-numeric cell (methods, conditions, runs) exactly;
- numeric columns exactly, unless ``tests/smoke_reference/tolerances.yaml`` gives the column a
  tolerance (measured across CPU kernel sets, see that file) or marks it as a timing.

A broken loss or protocol moves the numbers far past the tolerances and fails here.
"""

from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from geoloc_lib.core.paths import REPO_ROOT

REFERENCE = Path(__file__).with_name("smoke_reference")
TABLES = REPO_ROOT / "reports" / "smoke" / "tables"
pytestmark = pytest.mark.after_notebooks


@functools.cache
def _rules() -> list[dict]:
    return yaml.safe_load((REFERENCE / "tolerances.yaml").read_text())["rules"]


def _rule(table: str, column: str, row: str) -> dict | None:
    """The first rule whose ``tables``, ``columns`` and (optional) ``rows`` patterns match; a
    row is named by its first cell (the method, run or condition)."""
    for rule in _rules():
        if (
            re.fullmatch(rule["tables"], table)
            and re.fullmatch(rule["columns"], column)
            and re.fullmatch(rule.get("rows", ".*"), row)
        ):
            return rule
    return None


def _notebook_of(table: str) -> str:
    """The number of the notebook that writes ``table`` ("claims" is 05's)."""
    return "05" if table == "claims" else table[:2]


def _checked_notebooks() -> set[str] | None:
    """``GEOLOC_SMOKE_NOTEBOOKS`` ("00 01 02", as ``make test-kernels`` sets it): only these
    notebooks ran, so only their tables are compared; unset: every notebook's."""
    value = os.environ.get("GEOLOC_SMOKE_NOTEBOOKS", "").replace(",", " ").split()
    return set(value) or None


def _reference_tables() -> list[str]:
    names = sorted(p.stem for p in (REFERENCE / "tables").glob("*.csv"))
    checked = _checked_notebooks()
    return [n for n in names if checked is None or _notebook_of(n) in checked]


@pytest.fixture(scope="module")
def fresh_tables(request) -> Path:
    ran_notebooks = any(item.path.suffix == ".ipynb" for item in request.session.items)
    if not ran_notebooks:
        pytest.skip("compares what the notebooks write: run with them (make test)")
    from conftest import SESSION_START

    stale = [
        name
        for name in _reference_tables()
        if not (TABLES / f"{name}.csv").is_file()
        or (TABLES / f"{name}.csv").stat().st_mtime < SESSION_START
    ]
    assert not stale, f"not written by this session's notebooks (a notebook failed?): {stale}"
    return TABLES


def test_every_reference_table_has_a_rule_or_is_exact():
    assert _reference_tables(), "no recorded tables: run geoloc notebooks record"
    for rule in _rules():
        assert set(rule) >= {"tables", "columns", "why"} and (
            "tolerance" in rule or "ignore" in rule
        )


def _nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same(want: object, have: object, rule: dict | None) -> bool:
    if _nan(want) or _nan(have):
        return _nan(want) and _nan(have)
    if isinstance(want, str) or isinstance(have, str):
        return str(want) == str(have)
    if rule is None:
        return want == have
    return abs(have - want) <= rule["tolerance"]


@pytest.mark.parametrize("name", _reference_tables())
def test_smoke_table_matches_the_recorded_one(fresh_tables: Path, name: str):
    ref = pd.read_csv(REFERENCE / "tables" / f"{name}.csv")
    got = pd.read_csv(fresh_tables / f"{name}.csv")
    assert list(got.columns) == list(ref.columns), f"{name}: columns changed"
    assert len(got) == len(ref), f"{name}: {len(got)} rows, recorded {len(ref)}"
    problems = []
    for column in ref.columns:
        for row, (want, have) in enumerate(zip(ref[column], got[column], strict=True)):
            rule = _rule(name, column, str(ref.iloc[row, 0]))
            if rule and rule.get("ignore"):
                continue
            ok = _same(want, have, rule)
            if not ok:
                bound = f" (tolerance {rule['tolerance']})" if rule else " (exact)"
                problems.append(f"row {row} {column}: recorded {want}, got {have}{bound}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def _verdict_is_stable(row: pd.Series, claim: str) -> bool:
    """Whether a recorded claim's verdict must reproduce: neither bound of its interval lies
    within the effect's tolerance of 0, and its adjusted p-value is not near the 0.05 line
    (a change of one query there may move the verdict; everywhere else it may not)."""
    rule = _rule("claims", "effect lo", claim)
    tolerance = rule["tolerance"] if rule else 0.0
    lo, hi = float(row["effect lo"]), float(row["effect hi"])
    if math.isnan(lo) or min(abs(lo), abs(hi)) <= tolerance:
        return False
    p_adj = float(row["p adjusted"])
    return math.isnan(p_adj) or not 0.01 <= p_adj <= 0.2


def test_claims_verdicts_match_where_no_bound_is_near_zero(fresh_tables: Path):
    if "claims" not in _reference_tables():
        pytest.skip("notebook 05 did not run (GEOLOC_SMOKE_NOTEBOOKS)")
    ref = pd.read_csv(REFERENCE / "tables" / "claims.csv").set_index("claim")
    got = pd.read_csv(fresh_tables / "claims.csv").set_index("claim")
    stable = [c for c, row in ref.iterrows() if _verdict_is_stable(row, str(c))]
    changed = {c: (ref.loc[c, "verdict"], got.loc[c, "verdict"]) for c in stable
               if ref.loc[c, "verdict"] != got.loc[c, "verdict"]}  # fmt: skip
    assert not changed, f"verdicts changed (recorded, now): {changed}"


def test_verdict_stability_rule():
    row = pd.Series({"effect lo": 6.0, "effect hi": 20.0, "p adjusted": 0.001})
    assert _verdict_is_stable(row, "gvm-x")  # street tolerance 5 points
    assert not _verdict_is_stable(row.replace({6.0: 4.0}), "gvm-x")
    assert _verdict_is_stable(row.replace({6.0: 4.0}), "mcgf-x")  # drone tolerance 3.2
    near = row.copy()
    near["p adjusted"] = 0.05
    assert not _verdict_is_stable(near, "gvm-x")
