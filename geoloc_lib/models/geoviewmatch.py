"""GeoViewMatch (Remote Sens. 2024, 16, 678): SwinV2 Siamese network, multi-scale SAFA-style
aggregation, contrastive learning on aerial views, weighted soft-margin triplet losses.

Pieces (each usable alone):

- :class:`SiameseBackbone`: one timm backbone used for both views. SwinV2 fixes its windows,
  shifts and attention masks per input resolution at construction (a 128×640 panorama gives a
  4×20 stage-4 map with (4, 8) windows shifted by (0, 4); a 256×256 tile an 8×8 map with one
  unshifted window), so one instance cannot run both sizes without changing its computation
  (``strict_img_size=False`` pads windows instead). The parameters of SwinV2 do not depend on the
  resolution (continuous position bias), so we build one instance per view and *tie* the ground
  instance's parameters to the aerial one's: a single set of weights, each view computed exactly
  as timm computes it at that size. CNN backbones need one instance only.
- :class:`FeatureAggregation`: SAFA-style spatial-aware aggregation (N heads) of one stage map.
- :class:`GeoViewMatch`: the model with the engine API (``training_losses``, ``embed``,
  ``param_groups``); ablation switches ``contrastive``, ``multi_scale`` and ``stages``.

Losses (paper §3.4, our reading of the pairs, see ``training_losses``):
``L_total = w_con·L_con + w_ret1·L_ret1 + w_ret2·L_ret2`` (0.5, 0.25, 0.25) where

- ``L_ret1`` = triplet(ground, strongly augmented aerial): the photometric views keep the pair's
  geometry, so the panorama is used as it is;
- ``L_ret2`` = triplet(ground rolled by k·W/4, aerial rotated by k·90°): the weak (geometric)
  view, with the panorama shifted so the pair stays aligned (paper §3.3, Figure 5);
- ``L_con`` = triplet(head(strong aerial), head(weak aerial)) on the shared projection head.

Without contrastive learning (the paper's "BS"), there are no augmented views: the loss is the
triplet loss of (ground, aerial).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoloc_lib.core.config import check_size, with_fields
from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.data.augment import (
    StrongAugConfig,
    random_quarter_turns,
    rotate_aerial_and_shift_panorama,
    strong_augment,
)
from geoloc_lib.models import register_model
from geoloc_lib.models.cam import NHWCToNCHW, swin_stage_blocks
from geoloc_lib.models.contract import IMAGENET_MEAN, IMAGENET_STD, GeolocModel, stage_key
from geoloc_lib.models.losses import contrastive_loss, soft_margin_triplet
from geoloc_lib.models.params import split_decay

VIEWS = ("ground", "aerial")


# --------------------------------------------------------------------------- configuration


@dataclass
class GeoViewMatchConfig:
    """Architecture and loss settings. ``paper`` is the paper's model; the others shrink it."""

    backbone: str = "swinv2_tiny_window8_256"
    pretrained: bool = False
    pretrained_file: str | None = None
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    drop_path_rate: float = 0.1
    ground_size: tuple[int, int] = (128, 640)  # (H, W)
    aerial_size: tuple[int, int] = (256, 256)
    stages: tuple[int, ...] = (3, 4)  # 1-based Swin stages feeding the multi-scale descriptor
    multi_scale: bool = True  # False: the last selected stage only (the paper's "BS" / f4)
    fa_heads: int = 8  # N of the aggregation module
    # True: one set of SwinV2 weights for both views (the CPU presets, and the "shared-backbone"
    # ablation); False: one backbone per view, as the paper's 57.47 M parameters imply (§4.5.3,
    # Table 4: two SwinV2-T of 27.6 M each plus the FA modules).
    share_backbone: bool = True
    contrastive: bool = True
    proj_hidden: int = 512  # the paper gives no projection-head sizes
    proj_dim: int = 128
    alpha: float = 10.0  # soft-margin weight on squared distances
    w_con: float = 0.5
    w_ret1: float = 0.25
    w_ret2: float = 0.25
    strong_aug: StrongAugConfig = field(default_factory=StrongAugConfig)

    def __post_init__(self) -> None:
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        self.ground_size, self.aerial_size = tuple(self.ground_size), tuple(self.aerial_size)
        check_size("GeoViewMatchConfig", "ground_size", self.ground_size)
        check_size("GeoViewMatchConfig", "aerial_size", self.aerial_size)
        self.stages = tuple(sorted(set(int(s) for s in self.stages)))
        if isinstance(self.strong_aug, dict):
            self.strong_aug = StrongAugConfig(**self.strong_aug)
        n = len(self.depths)
        if not self.stages or not all(1 <= s <= n for s in self.stages):
            raise ConfigError(
                f"GeoViewMatchConfig.stages: each stage must be in 1..{n}, got {self.stages}"
            )
        if self.ground_size[1] % 4:
            raise ConfigError(
                f"GeoViewMatchConfig.ground_size: width {self.ground_size[1]} must be divisible "
                "by 4 (the weak augmentation shifts the panorama by quarter turns)"
            )
        if self.aerial_size[0] != self.aerial_size[1]:
            raise ConfigError(
                f"GeoViewMatchConfig.aerial_size must be square, got {self.aerial_size}"
            )

    @property
    def used_stages(self) -> tuple[int, ...]:
        return self.stages if self.multi_scale else (max(self.stages),)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GeoViewMatchConfig] = {
    # Paper §4.3: SwinV2-T (2,2,6,2), heads (3,6,12,24), window 8, ImageNet-1k weights,
    # ground 128x640, aerial 256x256, stages 3+4, N = 8, alpha 10, weights 0.5/0.25/0.25.
    # Two backbones (one per view): Table 4's 57.47 M parameters are 2 x 27.6 M + the FA
    # modules; Figure 2's "shared weights" mark the two aerial (strong / weak) passes.
    "paper": GeoViewMatchConfig(pretrained=True, share_backbone=False),
    # CPU sizes: same code, a narrow shallow SwinV2 and small images (stage 4: 1x5 and 2x2).
    "default": GeoViewMatchConfig(
        embed_dim=32,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.0,
        ground_size=(32, 160),
        aerial_size=(64, 64),
        proj_hidden=256,
        proj_dim=64,
    ),
    "smoke": GeoViewMatchConfig(
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 2, 2),
        window_size=4,
        drop_path_rate=0.0,
        ground_size=(32, 128),
        aerial_size=(48, 48),
        fa_heads=2,
        proj_hidden=32,
        proj_dim=16,
    ),
}

