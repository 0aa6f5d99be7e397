"""MCGF: multi-weather cross-view geo-localization with a denoising diffusion model (MCGF, Sec. 2).

Pieces (each a small module; the same code builds the paper-size and the CPU-size model):

- DDPM forward process (§2.1): ``z_t = sqrt(ab_t) y + sqrt(1 - ab_t) eps`` applied to the
  *weathered* drone image ``y`` (pixels in [-1, 1]), ``t`` uniform in ``[0, t_max)``;
  ``geoloc_lib.models.diffusion`` provides the schedule, ``q_sample`` and DDIM.
- Shared encoder (§2.2): timm Swin-T, one network for every timestep and every weather.
- Restoration module (§2.3): three transposed convolutions (x2 each), an upsampling (x4) and a
  tanh, on the encoder's last map; it predicts the clean image ``z_0``. ``L_res = MSE(z_0, ẑ_0)``.
- Diffusive matching module (§2.4): ``E_content`` = timm EVA-02 (pooled tokens), then the MLP
  ``dense -> BatchNorm -> dropout -> dense -> softmax`` over the training locations. Training:
  cross-entropy; test: cosine similarity of the L2-normalised bottleneck features (the first
  dense layer after BatchNorm, University-1652's "ClassBlock" convention).
- ``L_mat = MSE(m_0, m̂_0)`` between the matching features of the clean drone image and of the
  restored one; ``L_all = w_res L_res + w_mat L_mat + w_cls L_cls`` (eq. 11 plus the
  cross-entropy the paper trains the MLP with).
- Inference (drone view): a few deterministic DDIM steps (eta = 0) from the weathered query,
  each predicting ``ẑ_0``; features of the last prediction, or (``pool_steps``) the mean of the
  normalised features of every step's prediction ("multiple granularities"). The satellite view
  goes straight to ``E_content``.

Readings of the paper where it is ambiguous (also in the notebook):

1. Eq. (3) prints ``sqrt(alpha_t)``; we use ``sqrt(alpha_bar_t)``, the closed form of eqs. (1)-(2).
2. "Given the clean drone-view images z_0, the forward process..." together with a restoration
   network that sees weathered images: we read it as a *conditional* x0-predicting diffusion.
   The network input is the forward process applied to the weathered image (so the model is
   trained on every noise level it will meet while denoising) and its target is the clean
   image. Eq. (7)-(8)'s VLB with a fixed variance reduces, up to weights, to this x0 MSE, which
   is exactly ``L_res`` (eq. 9); we optimise that, not a separate VLB.
3. The Swin-T has no timestep input in the paper; a denoiser needs the noise level, so a
   sinusoidal timestep embedding is added as a per-channel bias after the first deconvolution
   (``time_embed=False`` removes it).
4. "revealing clean features at multiple scales": the second and third deconvolutions also
   receive the encoder's stage-3 and stage-2 maps through 1x1 convolutions (U-Net-style
   lateral connections; ``lateral=False`` removes them, and with ``residual="none"`` and
   ``time_embed=False`` the module is the literal "three deconvolutions, an upsampling, and a
   Tanh" of §2.3, an ablation). The module predicts a correction of its (rescaled) input
   ``x = z_t/sqrt(ab_t)``: ``residual="pixel"`` (default) gives ``ẑ_0 = clip(x + 2 tanh(d), -1, 1)``;
   ``"atanh"`` gives ``tanh(atanh(x) + d)``, whose gradient vanishes on dark and over-exposed
   pixels (measured: it restores half as well, MSE 0.020 vs 0.010 at the default size);
   ``"none"`` is the literal "deconvs, upsample, tanh" (``ẑ_0 = tanh(d)``). The upsampling
   factor is the encoder's patch size (x4 for Swin-T), so ``ẑ_0`` has the input's size.
5. ``m_0`` (features of the clean image) is the target of ``L_mat`` with a stop-gradient, so
   ``L_mat`` pulls the restored image's features towards the clean ones and not the reverse.
6. The cross-entropy is applied to the satellite image, the clean drone image and the restored
   drone image with one shared classifier (University-1652 baseline practice); its weight is a
   config field because the paper's eq. (11) omits it.
7. "The satellite branch goes straight to E_content": one EVA-02 shared by both views.
8. DDIM starts from a point training has seen: ``infer_start="noise"`` (the paper preset) draws
   ``z_{t_start} = sqrt(ab) y + sqrt(1 - ab) eps*`` from q(z_t | y), the distribution the
   restorer is trained on at t = t_start (training noises the weathered image with
   t ~ U[0, t_max), so t_start < t_max is required), with ``eps*`` one fixed noise field
   (``infer_seed``) for every query, so the features stay a deterministic function of the image
   whatever the batch. ``infer_start="mean"`` starts from the noise-free mean ``sqrt(ab) y``, an
   input the restorer never saw at that t; the CPU presets keep it (their t_start = 10 would add
   noise of std 0.05 (default, T = 1000) or 0.11 (smoke, T = 100) on [-1, 1] pixels, against
   0.32 for the paper preset's t_start = 100, and their results were measured without it).
9. "the diffusive matching module can gradually obtain clearer drone-viewing images as input.
   This process enables the matching model to run at multiple granularities": the query
   feature is the mean of the normalised features of every DDIM step's ẑ_0 (``pool_steps``;
   ``False`` keeps the last step's, an ablation in ``04_ablations``).
10. "Shared encoder" (§2.2, Figure 2): one Swin-T shared by every timestep and every weather
    condition, feeding the restoration module only. The matching module has its own backbone,
    EVA-02 (§2.4: "EVA-02 as the backbone of E_content"), which sees the restored *pixels*, not
    the Swin-T features; what restoration and matching share is the restored image. The paper
    never shows Swin-T features reaching E_content.
11. Diffusion hyper-parameters: the paper gives none of T, the beta schedule, the training
    noise range, the inference start or the number of DDIM steps. Ours (all choices): T = 1000,
    Ho et al.'s linear schedule (1e-4 to 0.02), t ~ U[0, t_max) with t_max = 200, DDIM from
    t_start = 100 in 3 steps (``timesteps``, ``schedule``, ``t_max``, ``t_start``,
    ``infer_steps``).

CPU-size choices (``default``/``smoke`` presets only; the ``paper`` preset keeps the paper's):
the matching branch also gets a symmetric InfoNCE between the satellite and the restored drone,
the image it matches at test (``w_nce``, ``nce_drone="restored"``; the "w/o restoration" model
gets the same term on the weathered drone it matches), and per-image standardised inputs
(``content_norm``), because a random-initialised tiny EVA-02 does not learn cross-view matching
from cross-entropy alone, nor brightness invariance from a few hundred locations. Their
restoration branch is trained at low noise levels (``t_max=20``, ``t_start=10``). The
restorer is trained jointly with the matcher, as eq. 11 (``mat_to_restorer=True``). Each of
these departures, and the detached restorer (``mat_to_restorer=False``: ``L_mat`` trains
E_content only) and clean-drone InfoNCE (``nce_drone="clean"``) that are the alternatives, is a
named variant measured against the paper's method (``analysis.ablations.DEVIATIONS``).
``restore_queries=False`` matches the weathered query without the restoration pass (the
``queries not restored`` ablation); ``train_noise=False`` trains the restorer on inputs
without the forward process's noise (the ``no training noise`` ablation).

``restoration=False`` is the "w/o restoration" ablation and the University-1652 classification
baseline: no encoder, no diffusion; the matching branch trained with cross-entropy on the
satellite and the *weathered* drone image (registered as ``mcgf_matching_only``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoloc_lib.core.config import check_int, with_fields
from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.models import register_model
from geoloc_lib.models.backbones import create_backbone
from geoloc_lib.models.cam import TokensToNCHW, vit_last_block
from geoloc_lib.models.contract import IMAGENET_MEAN, IMAGENET_STD, GeolocModel
from geoloc_lib.models.diffusion import NoiseSchedule, ddim_sample, q_sample
from geoloc_lib.models.losses import SymmetricInfoNCE

VIEWS = ("drone", "satellite")
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
CONTENT_NORMS = ("clip", "per_image")
RESIDUALS = ("pixel", "atanh", "none")
INFER_STARTS = ("noise", "mean")
NCE_DRONES = ("restored", "clean", "both")


# --------------------------------------------------------------------------- configuration


@dataclass
class MCGFConfig:
    """Architecture, diffusion and loss settings. Its presets (``paper``, ``default``,
    ``smoke``) are :data:`PRESETS`, looked up by :func:`geoloc_lib.training.recipes.preset_for`;
    the field defaults are the paper's architecture."""

    num_classes: int = 701
    img_size: int = 448
    restoration: bool = True  # False: the matching-only baseline
    # shared encoder (timm Swin-T) and restoration module
    encoder: str = "swin_tiny_patch4_window7_224"
    encoder_arch: dict[str, Any] = field(default_factory=dict)  # timm kwargs (shrinks the model)
    decoder_channels: tuple[int, int] = (256, 128)
    residual: str = "pixel"  # how the decoder's output makes ẑ_0: one of RESIDUALS (reading 4)
    lateral: bool = True  # stage-3/stage-2 lateral inputs to the decoder (reading 4)
    time_embed: bool = True
    # matching module (timm EVA-02 + MLP)
    content: str = "eva02_base_patch14_448"
    content_arch: dict[str, Any] = field(default_factory=dict)
    bottleneck: int = 512
    dropout: float = 0.5
    # E_content's input normalisation: "clip" (EVA-02's mean/std, the paper's) or "per_image"
    # (each image standardised by its own mean/std, which removes global brightness/contrast).
    content_norm: str = "clip"
    pretrained: bool = False
    encoder_pretrained_file: str | None = None
    content_pretrained_file: str | None = None
    # diffusion
    schedule: str = "linear"
    timesteps: int = 1000
    t_max: int = 200  # training noise levels t ~ U[0, t_max)
    t_start: int = 100  # inference: first DDIM timestep (< t_max: a trained noise level)
    infer_start: str = "noise"  # "noise": a fixed draw from q(z_t_start | y); "mean" (reading 8)
    infer_seed: int = 0  # seed of the fixed noise field of infer_start="noise"
    infer_steps: int = 3
    pool_steps: bool = True  # "multiple granularities" (reading 9); False: the last step only
    restore_queries: bool = True  # False: match the weathered query as is (an ablation)
    # losses
    w_res: float = 1.0
    w_mat: float = 1.0
    w_cls: float = 1.0
    # Optional symmetric InfoNCE between satellite and drone matching features (not in the
    # paper; 0 in the paper preset). Random-init CPU-size models memorise the training
    # locations with the cross-entropy alone; this term is what makes them generalise.
    w_nce: float = 0.0
    nce_temperature: float = 0.07
    # which drone features the InfoNCE contrasts with the satellite: "restored" (what MCGF's
    # matcher sees at test, as "w/o restoration" contrasts the weathered drone it sees),
    # "clean", or "both" (the mean of the two terms)
    nce_drone: str = "restored"
    # L_mat's (and the restored image's cross-entropy's) gradient also reaches the restoration
    # module (True: end-to-end, the paper's joint training). False: it trains E_content only
    # and the restorer learns from L_res alone.
    mat_to_restorer: bool = True
    # False: the forward process adds no noise (z_t = sqrt(ab_t) y, so the restorer always sees
    # the weathered image itself); timesteps, schedule and inference are unchanged. The
    # "no training noise" ablation: the diffusion's noising is the one thing it removes.
    train_noise: bool = True

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(self.decoder_channels)
        if self.content_norm not in CONTENT_NORMS:
            raise ConfigError(
                "MCGFConfig.content_norm: "
                + choices_message("content_norm", self.content_norm, CONTENT_NORMS)
            )
        if self.nce_drone not in NCE_DRONES:
            raise ConfigError(
                "MCGFConfig.nce_drone: " + choices_message("nce_drone", self.nce_drone, NCE_DRONES)
            )
        if self.residual not in RESIDUALS:
            raise ConfigError(
                "MCGFConfig.residual: " + choices_message("residual", self.residual, RESIDUALS)
            )
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError(
                "MCGFConfig.schedule: "
                + choices_message("schedule", self.schedule, ("linear", "cosine"))
            )
        if not 0 < self.t_max <= self.timesteps:
            raise ConfigError(
                f"MCGFConfig.t_max must be in (0, {self.timesteps}], got {self.t_max}"
            )
        if not 0 <= self.t_start < self.timesteps:
            raise ConfigError(
                f"MCGFConfig.t_start must be in [0, {self.timesteps}), got {self.t_start}"
            )
        if self.infer_start not in INFER_STARTS:
            raise ConfigError(
                "MCGFConfig.infer_start: "
                + choices_message("infer_start", self.infer_start, INFER_STARTS)
            )
        if self.t_start >= self.t_max:
            raise ConfigError(
                f"MCGFConfig.t_start ({self.t_start}) must be < t_max ({self.t_max}): inference "
                "would start at a noise level training never draws"
            )
        if self.infer_steps < 1:
            raise ConfigError(f"MCGFConfig.infer_steps must be >= 1, got {self.infer_steps}")
        if self.num_classes < 2:
            raise ConfigError(f"MCGFConfig.num_classes must be >= 2, got {self.num_classes}")
        check_int("MCGFConfig", "img_size", self.img_size, 32)
        if self.img_size % 32:
            raise ConfigError(f"MCGFConfig.img_size must be a multiple of 32, got {self.img_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Random-init CPU-size matching branch (measured on this project's CPU presets): a symmetric
# InfoNCE between the satellite and the restored drone (the images MCGF's matcher sees at test;
# "w/o restoration" gets the same term on the weathered drone it sees), on per-image
# standardised inputs (brightness/contrast invariance a pretrained EVA-02 would bring). A
# random-initialised tiny EVA-02 does not learn cross-view matching from cross-entropy alone.
# The restorer trains jointly with the matcher (mat_to_restorer=True), as the paper's eq. 11.
# Each departure from the paper that stays at CPU size is a named, measured variant
# (analysis.ablations.DEVIATIONS): the InfoNCE term itself, the noise levels, a detached
# restorer and an InfoNCE term on the clean drone view instead of the restored one.
_CPU_MATCHING: dict[str, Any] = dict(w_nce=1.0, nce_drone="restored", content_norm="per_image")
_TINY_SWIN = dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 6), window_size=4)
PRESETS: dict[str, MCGFConfig] = {
    # Paper §3: Swin-T + EVA-02 base at 448x448, pretrained (SGD settings live in training/mcgf.py).
    "paper": MCGFConfig(pretrained=True),
    # CPU sizes: the same architectures with timm's size kwargs.
    "default": MCGFConfig(
        img_size=64,
        encoder_arch=_TINY_SWIN,
        content_arch=dict(patch_size=8, embed_dim=96, depth=3, num_heads=3),
        decoder_channels=(48, 24),
        bottleneck=128,
        # Low noise levels: the restorer's 16x16 correction map cannot remove per-pixel noise
        # at 64 px, and t_max=200 left restored queries far worse than weathered ones.
        t_max=20,
        t_start=10,
        infer_start="mean",  # as measured (reading 8)
        w_cls=0.1,  # the cross-entropy memorises the training locations at this size
        **_CPU_MATCHING,
    ),
    "smoke": MCGFConfig(
        img_size=32,
        encoder_arch=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=2),
        content_arch=dict(patch_size=8, embed_dim=32, depth=1, num_heads=2),
        decoder_channels=(16, 8),
        bottleneck=32,
        timesteps=100,
        t_max=20,
        t_start=10,
        infer_start="mean",
        infer_steps=2,
        w_cls=0.1,
        **_CPU_MATCHING,
    ),
}


