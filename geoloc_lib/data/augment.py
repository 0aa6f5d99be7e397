"""Training augmentations: GeoViewMatch's batched aerial augmentations (paper §3.3) and the
per-item drone/satellite pair augmentation of the University-1652 loaders (:class:`PairAugConfig`).

Images are float tensors ``[B, 3, H, W]`` in ``[0, 1]`` (the models normalise internally), so the
augmentations run on whatever device holds the batch, with per-sample random parameters drawn
from an explicit ``torch.Generator`` (deterministic given a seed).

- strong: colour jitter, random grey, Gaussian blur (:func:`strong_augment`);
- weak: rotation of the aerial tile by k·90° clockwise with the north-aligned panorama circularly
  shifted so the pair stays aligned (:func:`rotate_aerial_and_shift_panorama`).

Panorama convention (CVUSA, CVACT): azimuth grows clockwise (seen from above) from left to right
and the panorama spans 360°. Rotating the aerial tile clockwise by 90° puts old west at the top, so
the new panorama must show at column ``c`` what the old one showed at ``c - W/4``: a roll by
``+k·W/4`` columns (``torch.roll`` moves content to higher indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from geoloc_lib.core.errors import ConfigError, choices_message

# ITU-R BT.601 luma, the weights torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class StrongAugConfig:
    """SimCLR-style photometric augmentation strengths (the paper gives no values)."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of a full hue turn, as torchvision's ColorJitter
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1  # kernel ≈ 10% of the image side (SimCLR)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _gray(x: Tensor) -> Tensor:
    w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor * x + (1 - factor) * other`` clamped to [0, 1] (torchvision's adjust_* rule)."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def _rotate_hue(x: Tensor, turns: Tensor) -> Tensor:
    """Hue rotation as a rotation about the grey axis in YIQ space (vectorised, differentiable)."""
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    to_rgb = torch.linalg.inv(to_yiq)
    theta = 2 * torch.pi * turns.to(x)
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(len(theta), 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = to_rgb @ rot @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding)."""
    b, c, h, w = x.shape
    r = kernel // 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.to(x)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def strong_augment(
    x: Tensor, cfg: StrongAugConfig | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Colour jitter (p_jitter), random grey (p_gray), Gaussian blur (p_blur), per image."""
    cfg = cfg or StrongAugConfig()
    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"strong_augment: expected [B, 3, H, W] images, got {tuple(x.shape)}")
    n, dev = x.shape[0], x.device

    def draw(p: float) -> Tensor:  # which images get an operation
        return (torch.rand(n, generator=generator) < p).to(dev)

    jit = draw(cfg.p_jitter)
    bri = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator).to(dev)
    con = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator).to(dev)
    sat = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, generator).to(dev)
    hue = _uniform(n, -cfg.hue, cfg.hue, generator).to(dev)
    one = torch.ones(n, device=dev)
    y = _blend(x, torch.zeros_like(x), torch.where(jit, bri, one))
    mean = _gray(y).mean((1, 2, 3), keepdim=True).expand_as(y)
    y = _blend(y, mean, torch.where(jit, con, one))
    y = _blend(y, _gray(y).expand_as(y), torch.where(jit, sat, one))
    y = _rotate_hue(y, torch.where(jit, hue, torch.zeros_like(hue)))
    gray = draw(cfg.p_gray).view(-1, 1, 1, 1)
    y = torch.where(gray, _gray(y).expand_as(y), y)
    blur = draw(cfg.p_blur)
    sigma = _uniform(n, *cfg.blur_sigma, generator).to(dev)
    kernel = max(3, int(cfg.blur_kernel_frac * min(x.shape[-2:])) // 2 * 2 + 1)
    kernel = min(kernel, 2 * (min(x.shape[-2:]) // 2) - 1)  # reflect padding needs r < side
    if blur.any() and kernel >= 3:
        y = torch.where(blur.view(-1, 1, 1, 1), gaussian_blur(y, sigma, kernel), y)
    return y


def rotate_aerial_and_shift_panorama(
    aerial: Tensor, pano: Tensor, k: int | Tensor
) -> tuple[Tensor, Tensor]:
    """Rotate aerial tiles clockwise by ``k``·90° and roll panoramas by ``k``·W/4 columns.

    ``k`` is an int or a ``[B]`` tensor of per-sample quarter turns (any integer; taken mod 4).
    Aerial tiles must be square and the panorama width divisible by 4.
    """
    if aerial.ndim != 4 or pano.ndim != 4 or aerial.shape[0] != pano.shape[0]:
        raise ConfigError(
            f"rotate_aerial_and_shift_panorama: expected [B, C, H, W] batches of equal B, got "
            f"{tuple(aerial.shape)} and {tuple(pano.shape)}"
        )
    if aerial.shape[-1] != aerial.shape[-2]:
        raise ConfigError(f"aerial tiles must be square to rotate, got {tuple(aerial.shape[-2:])}")
    width = pano.shape[-1]
    if width % 4:
        raise ConfigError(
            f"panorama width must be divisible by 4 to shift by quarters, got {width}"
        )
    ks = torch.as_tensor(k, device=aerial.device).long().expand(aerial.shape[0]) % 4
    out_a, out_p = aerial.clone(), pano.clone()
    for q in range(1, 4):
        sel = ks == q
        if sel.any():
            out_a[sel] = torch.rot90(aerial[sel], -q, dims=(-2, -1))  # negative = clockwise
            out_p[sel] = torch.roll(pano[sel], q * width // 4, dims=-1)
    return out_a, out_p


def random_quarter_turns(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample k in {1, 2, 3}: the paper limits the weak rotation to 90°, 180° and 270°."""
    return torch.randint(1, 4, (n,), generator=generator)


# --------------------------------------------------------------------------- drone/satellite pairs


@dataclass(frozen=True)
class PairAugConfig:
    """Per-item augmentation of a University-1652 training pair (drone view, satellite tile).

    Geometric changes keep the pair a valid view of the same place: a nadir tile can be rotated by
    any angle (the drone's heading is arbitrary) and mirroring both views together gives the
    mirrored world. ``joint_flip=False`` flips the drone view alone, as University-1652's
    baseline recipe does. Zooms are scale ranges (< 1 zooms in); ``drone_shift`` is a fraction of
    the image side; brightness/contrast are jitter half-ranges applied to each view separately.
    """

    joint_flip: bool = True
    sat_rotation: str = "any"  # "quarter": k x 90 degrees (exact) | "any": uniform angle
    sat_zoom: tuple[float, float] = (1.0, 1.0)
    drone_zoom: tuple[float, float] = (1.0, 1.0)
    drone_shift: float = 0.0
    drone_tilt_deg: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        if self.sat_rotation not in ("quarter", "any"):
            raise ConfigError(
                "PairAugConfig.sat_rotation: "
                + choices_message("sat_rotation", self.sat_rotation, ("quarter", "any"))
            )
        for name in ("sat_zoom", "drone_zoom"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(
                    f"PairAugConfig.{name} must be a range 0 < lo <= hi, got {lo, hi}"
                )


PAIR_AUGMENTS: dict[str, PairAugConfig | None] = {
    "none": None,
    # University-1652's baseline recipe: drone flips, satellite quarter turns.
    "flip_rot90": PairAugConfig(joint_flip=False, sat_rotation="quarter"),
    # Joint flips and any-angle satellite rotation (the CPU presets' choice, measured on this project's CPU).
    "flip_rotate": PairAugConfig(),
    # Any-angle satellite rotation, joint flips, zooms, drone shift/tilt, brightness/contrast.
    "strong": PairAugConfig(
        sat_zoom=(0.8, 1.0),
        drone_zoom=(0.8, 1.0),
        drone_shift=0.05,
        drone_tilt_deg=6.0,
        brightness=0.2,
        contrast=0.2,
    ),
}


def pair_augment(name: str | PairAugConfig | None) -> PairAugConfig | None:
    """Resolve a :data:`PAIR_AUGMENTS` name (or pass a config / None through)."""
    if name is None or isinstance(name, PairAugConfig):
        return name
    if name not in PAIR_AUGMENTS:
        raise ConfigError(choices_message("augment", name, PAIR_AUGMENTS))
    return PAIR_AUGMENTS[name]


def affine_warp(
    image: Tensor, angle: float, scale: float = 1.0, flip: bool = False, shift=(0.0, 0.0)
) -> Tensor:
    """Resample ``[C, H, W]``: mirror (``flip``), rotate by ``angle`` radians, zoom by ``scale``
    (< 1 zooms in) and shift by ``shift`` (fractions of the side); reflection outside the image."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    fx = -1.0 if flip else 1.0
    theta = torch.tensor([[c * fx, -s, 2 * shift[0]], [s * fx, c, 2 * shift[1]]], dtype=image.dtype)
    grid = F.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    out = F.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out[0]


def _jitter(x: Tensor, cfg: PairAugConfig, rng: np.random.Generator) -> Tensor:
    bright = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    contrast = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    mean = x.mean()
    return ((x - mean) * contrast + mean).mul(bright).clamp(0, 1)


def augment_pair(
    drone: Tensor, satellite: Tensor, cfg: PairAugConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """One training pair ``[3, H, W]`` each, augmented with draws from ``rng`` (a pure function of
    the rng's seed, so the loader's batches depend on ``(seed, epoch)`` only)."""
    flip = bool(rng.random() < 0.5)
    if flip:
        drone = drone.flip(-1)
    if cfg.sat_rotation == "quarter" and cfg.sat_zoom == (1.0, 1.0):
        turns = int(rng.integers(4))
        sat = satellite.flip(-1) if flip and cfg.joint_flip else satellite
        satellite = torch.rot90(sat, turns, dims=(1, 2))
    else:
        angle = (
            float(rng.integers(4)) * math.pi / 2
            if cfg.sat_rotation == "quarter"
            else rng.uniform(0, 2 * math.pi)
        )
        zoom = rng.uniform(*cfg.sat_zoom)
        satellite = affine_warp(satellite, angle, zoom, flip and cfg.joint_flip)
    if cfg.drone_zoom != (1.0, 1.0) or cfg.drone_shift or cfg.drone_tilt_deg:
        tilt = math.radians(rng.uniform(-cfg.drone_tilt_deg, cfg.drone_tilt_deg))
        shift = tuple(rng.uniform(-cfg.drone_shift, cfg.drone_shift, 2))
        drone = affine_warp(drone, tilt, rng.uniform(*cfg.drone_zoom), shift=shift)
    if cfg.brightness or cfg.contrast:
        drone, satellite = _jitter(drone, cfg, rng), _jitter(satellite, cfg, rng)
    return drone, satellite
