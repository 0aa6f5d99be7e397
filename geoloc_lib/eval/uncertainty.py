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
- Cluster bootstrap (``clusters=`` / ``cluster=``): where several queries share a location (a
  University-1652 building's drone views), whole locations are resampled with all their views.
- :func:`seed_effect`: a comparison repeated over seeds (each seed a training run and, where the
  queries are a seeded subset, its own evaluation sample). The effect is the mean over seeds of
  the per-seed paired difference ``d_s = mean_q(a) - mean_q(b)``; its interval is Student's t
  on the ``d_s`` (:func:`t_interval`: ``mean ± t_{0.975, n-1} sd / sqrt(n)``) with the matching
  two-sided p-value. Each ``d_s`` already carries its seed's query sampling, so one level
  covers both sources of variation. A percentile bootstrap over three seeds would be close to
  [lowest, highest] seed and call false verdicts far more often than 5 % (tests/test_uncertainty.py
  simulates both under a true effect of 0).
- :func:`adjust_p_values`: Holm (family-wise error) or Benjamini-Hochberg (false discovery rate)
  over a family of claims.
- :func:`verdict`: *supported* if the interval excludes 0 in the claimed direction (and the
  family-adjusted p-value is below alpha), *not reproduced* if it excludes 0 the other way,
  *undecided* otherwise, and always *undecided* with fewer than :data:`MIN_SEEDS` seeds (the
  ``note`` says "1 seed" etc.).

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

from geoloc_lib.core.errors import ConfigError, choices_message

N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
MIN_SEEDS = 3
LO, HI = "lo", "hi"  # suffixes of the bound columns: "R@1 lo", "R@1 hi"
# Count-matrix entries per chunk of resamples (~32 MB of int64 at most).
_CHUNK_ENTRIES = 4_000_000

SUPPORTED, NOT_REPRODUCED, UNDECIDED = "supported", "not reproduced", "undecided"
VERDICTS = (SUPPORTED, NOT_REPRODUCED, UNDECIDED)


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


def _cluster_index(clusters: object, n: int, name: str) -> tuple[np.ndarray, int]:
    """Each row's cluster as 0..C-1 (in order of first appearance) and C."""
    keys = np.asarray(clusters)
    if keys.shape != (n,):
        raise ConfigError(f"{name}: clusters must give one key per query ({n}), got {keys.shape}")
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)], len(first)


def resampled_means(
    values: object,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int | np.random.SeedSequence = BOOTSTRAP_SEED,
    clusters: object | None = None,
) -> np.ndarray:
    """``[n_resamples, M]`` means of ``values`` ([Q] or [Q, M]) over bootstrap resamples of the
    queries (rows drawn with replacement; every column with the same draws).

    ``clusters`` (one key per query, e.g. the query's location): a cluster bootstrap, which
    draws whole clusters with replacement and averages every query of the drawn clusters. Views
    of one location are not independent queries; resampling them one by one understates the
    spread (reference facts, statistics).
    """
    _check_options(n_resamples, 0.5)
    arr, _ = _as_matrix(values, "values")
    n = arr.shape[0]
    if clusters is None:
        sums, sizes, units = arr, np.ones(n), n
    else:
        index, units = _cluster_index(clusters, n, "resampled_means")
        sums = np.zeros((units, arr.shape[1]))
        np.add.at(sums, index, arr)
        sizes = np.bincount(index, minlength=units).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ENTRIES // units)
    out = np.empty((n_resamples, arr.shape[1]))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, units, size=(b, units))
        # how often each unit (query or cluster) is drawn in each resample: [b, units]
        flat = (draws + (np.arange(b) * units)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * units).reshape(b, units).astype(np.float64)
        out[start : start + b] = (counts @ sums) / (counts @ sizes)[:, None]
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
    clusters: object | None = None,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over queries: ``(lo, hi)``.

    ``values`` is one per-query column ([Q]; floats returned) or several ([Q, M]; arrays of M
    returned, every column resampled with the same draws). ``clusters``: one key per query;
    whole clusters are resampled (:func:`resampled_means`).
    """
    _check_options(n_resamples, confidence)
    arr, single = _as_matrix(values, "values")
    samples = resampled_means(arr, n_resamples=n_resamples, seed=seed, clusters=clusters)
    lo, hi = _percentiles(samples, confidence)
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
    clusters: object | None = None,
) -> tuple[float, float, float]:
    """``(mean(a - b), lo, hi)``: two methods' per-query values on the same queries, in the same
    order; the interval resamples the queries (the pairs; whole ``clusters`` when given), not the
    two methods separately."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ConfigError(
            f"paired_interval: a and b must be per-query values of the same queries, got shapes "
            f"{a_arr.shape} and {b_arr.shape}"
        )
    diff = a_arr - b_arr
    lo, hi = bootstrap_interval(
        diff, confidence=confidence, n_resamples=n_resamples, seed=seed, clusters=clusters
    )
    return float(diff.mean()), lo, hi


