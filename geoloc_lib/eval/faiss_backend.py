"""Optional faiss backend for galleries too large for the in-memory core (city/country scale).

``faiss`` is imported lazily; without it every function here raises a :class:`ConfigError`
saying how to install it, and the rest of ``geoloc_lib.eval`` works unchanged.

- ``"Flat"`` (exact inner product) gives the same top-k as :func:`rank_gallery` (up to the
  order of exactly tied scores, which faiss does not define).
- ``"IVF<nlist>,Flat"`` / ``"IVF<nlist>,PQ<m>"`` are approximate; :func:`topk_overlap` measures
  their recall against exact search (``geoloc bench eval --faiss`` prints it).

A gallery is added in blocks, so a ``numpy.memmap`` larger than RAM can be indexed with a
compressed index (PQ). Retrieval metrics then come from the top-k lists: ranks beyond k are
unknown, so only Recall@k' for k' <= k is available (:func:`first_match_position`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.eval.ranking import NORM_TOLERANCE, FeatureError, as_labels

INSTALL_HINT = "pip install faiss-cpu (or pip install -e .[faiss])"


def faiss_available() -> bool:
    """Whether ``import faiss`` works in this environment."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise ConfigError(f"the faiss backend needs the faiss package: {INSTALL_HINT}") from err
    return faiss


def faiss_ivf(index: Any) -> Any:
    """The IVF part of an index (to set ``nprobe``), or ``None`` for a non-IVF index."""
    return _faiss().try_extract_index_ivf(index)


def _float32_block(block: object, name: str, start: int) -> np.ndarray:
    """A contiguous fp32 block, checked for finiteness and unit norm (rows named globally)."""
    arr = block.detach().cpu().float().numpy() if isinstance(block, torch.Tensor) else block
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise FeatureError(f"{name}: expected a non-empty [N, D] matrix, got shape {arr.shape}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = start + int(np.flatnonzero(~finite)[0])
        raise FeatureError(f"{name}: row {row} contains NaN or Inf")
    norms = np.linalg.norm(arr, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise FeatureError(
            f"{name}: features are not L2-normalised (row {start + row} has norm "
            f"{norms[row]:.4g}); normalise them before indexing"
        )
    return arr


def build_index(
    gallery: np.ndarray | torch.Tensor,
    spec: str = "Flat",
    *,
    nprobe: int | None = None,
    train_size: int | None = None,
    seed: int = 0,
    block: int = 65536,
    progress: bool | None = None,
) -> Any:
    """Build an inner-product faiss index over L2-normalised gallery features.

    Args:
        gallery: ``[G, D]`` features; may be a ``numpy.memmap`` (read block by block).
        spec: a faiss ``index_factory`` string: ``"Flat"`` (exact), ``"IVF1024,Flat"``, ...
        nprobe: lists visited per query for IVF indexes (faiss's default is 1).
        train_size: rows used to train an IVF index (default ``min(G, 64 * nlist)``), drawn
            with ``seed`` so the index is reproducible.
        block: rows added per call (bounds the fp32 copy of a memmap'd gallery).
    """
    faiss = _faiss()
    n_items = len(gallery)
    if n_items == 0:
        raise FeatureError("gallery features: is empty (0 rows); nothing to index")
    dim = int(gallery.shape[1])
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ConfigError(f"faiss index spec {spec!r} is invalid: {err}") from err
    ivf = faiss.try_extract_index_ivf(index)
    if not index.is_trained:
        default = 64 * ivf.nlist if ivf is not None else 100_000
        size = min(n_items, train_size or default)
        rows = np.sort(np.random.default_rng(seed).choice(n_items, size=size, replace=False))
        index.train(_float32_block(np.asarray(gallery[rows]), "gallery features", 0))
    show = resolve_progress(progress)
    for start in tqdm(range(0, n_items, block), desc="indexing", disable=not show, leave=False):
        index.add(_float32_block(gallery[start : start + block], "gallery features", start))
    if nprobe is not None:
        if ivf is None:
            raise ConfigError(f"nprobe applies to IVF indexes only, not {spec!r}")
        ivf.nprobe = int(nprobe)
    return index


def faiss_topk(
    index: Any,
    query: np.ndarray | torch.Tensor,
    k: int = 10,
    *,
    chunk_size: int = 4096,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[Q, k]`` fp32 scores and int64 gallery indices, best first (``-1`` where IVF finds fewer)."""
    _faiss()
    if len(query) == 0:
        raise FeatureError("query features: is empty (0 rows); nothing to search")
    if int(query.shape[1]) != index.d:
        raise FeatureError(
            f"feature dimensions differ: query features are {query.shape[1]}-d, the index is "
            f"{index.d}-d"
        )
    scores, indices = [], []
    starts = range(0, len(query), chunk_size)
    show = resolve_progress(progress)
    for start in tqdm(starts, desc="faiss search", disable=not show, leave=False):
        q = _float32_block(query[start : start + chunk_size], "query features", start)
        s, i = index.search(q, k)
        scores.append(torch.from_numpy(s))
        indices.append(torch.from_numpy(i.astype(np.int64)))
    return torch.cat(scores), torch.cat(indices)


def first_match_position(
    topk_indices: torch.Tensor,
    query_labels: Sequence[int] | np.ndarray | torch.Tensor,
    gallery_labels: Sequence[int] | np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """``[Q]`` rank of each query's first true match inside its top-k list, junk (-1) skipped.

    ``k`` (the list length) means "not in the list", so ``first < k'`` is the hit of Recall@k'
    for any k' up to the number of non-junk items in the list (k without junk).
    """
    n_queries, k = topk_indices.shape
    q_lab = as_labels(query_labels, n_queries, "query_labels")
    g_lab = as_labels(gallery_labels, len(gallery_labels), "gallery_labels")
    found = topk_indices >= 0
    item_labels = torch.where(
        found, g_lab[topk_indices.clamp(min=0)], torch.full_like(q_lab[:1], -2)
    )
    junk = item_labels == -1
    good = found & (item_labels == q_lab[:, None])
    # Position among non-junk items = number of non-junk items listed before it.
    position = torch.cumsum((~junk).to(torch.int64), dim=1) - (~junk).to(torch.int64)
    position = torch.where(good, position, torch.full_like(position, k))
    return position.min(dim=1).values


def topk_overlap(approx_indices: torch.Tensor, exact_indices: torch.Tensor) -> float:
    """Recall of an approximate top-k against exact search: mean fraction of exact items found."""
    if approx_indices.shape != exact_indices.shape:
        raise FeatureError(
            f"top-k shapes differ: {tuple(approx_indices.shape)} vs {tuple(exact_indices.shape)}"
        )
    hit = (approx_indices[:, :, None] == exact_indices[:, None, :]).any(dim=1)
    return float(hit.to(torch.float64).mean())
