"""Top-k retrieval figures: each query, then its top-k gallery images framed green (a true
match) or red (not), as in MCGF Figure 3 and GeoViewMatch Figures 6-7.

- :func:`top_matches` ranks the gallery for a few queries with the evaluation core
  (:func:`geoloc_lib.eval.rank_gallery`, same order and tie rule as the metrics) and flags the
  true matches by label;
- :func:`retrieval_figure` draws any such result;
- :func:`drone_retrieval_figure` (drone -> satellite under a weather condition, the query shown
  as the model saw it) and :func:`street_retrieval_figure` (street -> aerial) embed and draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.images import read_image
from geoloc_lib.data.types import ImageSet, PairSet
from geoloc_lib.eval.ranking import NO_MATCH, rank_gallery

MATCH_COLOR = "#2ca02c"  # green: a true match
MISS_COLOR = "#d62728"  # red: any other gallery item
FRAME_WIDTH = 4.0
ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


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
    """``n`` distinct query rows out of ``n_total`` (sorted), drawn with ``seed``."""
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


def frame_colors(is_match: torch.Tensor | np.ndarray) -> np.ndarray:
    """Frame colour of each retrieved item: :data:`MATCH_COLOR` or :data:`MISS_COLOR`."""
    return np.where(np.asarray(is_match, dtype=bool), MATCH_COLOR, MISS_COLOR)


def _as_array(image: ImageLike, thumb: int) -> np.ndarray:
    if isinstance(image, torch.Tensor):  # [3, H, W] in [0, 1]
        arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
        return arr.permute(1, 2, 0).cpu().numpy()
    if isinstance(image, np.ndarray):
        return image
    img = image if isinstance(image, Image.Image) else read_image(image)
    img = img.copy()
    img.thumbnail((thumb * 6, thumb))  # height-bound: panoramas stay wide
    return np.asarray(img)


def _frame(ax: object, color: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(color is not None)
        if color is not None:
            spine.set_edgecolor(color)
            spine.set_linewidth(FRAME_WIDTH)


def retrieval_figure(
    query_images: Sequence[ImageLike],
    gallery_images: Sequence[Sequence[ImageLike]],
    is_match: torch.Tensor | np.ndarray,
    *,
    scores: torch.Tensor | np.ndarray | None = None,
    query_titles: Sequence[str] | None = None,
    title: str | None = None,
    thumb: int = 160,
) -> Figure:
    """One row per query: the query (unframed), then its retrieved items framed by match.

    ``gallery_images[i]`` are query i's retrieved items, best first; ``is_match[i, j]`` says
    whether item j is a true match (green frame) or not (red). Images are paths, PIL images,
    HxWx3 uint8 arrays or [3, H, W] tensors in [0, 1].
    """
    flags = np.asarray(is_match, dtype=bool)
    n = len(query_images)
    if flags.ndim != 2 or flags.shape[0] != n or len(gallery_images) != n:
        raise ConfigError(
            f"retrieval_figure: {n} queries, {len(gallery_images)} gallery rows and is_match of "
            f"shape {flags.shape}; expected one row per query"
        )
    k = flags.shape[1]
    if any(len(row) != k for row in gallery_images):
        raise ConfigError(f"retrieval_figure: every query needs {k} retrieved images")
    colors = frame_colors(flags)
    queries = [_as_array(im, thumb) for im in query_images]
    aspect = max(q.shape[1] / q.shape[0] for q in queries)  # wide panoramas get a wide column
    fig = Figure(figsize=(1.7 * (aspect + k), 1.9 * n + (0.4 if title else 0.0)))
    grid = fig.add_gridspec(n, k + 1, width_ratios=[aspect] + [1.0] * k)
    for i in range(n):
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(queries[i])
        _frame(ax, None)
        ax.set_title(query_titles[i] if query_titles else f"query {i}", fontsize=8)
        for j in range(k):
            ax = fig.add_subplot(grid[i, j + 1])
            ax.imshow(_as_array(gallery_images[i][j], thumb))
            _frame(ax, str(colors[i, j]))
            label = f"#{j + 1}" + ("" if scores is None else f"  {float(scores[i][j]):.2f}")
            ax.set_title(label, fontsize=8, color=str(colors[i, j]))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@torch.inference_mode()
def _embed(model: nn.Module, images: torch.Tensor, view: str, device: str) -> torch.Tensor:
    model.eval().to(device)
    return model.embed(images.to(device), view).float().cpu()


def drone_retrieval_figure(
    model: nn.Module,
    query: ImageSet,
    gallery: ImageSet,
    condition: str = "normal",
    *,
    n_queries: int = 3,
    k: int = 5,
    seed: int = 0,
    weather_seed: int | None = None,
    img_size: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    title: str | None = None,
) -> Figure:
    """Top-``k`` satellite tiles of ``n_queries`` seeded drone queries under ``condition``.

    The queries are weathered exactly as :func:`geoloc_lib.eval.university.evaluate_mcgf` does
    on the full query set (per-image keys from the row in ``query``), and shown at the model's
    input size; ``condition`` may be ``"mixed"``.
    """
    from geoloc_lib.data.university_torch import eval_loader, to_tensor
    from geoloc_lib.eval.features import extract_features
    from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, MIXED, eval_weather
    from geoloc_lib.weather.synth import CONDITIONS

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
    return retrieval_figure(
        list(batch["image"]),
        [[gallery.paths[j] for j in row] for row in top.indices.tolist()],
        top.is_match,
        scores=top.scores,
        query_titles=[
            f"{query.names[i]} · {c} · {rank}"
            for i, c, rank in zip(picks, shown, top.rank_labels(), strict=True)
        ],
        title=title,
    )


def street_retrieval_figure(
    model: nn.Module,
    pairs: PairSet,
    *,
    n_queries: int = 3,
    k: int = 5,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
    title: str | None = None,
) -> Figure:
    """Top-``k`` aerial tiles of ``n_queries`` seeded street panoramas (pair i matches tile i).

    Input sizes come from ``model.input_size(view)``; the panorama is
    shown with the model's preprocessing (CVACT: middle half of the rows) at a readable size.
    """
    from geoloc_lib.data.street_torch import StreetPairDataset, ViewDataset, load_ground
    from geoloc_lib.eval.features import extract_features

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
    return retrieval_figure(
        shown,
        [[pairs.aerial[j] for j in row] for row in top.indices.tolist()],
        top.is_match,
        scores=top.scores,
        query_titles=[
            f"{pairs.ids[i]} · {rank}" for i, rank in zip(picks, top.rank_labels(), strict=True)
        ],
        title=title,
    )
