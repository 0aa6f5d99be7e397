"""A strong modern baseline: shared timm backbone, pooled features, symmetric InfoNCE.

The recipe of Sample4Geo (Deuser et al., ICCV 2023):
one backbone for both views (ConvNeXt, which takes any input size in one instance), the
backbone's own global pooling, L2-normalised features, symmetric InfoNCE with a learnable
temperature and label smoothing, and batches of geographic neighbours as hard negatives (the
sampler lives in :mod:`geoloc_lib.data.street_torch`). Any timm model works; token models with a
fixed size (Swin, ViT) get tied per-view instances through :class:`SiameseBackbone`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geoloc_lib.core.config import check_number, check_size, with_fields
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models import register_model
from geoloc_lib.models.contract import IMAGENET_MEAN, IMAGENET_STD, GeolocModel
from geoloc_lib.models.geoviewmatch import SiameseBackbone
from geoloc_lib.models.losses import SymmetricInfoNCE
from geoloc_lib.models.params import split_decay


@dataclass
class InfoNCEBaselineConfig:
    backbone: str = "convnext_base"
    pretrained: bool = False
    pretrained_file: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)  # timm architecture kwargs
    ground_size: tuple[int, int] = (128, 640)
    aerial_size: tuple[int, int] = (256, 256)
    share_backbone: bool = True
    temperature: float = 0.07  # initial; the logit scale is learned
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        self.ground_size, self.aerial_size = tuple(self.ground_size), tuple(self.aerial_size)
        check_size("InfoNCEBaselineConfig", "ground_size", self.ground_size)
        check_size("InfoNCEBaselineConfig", "aerial_size", self.aerial_size)
        check_number("InfoNCEBaselineConfig", "temperature", self.temperature, strict=True)
        check_number("InfoNCEBaselineConfig", "label_smoothing", self.label_smoothing)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, InfoNCEBaselineConfig] = {
    # Sample4Geo's backbone (ConvNeXt-B, ImageNet weights) at GeoViewMatch's input sizes.
    "paper": InfoNCEBaselineConfig(pretrained=True),
    # CPU sizes: a narrow ConvNeXt, the same images as GeoViewMatch's default/smoke presets.
    "default": InfoNCEBaselineConfig(
        backbone="convnext_atto",
        arch={"dims": (32, 64, 128, 256), "depths": (1, 1, 2, 1), "drop_path_rate": 0.0},
        ground_size=(32, 160),
        aerial_size=(64, 64),
    ),
    "smoke": InfoNCEBaselineConfig(
        backbone="convnext_atto",
        arch={"dims": (16, 32, 64, 128), "depths": (1, 1, 1, 1), "drop_path_rate": 0.0},
        ground_size=(32, 128),
        aerial_size=(48, 48),
    ),
}


class InfoNCEBaseline(GeolocModel):
    """Engine API: ``training_losses``, ``embed``, ``param_groups``; images in ``[0, 1]``."""

    registry_name = "infonce_baseline"

    def __init__(self, cfg: InfoNCEBaselineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = SiameseBackbone(
            cfg.backbone,
            cfg.ground_size,
            cfg.aerial_size,
            share=cfg.share_backbone,
            pretrained=cfg.pretrained,
            pretrained_file=cfg.pretrained_file,
            **cfg.arch,
        )
        self.loss_fn = SymmetricInfoNCE(cfg.temperature, cfg.label_smoothing)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def input_size(self, view: str) -> tuple[int, int]:
        return self.cfg.ground_size if view == "ground" else self.cfg.aerial_size

    def embed(self, images: Tensor, view: str) -> Tensor:
        return F.normalize(self.backbone.pooled((images - self.mean) / self.std, view), dim=1)

    def forward(self, images: Tensor, view: str) -> Tensor:
        return self.embed(images, view)

    def feature_maps(self, images: Tensor, view: str) -> dict[str, Tensor]:
        """Every backbone stage's output map, ``"stage 1"`` onwards, before the final norm (the
        maps its pooled feature is computed from)."""
        return self.backbone.stage_outputs((images - self.mean) / self.std, view)

    def training_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        g = self.embed(batch["ground"], "ground")
        a = self.embed(batch["aerial"], "aerial")
        loss = self.loss_fn(g, a)
        return {"loss": loss, "infonce": loss.detach(), "logit_scale": self.loss_fn.scale.detach()}

    def param_groups(self, lr: dict[str, float]) -> list[dict]:
        """``lr["backbone"]`` for the backbone; ``lr["head"]`` (default: the same) for the scale."""
        if "backbone" not in lr:
            raise ConfigError(
                f"InfoNCEBaseline.param_groups: lr needs key 'backbone', got {sorted(lr)}"
            )
        head_lr = lr.get("head", lr["backbone"])
        return split_decay(
            self.backbone.named_parameters(), lr["backbone"], "backbone"
        ) + split_decay(self.loss_fn.named_parameters(prefix="loss_fn"), head_lr, "head")


@register_model("infonce_baseline")
def build_infonce_baseline(
    config: InfoNCEBaselineConfig | None = None, **fields: Any
) -> InfoNCEBaseline:
    """``create_model("infonce_baseline", config=InfoNCEBaselineConfig, **field changes)``;
    without ``config`` the fields not given keep the dataclass defaults."""
    cfg = with_fields(config or InfoNCEBaselineConfig(), fields, "infonce_baseline config")
    return InfoNCEBaseline(cfg)
