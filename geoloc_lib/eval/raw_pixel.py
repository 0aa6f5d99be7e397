"""Raw-pixel matchers: the floor every learned model is compared with (no training).

:class:`RawPixelMatcher` (drone/satellite) and :class:`StreetRawPixelMatcher` (street/aerial)
embed an image as its mean-centred, L2-normalised colour layout; they have the model interface
evaluation uses (``embed(images, view)`` and the input sizes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


class RawPixelMatcher(nn.Module):
    """Reference floor: features = the mean-centred, L2-normalised RGB pixels at ``size`` px."""

    def __init__(self, size: int = 16, img_size: int = 64) -> None:
        super().__init__()
        self.size, self.img_size = size, img_size

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        x = nn.functional.interpolate(images, size=(self.size, self.size), mode="area").flatten(1)
        return nn.functional.normalize(x - x.mean(1, keepdim=True), dim=-1)


@dataclass
class _RawCfg:
    ground_size: tuple[int, int] = (32, 160)
    aerial_size: tuple[int, int] = (64, 64)
    grid: int = 8


class StreetRawPixelMatcher(nn.Module):
    """The floor: each image area-pooled to a ``grid``×``grid`` colour layout, mean-centred, L2."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.cfg = _RawCfg(**cfg)

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(images, self.cfg.grid).flatten(1)
        return nn.functional.normalize(x - x.mean(1, keepdim=True), dim=1)

    def config_dict(self) -> dict:
        return asdict(self.cfg)