def interval_table(
    per_query: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    by: Sequence[str] = (),
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    cluster: str | None = None,
) -> pd.DataFrame:
    """Per group of ``by``: each metric's mean and its bound columns (``"<m> lo"``, ``"<m> hi"``).

    ``per_query`` has one row per query (and group); rows whose metrics are all NaN are left
    out (a University-1652 query without a true match is a row of zeros, a miss). ``cluster``: a column whose equal values move together
    (a location's views), resampled as whole clusters. Columns: ``by``, the metrics, their
    bounds (metric by metric, after the point values), ``n_queries``.
    """
    by = list(by)
    keys = [*by, *([cluster] if cluster else [])]
    metrics = [c for c in per_query.columns if c not in keys] if metrics is None else list(metrics)
    missing = [c for c in [*keys, *metrics] if c not in per_query.columns]
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
                values, confidence=confidence, n_resamples=n_resamples, seed=seed,
                clusters=part[cluster].to_numpy() if cluster else None,
            )  # fmt: skip
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
    lo: float  # Student-t interval over the per-seed effects (NaN below two seeds)
    hi: float
    p_value: float  # two-sided one-sample t-test of the per-seed effects against 0 (NaN below 2)
    n_seeds: int
    n_queries: int  # per seed (the smallest, if they differ)
    mean_a: float  # mean over seeds of mean_q(a)
    std_a: float  # standard deviation over seeds (ddof=1; 0 with one seed)
    mean_b: float
    std_b: float
    std_effect: float  # standard deviation of the per-seed effects (ddof=1; 0 with one seed)


def t_interval(
    effects: object, *, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seed-level Student-t interval and two-sided p-value of the mean of per-seed effects.

    ``effects`` is ``[..., n]``: the last axis holds one paired effect per seed (its query noise
    is already inside each value). Returns ``(mean, lo, hi, p)`` over the leading axes:
    ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)`` and the one-sample t-test of mean 0. With n < 2
    the bounds and p are NaN; with sd = 0 the interval is the mean itself and p is 0 (a non-zero
    mean) or 1. Vectorised over the leading axes (the simulation tests call it on thousands of
    rows at once).
    """
    from scipy import stats

    _check_options(1, confidence)
    arr = np.asarray(effects, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ConfigError(f"t_interval: need per-seed effects [..., n], got shape {arr.shape}")
    n = arr.shape[-1]
    mean = arr.mean(axis=-1)
    if n < 2:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, nan, nan.copy()
    sd = arr.std(axis=-1, ddof=1)
    se = sd / np.sqrt(n)
    q = stats.t.ppf(0.5 + float(confidence) / 2.0, df=n - 1)
    lo, hi = mean - q * se, mean + q * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.inf * np.sign(mean))
    p = np.where(se > 0, 2.0 * stats.t.sf(np.abs(t), df=n - 1), np.where(mean != 0, 0.0, 1.0))
    return mean, lo, hi, p


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
) -> SeedEffect:
    """Mean ± std per method over seeds and the seed-level t interval of the paired difference
    (module docstring). ``a_by_seed[s]`` and ``b_by_seed[s]`` are the two methods' per-query
    values on seed s's queries, in the same order."""
    _check_options(1, confidence)
    diffs = _per_seed_pairs(a_by_seed, b_by_seed)
    n_seeds = len(diffs)
    per_seed = np.array([d.mean() for d in diffs])
    mean, lo, hi, p = t_interval(per_seed, confidence=confidence)
    a_means = [float(np.mean(np.asarray(a, dtype=np.float64))) for a in a_by_seed]
    b_means = [float(np.mean(np.asarray(b, dtype=np.float64))) for b in b_by_seed]
    ddof = 1 if n_seeds > 1 else 0
    return SeedEffect(
        effect=float(mean),
        lo=float(lo),
        hi=float(hi),
        p_value=float(p),
        n_seeds=n_seeds,
        n_queries=min(len(d) for d in diffs),
        mean_a=float(np.mean(a_means)),
        std_a=float(np.std(a_means, ddof=ddof)),
        mean_b=float(np.mean(b_means)),
        std_b=float(np.std(b_means, ddof=ddof)),
        std_effect=float(np.std(per_seed, ddof=ddof)),
    )


