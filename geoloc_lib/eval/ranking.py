"""Chunked ranking core: the rank of every true match without sorting the gallery.

Similarity is the dot product of L2-normalised features, accumulated in fp32 on any device.
Queries are processed in chunks; a chunk holds one ``[chunk, G]`` score matrix, so the extra
memory is bounded by the chunk budget whatever the number of queries.

Rank and tie rules (used by every protocol and by the naive reference evaluator):

- Gallery items labelled ``-1`` are junk: they are removed from the ranking.
- The rank (0-based) of a true match is the number of non-junk gallery items placed before it
  in the order "score descending, then the tie rule". ``ties="favour"`` puts true matches before
  other items at equal score (the CVUSA/CVACT "strictly higher" convention): the i-th true match
  (best first) has rank ``i + #{non-junk, non-matching items scoring strictly higher}``.
  ``ties="against"`` puts them after (the University-1652 protocol here): rank
  ``i + #{non-junk, non-matching items scoring higher or equal}``, so a collapsed model (every
  gallery feature identical) ranks its true matches last instead of first.
- The top-k list uses the same order, with equal-score items of the same kind ordered by gallery
  index, so it is deterministic and consistent with the ranks (a true match of rank 0 is first).
- ``count_ties=True`` also counts, per query, the non-junk non-matching items whose score equals
  the best true match's (``RankResult.n_tied``), so a protocol can report how many queries a tie
  rule decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.runtime import resolve_progress

# Default budget for one chunk's score matrix and its temporaries. It bounds the extra memory
# independently of the gallery size: the number of queries per chunk is derived from it.
DEFAULT_CHUNK_MB = 512.0
# A row norm further than this from 1 means the caller forgot to L2-normalise (fp16 rounding
# of normalised features stays far below it).
NORM_TOLERANCE = 1e-2
# Rank reported for a query with no true match in the gallery: a miss at every cut-off k.
NO_MATCH = torch.iinfo(torch.int64).max
# How equal scores between a true match and another gallery item are ordered (module docstring).
TIES = ("favour", "against")


class FeatureError(ConfigError):
    """Features or labels passed to the evaluator are malformed (shape, dtype, NaN, length).

    A ``ValueError`` (through ``ConfigError``), so the CLI prints it without a traceback.
    """


@dataclass(frozen=True)
class RankResult:
    """What the ranking core yields for a set of queries.

    Attributes:
        good_ranks: ``[Q, M]`` int64, the 0-based ranks of each query's true matches among the
            non-junk gallery items, ascending; padded with ``-1`` (``M`` = most matches of any query).
        n_good: ``[Q]`` int64, number of true matches of each query in the gallery (may be 0).
        topk_indices: ``[Q, k]`` int64 gallery indices, best first (junk excluded).
        topk_scores: ``[Q, k]`` float32 similarities of those items.
        n_ranked: number of non-junk gallery items (the length of every ranking).
        n_tied: ``[Q]`` int64, non-junk non-matching items scoring exactly as the query's best true
            match (0 without a match); ``None`` unless ranked with ``count_ties=True``.
        ties: the tie rule the ranks were computed with (``"favour"`` or ``"against"``).
    """

    good_ranks: torch.Tensor
    n_good: torch.Tensor
    topk_indices: torch.Tensor
    topk_scores: torch.Tensor
    n_ranked: int
    n_tied: torch.Tensor | None = None
    ties: str = "favour"

    @property
    def first_rank(self) -> torch.Tensor:
        """``[Q]`` rank of each query's best true match; ``NO_MATCH`` (never < k) without one."""
        if self.good_ranks.shape[1] == 0:
            return torch.full_like(self.n_good, NO_MATCH)
        first = self.good_ranks[:, 0]
        return torch.where(self.n_good > 0, first, torch.full_like(first, NO_MATCH))

    @property
    def n_queries(self) -> int:
        return int(self.n_good.shape[0])


# ----------------------------------------------------------------------------- validation


