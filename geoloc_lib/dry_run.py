"""Checks behind ``geoloc run --dry-run``: every configuration resolves without running anything.

Each check looks at the resolved parameters of one notebook. Data roots that do
not exist are reported, not failed (the ``paper`` profile names real datasets
that a machine may not hold), but invalid choices fail.
"""

from __future__ import annotations

from pathlib import Path

from geoloc_lib.data.sources import resolve_sources
from geoloc_lib.profiles import ResolvedRun


def _data_checks(params: dict, base: Path) -> list[str]:
    if "dataset" not in params:
        return []
    sources = resolve_sources(
        params["dataset"],
        params.get("data_root", ""),
        params.get("university_root", ""),
        params.get("street_root", ""),
        params.get("street_format", "cvact"),
    )
    notes = []
    for label, root in (
        ("University-1652", sources.university_root),
        ("street", sources.street_root),
    ):
        if root is None:
            continue
        where = (base / root).resolve() if not Path(root).is_absolute() else Path(root)
        state = "present" if where.exists() else "absent (generated or to be obtained)"
        notes.append(f"{label} root {root}: {state}")
    return notes


def check_run(run: ResolvedRun, profile: str) -> list[str]:
    """Raise on an invalid configuration; return notes on what was checked."""
    base = run.notebook.parent
    return _data_checks(run.parameters, base)
