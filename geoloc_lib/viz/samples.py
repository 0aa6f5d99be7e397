"""A grid of sample images from several image sets (00_data_prep)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from geoloc_lib.data.images import read_image
from geoloc_lib.data.types import ImageSet


def save_figure(fig: Figure, path: str | Path | None, dpi: int = 110) -> None:
    """Save a figure with fixed metadata so reruns write identical PNG bytes."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def sample_grid_figure(
    sets: dict[str, ImageSet],
    per_set: int = 6,
    seed: int = 0,
    path: str | Path | None = None,
    thumb: int = 128,
) -> Figure:
    """One row per set, ``per_set`` images drawn with a seeded generator."""
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(per_set * 1.6, len(sets) * 1.8))
    axes = fig.subplots(len(sets), per_set, squeeze=False)
    for row, (name, s) in enumerate(sets.items()):
        picks = np.sort(rng.choice(len(s), size=min(per_set, len(s)), replace=False))
        for col in range(per_set):
            ax = axes[row, col]
            ax.set_axis_off()
            if col >= len(picks):
                continue
            i = int(picks[col])
            im = read_image(s.paths[i])
            im.thumbnail((thumb * 3, thumb))
            ax.imshow(np.asarray(im))
            ax.set_title(f"{s.names[i]}", fontsize=7)
        axes[row, 0].text(
            -0.08,
            0.5,
            name,
            transform=axes[row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.tight_layout()
    save_figure(fig, path)
    return fig
