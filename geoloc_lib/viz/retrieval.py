"""Top-k retrieval figures: each query, then its top-k gallery images framed green (a true
match) or red (not), as in MCGF Figure 3 and GeoViewMatch Figures 6-7; and recall@k curves.

Figures draw, they do not compute: the queries, their top-k items and hit flags come from
:mod:`geoloc_lib.eval.examples` (a seeded uniform draw, so hits and misses appear in proportion),
the curves and their intervals from :func:`geoloc_lib.eval.uncertainty.recall_curves`.

- :func:`retrieval_figure` draws any images with match flags;
- :func:`examples_figure` draws a :class:`~geoloc_lib.eval.examples.RetrievalExamples` with the
  draw's hit rate beside the set's R@1 in the title;
- :func:`recall_curves_figure` draws recall@k per group (weather condition) with its band.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.images import read_image
from geoloc_lib.eval.examples import RetrievalExamples

MATCH_COLOR = "#2ca02c"  # green: a true match
MISS_COLOR = "#d62728"  # red: any other gallery item
FRAME_WIDTH = 4.0
ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


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


def examples_figure(examples: RetrievalExamples, title: str | None = None) -> Figure:
    """The drawn queries and their top-k items (:mod:`geoloc_lib.eval.examples`); the title adds
    the draw's top-1 hit rate beside the set's R@1."""
    head = examples.summary() if title is None else f"{title}\n{examples.summary()}"
    return retrieval_figure(
        examples.query_images,
        examples.gallery_paths,
        examples.is_match,
        scores=examples.scores,
        query_titles=examples.query_titles,
        title=head,
    )


SUMMARY_GROUPS = ("mixed", "mean")  # not a weather condition: black, dashed


def group_colors(groups: Sequence[str]) -> list:
    """A readable qualitative colour per group: tab10 in order for the conditions (Dark2 after
    the tenth), black for ``mixed`` / ``mean``."""
    from matplotlib import colormaps

    tab10, dark2 = colormaps["tab10"], colormaps["Dark2"]
    colors, i = [], 0
    for g in groups:
        if str(g) in SUMMARY_GROUPS:
            colors.append((0.0, 0.0, 0.0, 1.0))
            continue
        colors.append(tab10(i) if i < 10 else dark2((i - 10) % 8))
        i += 1
    return colors


def _check_curves(curves: pd.DataFrame, group: str, what: str) -> None:
    needed = {group, "k", "recall", "lo", "hi"}
    if not needed <= set(curves.columns):
        raise ConfigError(
            f"recall_curves_figure: {what} lack {sorted(needed - set(curves.columns))}; pass "
            "what eval.uncertainty.recall_curves returns"
        )


def recall_curves_figure(
    curves: pd.DataFrame,
    group: str = "condition",
    title: str | None = None,
    compare: pd.DataFrame | None = None,
    labels: tuple[str, str] = ("model", "compared model"),
    headline: str = "mixed",
) -> Figure:
    """Recall@k (%) against k, one line per ``group`` value with its 95 % band (``lo``/``hi``),
    from :func:`geoloc_lib.eval.uncertainty.recall_curves`.

    ``compare``: the same curves of a second model (e.g. MCGF's matching branch alone beside
    MCGF); a second panel then draws both models' ``headline`` group (default ``mixed``, else
    each one's first group) with their bands, named by ``labels``.
    """
    _check_curves(curves, group, "curves")
    if compare is not None:
        _check_curves(compare, group, "compare")
    groups = list(dict.fromkeys(curves[group]))
    panels = 1 if compare is None else 2
    fig = Figure(figsize=(7.5 + 4.6 * (panels - 1), 4.6))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    for g, color in zip(groups, group_colors(groups), strict=True):
        part = curves[curves[group] == g]
        style = "--" if g in SUMMARY_GROUPS else "-"
        ax.plot(part["k"], part["recall"], style, color=color, lw=1.6, label=str(g))
        ax.fill_between(part["k"], part["lo"], part["hi"], color=color, alpha=0.10, lw=0)
    ax.legend(fontsize=7, ncols=2, loc="upper left", title=group, title_fontsize=7)
    ax.set_title(title or "recall@k with 95 % bootstrap intervals", fontsize=10)
    if compare is not None:
        ax = axes[1]
        for frame, label, style, color in (
            (curves, labels[0], "-", "#1f77b4"),
            (compare, labels[1], "--", "#d62728"),
        ):
            shown = headline if headline in set(frame[group]) else frame[group].iloc[0]
            part = frame[frame[group] == shown]
            ax.plot(
                part["k"], part["recall"], style, color=color, lw=1.8, label=f"{label} ({shown})"
            )
            ax.fill_between(part["k"], part["lo"], part["hi"], color=color, alpha=0.15, lw=0)
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(f"{labels[0]} vs {labels[1]}, {headline}", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k (%)")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plt_colors(n: int) -> list:
    """``n`` distinguishable colours (tab20 order)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]
