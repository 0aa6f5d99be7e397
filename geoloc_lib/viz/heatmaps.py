"""Heatmap figures (03_heatmaps): GeoViewMatch Figures 8/9, MCGF Figure 3, Grad-CAM.

Heatmaps are ``[H, W]`` tensors in [0, 1] (``geoloc_lib.analysis.explain``), drawn with the ``jet``
colormap (red high, blue low, as in the papers) over the image they explain; every figure carries
the colour bar of that scale. Long row or column labels (the datasets' 22-character pair ids)
are shown as "pair 1", "pair 2", ..., with the ids in a footnote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.images import read_image

MATCH_COLOUR, MISS_COLOUR = "#1a9641", "#d7191c"
LABEL_SIZE = 10  # row labels and column titles
SHORT_LABEL = 12  # labels longer than this (e.g. CVACT's pair ids) become "pair 1", ...


def overlay_heatmap(
    image: Tensor, heat: Tensor, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """``image`` ``[3, H, W]`` in [0, 1] blended with the coloured ``heat`` ``[H, W]`` -> ``[H, W, 3]``."""
    if tuple(heat.shape) != tuple(image.shape[-2:]):
        raise ConfigError(
            f"overlay_heatmap: heatmap {tuple(heat.shape)} and image {tuple(image.shape[-2:])} differ"
        )
    rgb = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    colour = colormaps[cmap](heat.detach().float().cpu().clamp(0, 1).numpy())[..., :3]
    return (1 - alpha) * rgb + alpha * colour


def _to_rgb(image: Tensor) -> np.ndarray:
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def _panel(
    ax: Axes, rgb: np.ndarray, title: str | None = None, frame: str | None = None, size: int = 8
) -> None:
    ax.imshow(rgb)  # matplotlib's default: nearest when enlarging, antialiased when shrinking
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)
    if title:
        ax.set_title(title, fontsize=size)


def _row_label(ax: Axes, text: str) -> None:
    """A row's label, on two lines when long (``"multi-scale\n2+3+4"``)."""
    ax.set_ylabel(
        text if len(text) <= SHORT_LABEL else text.replace(" ", "\n", 1), fontsize=LABEL_SIZE
    )


def _short_labels(fig: Figure, labels: Sequence[str], noun: str = "pair") -> list[str]:
    """``labels`` as they are when short; otherwise "pair 1", "pair 2", ... with the full
    labels in a footnote under the figure."""
    labels = [str(x) for x in labels]
    if all(len(x) <= SHORT_LABEL for x in labels):
        return labels
    short = [f"{noun} {i + 1}" for i in range(len(labels))]
    note = "; ".join(f"{s}: {x}" for s, x in zip(short, labels, strict=True))
    fig.supxlabel(f"ids: {note}", fontsize=7, color="#444444")
    return short


def _colour_bar(fig: Figure, ax: Axes, cmap: str = "jet") -> None:
    """The heat scale as a vertical bar to the right of ``ax`` (an inset: no grid cell)."""
    cax = ax.inset_axes([1.04, 0.0, 0.05, 1.0])
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), cax=cax)
    bar.set_ticks([0.0, 0.5, 1.0], labels=["0 low", "0.5", "1 high"], fontsize=7)
    bar.set_label("heat (scaled per image)", fontsize=8)


def _check_maps(images: Tensor, maps: dict[str, Tensor], what: str) -> None:
    for key, m in maps.items():
        if tuple(m.shape) != (images.shape[0], *images.shape[-2:]):
            raise ConfigError(
                f"{what}: heatmap {key!r} has shape {tuple(m.shape)}, expected "
                f"{(images.shape[0], *images.shape[-2:])}"
            )


