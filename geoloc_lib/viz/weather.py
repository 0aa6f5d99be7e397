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


def stretch_for_display(image: torch.Tensor, low: float = 1.0, high: float = 99.0) -> torch.Tensor:
    """``image`` ``[3, H, W]`` with its ``low``-``high`` percentile range (all channels
    together, so hues keep their balance) stretched to [0, 1]: for looking, never for models."""
    values = image.flatten().float()
    lo = float(torch.quantile(values, low / 100.0))
    hi = float(torch.quantile(values, high / 100.0))
    return ((image.float() - lo) / max(hi - lo, 1e-6)).clamp(0, 1)


def weather_grid_figure(
    images: torch.Tensor | Sequence[str | Path],
    path: str | Path | None = None,
    seed: int = 0,
    size: int = 256,
    reference_size: int | None = None,
    exact: bool = False,
    dpi: int = 80,
    stretch: Sequence[str] = ("dark",),
) -> Figure:
    """Rows = input images, columns = the 10 conditions (titled); saved to ``path`` if given.

    ``images``: a float tensor [N, 3, H, W] in [0, 1] or image paths (read at ``size``²).
    Every cell of a row uses the same per-image seed, so columns differ only by condition.
    Each condition in ``stretch`` (near-black ``dark`` by default) gets a second column right
    after it, contrast-stretched for display (:func:`stretch_for_display`) and titled so.
    ``exact``: the unbanked reference synthesis instead of the texture banks. ``dpi``: of the
    saved file, stored as a 256-colour PNG (a third of the RGB size; the grid is for looking).
    """
    batch = _load(images, size)
    n = batch.shape[0]
    synth = WeatherSynth(reference_size=reference_size, exact=exact)
    stretched = [c for c in CONDITIONS if c in set(stretch)]
    n_cols = len(CONDITIONS) + len(stretched)
    fig = Figure(figsize=(1.6 * n_cols, 1.7 * n + 0.5), layout="constrained")
    axes = fig.subplots(n, n_cols, squeeze=False)
    seeds = torch.arange(n, dtype=torch.int64) + 1000 * seed
    col = 0
    for index, name in enumerate(CONDITIONS):
        conditions = torch.full((n,), index, dtype=torch.long)
        out, _ = synth(batch, conditions, seeds=seeds)
        shown = [(f"{index}: {name}", out.clamp(0, 1))]
        if name in stretched:
            shown.append(
                (
                    f"{name}, stretched\nfor display only",
                    torch.stack([stretch_for_display(x) for x in out]),
                )
            )
        for title, images in shown:
            for row in range(n):
                ax = axes[row, col]
                ax.imshow(images[row].permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=9)
            if title.startswith(f"{name}, stretched"):
                for row in range(n):  # a dashed frame: not what the model sees
                    for spine in axes[row, col].spines.values():
                        spine.set_linestyle("--")
                        spine.set_edgecolor("#888888")
            col += 1
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
