"""Confidence intervals of the reported metrics: percentile bootstrap over queries, and over seeds.

Every reported metric is the mean of a per-query value (recall@k: a 100/0 hit; AP in percent;
distances in metres; see :mod:`geoloc_lib.eval.metrics`), so one resampling scheme covers them all.

- :func:`bootstrap_interval`: the 95 % percentile bootstrap interval of the mean over queries.
  Each resample draws Q queries with replacement; the interval is the 2.5th and 97.5th
  percentiles of the resampled means. Several metrics of the same queries are resampled
  together (the same draws), so a table's columns are consistent with each other.
- :func:`paired_interval`: the same for the difference of two methods on the same queries
  (resampling query indices, i.e. the per-query differences), which is much tighter than two
  separate intervals because both methods see the same hard and easy queries.
- :func:`seed_effect`: a comparison repeated over seeds (each seed a training run and, where the
  queries are a seeded subset, its own evaluation sample). The effect is the mean over seeds of
  the per-seed paired difference ``mean_q(a) - mean_q(b)``. Its interval is a **two-level
  bootstrap**: each resample draws S seeds with replacement and, within each drawn seed, that
  seed's queries with replacement (an independent draw for every drawn copy), and averages the
  resampled per-seed differences; the interval is the percentiles of those averages. It so
  carries both the training variation between seeds and the query sampling within each. With
  few seeds the seed level has few distinct values and the interval understates the spread
  between seeds, which is why :func:`verdict` decides nothing below :data:`MIN_SEEDS` seeds.
- :func:`verdict`: *supported* if the interval excludes 0 in the claimed direction,
  *contradicted* if it excludes 0 in the other direction, *undecided* otherwise, and always
  *undecided* with fewer than :data:`MIN_SEEDS` seeds (the ``note`` says "1 seed" etc.).

Defaults: :data:`N_RESAMPLES` = 2,000 resamples, a fixed :data:`BOOTSTRAP_SEED`, so an interval
is a deterministic function of the per-query values. Resampling is vectorised: the draws of a
chunk of resamples become a ``[resamples, queries]`` count matrix and the resampled means one
matrix product; chunks only bound memory (their size depends on Q alone, so results do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from geoloc_lib.core.errors import ConfigError

N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
MIN_SEEDS = 3
LO, HI = "lo", "hi"  # suffixes of the bound columns: "R@1 lo", "R@1 hi"
# Count-matrix entries per chunk of resamples (~32 MB of int64 at most).
_CHUNK_ENTRIES = 4_000_000

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided"


def bound_columns(metric: str) -> tuple[str, str]:
    """The names of ``metric``'s interval columns: ``("<metric> lo", "<metric> hi")``."""
    return f"{metric} {LO}", f"{metric} {HI}"


def _check_options(n_resamples: int, confidence: float) -> None:
    if not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < float(confidence) < 1:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _as_matrix(values: object, name: str) -> tuple[np.ndarray, bool]:
    """``[Q, M]`` float64 and whether the input was one column."""
    arr = np.asarray(values, dtype=np.float64)
    single = arr.ndim == 1
    if single:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ConfigError(f"{name}: expected per-query values [Q] or [Q, M], got {arr.shape}")
    if arr.shape[0] == 0:
        raise ConfigError(f"{name}: no queries to resample (empty per-query values)")
    if not np.isfinite(arr).all():
        raise ConfigError(
            f"{name}: contains NaN or Inf; drop the queries the protocol skips first "
            "(rows that are all NaN in a per-query table)"
        )
    return arr, single


def resampled_means(
    values: object,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int | np.random.SeedSequence = BOOTSTRAP_SEED,
) -> np.ndarray:
    """``[n_resamples, M]`` means of ``values`` ([Q] or [Q, M]) over bootstrap resamples of the
    queries (rows drawn with replacement; every column with the same draws)."""
    _check_options(n_resamples, 0.5)
    arr, _ = _as_matrix(values, "values")
    n = arr.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ENTRIES // n)
    out = np.empty((n_resamples, arr.shape[1]))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(b, n))
        # how often each query is drawn in each resample: [b, Q]
        flat = (draws + (np.arange(b) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        out[start : start + b] = counts @ arr / n
    return out


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - float(confidence)) / 2.0
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)