# --------------------------------------------------------------------------- building blocks


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps (Transformer / DDPM convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class _PerImageStandardize(nn.Module):
    """[0, 1] pixels -> zero mean, unit variance per image (over channels and pixels).

    A pretrained E_content brings invariance to global brightness and contrast from its
    pretraining; a random-init CPU-size one cannot learn it from a few hundred locations, and the
    dark and over-exposure conditions are mostly such global changes. The channel ratios (the
    colour) are kept.
    """

    def __init__(self, eps: float = 0.02) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean((1, 2, 3), keepdim=True)
        return (x - mean) / (x.std((1, 2, 3), keepdim=True) + self.eps)


class _Normalize(nn.Module):
    """[0, 1] pixels -> the backbone's expected mean/std."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _deconv(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class RestorationModule(nn.Module):
    """Three transposed convolutions (x8), an upsampling and a tanh: last-stage map -> image.

    ``channels`` = (C4 from the encoder's last stage, C3, C2 for the lateral inputs); the
    decoder's widths are ``hidden``. ``upsample`` is the encoder's patch size (x4 for Swin-T,
    whose last stage is at stride 32), so the output has the input's size. Output in [-1, 1].
    """

    def __init__(
        self,
        channels: tuple[int, int, int],
        hidden: tuple[int, int],
        *,
        residual: str = "pixel",
        time_embed: bool = True,
        upsample: int = 4,
        lateral: bool = True,
    ) -> None:
        super().__init__()
        c4, c3, c2 = channels
        h1, h2 = hidden
        self.deconv1 = _deconv(c4, h1)
        self.lateral3 = nn.Conv2d(c3, h1, 1) if lateral else None
        self.deconv2 = _deconv(h1, h2)
        self.lateral2 = nn.Conv2d(c2, h2, 1) if lateral else None
        self.deconv3 = _deconv(h2, 3, norm=False)
        self.upsample = (
            nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False)
            if upsample > 1
            else nn.Identity()
        )
        self.time = (
            nn.Sequential(nn.Linear(h1, h1), nn.SiLU(), nn.Linear(h1, h1)) if time_embed else None
        )
        self.residual = residual
        nn.init.zeros_(self.deconv3[0].weight)  # start as the identity (residual) / grey image
        nn.init.zeros_(self.deconv3[0].bias)

    def forward(self, maps: list[Tensor], t: Tensor, x_in: Tensor) -> Tensor:
        f2, f3, f4 = maps
        h = self.deconv1(f4)
        if self.lateral3 is not None:
            h = h + self.lateral3(f3)
        if self.time is not None:
            h = h + self.time(timestep_embedding(t, h.shape[1]).to(h.dtype))[:, :, None, None]
        h = self.deconv2(h)
        if self.lateral2 is not None:
            h = h + self.lateral2(f2)
        d = self.upsample(self.deconv3(h))
        if self.residual == "pixel":  # a bounded correction added to the input's pixels
            return (x_in + 2 * torch.tanh(d)).clamp(-1, 1)
        if self.residual == "atanh":
            d = d + torch.atanh(x_in.clamp(-0.995, 0.995))
        return torch.tanh(d)


class MatchingHead(nn.Module):
    """MLP of §2.4: dense -> BatchNorm -> dropout -> dense (+ softmax inside the cross-entropy)."""

    def __init__(self, dim: int, bottleneck: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dense1 = nn.Linear(dim, bottleneck)
        self.bn = nn.BatchNorm1d(bottleneck)
        self.dropout = nn.Dropout(dropout)
        self.dense2 = nn.Linear(bottleneck, num_classes)
        nn.init.kaiming_normal_(self.dense1.weight, a=0, mode="fan_out")
        nn.init.zeros_(self.dense1.bias)
        nn.init.normal_(self.dense2.weight, std=0.001)
        nn.init.zeros_(self.dense2.bias)

    def features(self, x: Tensor) -> Tensor:
        """The retrieval feature m (before dropout), unnormalised."""
        return self.bn(self.dense1(x))

    def logits(self, m: Tensor) -> Tensor:
        return self.dense2(self.dropout(m))


# --------------------------------------------------------------------------- the model


class MCGF(GeolocModel):
    """MCGF on the engine API. Images are ``[B, 3, H, W]`` in ``[0, 1]``."""

    registry_name = "mcgf"

    def __init__(self, cfg: MCGFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        size = dict(img_size=cfg.img_size)
        self.content = create_backbone(
            cfg.content,
            pretrained=cfg.pretrained,
            pretrained_file=cfg.content_pretrained_file,
            file_param="content_pretrained_file",
            num_classes=0,
            **{**size, **cfg.content_arch},
        )
        self.content_norm = (
            _Normalize(CLIP_MEAN, CLIP_STD)
            if cfg.content_norm == "clip"
            else _PerImageStandardize()
        )
        self.head = MatchingHead(
            self.content.num_features, cfg.bottleneck, cfg.num_classes, cfg.dropout
        )
        self.weights_source = {"content": self.content.weights_source}
        self.encoder: nn.Module | None = None
        self.restore: RestorationModule | None = None
        if cfg.restoration:
            self.encoder = create_backbone(
                cfg.encoder,
                pretrained=cfg.pretrained,
                pretrained_file=cfg.encoder_pretrained_file,
                file_param="encoder_pretrained_file",
                num_classes=0,
                **{**size, **cfg.encoder_arch},
            )
            self.weights_source["encoder"] = self.encoder.weights_source
            self.encoder_norm = _Normalize(IMAGENET_MEAN, IMAGENET_STD)
            info = self.encoder.feature_info
            chans = [stage["num_chs"] for stage in info]
            self.restore = RestorationModule(
                (chans[-1], chans[-2], chans[-3]),
                tuple(cfg.decoder_channels),
                residual=cfg.residual,
                time_embed=cfg.time_embed,
                lateral=cfg.lateral,
                upsample=info[0]["reduction"],  # the patch size: stage 1 is at stride patch
            )
        self.nce = SymmetricInfoNCE(cfg.nce_temperature) if cfg.w_nce > 0 else None
        sched = NoiseSchedule.linear if cfg.schedule == "linear" else NoiseSchedule.cosine
        with torch.device("cpu"):  # the schedule is host data, also when built under meta
            self.schedule = sched(cfg.timesteps)
        self.register_buffer(
            "alpha_bar", self.schedule.alpha_bar.float(), persistent=False
        )  # on the model's device for q_sample's inputs

    def config_dict(self) -> dict[str, Any]:
        return {"name": self.registry_name, **self.cfg.to_dict()}

    def input_size(self, view: str) -> tuple[int, int]:
        return (self.cfg.img_size, self.cfg.img_size)  # drone and satellite alike

    # ---- restoration: x0-predicting denoiser
    def denoise(self, z_t: Tensor, t: Tensor) -> Tensor:
        """Predict the clean image ẑ_0 in [-1, 1] from ``z_t`` in [-1, 1]-scale at timesteps ``t``."""
        if self.encoder is None or self.restore is None:
            raise ConfigError("this MCGF has restoration=False: it has no denoiser")
        t = t.to(z_t.device)
        ab = self.alpha_bar.to(z_t.device)[t].view(-1, 1, 1, 1)
        x_in = z_t / ab.sqrt()  # unbiased estimate of the weathered image
        maps = self.encoder.forward_intermediates(
            self.encoder_norm((x_in.clamp(-1, 1) + 1) / 2),
            indices=[1, 2, 3],
            norm=True,
            output_fmt="NCHW",
            intermediates_only=True,
        )
        return self.restore(maps, t, x_in)

    def restore_query(self, images: Tensor, steps: int | None = None) -> list[Tensor]:
        """Deterministic DDIM restoration of weathered images in [0, 1]; every step's ẑ_0 in [0, 1]."""
        steps = steps or self.cfg.infer_steps
        y = images * 2 - 1
        t0 = self.cfg.t_start
        ab = self.alpha_bar[t0]
        z = ab.sqrt() * y  # the mean of q(z_t0 | y)
        if self.cfg.infer_start == "noise":  # a fixed draw from q(z_t0 | y) (reading 8)
            z = z + (1 - ab).sqrt() * self.start_noise(y)
        preds: list[Tensor] = []

        def x0_model(z_t: Tensor, t: Tensor) -> Tensor:
            x0 = self.denoise(z_t, t)
            preds.append(x0)
            return x0

        ddim_sample(x0_model, z, t0, steps, self.schedule, clip_x0=(-1.0, 1.0))
        return [(p + 1) / 2 for p in preds]

    def start_noise(self, like: Tensor) -> Tensor:
        """The fixed noise field ``eps*`` [1, C, H, W] of ``infer_start="noise"`` (``infer_seed``)."""
        g = torch.Generator(device="cpu").manual_seed(self.cfg.infer_seed)
        eps = torch.randn(like.shape[1:], generator=g, dtype=torch.float32)
        return eps.to(device=like.device, dtype=like.dtype)[None]

    # ---- matching
    def match_features(self, images: Tensor) -> Tensor:
        """Bottleneck features m [B, bottleneck] of images in [0, 1] (unnormalised)."""
        return self.head.features(self.content(self.content_norm(images)))

    def match_features_per_view(self, *views: Tensor) -> list[Tensor]:
        """:meth:`match_features` of each batch in ``views``, E_content run once on them all.

        E_content (a ViT: per-image normalisation, LayerNorm, attention within an image) treats
        every image alone, so one pass over the concatenation gives each image the features of a
        pass of its own, with one set of kernel launches instead of one per view. The head's
        BatchNorm keeps one call per view: its batch statistics stay per view, as University-1652
        models train, and a view's features do not depend on the other views' images (the
        stop-gradient of eq. 10 stays exact).
        """
        tokens = self.content(self.content_norm(torch.cat(views)))
        return [self.head.features(t) for t in tokens.split([v.shape[0] for v in views])]

    def embed(self, images: Tensor, view: str) -> Tensor:
        """L2-normalised retrieval features; drone queries are restored first (if enabled)."""
        if view not in VIEWS:
            raise ConfigError(f"MCGF.embed: {choices_message('view', view, VIEWS)}")
        if view == "satellite" or self.restore is None or not self.cfg.restore_queries:
            return F.normalize(self.match_features(images).float(), dim=-1)
        preds = self.restore_query(images)
        if not self.cfg.pool_steps:
            return F.normalize(self.match_features(preds[-1]).float(), dim=-1)
        # One E_content pass per DDIM step: one pass over all steps would triple inference's
        # peak memory (the cost table's tensor memory).
        feats = [F.normalize(self.match_features(p).float(), dim=-1) for p in preds]
        return F.normalize(torch.stack(feats).mean(0), dim=-1)

    def forward(self, images: Tensor, view: str = "drone") -> Tensor:
        return self.embed(images, view)

    # ---- explanation hooks (Figure 3: what the matching branch looks at)
    def explained_images(self, images: Tensor, view: str) -> Tensor:
        """Drone queries: the restoration's last DDIM prediction in [0, 1], the image the
        matching branch reads (with ``pool_steps`` the embedding averages every step's); any
        model with a restoration module restores, so the figure shows what it makes of the
        query. Satellite tiles and ``restoration=False`` models: the images as given."""
        if view not in VIEWS:
            raise ConfigError(f"MCGF.explained_images: {choices_message('view', view, VIEWS)}")
        if view == "satellite" or self.restore is None:
            return images
        return self.restore_query(images)[-1].clamp(0, 1)

    def feature_maps(self, images: Tensor, view: str) -> dict[str, Tensor]:
        """``"content last block"``: E_content's (EVA-02's) last-block patch tokens as a map,
        before its final norm. The paper does not say how its Figure 3 heatmaps are made; this
        is the GeoViewMatch §5 channel-mean reading on what is matched."""
        content = self.content
        (tokens,) = content.forward_intermediates(
            self.content_norm(images),
            indices=[len(content.blocks) - 1],
            norm=False,
            output_fmt="NCHW",
            intermediates_only=True,
        )
        return {"content last block": tokens}

    def cam_embedding(self, images: Tensor, view: str) -> Tensor:
        """The normalised matching features of ``explained_images`` (no second restoration)."""
        return F.normalize(self.match_features(images).float(), dim=-1)

    def cam_target_layers(self, view: str) -> list[nn.Module]:
        return vit_last_block(self.content)

    def cam_reshape(self, view: str) -> Callable[[Tensor], Tensor]:
        return TokensToNCHW.for_model(self.content)  # drop the class token, lay out the patches

    # ---- training
    def training_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One MCGF step's losses. ``batch``: ``drone`` (clean), ``drone_weather`` (weathered),
        ``satellite`` images in [0, 1] and ``label`` (class index in [0, num_classes))."""
        cfg = self.cfg
        sat, label = batch["satellite"], batch["label"]
        weathered = batch["drone_weather"]
        b = sat.shape[0]
        if self.restore is None:  # baseline: E_content on the weathered drone image
            m_sat, m_drone = self.match_features_per_view(sat, weathered)
            cls = F.cross_entropy(
                self.head.logits(torch.cat([m_sat, m_drone])).float(), label.repeat(2)
            )
            out = {"loss": cfg.w_cls * cls, "cls": cls.detach()}
            return self._add_nce(out, m_sat, [m_drone], label)

        clean = batch["drone"]
        # DDPM forward process on the weathered image, one noise level per sample (eq. 3).
        # t is drawn on the host (the schedule lives there); the noise on the images' device.
        t = torch.randint(0, cfg.t_max, (b,), device="cpu")
        y = weathered * 2 - 1
        noise = torch.randn_like(y) if cfg.train_noise else torch.zeros_like(y)
        z_t = q_sample(self.schedule, y, t, noise=noise)
        t = t.to(y.device)
        restored = (self.denoise(z_t, t) + 1) / 2
        l_res = F.mse_loss(restored.float(), clean.float())  # eq. 9 (on [0, 1] pixels)
        # BatchNorm statistics per view (match_features_per_view), as University-1652 models
        # do; shared statistics would also leak L_mat's gradient into the clean branch.
        rest_in = restored if cfg.mat_to_restorer else restored.detach()
        m_sat, m_clean, m_rest = self.match_features_per_view(sat, clean, rest_in)
        m = torch.cat([m_sat, m_clean, m_rest])
        l_mat = F.mse_loss(m_rest.float(), m_clean.detach().float())  # eq. 10
        cls = F.cross_entropy(self.head.logits(m).float(), label.repeat(3))
        loss = cfg.w_res * l_res + cfg.w_mat * l_mat + cfg.w_cls * cls  # eq. 11 + CE
        out = {"loss": loss, "res": l_res.detach(), "mat": l_mat.detach(), "cls": cls.detach()}
        drones = {"restored": [m_rest], "clean": [m_clean], "both": [m_clean, m_rest]}
        drones = drones[cfg.nce_drone]
        return self._add_nce(out, m_sat, drones, label)

    def _add_nce(
        self, out: dict[str, Tensor], m_sat: Tensor, m_drone: list[Tensor], label: Tensor
    ) -> dict[str, Tensor]:
        """``w_nce`` x mean InfoNCE(satellite, each drone feature) on normalised features."""
        if self.nce is None:
            return out
        sat = F.normalize(m_sat.float(), dim=-1)
        nce = torch.stack(
            [self.nce(sat, F.normalize(m.float(), dim=-1), label) for m in m_drone]
        ).mean()
        return {**out, "loss": out["loss"] + self.cfg.w_nce * nce, "nce": nce.detach()}

    def param_groups(self, lr: dict[str, float]) -> list[dict]:
        """Optimiser groups: ``backbone`` (EVA-02 and Swin-T) at ``lr["backbone"]``, ``head`` (the
        matching MLP) at ``lr["head"]`` and ``restoration`` (the restoration module, with its
        timestep MLP) at ``lr["restoration"]`` (``lr["head"]`` when absent).

        §3 gives 0.01 to "the backbone layer" and 0.1 to "the classification layer" only; the
        restoration module is neither, so it has a group of its own and the training preset
        states its rate (``TrainSettings.lr_restoration``).
        """
        for key in ("backbone", "head"):
            if key not in lr:
                raise ConfigError(
                    f"MCGF.param_groups: lr needs keys 'backbone' and 'head', got {sorted(lr)}"
                )
        backbone = list(self.content.parameters())
        if self.encoder is not None:
            backbone += list(self.encoder.parameters())
        restoration = list(self.restore.parameters()) if self.restore is not None else []
        ids = {id(p) for p in backbone + restoration}
        head = [p for p in self.parameters() if id(p) not in ids]
        groups = [
            {"params": backbone, "lr": lr["backbone"], "name": "backbone"},
            {"params": head, "lr": lr["head"], "name": "head"},
        ]
        if restoration:
            rate = lr.get("restoration", lr["head"])
            groups.append({"params": restoration, "lr": rate, "name": "restoration"})
        return groups


@register_model("mcgf")
def build_mcgf(config: MCGFConfig | None = None, **fields: Any) -> MCGF:
    """``create_model("mcgf", config=MCGFConfig, **field changes)``; without ``config`` the
    fields not given keep the dataclass defaults (a preset's config:
    ``geoloc_lib.training.recipes.preset_for("mcgf", name).config``)."""
    return MCGF(with_fields(config or MCGFConfig(), fields, "MCGF config"))


@register_model("mcgf_matching_only")
def build_mcgf_matching_only(config: MCGFConfig | None = None, **fields: Any) -> MCGF:
    """The baseline: MCGF's matching branch alone (``restoration=False``), same configs."""
    cfg = with_fields(config or MCGFConfig(), {**fields, "restoration": False}, "MCGF config")
    model = MCGF(cfg)
    model.registry_name = "mcgf_matching_only"
    return model