def stage_heatmaps_figure(
    aerial: Tensor,
    aerial_maps: dict[str, Tensor],
    ground: Tensor,
    ground_map: Tensor,
    ground_title: str,
    row_labels: Sequence[str],
    panel: float = 1.5,
) -> Figure:
    """GeoViewMatch Figures 8/9: one row per pair: the aerial tile, its heatmaps (columns in
    ``aerial_maps`` order) and, far right, the panorama under ``ground_map``."""
    _check_maps(aerial, aerial_maps, "stage_heatmaps_figure")
    _check_maps(ground, {ground_title: ground_map}, "stage_heatmaps_figure")
    n = aerial.shape[0]
    pano_ratio = ground.shape[-1] / ground.shape[-2]
    ratios = [1.0] * (1 + len(aerial_maps)) + [pano_ratio]
    fig = Figure(figsize=(panel * sum(ratios) + 0.4, panel * n + 0.8), layout="constrained")
    axes = fig.subplots(n, len(ratios), squeeze=False, width_ratios=ratios)
    labels = _short_labels(fig, row_labels)
    for i in range(n):
        _panel(axes[i, 0], _to_rgb(aerial[i]), "RS image" if i == 0 else None, size=LABEL_SIZE)
        _row_label(axes[i, 0], labels[i])
        for j, (key, maps) in enumerate(aerial_maps.items(), start=1):
            title = key if i == 0 else None
            _panel(axes[i, j], overlay_heatmap(aerial[i], maps[i]), title, size=LABEL_SIZE)
        _panel(
            axes[i, -1],
            overlay_heatmap(ground[i], ground_map[i]),
            f"street view: {ground_title}" if i == 0 else None,
            size=LABEL_SIZE,
        )
    _colour_bar(fig, axes[0, -1])
    fig.suptitle(
        "GeoViewMatch: channel-mean feature heatmaps per Swin stage (aerial tiles) and on the "
        "panorama",
        fontsize=11,
    )
    return fig