# The paper's ablations (Tables 5 and 6) as config overrides.
ABLATIONS: dict[str, dict[str, Any]] = {
    "BS": {"contrastive": False, "multi_scale": False},
    "BS+CL": {"contrastive": True, "multi_scale": False},
    "BS+MF": {"contrastive": False, "multi_scale": True},
    "BS+CL+MF": {"contrastive": True, "multi_scale": True},
    "f4": {"stages": (4,)},
    "f4+f3": {"stages": (3, 4)},
    "f4+f3+f2": {"stages": (2, 3, 4)},
    "f4+f3+f2+f1": {"stages": (1, 2, 3, 4)},
    # Not in the paper: the full model with one backbone for both views (our ablation row).
    "shared-backbone": {"share_backbone": True},
}


# --------------------------------------------------------------------------- backbone


def _create_timm(name: str, pretrained: bool, pretrained_file: str | None, **kw: Any) -> nn.Module:
    from geoloc_lib.models.backbones import create_backbone

    return create_backbone(name, pretrained=pretrained, pretrained_file=pretrained_file, **kw)


def tie_parameters(source: nn.Module, target: nn.Module) -> int:
    """Make every parameter of ``target`` the very ``Parameter`` object of ``source``.

    Both modules must have the same parameter names and shapes. Returns how many were tied.
    """
    src_modules = dict(source.named_modules())
    n = 0
    for mod_name, mod in target.named_modules():
        for p_name, p in list(mod._parameters.items()):
            if p is None:
                continue
            src = src_modules.get(mod_name)
            sp = None if src is None else src._parameters.get(p_name)
            if sp is None or sp.shape != p.shape:
                raise ConfigError(
                    f"cannot share backbone weights: parameter {mod_name}.{p_name} differs between "
                    "the ground and aerial instances (Swin V1 bias tables depend on the image size; "
                    "use SwinV2 or set share_backbone=False)"
                )
            setattr(mod, p_name, sp)
            n += 1
    return n


