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


def sample_aerial_images(size: int = 256) -> torch.Tensor:
    """Three natural-looking aerial-like RGB images [3, 3, size, size] without any dataset:
    two hill-shaded elevation models shipped with matplotlib and a procedural town block."""
    from matplotlib import cbook, colormaps
    from matplotlib.colors import LightSource

    light = LightSource(azdeg=315, altdeg=45)
    tiles = []
    for name in ("jacksboro_fault_dem.npz", "topobathy.npz"):
        with np.load(cbook.get_sample_data(name, asfileobj=False)) as data:
            key = "elevation" if "elevation" in data else list(data.keys())[0]
            dem = np.asarray(data[key], dtype=np.float64)
        dem = np.nan_to_num(dem, nan=float(np.nanmin(dem)))
        rgb = light.shade(dem, cmap=colormaps["gist_earth"], blend_mode="soft", vert_exag=2)
        tile = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1).float()
        tiles.append(
            torch.nn.functional.interpolate(tile[None], size=(size, size), mode="bilinear")[0]
        )
    tiles.append(_procedural_town(size))
    return torch.stack(tiles).clamp(0, 1)


def _procedural_town(size: int) -> torch.Tensor:
    """Fields, a road grid and building roofs with shadows, drawn with tensor ops."""
    g = torch.Generator().manual_seed(7)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blocks = 8
    cell = size / blocks
    by, bx = (y / cell).long(), (x / cell).long()
    field_tone = torch.rand(blocks, blocks, 3, generator=g) * torch.tensor([0.15, 0.2, 0.1])
    field = torch.tensor([0.35, 0.45, 0.25]) + field_tone[by, bx]
    stripes = 0.04 * torch.sin((x + y * (by % 2)) * 0.8)[..., None]
    image = field + stripes
    fy, fx = (y % cell) / cell, (x % cell) / cell
    roof = (fy > 0.25) & (fy < 0.7) & (fx > 0.2) & (fx < 0.75)
    has_building = torch.rand(blocks, blocks, generator=g)[by, bx] > 0.35
    roof_colour = torch.rand(blocks, blocks, 3, generator=g)[by, bx] * 0.4 + 0.45
    shadow = (fy > 0.7) & (fy < 0.8) & (fx > 0.3) & (fx < 0.85) & has_building
    image = torch.where(shadow[..., None], image * 0.45, image)
    image = torch.where((roof & has_building)[..., None], roof_colour, image)
    road = ((y % cell) < cell * 0.1) | ((x % cell) < cell * 0.1)
    image = torch.where(road[..., None], torch.tensor([0.55, 0.55, 0.53]), image)
    return image.permute(2, 0, 1).float().clamp(0, 1)
