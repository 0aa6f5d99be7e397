"""Long results -> the papers' wide tables (methods as rows, metric columns per group).

A *long* table has one row per (method, group) with metric columns, e.g. what
``evaluate_mcgf`` returns per model (``task``, ``condition``, ``R@1`` ... ``AP``) with a
``method`` column added by :func:`stack_results`. The wide formats:

- :func:`weather_table`: MCGF Table 1's metrics (R@1, R@5, R@10, AP) for one task, one column
  group per weather condition (``"fog R@1"``...), the 10 conditions first, then ``mixed`` and
  ``mean``; :func:`mcgf_table1` is Table 1 itself for one condition (University160k-WX's
  test queries carry mixed weather).
- :func:`street_recall_table` (GeoViewMatch Table 1: R@1/5/10/1% per dataset),
  :func:`meter_level_table` (Table 2: top-1 within 0/36/72/144 m) and
  :func:`topk_distance_table` (Table 3: mean distance of the top-1/5/10/1% items, metres).

Column names are flat strings (``"<group> <metric>"``) so the CSV and Markdown writers of
:class:`geoloc_lib.reporting.ReportDir` keep them readable. When the long results carry each
metric's 95 % interval (``"R@1 lo"``, ``"R@1 hi"``: what ``evaluate_mcgf`` and
``evaluate_street_splits`` return), the wide tables keep the point columns as they are and
append the bounds after them, ``"<group> <metric> lo"`` / ``"... hi"`` in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.metrics import DEFAULT_THRESHOLDS_M
from geoloc_lib.eval.uncertainty import bound_columns
from geoloc_lib.weather.synth import CONDITIONS

METHOD = "method"
UNIVERSITY_METRICS: tuple[str, ...] = ("R@1", "R@5", "R@10", "AP")
STREET_RECALL_METRICS: tuple[str, ...] = ("R@1", "R@5", "R@10", "R@1%")
# Group order of the weather tables: the 10 conditions, the mixed set, their mean.
WEATHER_GROUPS: tuple[str, ...] = (*CONDITIONS, "mixed", "mean")
TOPK_LABELS: tuple[str, ...] = ("1", "5", "10", "1%")


def stack_results(results: Mapping[str, pd.DataFrame | Mapping[str, float]]) -> pd.DataFrame:
    """One long table from ``{method: results}``; a dict of metrics becomes one row.

    The ``method`` column comes first; methods keep the mapping's order.
    """
    if not results:
        raise ConfigError("stack_results: no results to stack (empty mapping)")
    frames = []
    for method, res in results.items():
        frame = res.copy() if isinstance(res, pd.DataFrame) else pd.DataFrame([dict(res)])
        if METHOD in frame.columns:
            raise ConfigError(
                f"stack_results: results of {method!r} already have a 'method' column"
            )
        frame.insert(0, METHOD, method)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def wide_table(
    long: pd.DataFrame,
    group: str,
    metrics: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    prefix_groups: bool = True,
    intervals: bool | None = None,
) -> pd.DataFrame:
    """Pivot ``long`` to one row per method and ``metrics`` under each value of ``group``.

    Args:
        long: rows of (``method``, ``group``, metrics...); each pair must occur once.
        group: the column whose values become column groups (``condition``, ``dataset``).
        metrics: metric columns to keep, in this order within each group.
        groups: the groups to show, in order (default: order of first appearance); every one
            must be present. Missing (method, group) cells are NaN.
        labels: display names of the metrics (default: the column names).
        prefix_groups: name columns ``"<group> <label>"``; False gives bare labels (one group).
        intervals: append each metric's bound columns (``"<group> <label> lo"``, ``"... hi"``)
            after the point columns; None: when ``long`` has them (``"<metric> lo"``/``hi``).
    """
    bounds = [c for m in metrics for c in bound_columns(m)]
    if intervals is None:
        intervals = all(c in long.columns for c in bounds)
    needed = [METHOD, group, *metrics, *(bounds if intervals else [])]
    missing = [c for c in needed if c not in long.columns]
    if missing:
        raise ConfigError(
            f"wide_table: long results lack column(s) {missing}; found {list(long.columns)}"
        )
    dup = long.duplicated([METHOD, group])
    if dup.any():
        row = long.loc[dup, [METHOD, group]].iloc[0]
        raise ConfigError(
            f"wide_table: ({row[METHOD]!r}, {row[group]!r}) occurs more than once; filter the "
            "long results to one task/dataset first"
        )
    present = list(dict.fromkeys(long[group]))
    order = list(groups) if groups is not None else present
    absent = [g for g in order if g not in present]
    if absent:
        raise ConfigError(f"wide_table: no results for {group} {absent}; present: {present}")
    if not prefix_groups and len(order) != 1:
        raise ConfigError("wide_table: prefix_groups=False needs exactly one group")
    labels = dict(labels or {})
    methods = list(dict.fromkeys(long[METHOD]))
    values = [*metrics, *(bounds if intervals else [])]
    cells = long[long[group].isin(order)].set_index([METHOD, group])[values]
    wide = cells.unstack(group).reindex(methods)  # columns: (metric, group)
    columns = [(m, g) for g in order for m in metrics]
    if intervals:
        columns += [(b, g) for g in order for b in bounds]
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(columns))

    def name(column: str, g: str) -> str:
        base, bound = column, ""
        if column not in metrics:  # a bound column: "<metric> lo|hi"
            base, _, bound = column.rpartition(" ")
        label = labels.get(base, base) + (f" {bound}" if bound else "")
        return f"{g} {label}" if prefix_groups else label

    wide.columns = [name(m, g) for m, g in columns]
    return wide.rename_axis(METHOD).reset_index()


def _one_task(long: pd.DataFrame, task: str | None) -> pd.DataFrame:
    if task is None:
        return long
    if "task" not in long.columns:
        raise ConfigError("a task was given but the long results have no 'task' column")
    picked = long[long["task"] == task]
    if picked.empty:
        raise ConfigError(
            f"no results for task {task!r}; present: {sorted(set(long['task'].astype(str)))}"
        )
    return picked


def weather_table(
    long: pd.DataFrame,
    task: str | None = "drone->satellite",
    *,
    conditions: Sequence[str] | None = None,
    metrics: Sequence[str] = UNIVERSITY_METRICS,
) -> pd.DataFrame:
    """MCGF-style per-weather table of one task: methods x (condition, R@1/R@5/R@10/AP).

    ``conditions`` default: those present, in :data:`WEATHER_GROUPS` order (unknown names last).
    """
    rows = _one_task(long, task)
    if conditions is None:
        present = list(dict.fromkeys(rows["condition"])) if "condition" in rows else []
        known = [c for c in WEATHER_GROUPS if c in present]
        conditions = known + [c for c in present if c not in WEATHER_GROUPS]
    return wide_table(rows, "condition", metrics, groups=conditions)


def mcgf_table1(
    long: pd.DataFrame, task: str | None = "drone->satellite", condition: str = "mixed"
) -> pd.DataFrame:
    """MCGF Table 1: ``method, R@1, R@5, R@10, AP`` under one condition (default: mixed)."""
    rows = _one_task(long, task)
    return wide_table(
        rows, "condition", UNIVERSITY_METRICS, groups=[condition], prefix_groups=False
    )


def street_recall_table(long: pd.DataFrame, group: str = "dataset") -> pd.DataFrame:
    """GeoViewMatch Table 1: R@1/5/10/1% per dataset (a single dataset: bare metric names)."""
    n_groups = long[group].nunique() if group in long.columns else 0
    return wide_table(long, group, STREET_RECALL_METRICS, prefix_groups=n_groups != 1)


def meter_level_table(
    long: pd.DataFrame, thresholds_m: Sequence[float] = DEFAULT_THRESHOLDS_M
) -> pd.DataFrame:
    """GeoViewMatch Table 2: top-1 within 0/36/72/144 m (percent), columns ``"<t> m"``."""
    metrics = [f"top1_within_{float(t):g}m" for t in thresholds_m]
    labels = {m: f"{float(t):g} m" for m, t in zip(metrics, thresholds_m, strict=True)}
    return _single_group(long, metrics, labels)


def topk_distance_table(long: pd.DataFrame) -> pd.DataFrame:
    """GeoViewMatch Table 3: mean distance (m) of the top-1/5/10/1% items to the truth."""
    metrics = [f"mean_dist_top{k}_m" for k in TOPK_LABELS]
    labels = {m: f"Top-{k}" for m, k in zip(metrics, TOPK_LABELS, strict=True)}
    return _single_group(long, metrics, labels)


def _single_group(long: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> pd.DataFrame:
    missing = [m for m in metrics if m not in long.columns]
    if missing:
        raise ConfigError(
            f"long results lack {missing}: meter-level metrics need gallery coordinates "
            "(CVACT / GeoSynth; CVUSA has none)"
        )
    rows = long.assign(_group="all")
    return wide_table(rows, "_group", metrics, labels=labels, prefix_groups=False)