class SiameseBackbone(nn.Module):
    """A timm backbone for the ground and aerial views, with shared or separate weights.

    Token models with a fixed input size (SwinV2, ViT: they have ``patch_embed``) get one instance
    per view size, tied when ``share``; other models (CNNs) run both sizes in one instance.
    """

    def __init__(
        self,
        name: str,
        ground_size: tuple[int, int],
        aerial_size: tuple[int, int],
        *,
        share: bool = True,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        **arch: Any,
    ) -> None:
        super().__init__()
        self.aerial = _create_timm(
            name, pretrained, pretrained_file, num_classes=0, **_sized(name, aerial_size, arch)
        )
        self.weights_source = getattr(self.aerial, "weights_source", "random")
        sized = hasattr(self.aerial, "patch_embed")
        if share and not sized:
            self.ground = self.aerial
        else:
            # The shared instance needs no weights of its own: they are replaced by the tie.
            load = not share
            self.ground = _create_timm(
                name,
                pretrained and load,
                pretrained_file if load else None,
                num_classes=0,
                **_sized(name, ground_size, arch),
            )
            if share:
                tie_parameters(self.aerial, self.ground)
        self.shared = share

    def instance(self, view: str) -> nn.Module:
        if view not in VIEWS:
            raise ConfigError(choices_message("view", view, VIEWS))
        return self.ground if view == "ground" else self.aerial

    def stage_maps(self, x: Tensor, view: str, stages: tuple[int, ...]) -> list[Tensor]:
        """NCHW maps of the 1-based ``stages``; the last stage passes the backbone's final norm."""
        net = self.instance(view)
        return net.forward_intermediates(
            x, indices=[s - 1 for s in stages], norm=True, stop_early=True, intermediates_only=True
        )

    def pooled(self, x: Tensor, view: str) -> Tensor:
        """The backbone's own pooled features ``[B, C]`` (``num_classes=0``)."""
        return self.instance(view)(x)

    def stage_outputs(self, x: Tensor, view: str) -> dict[str, Tensor]:
        """Every stage's NCHW output, keyed ``stage_key(s)`` (1-based), without the final norm."""
        net = self.instance(view)
        stages = list(range(1, len(net.feature_info) + 1))
        maps = net.forward_intermediates(
            x,
            indices=[s - 1 for s in stages],
            norm=False,
            stop_early=True,
            output_fmt="NCHW",
            intermediates_only=True,
        )
        return {stage_key(s): m for s, m in zip(stages, maps, strict=True)}


def _sized(name: str, size: tuple[int, int], arch: dict) -> dict:
    """Add ``img_size`` for token models (their constructor takes it); CNNs take any size."""
    token = any(k in name for k in ("swin", "vit", "eva", "deit", "beit"))
    return {**arch, "img_size": tuple(size)} if token else dict(arch)


# --------------------------------------------------------------------------- aggregation


class FeatureAggregation(nn.Module):
    """SAFA-style feature aggregation (GeoViewMatch's FA module, Figure 4).

    ``[B, C, H, W]`` → max over channels ``[B, HW]`` → per head two linear maps
    ``HW → HW/2 → HW`` (no activation between them) → ``N`` spatial maps ``[B, HW, N]`` →
    per channel the Frobenius inner product with each map → ``[B, C·N]``, L2-normalised.
    The weights depend on ``HW``, so each view and stage has its own module.
    """

    def __init__(self, hw: int, num_heads: int = 8) -> None:
        super().__init__()
        if hw < 2:
            raise ConfigError(f"FeatureAggregation: the map needs at least 2 positions, got {hw}")
        hidden = hw // 2
        self.hw, self.num_heads = hw, num_heads
        # SAFA's initialisation: small normal weights, positive biases (maps start near-uniform).
        self.w1 = nn.Parameter(torch.randn(num_heads, hw, hidden) * 0.005)
        self.b1 = nn.Parameter(torch.full((num_heads, hidden), 0.1))
        self.w2 = nn.Parameter(torch.randn(num_heads, hidden, hw) * 0.005)
        self.b2 = nn.Parameter(torch.full((num_heads, hw), 0.1))

    def spatial_maps(self, x: Tensor) -> Tensor:
        """``[B, HW, N]`` aggregation maps of an NCHW feature map."""
        pooled = x.amax(dim=1).flatten(1)  # [B, HW]
        if pooled.shape[1] != self.hw:
            raise ConfigError(
                f"FeatureAggregation built for {self.hw} positions got a {tuple(x.shape[-2:])} map"
            )
        h = torch.einsum("bp,nph->bnh", pooled, self.w1) + self.b1
        a = torch.einsum("bnh,nhp->bnp", h, self.w2) + self.b2
        return a.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.spatial_maps(x)
        feats = torch.einsum("bcp,bpn->bcn", x.flatten(2), maps)  # Frobenius product per channel
        return F.normalize(feats.flatten(1), dim=1)


