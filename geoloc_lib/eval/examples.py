"""Retrieval examples for the top-k figures: a seeded uniform draw of queries, not hand-picked.

:func:`drone_examples` (drone -> satellite under a weather condition) and :func:`street_examples`
(street -> aerial) draw ``n_queries`` queries uniformly at random (seeded) from the evaluated set,
rank the gallery for them with the evaluation core (:func:`geoloc_lib.eval.rank_gallery`: the
metrics' order, junk excluded) and return :class:`RetrievalExamples`: each query's top-k gallery
items, scores and hit flags, and the draw's top-1 hit rate beside the set's R@1 (when given), so
a reader sees whether the draw is representative. Hits and misses then appear in the proportion
the model produces them. :mod:`geoloc_lib.viz.retrieval` only draws these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.types import ImageSet, PairSet
from geoloc_lib.eval.features import extract_features
from geoloc_lib.eval.ranking import NO_MATCH, rank_gallery

DEFAULT_EXAMPLES = 8


@dataclass(frozen=True)
class TopMatches:
    """The top-k gallery items of some queries, best first."""

    indices: torch.Tensor  # [Q, k] gallery rows
    scores: torch.Tensor  # [Q, k] cosine similarities
    is_match: torch.Tensor  # [Q, k] bool: the item carries the query's label
    true_rank: torch.Tensor  # [Q] 0-based rank of the best true match (NO_MATCH if none)

    def rank_labels(self) -> list[str]:
        """``"true match #r"`` (1-based) per query, or ``"no true match"``."""
        return [
            "no true match" if r == NO_MATCH else f"true match #{r + 1}"
            for r in self.true_rank.tolist()
        ]


def pick_queries(n_total: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct query rows out of ``n_total`` (sorted), a uniform draw with ``seed``."""
    if n < 1 or n_total < 1:
        raise ConfigError(f"pick_queries: need n >= 1 queries out of >= 1, got {n} of {n_total}")
    return np.sort(np.random.default_rng(seed).choice(n_total, min(n, n_total), replace=False))


def top_matches(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_labels: object,
    gallery_labels: object,
    k: int = 5,
) -> TopMatches:
    """Top-``k`` gallery items per query (junk label -1 excluded) and which are true matches."""
    if k < 1:
        raise ConfigError(f"top_matches: k must be >= 1, got {k}")
    q_lab = torch.as_tensor(np.asarray(query_labels), dtype=torch.int64)
    g_lab = torch.as_tensor(np.asarray(gallery_labels), dtype=torch.int64)
    res = rank_gallery(query_features, gallery_features, q_lab, g_lab, topk=k, progress=False)
    is_match = g_lab[res.topk_indices] == q_lab[:, None]
    return TopMatches(res.topk_indices, res.topk_scores, is_match, res.first_rank)


@dataclass(frozen=True)
class RetrievalExamples:
    """Drawn queries with their top-k gallery items: what a top-k figure shows."""

    query_images: list[torch.Tensor]  # [3, H, W] in [0, 1], as the model saw them
    query_titles: list[str]
    gallery_paths: list[list[str]]  # per query, its top-k items, best first
    scores: np.ndarray  # [n, k] cosine similarities
    is_match: np.ndarray  # [n, k] bool
    true_rank: np.ndarray  # [n] 1-based rank of the best true match (0: none in the gallery)
    n_set: int  # size of the set the queries were drawn from
    set_recall: float | None  # that set's R@1 (percent) from the evaluation, if given

    @property
    def hit_rate(self) -> float:
        """Top-1 hits among the drawn queries, in percent (the draw's R@1)."""
        return 100.0 * float(self.is_match[:, 0].mean()) if len(self.is_match) else 0.0

    def summary(self) -> str:
        """One line: the draw's hits beside the set's R@1."""
        n, hits = len(self.is_match), int(self.is_match[:, 0].sum())
        text = f"top-1 hits in a uniform draw of {n}: {hits}/{n} ({self.hit_rate:.1f} %)"
        if self.set_recall is not None:
            text += f"; R@1 of all {self.n_set} queries: {self.set_recall:.1f} %"
        return text


def _check_recall(set_recall: float | None) -> float | None:
    if set_recall is None:
        return None
    value = float(set_recall)
    if not 0.0 <= value <= 100.0:
        raise ConfigError(f"set_recall must be the set's R@1 in percent (0-100), got {set_recall}")
    return value


@torch.inference_mode()
def _embed(model: nn.Module, images: torch.Tensor, view: str, device: str) -> torch.Tensor:
    model.eval().to(device)
    return model.embed(images.to(device), view).float().cpu()


