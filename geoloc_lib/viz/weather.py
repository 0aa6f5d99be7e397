"""The 10 weather conditions on a few images, one column per condition."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth


def _load(images: torch.Tensor | Sequence[str | Path], size: int) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        return images.float()
    from geoloc_lib.data.images import read_image_array

    arrays = [read_image_array(p, (size, size)) for p in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def weather_grid_figure(
    images: torch.Tensor | Sequence[str | Path],
    path: str | Path | None = None,
    seed: int = 0,
    size: int = 256,
    reference_size: int | None = None,
    exact: bool = False,
    dpi: int = 80,
) -> Figure:
    """Rows = input images, columns = the 10 conditions (titled); saved to ``path`` if given.

    ``images``: a float tensor [N, 3, H, W] in [0, 1] or image paths (read at ``size``²).
    Every cell of a row uses the same per-image seed, so columns differ only by condition.
    ``exact``: the unbanked reference synthesis instead of the texture banks. ``dpi``: of the
    saved file, stored as a 256-colour PNG (a third of the RGB size; the grid is for looking).
    """
    batch = _load(images, size)
    n = batch.shape[0]
    synth = WeatherSynth(reference_size=reference_size, exact=exact)
    fig = Figure(figsize=(1.6 * len(CONDITIONS), 1.7 * n + 0.3), layout="constrained")
    axes = fig.subplots(n, len(CONDITIONS), squeeze=False)
    seeds = torch.arange(n, dtype=torch.int64) + 1000 * seed
    for col, name in enumerate(CONDITIONS):
        conditions = torch.full((n,), col, dtype=torch.long)
        out, _ = synth(batch, conditions, seeds=seeds)
        for row in range(n):
            ax = axes[row, col]
            ax.imshow(out[row].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{col}: {name}", fontsize=9)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=dpi, format="png")
        buffer.seek(0)
        with Image.open(buffer) as rgb:
            palette = rgb.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
            palette.save(path, optimize=True)
    return fig