ADJUSTMENTS = ("holm", "bh")


def adjust_p_values(p_values: object, method: str = "holm") -> np.ndarray:
    """Multiple-comparison adjusted p-values of one family of claims, in the input order.

    ``holm``: Holm's step-down (family-wise error): sorted ascending, ``p_(i)`` becomes
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a claim is decided at level alpha when its adjusted
    value is below alpha. ``bh``: Benjamini-Hochberg (false discovery rate): ``p_(i)`` becomes
    ``min_{j >= i} min(1, m p_(j) / j)``. NaN values (undecidable claims) stay NaN and do not
    count in ``m``.
    """
    if method not in ADJUSTMENTS:
        raise ConfigError(f"adjust_p_values: {choices_message('method', method, ADJUSTMENTS)}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ConfigError(f"adjust_p_values: need one p-value per claim, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not len(ok):
        return out
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ConfigError(f"adjust_p_values: p-values must lie in [0, 1], got {p[ok].tolist()}")
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order]
    i = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - i + 1) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / i)[::-1])[::-1]
    out[order] = adj
    return out


SCOPE = "CPU size: GeoSynth, random initialisation"
NOT_TESTED = "the paper's regime (pretrained weights, 448 px, real data) is not tested"


def verdict(
    lo: float,
    hi: float,
    direction: int,
    n_seeds: int,
    p_adjusted: float | None = None,
    *,
    alpha: float = 1.0 - CONFIDENCE,
) -> tuple[str, str]:
    """``(verdict, note)`` of a claim whose effect should have the sign ``direction`` (+1/-1).

    *Supported* if the interval excludes 0 on the claimed side, *not reproduced* if it excludes 0
    on the other side, *undecided* otherwise; always undecided below :data:`MIN_SEEDS` seeds.
    With ``p_adjusted`` (the claim's family-adjusted p-value, :func:`adjust_p_values`) a claim
    is decided only when that value is below ``alpha`` as well, so the family's error rate is
    what the level promises. The note says what decided it.
    """
    if direction not in (1, -1):
        raise ConfigError(
            f"verdict: direction must be +1 or -1 (the claimed sign), got {direction}"
        )
    if n_seeds < MIN_SEEDS:
        plural = "seed" if n_seeds == 1 else "seeds"
        return UNDECIDED, f"{n_seeds} {plural} (at least {MIN_SEEDS} needed for a verdict)"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ConfigError(f"verdict: need a finite interval with lo <= hi, got [{lo}, {hi}]")
    low, high = (lo, hi) if direction == 1 else (-hi, -lo)  # in the claimed direction
    if low <= 0 <= high:
        return UNDECIDED, "interval contains 0"
    if p_adjusted is not None and not p_adjusted < alpha:
        return (
            UNDECIDED,
            f"interval excludes 0, but not after the family's adjustment (p_adj {p_adjusted:.3g})",
        )
    if low > 0:
        return SUPPORTED, "interval excludes 0 in the claimed direction"
    return NOT_REPRODUCED, "interval excludes 0 against the claimed direction"


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

    ``per_query`` needs ``rank`` (1-based rank of the best true match; NaN: a query without a
    true match, a miss at every k, as the University-1652 means count it) and ``by``, e.g. what ``evaluate_mcgf(..., per_query=True)`` returns for one
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
        ranks = part["rank"].to_numpy(dtype=np.float64)
        if not len(ranks):
            continue
        ranks = np.where(np.isnan(ranks), np.inf, ranks)  # no true match: never within k
        hits = (ranks[:, None] <= np.asarray(ks, dtype=np.float64)[None, :]) * 100.0
        lo, hi = bootstrap_interval(hits, confidence=confidence, n_resamples=n_resamples, seed=seed)
        for j, k in enumerate(ks):
            rows.append(
                {by: group, "k": k, "recall": float(hits[:, j].mean()), "lo": float(lo[j]),
                 "hi": float(hi[j]), "n_queries": len(ranks)}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=[by, "k", "recall", "lo", "hi", "n_queries"])
