"""Protocol metrics (University-1652, CVUSA, CVACT) from the ranking core's ranks, in percent.

Per-query tables hold each metric in its reported unit (hits as 100/0, AP in percent, distances in
metres), so a column mean is the paper's number and :func:`breakdown` is a plain group mean.

- University-1652 (:func:`evaluate_university1652`): Recall@K (CMC) and AP with the trapezoid
  rule; junk (-1) removed. Means are over ALL queries, as the dataset's official evaluation
  computes them: it leaves a query without any true match in the gallery out of its sums but
  divides by the number of all queries, so such a query counts as a miss (R@k 0, AP 0).
  ``n_queries`` counts all queries, ``n_skipped`` the ones without a true match (counted as
  misses; 0 whenever every query has a match, where both readings agree). Ties are broken against the query (``ties="against"``): a true match scoring exactly as
  another gallery item is ranked after it, so a collapsed model (every gallery feature identical)
  scores no better than chance instead of R@1 = 100 %.
- CVUSA/CVACT (:func:`evaluate_pairs`): query i matches gallery i; R@1/5/10 and R@1% with
  k = G // 100 (at least 1); ties in the query's favour (the field's "strictly higher" rank, so
  numbers stay comparable with published ones). ``n_tied`` reports how many queries' true match
  ties with another gallery item, and a warning is raised when that exceeds 1 % of the queries.
- Meter-level (GeoViewMatch Tables 2-3): top-1 within a threshold and the mean distance of the
  top-k items to the query's true location, from coordinates in metres (UTM), computed for the
  retrieved items only. The 0 m column is the index match (the top-1 item *is* the query's tile:
  "the 0 m metric quantifies the proportion of accurate one-to-one matches", GeoViewMatch
  §4.5.2, which reports 0 m = R@1 = 89.71 in Tables 1-2); a different tile at identical
  coordinates is not a 0 m hit. A threshold t > 0 counts the true tile or any tile within t.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from geoloc_lib.eval.ranking import (
    DEFAULT_CHUNK_MB,
    FeatureError,
    RankResult,
    as_features,
    rank_gallery,
)

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_THRESHOLDS_M: tuple[float, ...] = (0.0, 36.0, 72.0, 144.0)
# evaluate_pairs warns when more than this fraction of queries has a true match tied with
# another gallery item (the "strictly higher" rank then flatters the model).
TIE_WARN_FRACTION = 0.01


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise FeatureError(f"ks must be positive integers, got {ks!r}")
    return ks


def one_percent_k(n_gallery: int) -> int:
    """The R@1% cut-off: G // 100 (88 for CVUSA's 8,884), at least 1 for tiny galleries."""
    return max(1, n_gallery // 100)


def recall_hits(result: RankResult, k: int) -> torch.Tensor:
    """``[Q]`` bool: the best true match is within the top ``k`` (a query without one misses)."""
    return result.first_rank < k


def average_precision(result: RankResult) -> torch.Tensor:
    """``[Q]`` float64 AP (fraction, not percent) with the trapezoid rule over the true matches.

    For the i-th true match (0-based) at rank r: precision (i+1)/(r+1), old precision i/r
    (1 when r = 0); AP = sum of their means / n_good. AP is 0 for a query without true matches.
    """
    ranks = result.good_ranks.to(torch.float64)
    width = ranks.shape[1]
    n_good = result.n_good.to(torch.float64)
    if width == 0:
        return torch.zeros_like(n_good)
    i = torch.arange(width, dtype=torch.float64)[None, :]
    valid = i < n_good[:, None]
    safe_r = torch.where(valid, ranks, torch.ones_like(ranks))
    precision = (i + 1) / (safe_r + 1)
    old_precision = torch.where(safe_r == 0, torch.ones_like(safe_r), i / safe_r.clamp(min=1))
    terms = torch.where(valid, (old_precision + precision) / 2, torch.zeros_like(ranks))
    return terms.sum(dim=1) / n_good.clamp(min=1)


def university1652_per_query(result: RankResult, ks: Sequence[int] = DEFAULT_KS) -> pd.DataFrame:
    """Per-query ``R@k`` (100 or 0) and ``AP`` (percent) columns, one row per query.

    A query without any true match in the gallery gets 0 everywhere (a miss, as the official
    evaluation counts it: column means are the protocol's numbers over all queries);
    :func:`n_without_match` says how many there are.
    """
    ks = _check_ks(ks)
    columns = {f"R@{k}": recall_hits(result, k).to(torch.float64) * 100.0 for k in ks}
    columns["AP"] = average_precision(result) * 100.0
    return pd.DataFrame({name: col.numpy() for name, col in columns.items()})


def n_without_match(result: RankResult) -> int:
    """The number of queries with no true match in the gallery (``n_skipped`` of the tables)."""
    return int((result.n_good == 0).sum())


def _coords(x: object, n: int, name: str) -> torch.Tensor:
    # float64: UTM northings are ~6e6 m, where fp32 resolves only 0.5 m.
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() != 2 or t.shape[1] != 2:
        raise FeatureError(f"{name}: expected [N, 2] coordinates in metres, got {tuple(t.shape)}")
    if t.shape[0] != n:
        raise FeatureError(f"{name}: has {t.shape[0]} rows but there are {n} feature rows")
    if not bool(torch.isfinite(t).all()):
        raise FeatureError(f"{name}: contains NaN or Inf")
    return t


def pairs_per_query(
    result: RankResult,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    query_coords: object | None = None,
    gallery_coords: object | None = None,
    thresholds_m: Sequence[float] = DEFAULT_THRESHOLDS_M,
) -> pd.DataFrame:
    """Per-query CVUSA/CVACT columns: ``R@k``, ``R@1%`` and, with coordinates, meter-level ones.

    Meter-level columns: ``top1_within_<t>m`` (100 if the top-1 item is the query's tile or, for
    t > 0, lies within t metres of the query's location; 0 m is the index match) and
    ``mean_dist_top<k>_m`` for k = 1, 5, 10, 1% (mean distance in metres of the top-k items;
    needs ``result`` ranked with ``topk >= G // 100``, else k is clamped).
    ``query_coords`` defaults to ``gallery_coords[:Q]`` (query i is taken at gallery tile i).
    """
    ks = _check_ks(ks)
    one_percent = one_percent_k(result.n_ranked)
    columns = {f"R@{k}": recall_hits(result, k) for k in ks}
    columns["R@1%"] = recall_hits(result, one_percent)
    frame = pd.DataFrame({n: c.to(torch.float64).numpy() * 100.0 for n, c in columns.items()})
    if gallery_coords is None:
        if query_coords is not None:
            raise FeatureError("query_coords needs gallery_coords too")
        return frame
    n_queries = result.n_queries
    n_items = int(torch.as_tensor(np.asarray(gallery_coords)).shape[0])
    gc = _coords(gallery_coords, n_items, "gallery_coords")
    qc = (
        gc[:n_queries] if query_coords is None else _coords(query_coords, n_queries, "query_coords")
    )
    top = result.topk_indices
    if top.shape[1] == 0:
        raise FeatureError("meter-level metrics need top-k lists: rank with topk >= 1")
    if int(top.max()) >= n_items:
        raise FeatureError(
            f"gallery_coords: has {n_items} rows but the ranking used a larger gallery"
        )
    # Distances of the retrieved items only: [Q, k], never a query x gallery matrix.
    dist = (gc[top] - qc[:, None, :]).norm(dim=2)
    exact = (result.first_rank == 0).numpy()  # the top-1 item is the query's own tile
    for t in thresholds_m:
        within = exact if float(t) <= 0 else exact | (dist[:, 0] <= float(t)).numpy()
        frame[f"top1_within_{float(t):g}m"] = within * 100.0
    for label, k in (("1", 1), ("5", 5), ("10", 10), ("1%", one_percent)):
        frame[f"mean_dist_top{label}_m"] = dist[:, : min(k, dist.shape[1])].mean(dim=1).numpy()
    return frame


def summarize(per_query: pd.DataFrame, n_skipped: int = 0) -> dict[str, float]:
    """Column means of a per-query table (the protocol's numbers), plus ``n_queries`` and
    ``n_skipped``.

    ``n_skipped``: how many of the rows are queries without a true match (University-1652:
    :func:`n_without_match`; their rows hold 0, so they count as misses in the means). Rows
    whose values are all NaN are left out of the means and added to ``n_skipped``; the
    protocol tables of this module have none.
    """
    evaluated = per_query.notna().any(axis=1).to_numpy()
    out = {name: float(per_query.loc[evaluated, name].mean()) for name in per_query.columns}
    out["n_queries"] = int(evaluated.sum())
    out["n_skipped"] = int(n_skipped) + int((~evaluated).sum())
    return out


def breakdown(
    per_query: pd.DataFrame,
    by: object,
    *,
    total: bool = True,
) -> pd.DataFrame:
    """Group the per-query metrics by query attributes (weather, altitude, ...).

    Args:
        per_query: a table from :func:`university1652_per_query` or :func:`pairs_per_query`.
        by: one attribute per query (a sequence, array or Series of length Q, named by its
            Series name or ``"group"``) or several (a DataFrame or a mapping name -> values).
        total: append an ``"all"`` row computed over every query.

    Returns a DataFrame indexed by the attribute value(s): metric means and ``n_queries``
    (all-NaN rows are left out of both; a University-1652 query without a true match is a row of
    zeros, a miss, as in :func:`summarize`).
    """
    if isinstance(by, pd.DataFrame):
        keys = by.reset_index(drop=True)
    elif isinstance(by, Mapping):
        keys = pd.DataFrame({str(k): np.asarray(v) for k, v in by.items()})
    elif isinstance(by, pd.Series):
        keys = pd.DataFrame({by.name or "group": by.to_numpy()})
    else:
        keys = pd.DataFrame({"group": np.asarray(by)})
    if len(keys) != len(per_query):
        raise FeatureError(
            f"breakdown: {len(keys)} attribute values for {len(per_query)} queries; "
            "give one value per query, in query order"
        )
    names = list(keys.columns)
    evaluated = per_query.notna().any(axis=1).to_numpy()
    keys, per_query = keys[evaluated], per_query[evaluated]
    frame = pd.concat([keys.reset_index(drop=True), per_query.reset_index(drop=True)], axis=1)
    grouped = frame.groupby(names, sort=True)
    table = grouped[list(per_query.columns)].mean()
    table["n_queries"] = grouped.size()
    if total:
        all_row = per_query.mean().to_frame().T
        all_row["n_queries"] = len(per_query)
        label = "all" if len(names) == 1 else tuple(["all"] * len(names))
        all_row.index = pd.Index([label]) if len(names) == 1 else pd.MultiIndex.from_tuples([label])
        all_row.index.names = names
        table = pd.concat([table, all_row])
    return table


def evaluate_university1652(
    query: object,
    gallery: object,
    query_labels: object,
    gallery_labels: object,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
    device: str | torch.device | None = None,
    normalize: bool = False,
    progress: bool | None = None,
) -> dict[str, float]:
    """University-1652 / University160k-WX metrics in percent: ``R@1, R@5, R@10, AP``.

    Drone->satellite has one true match per query, satellite->drone 54; gallery label -1 is
    junk. Means are over all queries: a query without a true match in the gallery counts as a
    miss (R@k 0, AP 0), as in the official evaluation; ``n_skipped`` says how many there are
    (``n_queries`` counts all). Ties are broken against the query (module docstring).
    Features must be L2-normalised unless ``normalize=True``. See :func:`rank_gallery` for the
    chunking and device arguments.
    """
    ks = _check_ks(ks)
    result = rank_gallery(
        query,
        gallery,
        query_labels,
        gallery_labels,
        topk=0,
        chunk_size=chunk_size,
        max_chunk_mb=max_chunk_mb,
        device=device,
        normalize=normalize,
        progress=progress,
        ties="against",
    )
    return summarize(university1652_per_query(result, ks), n_skipped=n_without_match(result))


def evaluate_pairs(
    query: object,
    gallery: object,
    *,
    query_coords: object | None = None,
    gallery_coords: object | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    thresholds_m: Sequence[float] = DEFAULT_THRESHOLDS_M,
    chunk_size: int | None = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
    device: str | torch.device | None = None,
    normalize: bool = False,
    progress: bool | None = None,
    per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """CVUSA/CVACT metrics in percent (query i matches gallery i; G >= Q for distractors).

    Returns ``R@1, R@5, R@10, R@1%`` and, when ``gallery_coords`` ([G, 2] metres) is given,
    ``top1_within_<t>m`` for each threshold and ``mean_dist_top{1,5,10,1%}_m`` in metres; also
    ``n_tied``, the number of queries whose true match scores exactly as another gallery item
    (the rank counts such ties in the query's favour; a ``UserWarning`` is raised when they are
    more than 1 % of the queries). ``per_query=True`` also returns the :func:`pairs_per_query`
    table with a first column ``rank`` (1-based rank of the true match), for intervals and
    paired comparisons.
    """
    ks = _check_ks(ks)
    query_t = as_features(query, "query features")
    gallery_t = as_features(gallery, "gallery features")
    n_queries, n_items = query_t.shape[0], gallery_t.shape[0]
    if n_queries > n_items:
        raise FeatureError(
            f"evaluate_pairs: {n_queries} queries but only {n_items} gallery items; query i "
            "must match gallery item i"
        )
    if gallery_coords is not None:
        _coords(gallery_coords, n_items, "gallery_coords")
    topk = max(max(ks), one_percent_k(n_items)) if gallery_coords is not None else 0
    result = rank_gallery(
        query_t,
        gallery_t,
        torch.arange(n_queries),
        torch.arange(n_items),
        topk=topk,
        chunk_size=chunk_size,
        max_chunk_mb=max_chunk_mb,
        device=device,
        normalize=normalize,
        progress=progress,
        ties="favour",
        count_ties=True,
    )
    table = pairs_per_query(
        result,
        ks=ks,
        query_coords=query_coords,
        gallery_coords=gallery_coords,
        thresholds_m=thresholds_m,
    )
    out = summarize(table)
    n_tied = int((result.n_tied > 0).sum()) if result.n_tied is not None else 0
    out["n_tied"] = n_tied
    if n_tied > TIE_WARN_FRACTION * n_queries:
        warnings.warn(
            f"evaluate_pairs: the true match of {n_tied} of {n_queries} queries "
            f"({100 * n_tied / n_queries:.1f} %) ties with another gallery item; ties count in the "
            "query's favour, so R@k overstates the model (collapsed or duplicated features?)",
            UserWarning,
            stacklevel=2,
        )
    if per_query:
        table.insert(0, "rank", result.first_rank.to(torch.float64).numpy() + 1)
        return out, table
    return out