def as_features(x: object, name: str) -> torch.Tensor:
    """Check a ``[N, D]`` floating feature matrix (tensor or array) and return it as a tensor."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise FeatureError(f"{name}: expected floating-point features, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise FeatureError(
            f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise FeatureError(f"{name}: expected floating-point features, got dtype {x.dtype}")
    if x.dim() != 2:
        raise FeatureError(f"{name}: expected a 2-D [N, D] matrix, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise FeatureError(f"{name}: is empty (0 rows); nothing to rank")
    if x.shape[1] == 0:
        raise FeatureError(f"{name}: has feature dimension 0")
    # A NaN/Inf entry makes its row norm non-finite: one cheap pass instead of isfinite(x).
    bad = torch.nonzero(~torch.isfinite(_row_norms(x))).flatten()
    if bad.numel():
        row = int(bad[0])
        what = "contain NaN or Inf" if not bool(torch.isfinite(x[row]).all()) else "overflow"
        raise FeatureError(
            f"{name}: {bad.numel()} row(s) {what} (first: row {row}); "
            "check the model output or the feature file"
        )
    return x


def as_labels(x: object, n: int, name: str) -> torch.Tensor:
    """Check a 1-D integer label vector of length ``n``; return it as an int64 CPU tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
        ):
            raise FeatureError(f"{name}: expected integer labels, got dtype {arr.dtype}")
        t = torch.from_numpy(arr.astype(np.int64, copy=False))
    if t.is_floating_point() or t.is_complex():
        raise FeatureError(f"{name}: expected integer labels, got dtype {t.dtype}")
    if t.dim() != 1:
        raise FeatureError(f"{name}: expected a 1-D label vector, got shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise FeatureError(f"{name}: has {t.shape[0]} labels but there are {n} feature rows")
    return t.to(torch.int64)


def _row_norms(x: torch.Tensor, block: int = 65536) -> torch.Tensor:
    # Blocked so that fp16/bf16 input is never copied to fp32 all at once.
    return torch.cat([x[i : i + block].float().norm(dim=1) for i in range(0, x.shape[0], block)])


def check_normalised(x: torch.Tensor, name: str) -> None:
    """Raise unless every row of ``x`` has unit L2 norm (within ``NORM_TOLERANCE``)."""
    norms = _row_norms(x)
    off = (norms - 1.0).abs() > NORM_TOLERANCE
    if bool(off.any()):
        row = int(torch.nonzero(off).flatten()[0])
        raise FeatureError(
            f"{name}: features are not L2-normalised (row {row} has norm {float(norms[row]):.4g}); "
            "normalise them or pass normalize=True"
        )


def _prepare(x: torch.Tensor, name: str, normalize: bool, device: torch.device) -> torch.Tensor:
    """fp32 copy on ``device``, normalised if asked (fp32 accumulation even for fp16 input)."""
    if normalize:
        norms = _row_norms(x)
        if bool((norms == 0).any()):
            row = int(torch.nonzero(norms == 0).flatten()[0])
            raise FeatureError(f"{name}: row {row} is all zeros and cannot be L2-normalised")
        return torch.nn.functional.normalize(x.to(device=device, dtype=torch.float32), dim=1)
    check_normalised(x, name)
    return x.to(device=device, dtype=torch.float32)


def resolve_device(device: str | torch.device | None, reference: torch.Tensor) -> torch.device:
    """``None`` means the gallery's device."""
    return reference.device if device is None else torch.device(device)


def auto_chunk_size(
    n_gallery: int, multi_match: bool, max_chunk_mb: float = DEFAULT_CHUNK_MB
) -> int:
    """Queries per chunk so that one chunk's score matrix and temporaries fit ``max_chunk_mb``."""
    # fp32 scores + a bool comparison mask; many-match queries add an int64 bucket index.
    bytes_per_entry = 4 + 1 + (8 if multi_match else 0)
    return max(1, int(max_chunk_mb * 2**20 // (bytes_per_entry * max(n_gallery, 1))))


# ----------------------------------------------------------------------------- label tables


def _match_table(query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
    """``[Q, M]`` gallery indices of each query's true matches (ascending), ``-1`` padded."""
    if bool((query_labels < 0).any()):
        row = int(torch.nonzero(query_labels < 0).flatten()[0])
        raise FeatureError(
            f"query_labels: label {int(query_labels[row])} at row {row} is negative; only gallery "
            "items may carry the junk label -1"
        )
    keep = torch.nonzero(gallery_labels >= 0).flatten()
    labels = gallery_labels[keep]
    order = torch.argsort(labels, stable=True)
    members, labels = keep[order], labels[order]
    uniq, counts = torch.unique_consecutive(labels, return_counts=True)
    n_queries = query_labels.shape[0]
    if uniq.numel() == 0:
        return torch.full((n_queries, 0), -1, dtype=torch.int64)
    width = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    group = torch.repeat_interleave(torch.arange(uniq.numel()), counts)
    slot = torch.arange(labels.numel()) - starts[group]
    table = torch.full((uniq.numel(), width), -1, dtype=torch.int64)
    table[group, slot] = members
    pos = torch.searchsorted(uniq, query_labels).clamp(max=uniq.numel() - 1)
    found = uniq[pos] == query_labels
    return torch.where(found[:, None], table[pos], torch.full((1, width), -1, dtype=torch.int64))


# ----------------------------------------------------------------------------- per-chunk ops


_COMPARE = {"greater": (np.greater, torch.gt), "greater_equal": (np.greater_equal, torch.ge)}


def _count_compare(
    scores: torch.Tensor, threshold: torch.Tensor, mask_buf: np.ndarray | None, op: str
) -> torch.Tensor:
    """``[c]`` number of entries of each row of ``scores`` above (``op``) ``threshold[c, 1]``."""
    np_op, torch_op = _COMPARE[op]
    if scores.device.type == "cpu" and mask_buf is not None:
        # numpy's SIMD count_nonzero is ~4x faster than torch's bool sum on CPU.
        mask = mask_buf[: scores.shape[0]]
        np_op(scores.numpy(), threshold.numpy(), out=mask)
        return torch.from_numpy(np.count_nonzero(mask, axis=1).astype(np.int64))
    return torch_op(scores, threshold).sum(dim=1)


def _ranks_single(
    scores: torch.Tensor, good_idx: torch.Tensor, mask_buf: np.ndarray | None, ties: str
) -> torch.Tensor:
    """Ranks for at most one true match per query: the count of items scoring strictly higher
    (``favour``), or higher or equal less the match itself (``against``)."""
    has = good_idx >= 0
    good_scores = scores.gather(1, good_idx.clamp(min=0))
    if ties == "favour":
        count = _count_compare(scores, good_scores, mask_buf, "greater")
    else:
        count = _count_compare(scores, good_scores, mask_buf, "greater_equal") - 1
    count = count.to(scores.device)
    return torch.where(has[:, 0], count, torch.full_like(count, -1))[:, None]


def _count_tied(
    scores: torch.Tensor, good_idx: torch.Tensor, mask_buf: np.ndarray | None
) -> torch.Tensor:
    """``[c]`` non-matching items scoring exactly as each query's best true match (0 if none)."""
    has = good_idx >= 0
    n_good = has.sum(dim=1)
    if good_idx.shape[1] == 0:
        return torch.zeros(scores.shape[0], dtype=torch.int64)
    good_scores = scores.gather(1, good_idx.clamp(min=0)).masked_fill(~has, -math.inf)
    best = good_scores.max(dim=1, keepdim=True).values
    ge = _count_compare(scores, best, mask_buf, "greater_equal").to(scores.device)
    gt = _count_compare(scores, best, mask_buf, "greater").to(scores.device)
    goods_at_best = ((good_scores == best) & has).sum(dim=1)
    tied = ge - gt - goods_at_best
    return torch.where(n_good > 0, tied, torch.zeros_like(tied)).cpu()


def _ranks_multi(scores: torch.Tensor, good_idx: torch.Tensor, ties: str) -> torch.Tensor:
    """Ranks of many true matches per query with one bucketing pass (no sort of the gallery).

    The true matches' scores are sorted (a tiny ``[c, M]`` sort); ``searchsorted`` puts every
    gallery score in a bucket between them, and a suffix sum of the bucket histogram gives, for
    each true match, how many non-junk items score strictly higher (``favour``) or higher or
    equal (``against``).
    """
    n_rows, width = good_idx.shape
    has = good_idx >= 0
    n_good = has.sum(dim=1)
    good_scores = scores.gather(1, good_idx.clamp(min=0))
    # Padding sorts last and, being +inf, is never below a gallery score.
    good_scores = good_scores.masked_fill(~has, math.inf)
    asc, _ = torch.sort(good_scores, dim=1)
    # favour: bucket[x] = number of true-match scores strictly below x; against: at or below x.
    # Junk (-inf) lands in bucket 0 either way.
    against = ties == "against"
    bucket = torch.searchsorted(asc, scores, right=against)
    ones = torch.ones(1, dtype=torch.int64, device=scores.device).expand_as(bucket)
    hist = torch.zeros(n_rows, width + 1, dtype=torch.int64, device=scores.device)
    hist.scatter_add_(1, bucket, ones)
    del bucket
    # above[j] = #items with score > asc[j] (favour) or >= asc[j] (against): buckets j+1..M.
    above = hist.flip(1).cumsum(1).flip(1)[:, 1:]
    good_above = n_good[:, None] - torch.searchsorted(asc, asc, right=not against)
    slot = torch.arange(width, device=scores.device)
    position = n_good[:, None] - 1 - slot  # place of asc[j] among the true matches, best first
    ranks = position + above - good_above
    valid = slot[None, :] < n_good[:, None]
    ranks = torch.where(valid, ranks, torch.full_like(ranks, torch.iinfo(torch.int64).max))
    ranks, _ = torch.sort(ranks, dim=1)
    return torch.where(ranks == torch.iinfo(torch.int64).max, torch.full_like(ranks, -1), ranks)


def _order_items(
    scores: torch.Tensor, indices: torch.Tensor, is_good: torch.Tensor, ties: str = "favour"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by (score desc, true match first/last per ``ties``, gallery index asc)."""
    perm = torch.argsort(indices, dim=1, stable=True)
    good_key = is_good.to(torch.uint8).gather(1, perm)
    perm = perm.gather(1, torch.argsort(good_key, dim=1, descending=ties == "favour", stable=True))
    score_key = scores.gather(1, perm)
    perm = perm.gather(1, torch.argsort(score_key, dim=1, descending=True, stable=True))
    return scores.gather(1, perm), indices.gather(1, perm)


def _is_match(
    indices: torch.Tensor, q_labels: torch.Tensor | None, g_labels: torch.Tensor | None
) -> torch.Tensor:
    if q_labels is None or g_labels is None:
        return torch.zeros_like(indices, dtype=torch.bool)
    return g_labels[indices] == q_labels[:, None]


def _topk_chunk(
    scores: torch.Tensor,
    k: int,
    n_ranked: int,
    q_labels: torch.Tensor | None,
    g_labels: torch.Tensor | None,
    ties: str = "favour",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic top-k of a chunk under the module's tie rule, without a full sort."""
    probe = min(k + 1, n_ranked)  # one extra item tells whether a tie straddles the cut
    vals, idx = torch.topk(scores, probe, dim=1)
    vals_k, idx_k = _order_items(
        vals[:, :k], idx[:, :k], _is_match(idx[:, :k], q_labels, g_labels), ties
    )
    if probe > k:
        straddle = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
        if straddle.numel() > 0:
            # Rare (exact duplicate scores at the cut): order those rows completely.
            sub = scores[straddle]
            all_idx = torch.arange(sub.shape[1], device=scores.device).expand_as(sub)
            sub_labels = None if q_labels is None else q_labels[straddle]
            sv, si = _order_items(sub, all_idx, _is_match(all_idx, sub_labels, g_labels), ties)
            vals_k[straddle], idx_k[straddle] = sv[:, :k], si[:, :k]
    return vals_k, idx_k


# ----------------------------------------------------------------------------- the core


def rank_gallery(
    query: object,
    gallery: object,
    query_labels: object | None = None,
    gallery_labels: object | None = None,
    *,
    topk: int = 10,
    chunk_size: int | None = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
    device: str | torch.device | None = None,
    normalize: bool = False,
    progress: bool | None = None,
    ties: str = "favour",
    count_ties: bool = False,
) -> RankResult:
    """Rank the gallery for every query in chunks and return the ranks of the true matches.

    Args:
        query: ``[Q, D]`` features (tensor or array; fp16/bf16/fp32/fp64, scored in fp32).
        gallery: ``[G, D]`` features. Both must be L2-normalised unless ``normalize=True``.
        query_labels: ``[Q]`` non-negative ints; ``None`` (with ``gallery_labels=None``) skips the
            ranks and computes only the top-k lists (e.g. for a challenge submission).
        gallery_labels: ``[G]`` ints; an item is a true match of a query with the same label,
            ``-1`` marks junk (removed from the ranking and the top-k).
        topk: length of the returned top-k lists (clamped to the number of non-junk items);
            0 skips them (metrics that need only ranks).
        chunk_size: queries per chunk; ``None`` derives it from ``max_chunk_mb``.
        max_chunk_mb: memory budget of one chunk's score matrix and temporaries.
        device: where to compute; ``None`` uses the gallery's device.
        normalize: L2-normalise the features (in fp32) instead of requiring normalised input.
        progress: a tqdm bar over chunks; None: off unless ``GEOLOC_PROGRESS=1``.
        ties: ``"favour"`` (true matches first at equal score) or ``"against"`` (last); see
            the module docstring.
        count_ties: also fill ``RankResult.n_tied`` (two more comparison passes per chunk).
    """
    if ties not in TIES:
        raise FeatureError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")
    query = as_features(query, "query features")
    gallery = as_features(gallery, "gallery features")
    if query.shape[1] != gallery.shape[1]:
        raise FeatureError(
            f"feature dimensions differ: query features are {query.shape[1]}-d, gallery features "
            f"are {gallery.shape[1]}-d; both must come from the same model head"
        )
    if (query_labels is None) != (gallery_labels is None):
        raise FeatureError("pass both query_labels and gallery_labels, or neither")
    if not isinstance(topk, int) or topk < 0:
        raise FeatureError(f"topk must be a non-negative integer, got {topk!r}")
    n_queries, n_items = query.shape[0], gallery.shape[0]
    dev = resolve_device(device, gallery)

    if query_labels is not None:
        q_lab = as_labels(query_labels, n_queries, "query_labels")
        g_lab = as_labels(gallery_labels, n_items, "gallery_labels")
        table = _match_table(q_lab, g_lab)
    else:
        q_lab = g_lab = None
        table = torch.full((n_queries, 0), -1, dtype=torch.int64)
    junk = (
        torch.nonzero(g_lab < 0).flatten()
        if g_lab is not None
        else torch.zeros(0, dtype=torch.long)
    )
    n_ranked = n_items - junk.numel()
    if n_ranked == 0:
        raise FeatureError("gallery_labels: every gallery item is junk (-1); nothing to rank")
    width = table.shape[1]
    k = min(topk, n_ranked)
    if chunk_size is None:
        chunk_size = auto_chunk_size(n_items, width > 1, max_chunk_mb)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise FeatureError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = min(chunk_size, n_queries)

    gal = _prepare(gallery, "gallery features", normalize, dev)
    if not normalize:
        check_normalised(query, "query features")
    junk_dev = junk.to(dev)
    q_lab_dev = None if q_lab is None else q_lab.to(dev)
    g_lab_dev = None if g_lab is None else g_lab.to(dev)

    good_ranks = torch.full((n_queries, width), -1, dtype=torch.int64)
    n_tied = torch.zeros(n_queries, dtype=torch.int64) if count_ties else None
    top_idx = torch.empty((n_queries, k), dtype=torch.int64)
    top_val = torch.empty((n_queries, k), dtype=torch.float32)
    # Reused buffers: re-allocating a [chunk, G] matrix per chunk costs page faults on CPU.
    score_buf = torch.empty((chunk_size, n_items), dtype=torch.float32, device=dev)
    mask_buf = np.empty((chunk_size, n_items), dtype=np.bool_) if dev.type == "cpu" else None

    starts = range(0, n_queries, chunk_size)
    show = resolve_progress(progress)
    bar = tqdm(starts, desc="ranking", unit="chunk", disable=not show, leave=False)
    with torch.inference_mode():
        for start in bar:
            stop = min(start + chunk_size, n_queries)
            q = query[start:stop].to(device=dev, dtype=torch.float32)
            if normalize:
                q = torch.nn.functional.normalize(q, dim=1)
            scores = score_buf[: stop - start]
            torch.mm(q, gal.T, out=scores)
            if junk_dev.numel():
                scores.index_fill_(1, junk_dev, -math.inf)
            good_idx = table[start:stop].to(dev)
            if width == 1:
                ranks = _ranks_single(scores, good_idx, mask_buf, ties)
            elif width > 1:
                ranks = _ranks_multi(scores, good_idx, ties)
            else:
                ranks = None
            if ranks is not None:
                good_ranks[start:stop] = ranks.cpu()
            if n_tied is not None and width > 0:
                n_tied[start:stop] = _count_tied(scores, good_idx, mask_buf)
            if k > 0:
                ql = None if q_lab_dev is None else q_lab_dev[start:stop]
                vals, idx = _topk_chunk(scores, k, n_ranked, ql, g_lab_dev, ties)
                top_val[start:stop], top_idx[start:stop] = vals.cpu(), idx.cpu()
    return RankResult(
        good_ranks=good_ranks,
        n_good=(table >= 0).sum(dim=1),
        topk_indices=top_idx,
        topk_scores=top_val,
        n_ranked=n_ranked,
        n_tied=n_tied,
        ties=ties,
    )
