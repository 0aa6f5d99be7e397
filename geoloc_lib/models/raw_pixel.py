"""Raw-pixel matchers: the floor every learned model is compared with (no training).

:class:`RawPixelMatcher` (drone/satellite, ``create_model("raw_pixels")``) and
:class:`StreetRawPixelMatcher` (street/aerial, ``create_model("street_raw_pixels")``) embed an
image as its mean-centred, L2-normalised colour layout. They follow the model contract
(:mod:`geoloc_lib.models.contract`) without its training half.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from geoloc_lib.models import register_model
from geoloc_lib.models.contract import GeolocModel


class RawPixelMatcher(GeolocModel):
    """Reference floor: features = the mean-centred, L2-normalised RGB pixels at ``size`` px."""

    registry_name = "raw_pixels"

    def __init__(self, size: int = 16, img_size: int = 64) -> None:
        super().__init__()
        self.size, self.img_size = size, img_size

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        x = nn.functional.interpolate(images, size=(self.size, self.size), mode="area").flatten(1)
        return nn.functional.normalize(x - x.mean(1, keepdim=True), dim=-1)

    def input_size(self, view: str) -> tuple[int, int]:
        return (self.img_size, self.img_size)

    def config_dict(self) -> dict:
        return {"size": self.size, "img_size": self.img_size}


@dataclass
class _RawCfg:
    ground_size: tuple[int, int] = (32, 160)
    aerial_size: tuple[int, int] = (64, 64)
    grid: int = 8


class StreetRawPixelMatcher(GeolocModel):
    """The floor: each image area-pooled to a ``grid``×``grid`` colour layout, mean-centred, L2."""

    registry_name = "street_raw_pixels"

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.cfg = _RawCfg(**cfg)

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(images, self.cfg.grid).flatten(1)
        return nn.functional.normalize(x - x.mean(1, keepdim=True), dim=1)

    def input_size(self, view: str) -> tuple[int, int]:
        return self.cfg.ground_size if view == "ground" else self.cfg.aerial_size

    def config_dict(self) -> dict:
        return asdict(self.cfg)


register_model("raw_pixels")(RawPixelMatcher)
register_model("street_raw_pixels")(StreetRawPixelMatcher)
