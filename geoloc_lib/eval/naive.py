"""The straightforward reference evaluator: one query at a time, full sort of the gallery.

This is how the field's public evaluators work (a matrix-vector product per query, a full argsort,
then masks). It is deliberately independent of the chunked core (own ordering, own metric
formulas) so that tests and ``geoloc bench eval`` can check the core against it. It applies the
same tie rules as :mod:`geoloc_lib.eval.ranking`: score descending, true matches first
(``ties="favour"``, CVUSA/CVACT) or last (``"against"``, University-1652) at equal score, then
gallery index; junk (label -1) removed; a University-1652 query without a true match counts as
a miss (means over all queries, as the official evaluation). Scores are fp32 dot products of the
features as given (pass L2-normalised features). Slow by design: use it on small sets only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm


def naive_rank(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    query_labels: Sequence[int] | np.ndarray | None,
    gallery_labels: Sequence[int] | np.ndarray | None,
    *,
    topk: int = 10,
    progress: bool = False,
    ties: str = "favour",
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per query: ranks of its true matches (ascending) and its top-k gallery indices."""
    q = torch.as_tensor(query).float().cpu()
    g = torch.as_tensor(gallery).float().cpu()
    n_items = g.shape[0]
    if query_labels is None:
        ql = np.zeros(q.shape[0], dtype=np.int64)
        gl = np.full(n_items, -2, dtype=np.int64)  # nothing matches, nothing is junk
    else:
        ql = np.asarray(query_labels, dtype=np.int64)
        gl = np.asarray(gallery_labels, dtype=np.int64)
    not_junk = gl != -1
    k = min(topk, int(not_junk.sum()))
    ranks: list[np.ndarray] = []
    top = np.empty((q.shape[0], k), dtype=np.int64)
    for i in tqdm(range(q.shape[0]), desc="naive", disable=not progress, leave=False):
        score = torch.mv(g, q[i]).numpy()
        good = gl == ql[i]
        # lexsort: last key is primary; it is stable, so equal keys keep gallery-index order.
        order = np.lexsort((~good if ties == "favour" else good, -score))
        order = order[not_junk[order]]
        ranks.append(np.flatnonzero(good[order]))
        top[i] = order[:k]
    return ranks, top


def naive_evaluate_university1652(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    query_labels: Sequence[int] | np.ndarray,
    gallery_labels: Sequence[int] | np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10),
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K (CMC) and trapezoid AP in percent, Market-1501 style, one query at a time."""
    ranks, _ = naive_rank(
        query, gallery, query_labels, gallery_labels, topk=1, progress=progress, ties="against"
    )
    return naive_university1652_metrics(ranks, ks)


def naive_university1652_metrics(
    ranks: Sequence[np.ndarray], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """CMC and trapezoid AP (percent) from per-query rank lists, one query at a time.

    A query without a true match adds nothing to the sums but counts in the denominator (a
    miss), as the official evaluation computes the means."""
    n_queries = len(ranks)
    hits = dict.fromkeys(ks, 0)
    ap_total = 0.0
    for good_ranks in ranks:
        if len(good_ranks) == 0:
            continue  # no true match in the gallery: a miss
        for k in ks:
            hits[k] += int(good_ranks[0] < k)
        ap = 0.0
        n_good = len(good_ranks)
        for i, r in enumerate(good_ranks):
            precision = (i + 1) / (r + 1)
            old_precision = i / r if r != 0 else 1.0
            ap += (old_precision + precision) / 2 / n_good
        ap_total += ap
    denom = n_queries if n_queries else float("nan")
    out = {f"R@{k}": 100.0 * hits[k] / denom for k in ks}
    out["AP"] = 100.0 * ap_total / denom
    return out


def naive_evaluate_pairs(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    *,
    query_coords: np.ndarray | None = None,
    gallery_coords: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    thresholds_m: Sequence[float] = (0, 36, 72, 144),
    progress: bool = False,
) -> dict[str, float]:
    """CVUSA/CVACT recall (query i matches gallery i) and meter-level metrics, per query."""
    n_queries, n_items = len(query), len(gallery)
    one_percent = max(1, n_items // 100)
    use_coords = gallery_coords is not None
    width = max(max(ks), one_percent) if use_coords else 1
    ranks, top = naive_rank(
        query, gallery, np.arange(n_queries), np.arange(n_items), topk=width, progress=progress
    )
    cut_offs = {f"R@{k}": k for k in ks} | {"R@1%": one_percent}
    out = {
        name: 100.0 * sum(int(r[0] < k) for r in ranks) / n_queries for name, k in cut_offs.items()
    }
    if use_coords:
        gc = np.asarray(gallery_coords, dtype=np.float64)
        qc = gc[:n_queries] if query_coords is None else np.asarray(query_coords, dtype=np.float64)
        for t in thresholds_m:
            hits = 0
            for i in range(n_queries):
                dist = np.sqrt(((gc[top[i, 0]] - qc[i]) ** 2).sum())
                own_tile = top[i, 0] == i  # 0 m: the index match
                hits += int(own_tile or (t > 0 and dist <= t))
            out[f"top1_within_{t:g}m"] = 100.0 * hits / n_queries
        for label, k in (("1", 1), ("5", 5), ("10", 10), ("1%", one_percent)):
            k = min(k, top.shape[1])
            total = 0.0
            for i in range(n_queries):
                total += float(np.sqrt(((gc[top[i, :k]] - qc[i]) ** 2).sum(axis=1)).mean())
            out[f"mean_dist_top{label}_m"] = total / n_queries
    return out