def _records(
    top: TopMatches,
    images: list[torch.Tensor],
    titles: list[str],
    paths: list[str | Path],
    n_set: int,
    set_recall: float | None,
) -> RetrievalExamples:
    rank = top.true_rank.numpy()
    return RetrievalExamples(
        query_images=images,
        query_titles=[f"{t} · {r}" for t, r in zip(titles, top.rank_labels(), strict=True)],
        gallery_paths=[[str(paths[j]) for j in row] for row in top.indices.tolist()],
        scores=top.scores.numpy(),
        is_match=top.is_match.numpy(),
        true_rank=np.where(rank == NO_MATCH, 0, rank + 1),
        n_set=n_set,
        set_recall=set_recall,
    )


def drone_examples(
    model: nn.Module,
    query: ImageSet,
    gallery: ImageSet,
    condition: str = "normal",
    *,
    n_queries: int = DEFAULT_EXAMPLES,
    k: int = 5,
    seed: int = 0,
    weather_seed: int | None = None,
    set_recall: float | None = None,
    img_size: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> RetrievalExamples:
    """Top-``k`` satellite tiles of ``n_queries`` drone queries drawn uniformly (``seed``) from
    ``query`` under ``condition`` (``"mixed"`` too).

    Pass the evaluated query set (``eval_queries(query, max_queries)``) and its R@1 under the
    condition as ``set_recall``: the queries are weathered exactly as
    :func:`geoloc_lib.eval.university.evaluate_mcgf` weathers that set (per-image keys from the
    row in ``query``), and kept at the model's input size, as the model saw them.
    """
    from geoloc_lib.data.university_torch import eval_loader, to_tensor
    from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, MIXED, eval_weather
    from geoloc_lib.weather.synth import CONDITIONS

    set_recall = _check_recall(set_recall)
    size = img_size or model.input_size("drone")[0]
    picks = pick_queries(len(query), n_queries, seed)
    images = torch.stack([to_tensor(query.paths[i], size) for i in picks])
    wseed = EVAL_WEATHER_SEED if weather_seed is None else weather_seed
    index = torch.as_tensor(picks, dtype=torch.int64)
    batch = eval_weather(condition, seed=wseed)({"image": images, "index": index})
    if condition == MIXED:  # name each query's own condition
        shown = [CONDITIONS[c] for c in batch["condition"].tolist()]
    else:
        shown = [condition] * len(picks)
    qf = _embed(model, batch["image"], "drone", device)
    gf, gl = extract_features(
        model, eval_loader(gallery, size, batch_size), "satellite", device=device, progress=False
    )
    top = top_matches(qf, gf, query.labels[picks], gl, k)
    titles = [f"{query.names[i]} · {c}" for i, c in zip(picks, shown, strict=True)]
    images_shown = [im.float().clamp(0, 1) for im in batch["image"]]
    return _records(top, images_shown, titles, gallery.paths, len(query), set_recall)


def street_examples(
    model: nn.Module,
    pairs: PairSet,
    *,
    n_queries: int = DEFAULT_EXAMPLES,
    k: int = 5,
    seed: int = 0,
    set_recall: float | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> RetrievalExamples:
    """Top-``k`` aerial tiles of ``n_queries`` street panoramas drawn uniformly (``seed``) from
    ``pairs`` (pair i matches tile i); ``set_recall``: the R@1 of ``pairs`` from the evaluation.

    Input sizes come from ``model.input_size(view)``; the panorama is kept with the model's
    preprocessing (CVACT: middle half of the rows) at a readable size.
    """
    from geoloc_lib.data.street_torch import StreetPairDataset, ViewDataset, load_ground

    set_recall = _check_recall(set_recall)
    ground_size = model.input_size("ground")
    ds = StreetPairDataset(pairs, ground_size, model.input_size("aerial"))
    picks = pick_queries(len(pairs), n_queries, seed)
    ground = torch.stack([ds[int(i)]["ground"] for i in picks])
    qf = _embed(model, ground, "ground", device)
    loader = DataLoader(ViewDataset(ds, "aerial"), batch_size=batch_size, shuffle=False)
    gf, _ = extract_features(model, loader, "aerial", device=device, progress=False)
    top = top_matches(qf, gf, picks, np.arange(len(pairs)), k)
    height = 128
    shown_size = (height, round(height * ground_size[1] / ground_size[0]))
    shown = [load_ground(pairs.ground[i], shown_size, ds.crop).float() / 255 for i in picks]
    titles = [str(pairs.ids[i]) for i in picks]
    return _records(top, shown, titles, pairs.aerial, len(pairs), set_recall)