def panorama_heatmaps_figure(
    ground: Tensor,
    ground_maps: dict[str, Tensor],
    col_labels: Sequence[str],
    panel: float = 1.3,
    max_width: float = 14.0,
) -> Figure:
    """Panoramas (columns) and their heatmaps (rows, in ``ground_maps`` order).

    As many panoramas side by side as fit ``max_width`` inches (at least one); the rest
    continue in another block of rows below, so the figure stays readable at any count.
    """
    _check_maps(ground, ground_maps, "panorama_heatmaps_figure")
    n = ground.shape[0]
    ratio = ground.shape[-1] / ground.shape[-2]
    cols = max(1, min(n, int(max_width // (panel * ratio))))
    blocks = math.ceil(n / cols)
    per_block = 1 + len(ground_maps)
    fig = Figure(
        figsize=(panel * ratio * cols + 1.6, panel * per_block * blocks + 0.9),
        layout="constrained",
    )
    grid = fig.add_gridspec(per_block * blocks, cols)
    labels = _short_labels(fig, col_labels)
    first_heat = None
    for j in range(n):
        block, col = divmod(j, cols)
        top = block * per_block
        ax = fig.add_subplot(grid[top, col])
        _panel(ax, _to_rgb(ground[j]), labels[j], size=LABEL_SIZE)
        if col == 0:
            _row_label(ax, "panorama")
        for i, (key, maps) in enumerate(ground_maps.items(), start=1):
            ax = fig.add_subplot(grid[top + i, col])
            _panel(ax, overlay_heatmap(ground[j], maps[j]))
            if col == 0:
                _row_label(ax, key)
            if first_heat is None and col == cols - 1:
                first_heat = ax
    if ground_maps:
        _colour_bar(fig, first_heat if first_heat is not None else ax)
    fig.suptitle("GeoViewMatch: the heatmaps of each stage on the street panoramas", fontsize=11)
    return fig


def gradcam_pairs_figure(
    aerial: Tensor,
    aerial_cam: Tensor,
    ground: Tensor,
    ground_cam: Tensor,
    row_labels: Sequence[str],
    panel: float = 1.6,
) -> Figure:
    """One row per pair: the tile, its Grad-CAM (target: cosine to the panorama's descriptor)
    and the panorama's Grad-CAM (target: cosine to the tile's descriptor)."""
    _check_maps(aerial, {"aerial": aerial_cam}, "gradcam_pairs_figure")
    _check_maps(ground, {"ground": ground_cam}, "gradcam_pairs_figure")
    n = aerial.shape[0]
    ratios = [1.0, 1.0, ground.shape[-1] / ground.shape[-2]]
    fig = Figure(figsize=(panel * sum(ratios) + 0.8, panel * n + 0.8), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False, width_ratios=ratios)
    titles = ("RS image", "RS Grad-CAM", "street-view Grad-CAM")
    labels = _short_labels(fig, row_labels)
    for i in range(n):
        shown = titles if i == 0 else (None, None, None)
        _panel(axes[i, 0], _to_rgb(aerial[i]), shown[0], size=LABEL_SIZE)
        _row_label(axes[i, 0], labels[i])
        _panel(axes[i, 1], overlay_heatmap(aerial[i], aerial_cam[i]), shown[1], size=LABEL_SIZE)
        _panel(axes[i, 2], overlay_heatmap(ground[i], ground_cam[i]), shown[2], size=LABEL_SIZE)
    _colour_bar(fig, axes[0, -1])
    fig.suptitle(
        "GeoViewMatch Grad-CAM: tile towards its panorama's descriptor, panorama towards its tile's",
        fontsize=11,
    )
    return fig


def weather_matches_figure(
    queries: Tensor,
    column_titles: Sequence[str],
    heatmaps: dict[str, Tensor],
    topk: Tensor,
    correct: Tensor,
    gallery_paths: Sequence[str | Path],
    extra_rows: dict[str, Tensor] | None = None,
    thumb: int = 96,
    panel: float = 1.1,
) -> Figure:
    """MCGF Figure 3: one column per query variant; rows: the query, ``extra_rows`` (images
    ``[V, 3, h, w]``, e.g. the restored query), each heatmap of ``heatmaps`` over the query,
    then its top-k gallery images framed green (true match) or red."""
    _check_maps(queries, heatmaps, "weather_matches_figure")
    extra = dict(extra_rows or {})
    for key, images in extra.items():
        if images.ndim != 4 or images.shape[0] != queries.shape[0]:
            raise ConfigError(
                f"weather_matches_figure: extra row {key!r} must be [{queries.shape[0]}, 3, h, w]"
            )
    image_rows = {"query": queries, **extra}
    if topk.shape != correct.shape or topk.shape[0] != queries.shape[0]:
        raise ConfigError(
            f"weather_matches_figure: topk {tuple(topk.shape)} and correct "
            f"{tuple(correct.shape)} must both be [{queries.shape[0]}, k]"
        )
    v, k = topk.shape
    top = len(image_rows) + len(heatmaps)
    rows = top + k
    fig = Figure(figsize=(panel * v, panel * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, v, squeeze=False)
    # Each gallery image is read once, whatever the number of variants that retrieved it.
    thumbs = {
        int(i): np.asarray(read_image(gallery_paths[int(i)], (thumb, thumb)))
        for i in torch.unique(topk).tolist()
    }
    for j in range(v):
        for i, images in enumerate(image_rows.values()):
            _panel(axes[i, j], _to_rgb(images[j]), column_titles[j] if i == 0 else None)
        for i, maps in enumerate(heatmaps.values(), start=len(image_rows)):
            _panel(axes[i, j], overlay_heatmap(queries[j], maps[j]))
        for r in range(k):
            frame = MATCH_COLOUR if bool(correct[j, r]) else MISS_COLOUR
            _panel(axes[top + r, j], thumbs[int(topk[j, r])], frame=frame)
    for i, key in enumerate([*image_rows, *heatmaps]):
        _row_label(axes[i, 0], key)
    for r in range(k):
        _row_label(axes[top + r, 0], f"top-{r + 1}")
    if heatmaps:
        _colour_bar(fig, axes[len(image_rows), -1])
    return fig