class ProjectionHead(nn.Sequential):
    """Two fully connected layers (paper §3.1), ReLU between, L2-normalised output."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.normalize(super().forward(x), dim=1)


# --------------------------------------------------------------------------- model


class GeoViewMatch(GeolocModel):
    """GeoViewMatch on the engine API. Inputs are ``[B, 3, H, W]`` images in ``[0, 1]``."""

    registry_name = "geoviewmatch"

    def __init__(self, cfg: GeoViewMatchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = SiameseBackbone(
            cfg.backbone,
            cfg.ground_size,
            cfg.aerial_size,
            share=cfg.share_backbone,
            pretrained=cfg.pretrained,
            pretrained_file=cfg.pretrained_file,
            embed_dim=cfg.embed_dim,
            depths=cfg.depths,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            drop_path_rate=cfg.drop_path_rate,
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Size the aggregation modules from a dry run: the map sizes depend on timm's rounding.
        stages = cfg.used_stages
        self.aggregators = nn.ModuleDict()
        dims = {}
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            for view, size in (("ground", cfg.ground_size), ("aerial", cfg.aerial_size)):
                maps = self.backbone.stage_maps(torch.zeros(1, 3, *size), view, stages)
                for s, m in zip(stages, maps, strict=True):
                    self.aggregators[f"{view}_s{s}"] = FeatureAggregation(
                        m.shape[2] * m.shape[3], cfg.fa_heads
                    )
                dims[view] = sum(m.shape[1] for m in maps) * cfg.fa_heads
        self.backbone.train(was_training)
        self.embed_dim = dims["aerial"]
        self.head = (
            ProjectionHead(self.embed_dim, cfg.proj_hidden, cfg.proj_dim)
            if cfg.contrastive
            else None
        )

    def config_dict(self) -> dict:
        """The config as plain values: ``create_model("geoviewmatch", **it)`` rebuilds."""
        return self.cfg.to_dict()

    def input_size(self, view: str) -> tuple[int, int]:
        return self.cfg.ground_size if view == "ground" else self.cfg.aerial_size

    def batch_transform(self) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
        """:meth:`augment_batch` (run by the engine so that ASAM's second pass sees the views)."""
        return self.augment_batch

    # -- features

    def descriptor(self, images: Tensor, view: str) -> Tensor:
        """Multi-scale descriptor: each selected stage through its FA module, concatenated."""
        x = (images - self.mean) / self.std
        maps = self.backbone.stage_maps(x, view, self.cfg.used_stages)
        parts = [
            self.aggregators[f"{view}_s{s}"](m)
            for s, m in zip(self.cfg.used_stages, maps, strict=True)
        ]
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def embed(self, images: Tensor, view: str) -> Tensor:
        """L2-normalised retrieval features of ``view`` ("ground" or "aerial")."""
        return self.descriptor(images, view)

    def forward(self, images: Tensor, view: str) -> Tensor:
        return self.descriptor(images, view)

    # -- explanation hooks (GeoViewMatch §5, Figures 8 and 9)

    def feature_maps(self, images: Tensor, view: str) -> dict[str, Tensor]:
        """Every Swin stage's output map, ``"stage 1"`` to ``"stage 4"``: the residual stream
        after the stage's last block, before the backbone's final norm (the norm is a separate
        layer, not part of stage 4, and a LayerNorm'd map has a nearly constant channel mean).

        SwinV2 adds only LayerNorm outputs to its residual stream (post-norm blocks, normalised
        patch merging), so a stage's channel mean is set by the norms' learnt affine
        parameters: zero up to rounding at random init, signal once those are trained (the
        paper used ImageNet-pretrained SwinV2-T).
        """
        return self.backbone.stage_outputs((images - self.mean) / self.std, view)

    def cam_target_layers(self, view: str) -> list[nn.Module]:
        """The last block of each stage feeding the multi-scale descriptor."""
        return swin_stage_blocks(self.backbone.instance(view), self.cfg.used_stages)

    def cam_reshape(self, view: str) -> Callable[[Tensor], Tensor]:
        return NHWCToNCHW()  # timm Swin blocks output [B, H, W, C]

    # -- training

    def augment_batch(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Add the strong aerial view and the weak (rotated aerial, rolled panorama) pair.

        Used as the engine's ``batch_transform`` so that ASAM's second pass sees the same views.
        """
        if not self.cfg.contrastive or "aerial_strong" in batch:
            return batch
        ground, aerial = batch["ground"], batch["aerial"]
        k = random_quarter_turns(aerial.shape[0], generator)
        aerial_weak, ground_weak = rotate_aerial_and_shift_panorama(aerial, ground, k)
        strong = strong_augment(aerial, self.cfg.strong_aug, generator)
        return {
            **batch,
            "aerial_strong": strong,
            "aerial_weak": aerial_weak,
            "ground_weak": ground_weak,
        }

    def training_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.cfg
        if not c.contrastive:  # the paper's BS: one retrieval loss on the raw pair
            ret = soft_margin_triplet(
                self.descriptor(batch["ground"], "ground"),
                self.descriptor(batch["aerial"], "aerial"),
                c.alpha,
            )
            return {"loss": ret, "ret": ret.detach()}
        batch = self.augment_batch(batch)  # no-op when the engine's batch_transform did it
        n = batch["ground"].shape[0]
        g = self.descriptor(torch.cat([batch["ground"], batch["ground_weak"]]), "ground")
        a = self.descriptor(torch.cat([batch["aerial_strong"], batch["aerial_weak"]]), "aerial")
        ret1 = soft_margin_triplet(g[:n], a[:n], c.alpha)  # ground vs strong aerial
        ret2 = soft_margin_triplet(g[n:], a[n:], c.alpha)  # rolled ground vs rotated aerial
        z = self.head(a)
        con = contrastive_loss(z[:n], z[n:], c.alpha)  # strong vs weak view of each tile
        loss = c.w_con * con + c.w_ret1 * ret1 + c.w_ret2 * ret2
        return {"loss": loss, "con": con.detach(), "ret1": ret1.detach(), "ret2": ret2.detach()}

    def param_groups(self, lr: dict[str, float]) -> list[dict]:
        """``lr["backbone"]`` for SwinV2, ``lr["head"]`` for the FA modules and projection head."""
        for key in ("backbone", "head"):
            if key not in lr:
                raise ConfigError(
                    f"GeoViewMatch.param_groups: lr needs keys 'backbone' and 'head', got {sorted(lr)}"
                )
        head = list(self.aggregators.named_parameters(prefix="aggregators"))
        if self.head is not None:
            head += list(self.head.named_parameters(prefix="head"))
        backbone = split_decay(self.backbone.named_parameters(), lr["backbone"], "backbone")
        return backbone + split_decay(head, lr["head"], "head")


@register_model("geoviewmatch")
def build_geoviewmatch(
    config: GeoViewMatchConfig | None = None, ablation: str | None = None, **fields: Any
) -> GeoViewMatch:
    """``create_model("geoviewmatch", config=GeoViewMatchConfig, ablation="BS+CL", **field
    changes)``; without ``config`` the fields not given keep the dataclass defaults."""
    if ablation is not None:
        fields = {**ablation_fields(ablation), **fields}
    return GeoViewMatch(with_fields(config or GeoViewMatchConfig(), fields, "GeoViewMatch config"))


def ablation_fields(ablation: str) -> dict[str, Any]:
    """The config fields of one of the paper's ablation labels (:data:`ABLATIONS`)."""
    if ablation not in ABLATIONS:
        raise ConfigError(f"GeoViewMatch: {choices_message('ablation', ablation, ABLATIONS)}")
    return dict(ABLATIONS[ablation])