def bootstrap_interval(
    values: object,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over queries: ``(lo, hi)``.

    ``values`` is one per-query column ([Q]; floats returned) or several ([Q, M]; arrays of M
    returned, every column resampled with the same draws).
    """
    _check_options(n_resamples, confidence)
    arr, single = _as_matrix(values, "values")
    lo, hi = _percentiles(resampled_means(arr, n_resamples=n_resamples, seed=seed), confidence)
    # A constant column has every resampled mean equal to it (no rounding drift).
    const = (arr == arr[:1]).all(axis=0)
    lo, hi = np.where(const, arr[0], lo), np.where(const, arr[0], hi)
    return (float(lo[0]), float(hi[0])) if single else (lo, hi)


def paired_interval(
    a: object,
    b: object,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """``(mean(a - b), lo, hi)``: two methods' per-query values on the same queries, in the same
    order; the interval resamples the queries (the pairs), not the two methods separately."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ConfigError(
            f"paired_interval: a and b must be per-query values of the same queries, got shapes "
            f"{a_arr.shape} and {b_arr.shape}"
        )
    diff = a_arr - b_arr
    lo, hi = bootstrap_interval(diff, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(diff.mean()), lo, hi


def interval_table(
    per_query: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    by: Sequence[str] = (),
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Per group of ``by``: each metric's mean and its bound columns (``"<m> lo"``, ``"<m> hi"``).

    ``per_query`` has one row per query (and group); rows whose metrics are all NaN are queries
    the protocol skips and are left out. Columns: ``by``, the metrics, their bounds (metric by
    metric, after the point values), ``n_queries``.
    """
    by = list(by)
    metrics = [c for c in per_query.columns if c not in by] if metrics is None else list(metrics)
    missing = [c for c in [*by, *metrics] if c not in per_query.columns]
    if missing:
        raise ConfigError(
            f"interval_table: per-query table lacks {missing}; found {list(per_query.columns)}"
        )
    evaluated = per_query[metrics].notna().any(axis=1)
    frame = per_query[evaluated]
    groups = [((), frame)] if not by else frame.groupby(by, sort=False)
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        values = part[metrics].to_numpy(dtype=np.float64)
        if not len(values):  # every query skipped: nothing to estimate
            lo = hi = np.full(len(metrics), np.nan)
        else:
            lo, hi = bootstrap_interval(
                values, confidence=confidence, n_resamples=n_resamples, seed=seed
            )
        row = dict(zip(by, key, strict=True))
        means = values.mean(axis=0) if len(values) else np.full(len(metrics), np.nan)
        row.update({m: float(v) for m, v in zip(metrics, means, strict=True)})
        for m, low, high in zip(metrics, lo, hi, strict=True):
            row.update(dict(zip(bound_columns(m), (float(low), float(high)), strict=True)))
        row["n_queries"] = len(part)
        rows.append(row)
    bounds = [c for m in metrics for c in bound_columns(m)]
    return pd.DataFrame(rows, columns=[*by, *metrics, *bounds, "n_queries"])


# --------------------------------------------------------------------------- across seeds


@dataclass(frozen=True)
class SeedEffect:
    """A comparison ``a - b`` repeated over seeds (in the metric's unit, e.g. points of R@1)."""

    effect: float  # mean over seeds of mean_q(a) - mean_q(b)
    lo: float
    hi: float
    n_seeds: int
    n_queries: int  # per seed (the smallest, if they differ)
    mean_a: float  # mean over seeds of mean_q(a)
    std_a: float  # standard deviation over seeds (ddof=1; 0 with one seed)
    mean_b: float
    std_b: float


def _per_seed_pairs(a_by_seed: Sequence[object], b_by_seed: Sequence[object]) -> list[np.ndarray]:
    if len(a_by_seed) != len(b_by_seed) or not len(a_by_seed):
        raise ConfigError(
            f"seed_effect: give both methods' per-query values for the same seeds, got "
            f"{len(a_by_seed)} and {len(b_by_seed)} seeds"
        )
    diffs = []
    for i, (a, b) in enumerate(zip(a_by_seed, b_by_seed, strict=True)):
        a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a_arr.ndim != 1 or a_arr.shape != b_arr.shape or not len(a_arr):
            raise ConfigError(
                f"seed_effect: seed #{i}: a and b must be per-query values of the same queries, "
                f"got shapes {a_arr.shape} and {b_arr.shape}"
            )
        diffs.append(_as_matrix(a_arr - b_arr, f"seed_effect: seed #{i}")[0][:, 0])
    return diffs


def seed_effect(
    a_by_seed: Sequence[object],
    b_by_seed: Sequence[object],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> SeedEffect:
    """Mean ± std per method over seeds and the two-level bootstrap interval of the paired
    difference (module docstring). ``a_by_seed[s]`` and ``b_by_seed[s]`` are the two methods'
    per-query values on seed s's queries, in the same order."""
    _check_options(n_resamples, confidence)
    diffs = _per_seed_pairs(a_by_seed, b_by_seed)
    n_seeds = len(diffs)
    root = np.random.SeedSequence(seed)
    seed_stream, *query_streams = root.spawn(n_seeds + 1)
    # For every seed, one query-level resampled mean per (resample, drawn slot): [S, B * S].
    pools = np.stack(
        [
            resampled_means(d, n_resamples=n_resamples * n_seeds, seed=stream)[:, 0]
            for d, stream in zip(diffs, query_streams, strict=True)
        ]
    )
    picks = np.random.default_rng(seed_stream).integers(0, n_seeds, size=(n_resamples, n_seeds))
    slots = np.arange(n_resamples * n_seeds).reshape(n_resamples, n_seeds)
    samples = pools[picks, slots].mean(axis=1)
    lo, hi = _percentiles(samples, confidence)
    if all((d == d[0]).all() for d in diffs) and len({float(d[0]) for d in diffs}) == 1:
        lo = hi = float(diffs[0][0])  # the same constant difference everywhere: no spread
    a_means = [float(np.mean(np.asarray(a, dtype=np.float64))) for a in a_by_seed]
    b_means = [float(np.mean(np.asarray(b, dtype=np.float64))) for b in b_by_seed]
    ddof = 1 if n_seeds > 1 else 0
    return SeedEffect(
        effect=float(np.mean([d.mean() for d in diffs])),
        lo=float(lo),
        hi=float(hi),
        n_seeds=n_seeds,
        n_queries=min(len(d) for d in diffs),
        mean_a=float(np.mean(a_means)),
        std_a=float(np.std(a_means, ddof=ddof)),
        mean_b=float(np.mean(b_means)),
        std_b=float(np.std(b_means, ddof=ddof)),
    )


def verdict(lo: float, hi: float, direction: int, n_seeds: int) -> tuple[str, str]:
    """``(verdict, note)`` of a claim whose effect should have the sign ``direction`` (+1/-1).

    Supported if the interval excludes 0 on the claimed side, contradicted if it excludes 0 on
    the other side, undecided otherwise; always undecided below :data:`MIN_SEEDS` seeds, with
    the number of seeds in the note.
    """
    if direction not in (1, -1):
        raise ConfigError(
            f"verdict: direction must be +1 or -1 (the claimed sign), got {direction}"
        )
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ConfigError(f"verdict: need a finite interval with lo <= hi, got [{lo}, {hi}]")
    if n_seeds < MIN_SEEDS:
        plural = "seed" if n_seeds == 1 else "seeds"
        return UNDECIDED, f"{n_seeds} {plural} (at least {MIN_SEEDS} needed for a verdict)"
    low, high = (lo, hi) if direction == 1 else (-hi, -lo)  # in the claimed direction
    if low > 0:
        return SUPPORTED, "interval excludes 0 in the claimed direction"
    if high < 0:
        return CONTRADICTED, "interval excludes 0 against the claimed direction"
    return UNDECIDED, "interval contains 0"


CURVE_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100)


def recall_curves(
    per_query: pd.DataFrame,
    ks: Sequence[int] = CURVE_KS,
    *,
    by: str = "condition",
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Recall@k (percent) for every k and value of ``by``, with 95 % bootstrap intervals.

    ``per_query`` needs ``rank`` (1-based rank of the best true match; NaN: a query the protocol
    skips, left out) and ``by``, e.g. what ``evaluate_mcgf(..., per_query=True)`` returns for one
    method and task. All k of a group are resampled with the same draws, so each band is the
    interval of a monotone curve's points. Columns: ``by, k, recall, lo, hi, n_queries``.
    """
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"recall_curves: ks must be positive integers, got {ks!r}")
    missing = [c for c in ("rank", by) if c not in per_query.columns]
    if missing:
        raise ConfigError(
            f"recall_curves: per-query table lacks {missing}; pass an evaluator's per-query "
            "results (per_query=True) of one method and task"
        )
    rows = []
    for group, part in per_query.groupby(by, sort=False):
        ranks = part["rank"].dropna().to_numpy(dtype=np.float64)
        if not len(ranks):
            continue
        hits = (ranks[:, None] <= np.asarray(ks, dtype=np.float64)[None, :]) * 100.0
        lo, hi = bootstrap_interval(hits, confidence=confidence, n_resamples=n_resamples, seed=seed)
        for j, k in enumerate(ks):
            rows.append(
                {by: group, "k": k, "recall": float(hits[:, j].mean()), "lo": float(lo[j]),
                 "hi": float(hi[j]), "n_queries": len(ranks)}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=[by, "k", "recall", "lo", "hi", "n_queries"])
