"""Batched synthetic weather for drone images: the 10 conditions of University-1652-WX.

The published recipe (MuSe-Net, as MCGF uses it) is a list of imgaug 0.4.0
augmenters. This module re-implements their semantics as torch tensor operations on
``[B, 3, H, W]`` images in [0, 1], on any device, for a whole batch at once, with each
image's condition chosen independently. Randomness comes from a counter-based hash keyed per
image (``seeds``), so an image's weather depends only on its own key: the same key gives the
same pixels whatever the batch size, the batch's other images or the device.

What each condition does (imgaug semantics, re-derived; parameters as published):

* ``fog`` — CloudLayer: a grey intensity map (mean 225 on the 0-255 scale, plus an 8x8
  Gaussian field of scale 2 and a fine fractal detail ``225·(2n-1)/5`` where ``n`` is 1/f²
  frequency noise) blended over the image with alpha ``((1 + 0.9·m)^0.9)·0.5``, ``m`` a coarse
  (10 px) 1/f² frequency-noise map in [0, 1].
* ``rain`` / ``snow`` — each Rain / Snowflakes augmenter draws 1-3 layers. A layer is a sparse
  "salt" map on a grid of ``(1 - size)·H`` cells (so flakes are ``1/(1 - size)`` px), salt
  values in [0.5, 1] with an arcsine profile, density ``p`` per cell, gated by a coarse 8x8
  Beta(1, 1 - uniformity) field, upsampled (bicubic for flakes, bilinear for sub-pixel drops)
  and motion-blurred along a random angle over ``k = speed·max(H, W)`` px with a ramp kernel
  (faint tail, bright head). Rain: density U(0.03, 0.14), uniformity U(0.8, 1), angle ±15°,
  blended as ``(1 - a)·img + a·240`` with ``a = min(1, 1.3·noise)``. Snow: density
  U(0.005, 0.075), uniformity U(0.3, 0.9), angle ±30°, flake-size uniformity U(0.4, 0.8) giving
  a gamma ``1 + 2(1 - u)`` and gain ``1 + 5(1 - u)``; blended by sum (``(0.1 + 20·speed)``) then
  by max (``(1 + 20·speed)``).
* ``dark`` — 0.5·(img + 100) + 0.5·(0.2·img) (each branch clipped), then brightness ×0.2 and
  + U(-30, -15), in a random order, on the brightness channel of a random colour space.
* ``light`` — brightness ×1.6 and + U(0, 30) the same way (over-exposure).
* ``wind`` — MotionBlur with a 15 px line kernel, random angle in [0, 360) and direction in
  [-1, 1] (weight ramp along the line), reflect-padded borders.

Deviations, all deliberate: the motion blur of rain/snow is computed in a frame rotated to the
streak direction with a cumulative-sum ramp filter (exact for the ramp, O(1) per pixel); salt
positions are continuous rather than on the cell lattice; rain's pseudo-random drop grey (110 to
240 in imgaug, 240 in practice) is fixed at 240; the brightness channel is the luma (YCrCb, YUV,
HLS, Lab, Luv picks: 5 of 6) or HSV value (1 of 6); the fog's fine detail is generated at 64 px
and upsampled (1/f² noise has no visible energy above that); imgaug's uint8 rounding between
steps is not reproduced.

Texture banks (the default; ``WeatherSynth(exact=True)`` renders every layer for every
image: the reference, 15-35x slower for rain and snow, ~8x for the uniform mix). Rain streaks,
snow flakes and fog are i.i.d. random textures whose parameters are all drawn per layer (size,
speed, angle, density, uniformity, flake shape); only which layers an image gets is per image.
So each layer recipe gets a bank of K (``bank_size``, default 18) textures per (H, W, device),
rendered lazily by the exact renderers from ``bank_seed`` (deterministic), and each image
draws, per stage, a texture and a window position from its own key:

* rain / snow: texture k is the composite of its augmenter's 1 + (k mod 3) layers (so the
  SomeOf(1-3) layer count stays exactly uniform, but is tied to the texture), rendered on a
  canvas 1.5x the image at the image's particle scale (the density gate grid grows with it);
  a window is a uniformly placed crop, (H/2 + 1)(W/2 + 1) positions, so windows never wrap
  and no seam crosses a streak. No mirroring: the fall direction forbids vertical flips, and
  left-right mirrors are no new draws (the angle range is symmetric). A rain composite is
  stored as its transmission prod(1 - a) (successive lerps to one grey compose to one lerp);
  a snow composite as (A, B) of ``x -> max(min(x + A, 1), B)``, the exact closed form of
  stacked snow layers.
* fog: K periodic CloudLayer maps (frequency noise is periodic; resizes wrap), rolled by a
  uniform (dy, dx) over all H·W offsets and mirrored top-bottom half the time.

Distinct windows per stage at 256²: 18 x 129² = 300k (rain, snow) and 18 x 256² x 2 = 2.4M
(fog); a rain or snow image stacks 5 independently drawn stages. Each window is an exact draw
of its layers, so per-image statistics (brightness change, coverage, streak and flake shapes)
are those of the exact path (tested), up to the bank's own sampling error: its mean differs
from the recipe's by the error of K draws (across bank seeds at 64², snow's mean brightness
change varied by ~10%, rain's by ~4%). What the bank gives up is independence between images:
it holds 18 x 2.25 = 40 image-areas of independent streak/flake content per recipe, so two
images share a texture (as overlapping or disjoint crops) in a given stage with probability
1/18. With 5 stacked, independently placed stages per image we expect this to be harmless for
training (not measured); raise ``bank_size`` for more. Memory and build time are linear in K:
109 MiB and ~1.5 s at 256², 436 MiB and ~10 s at 512², for K = 18.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geoloc_lib.core import portable_ops as P
from geoloc_lib.core.errors import ConfigError, choices_message

CONDITIONS: tuple[str, ...] = (
    "normal",
    "fog",
    "rain",
    "snow",
    "dark",
    "light",
    "fog_rain",
    "fog_snow",
    "rain_snow",
    "wind",
)


def condition_index(name: str) -> int:
    """Index 0-9 of a condition name; ConfigError listing the valid names otherwise."""
    try:
        return CONDITIONS.index(name)
    except ValueError:
        raise ConfigError(choices_message("weather condition", name, CONDITIONS)) from None


# --------------------------------------------------------------------------------------------
# Counter-based random numbers: splitmix64 finaliser on int64 tensors (wrapping arithmetic).


def _u64(value: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _u64(0x9E3779B97F4A7C15)
_MIX1 = _u64(0xBF58476D1CE4E5B9)
_MIX2 = _u64(0x94D049BB133111EB)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(x: torch.Tensor) -> torch.Tensor:
    x = x ^ _shr(x, 30)
    x = x * _MIX1
    x = x ^ _shr(x, 27)
    x = x * _MIX2
    return x ^ _shr(x, 31)


def _derive(keys: torch.Tensor, tag: int | torch.Tensor) -> torch.Tensor:
    """A child key per element: hash of (key, tag)."""
    return _mix64(keys + _GOLDEN * (torch.as_tensor(tag, device=keys.device) + 1))


def _uniform(keys: torch.Tensor, stream: int, counter: torch.Tensor | int = 0) -> torch.Tensor:
    """Uniform float32 in [0, 1) for each (key, stream, counter); keys and counter broadcast."""
    counter = torch.as_tensor(counter, device=keys.device, dtype=torch.int64)
    z = _mix64(keys ^ _mix64(counter * _GOLDEN + _u64((stream + 1) * _MIX2)))
    return _shr(z, 40).to(torch.float32) * (1.0 / (1 << 24))


def _normal(keys: torch.Tensor, stream: int, counter: torch.Tensor | int = 0) -> torch.Tensor:
    """Standard normal by Box-Muller from two hashed uniforms."""
    u1 = _uniform(keys, 2 * stream, counter).clamp_(min=1e-7)
    u2 = _uniform(keys, 2 * stream + 1, counter)
    return P.sqrt(-2.0 * P.log(u1)) * P.cos(2.0 * math.pi * u2)


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


# --------------------------------------------------------------------------------------------
# Fog (CloudLayer)


def _frequency_noise(
    keys: torch.Tensor, stream: int, h: int, w: int, exponent: float
) -> torch.Tensor:
    """imgaug-style FrequencyNoise at (h, w): white noise of random magnitude and phase, its
    spectrum scaled by |f|^exponent (DC removed), back-transformed, min-max scaled to [0, 1]."""
    device = keys.device
    n = h * w
    cells = torch.arange(n, device=device)
    k = keys[:, None]
    magnitude = _uniform(k, stream, cells).view(-1, h, w) * float(max(h, w) ** 2)
    phase = _uniform(k, stream + 1, cells).view(-1, h, w) * (2 * math.pi)
    fy = torch.arange(h, device=device, dtype=torch.float32)
    fx = torch.arange(w, device=device, dtype=torch.float32)
    fy = torch.minimum(fy, h - fy)[:, None]
    fx = torch.minimum(fx, w - fx)[None, :]
    f = P.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    scale = f**exponent
    scale[0, 0] = 0.0
    spectrum = torch.polar(magnitude * scale, phase).cpu().numpy().astype(np.complex128)
    # numpy's FFT, in float64: torch's CPU FFT is MKL's, whose results depend on the CPU's
    # instruction set (portable_ops), and the bytes of a weather rendering must not.
    noise = torch.from_numpy(np.fft.ifft2(spectrum).real.astype(np.float32)).to(device)
    flat = noise.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    return (noise - lo) / (hi - lo).clamp(min=1e-12)


def _small_size(h: int, w: int, size_px_max: int, minimum: int = 4) -> tuple[int, int]:
    """imgaug's low-resolution size for noise of at most ``size_px_max`` px on the long side."""
    longest = max(h, w)
    if longest > size_px_max:
        h, w = int(h * size_px_max / longest), int(w * size_px_max / longest)
    return max(h, minimum), max(w, minimum)


def _apply_fog(images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """CloudLayer(intensity_mean=225, intensity_freq_exponent=-2, intensity_coarse_scale=2,
    alpha_min=1.0, alpha_multiplier=0.9, alpha_size_px_max=10, alpha_freq_exponent=-2,
    sparsity=0.9, density_multiplier=0.5) on the 0-255 scale."""
    b, _, h, w = images.shape
    mid_h, mid_w = _small_size(h, w, 64)
    keys = _derive(keys, 101)

    def up(x: torch.Tensor) -> torch.Tensor:
        return P.resize(x[:, None], (mid_h, mid_w), mode="bicubic")

    ah, aw = _small_size(h, w, 10)
    alpha_local = up(_frequency_noise(keys, 0, ah, aw, -2.0)).clamp_(0, 1)
    alpha = (P.pow(1.0 + 0.9 * alpha_local, 0.9) * 0.5).clamp_(0, 1)
    coarse = 225.0 + 2.0 * _normal(keys[:, None], 4, torch.arange(64, device=keys.device))
    intensity = up(coarse.view(b, 8, 8))
    fine = _frequency_noise(keys, 10, mid_h, mid_w, -2.0)[:, None]
    intensity = (intensity + 225.0 * (2.0 * fine - 1.0) / 5.0).clamp_(0, 255) / 255.0
    # out = (1 - alpha)·img + alpha·intensity, maps upsampled together to full size.
    maps = torch.cat([1.0 - alpha, alpha * intensity], 1)
    maps = P.resize(maps, (h, w), mode="bicubic")
    return images.mul_(maps[:, :1]).add_(maps[:, 1:]).clamp_(0, 1)


# --------------------------------------------------------------------------------------------
# Rain and snow layers


@dataclass(frozen=True)
class _Particles:
    """One Rain(...) or Snowflakes(...) augmenter: 1-3 layers per image."""

    kind: str  # "rain" or "snow"
    size: tuple[float, float]  # drop_size / flake_size
    speed: tuple[float, float]

    @property
    def density(self) -> tuple[float, float]:
        return (0.03, 0.14) if self.kind == "rain" else (0.005, 0.075)

    @property
    def uniformity(self) -> tuple[float, float]:
        return (0.8, 1.0) if self.kind == "rain" else (0.3, 0.9)

    @property
    def max_angle(self) -> float:
        return 15.0 if self.kind == "rain" else 30.0


def _streak_maps(
    keys: torch.Tensor,
    spec: _Particles,
    h: int,
    w: int,
    reference_size: int | None,
    image_longest: int | None = None,
    gate_cells: int = 8,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Noise maps [L, 1, h, w] (values about [0, 1]) for L layers with keys ``keys``.

    ``image_longest``: the long side of the image the layer is drawn for (None: ``max(h, w)``);
    a texture bank renders a canvas larger than the image with the image's particle scale.
    ``gate_cells``: cells of the density gate across the frame (8 for an image-sized frame)."""
    device = keys.device
    n_layers = keys.shape[0]
    u = [_uniform(keys, s) for s in range(7)]
    size = _between(u[0], *spec.size)
    speed = _between(u[1], *spec.speed)
    angle = _between(u[2], -spec.max_angle, spec.max_angle) * (math.pi / 180)
    density = _between(u[3], *spec.density)
    uniformity = _between(u[4], *spec.uniformity)
    flake_uniformity = _between(u[5], 0.4, 0.8)

    longest = image_longest or max(h, w)
    ref_longest = reference_size or longest
    px_per_ref = longest / ref_longest  # working px per reference px
    down = (1.0 - size).clamp(0.001, 1.0)
    cell = px_per_ref / down  # salt cell size in working px
    phi = cell.clamp(min=1.0)  # frame px: never finer than the working grid
    ink = (cell / phi) ** 2  # sub-pixel drops deposit their area fraction
    k_ref = torch.floor(speed * ref_longest)
    k_work = torch.where(k_ref <= 1, torch.zeros_like(k_ref), k_ref.clamp(min=3)) * px_per_ref
    k_frame = torch.round(k_work / phi).clamp(min=1).long()
    cos, sin = P.cos(angle), P.sin(angle)
    ext_v = w * cos.abs() + h * sin.abs()  # rotated image extent across the streaks
    ext_u = w * sin.abs() + h * cos.abs()  # ... and along them
    frame_w = torch.ceil(ext_v / phi).long() + 2
    frame_h = torch.ceil(ext_u / phi).long() + k_frame + 2
    fh, fw = int(frame_h.max()), int(frame_w.max())

    # Salt: a Poisson number of particles per layer (normal approximation), uniform positions.
    cells = frame_h * frame_w * (phi / cell) ** 2
    lam = density * cells
    counts = (lam + P.sqrt(lam) * _normal(keys, 8)).round().clamp(min=0).long()
    total = int(counts.sum())
    layer_of = torch.repeat_interleave(torch.arange(n_layers, device=device), counts)
    # SplitMix64 stream per layer: state_i = key + (i + 1)·golden, one 64-bit draw per particle
    # split into row (21 bits), column (21 bits) and salt value (21 bits).
    starts = torch.cumsum(counts, 0) - counts
    base = _derive(keys, 999) - starts * _GOLDEN
    state = base[layer_of] + (torch.arange(total, device=device) + 1) * _GOLDEN
    bits = _mix64(state)
    scale21 = 1.0 / (1 << 21)
    rows = ((bits & 0x1FFFFF).to(torch.float32) * scale21 * frame_h[layer_of]).long()
    cols = (_shr(bits, 21) & 0x1FFFFF).to(torch.float32).mul_(scale21)
    cols = (cols * frame_w[layer_of]).long()
    value = P.cos(_shr(bits, 43).to(torch.float32).mul_(math.pi * scale21)).abs_()
    value = value.mul_(0.5).add_(0.5)

    # Density gate: GxG (8x8 per image) Beta(1, 1 - uniformity) field, bicubic to 4Gx4G,
    # looked up per particle.
    g_n, g_up = gate_cells, 4 * gate_cells
    beta = (1.0 - uniformity).clamp(min=1e-3)[:, None]
    gate_u = _uniform(keys[:, None], 30, torch.arange(g_n * g_n, device=device))
    gate = 1.0 - P.pow((1.0 - gate_u).clamp(min=1e-7), 1.0 / beta)
    gate = P.resize(gate.view(-1, 1, g_n, g_n), (g_up, g_up), mode="bicubic")
    gate = gate.clamp_(0, 1).flatten()
    gy = rows * g_up // frame_h[layer_of]
    gx = cols * g_up // frame_w[layer_of]
    value = value * gate[layer_of * g_up * g_up + gy * g_up + gx] * ink[layer_of]

    # Deposit into frames with an empty row 0 so shifted reads below row 0 see zeros.
    frames = torch.zeros(n_layers, fh + 1, fw, device=device)
    frames.index_put_((layer_of, rows + 1, cols), value, accumulate=True)

    # Ramp streak of K rows, weight (j + 1) for the j-th row below the particle, normalised:
    # R[n] = c·(T[n] - T[n-K] - K·S[n-K]) with S = cumsum(x), T = cumsum(S), c = 2/(K(K+1)).
    s_sum = torch.cumsum(frames, 1)
    t_sum = torch.cumsum(s_sum, 1)
    shift = (torch.arange(fh + 1, device=device)[None, :] - k_frame[:, None]).clamp(min=0)
    shift = shift[:, :, None].expand(-1, -1, fw)
    kf = k_frame.to(torch.float32).view(-1, 1, 1)
    streak = t_sum.sub_(torch.gather(t_sum, 1, shift))
    streak.sub_(torch.gather(s_sum, 1, shift).mul_(kf)).mul_(2.0 / (kf * (kf + 1)))

    # Sample the rotated frame at every image pixel (rotation + scale in one grid).
    xs = torch.arange(w, device=device, dtype=torch.float32) + 0.5 - w / 2
    ys = torch.arange(h, device=device, dtype=torch.float32) + 0.5 - h / 2
    inv = (1.0 / phi).view(-1, 1, 1)
    c_, s_ = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
    center_x = (frame_w.to(torch.float32) - 2) / 2 + 1
    center_y = (ext_u / phi) / 2 + k_frame + 2  # +1 padding row, +1 margin
    grid = torch.empty(n_layers, h, w, 2, device=device)
    sx, sy = 2.0 / fw, 2.0 / (fh + 1)  # to grid_sample's [-1, 1] (align_corners=False)
    off_x = (center_x.view(-1, 1, 1) * sx - 1.0) - ys[None, :, None] * (s_ * inv * sx)
    off_y = (center_y.view(-1, 1, 1) * sy - 1.0) + ys[None, :, None] * (c_ * inv * sy)
    torch.add(xs[None, None, :] * (c_ * inv * sx), off_x, out=grid[..., 0])
    torch.add(xs[None, None, :] * (s_ * inv * sy), off_y, out=grid[..., 1])
    mode = "bicubic" if spec.kind == "snow" else "bilinear"
    noise = P.grid_sample(
        streak[:, None], grid, mode=mode, padding_mode="zeros", align_corners=False
    )
    noise = noise.clamp_(min=0)
    return noise, {"speed": speed, "flake_uniformity": flake_uniformity}


def _apply_particles(
    images: torch.Tensor,
    keys: torch.Tensor,
    spec: _Particles,
    reference_size: int | None,
) -> torch.Tensor:
    """One Rain/Snowflakes augmenter: SomeOf((1, 3)) identical layers, applied in order."""
    b, _, h, w = images.shape
    device = images.device
    n_active = 1 + (_uniform(keys, 0) * 3).long().clamp(max=2)  # 1, 2 or 3 layers
    slot = torch.arange(3, device=device)
    active = slot[None, :] < n_active[:, None]  # [B, 3]
    layer_keys = _derive(keys[:, None], slot[None, :] + 1)[active]
    noise, params = _streak_maps(layer_keys, spec, h, w, reference_size)
    # Per (image, slot) maps; inactive slots stay zero, which is the identity for both blends.
    full = torch.zeros(b * 3, 1, h, w, device=device)
    positions = active.flatten().nonzero().squeeze(1)
    speed = params["speed"].view(-1, 1, 1, 1)
    if spec.kind == "rain":
        full[positions] = noise.mul_(1.3).clamp_(0, 1)
        alpha = full.view(b, 3, 1, h, w)
        drop_grey = torch.tensor(240.0 / 255.0, device=device)
        for j in range(3):
            images.add_((drop_grey - images).mul_(alpha[:, j]))  # lerp, unfused
        return images
    u = params["flake_uniformity"].view(-1, 1, 1, 1)
    flakes = P.pow(noise.clamp_(0, 1), 1.0 + 2.0 * (1.0 - u)).mul_(1.0 + 5.0 * (1.0 - u))
    sum_gain = torch.zeros(b * 3, 1, 1, 1, device=device)
    max_gain = torch.zeros(b * 3, 1, 1, 1, device=device)
    sum_gain[positions] = 0.1 + 20.0 * speed
    max_gain[positions] = 1.0 + 20.0 * speed
    full[positions] = flakes
    full = full.view(b, 3, 1, h, w)
    sum_gain, max_gain = sum_gain.view(b, 3, 1, 1, 1), max_gain.view(b, 3, 1, 1, 1)
    for j in range(3):
        layer = full[:, j]
        images.add_(layer * sum_gain[:, j]).clamp_(max=1.0)
        torch.maximum(images, (layer * max_gain[:, j]).clamp_(max=1.0), out=images)
    return images


# --------------------------------------------------------------------------------------------
# Brightness (dark, light) and wind


def _brightness(
    images: torch.Tensor, keys: torch.Tensor, mul: float, add_range: tuple[float, float]
) -> torch.Tensor:
    """MultiplyAndAddToBrightness: ×mul and +add (0-255 scale) on a brightness channel, in a
    random order, in a random colour space (HSV value 1 in 6, luma otherwise). In place.

    The order and colour space are per image, so the transfer is written with per-image
    scalars, ``clamp(clamp(y·p + q)·r + s)``, and the result as ``clamp(img·g + d)`` with
    single-channel ``g`` and ``d``: a luma change shifts all channels (g = 1, d = t(y) - y),
    a value change scales them (g = t(v)/v). That is 2 full-colour passes instead of the ~20
    of evaluating both colour spaces and both orders in colour and selecting."""
    n = images.shape[0]
    add = _between(_uniform(keys, 50), *add_range) / 255.0
    add_first = (_uniform(keys, 51) < 0.5).to(torch.float32)
    by_value = ((_uniform(keys, 52) * 6).long() == 1).to(torch.float32).view(n, 1, 1, 1)
    # Per-image scalars; float blends rather than torch.where, which is slow on CPU.
    p = (mul + add_first * (1.0 - mul)).view(n, 1, 1, 1)
    q = (add * add_first).view(n, 1, 1, 1)
    r = (1.0 + add_first * (mul - 1.0)).view(n, 1, 1, 1)
    s = (add * (1.0 - add_first)).view(n, 1, 1, 1)

    luma = images[:, 0:1] * 0.299
    luma.add_(images[:, 1:2] * 0.587).add_(images[:, 2:3] * 0.114)
    channel = P.lerp(luma, images.amax(1, keepdim=True), by_value)
    new = P.mul_add(channel, p, q).clamp_(0, 1).mul_(r).add_(s).clamp_(0, 1)
    # Luma: gain 1, shift t(y) - y. Value: gain t(v)/v; a black pixel (v below eps) becomes
    # grey t(v), which the shift term supplies as v -> 0.
    eps = 1e-6
    ratio = new / channel.clamp(min=eps)
    gain = ratio.sub_(1.0).mul_(by_value).add_(1.0)
    black = (1.0 - channel / eps).clamp_(min=0.0).mul_(new)
    shift = P.lerp(new - channel, black, by_value)
    return images.mul_(gain).add_(shift).clamp_(0, 1)


def _apply_dark(images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """BlendAlpha(0.5, Add(100), Multiply(0.2)) then MultiplyAndAddToBrightness(0.2, (-30, -15))."""
    # 0.5·min(img + 100/255, 1) + 0.5·(0.2·img), in place.
    blended = (images + 100.0 / 255.0).clamp_(max=1.0).mul_(0.5)
    blended = images.mul_(0.1).add_(blended)
    return _brightness(blended, _derive(keys, 201), 0.2, (-30.0, -15.0))


def _apply_light(images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """MultiplyAndAddToBrightness(mul=1.6, add=(0, 30))."""
    return _brightness(images, _derive(keys, 301), 1.6, (0.0, 30.0))


def motion_blur_kernels(
    size: int, angle_deg: torch.Tensor, direction: torch.Tensor
) -> torch.Tensor:
    """Line kernels [N, size, size] summing to 1: a ``size``-px line through the centre at
    ``angle_deg`` (0 = vertical), anti-aliased across, with weights ramping linearly from
    (1 + direction)/2 at one end to (1 - direction)/2 at the other (imgaug MotionBlur)."""
    device = angle_deg.device
    half = (size - 1) / 2
    offs = torch.arange(size, device=device, dtype=torch.float32) - half
    dy, dx = offs[:, None], offs[None, :]
    theta = (angle_deg * (math.pi / 180)).view(-1, 1, 1)
    along = dx * P.sin(theta) + dy * P.cos(theta)
    across = dx * P.cos(theta) - dy * P.sin(theta)
    start = ((direction.clamp(-1, 1) + 1) / 2).view(-1, 1, 1)
    ramp = start + (1 - 2 * start) * (along + half) / max(2 * half, 1e-6)
    weight = ramp.clamp(min=0) * (1 - across.abs()).clamp(min=0)
    weight = weight * (half + 0.5 - along.abs()).clamp(0, 1)
    weight = weight + 1e-12 * (along.abs() < 0.5) * (across.abs() < 0.5)  # never all zero
    return weight / weight.sum((1, 2), keepdim=True)


def _apply_wind(
    images: torch.Tensor, keys: torch.Tensor, reference_size: int | None
) -> torch.Tensor:
    """MotionBlur(k=15): random angle in [0, 360), direction in [-1, 1], reflect borders."""
    b, c, h, w = images.shape
    keys = _derive(keys, 401)
    scale = max(h, w) / reference_size if reference_size else 1.0
    size = max(3, int(round(15 * scale)))
    kernels = motion_blur_kernels(
        size, _uniform(keys, 0) * 360.0, _between(_uniform(keys, 1), -1.0, 1.0)
    )
    pad_lo, pad_hi = (size - 1) // 2, size // 2
    padded = F.pad(images, (pad_lo, pad_hi, pad_lo, pad_hi), mode="reflect")
    # One grouped convolution for the group: measured faster than FFT convolution (2.2 vs
    # ~5 ms per 256² image on one core) and as fast as summing the ~30 non-zero taps as
    # shifted views, with one op instead of ~30 per image.
    weight = kernels.repeat_interleave(c, 0)[:, None]
    out = F.conv2d(padded.reshape(1, b * c, *padded.shape[2:]), weight, groups=b * c)
    return out.view(b, c, h, w).clamp_(0, 1)


# --------------------------------------------------------------------------------------------
# Recipes and the transform


_RAIN_SPEED = (0.04, 0.06)
_SNOW_SPEED = (0.007, 0.03)


def _rain(size: tuple[float, float]) -> _Particles:
    return _Particles("rain", size, _RAIN_SPEED)


def _snow(size: tuple[float, float]) -> _Particles:
    return _Particles("snow", size, _SNOW_SPEED)


# The published Sequential of each condition, stage by stage.
RECIPES: dict[str, tuple[object, ...]] = {
    "normal": (),
    "fog": ("fog",),
    "rain": (
        _rain((0.05, 0.1)),
        _rain((0.05, 0.1)),
        _rain((0.1, 0.2)),
        _rain((0.1, 0.2)),
        _rain((0.05, 0.2)),
    ),
    "snow": (
        _snow((0.5, 0.8)),
        _snow((0.5, 0.8)),
        _snow((0.6, 0.9)),
        _snow((0.6, 0.9)),
        _snow((0.5, 0.9)),
    ),
    "dark": ("dark",),
    "light": ("light",),
    "fog_rain": ("fog", _rain((0.05, 0.2)), _rain((0.05, 0.2))),
    "fog_snow": ("fog", _snow((0.5, 0.9)), _snow((0.5, 0.9))),
    "rain_snow": (
        _snow((0.5, 0.8)),
        _rain((0.05, 0.1)),
        _rain((0.1, 0.2)),
        _rain((0.05, 0.2)),
        _snow((0.6, 0.9)),
    ),
    "wind": ("wind",),
}


# --------------------------------------------------------------------------------------------
# Texture banks: pre-rendered stochastic layers, placed per image by a random window


_BANK_STREAM = 60  # hash stream of the per-image bank draws (texture, dy, dx, flip)


@dataclass
class _Bank:
    """``textures`` [K, C, R, S] (float32): K textures of C maps. A window of the image's size
    starts at row ``dy`` (rows taken modulo R: periodic textures wrap, canvases have room) and
    column ``dx`` (columns S >= W + max dx: canvases are wider, periodic ones stored twice)."""

    textures: torch.Tensor
    offsets_y: int  # dy is drawn in [0, offsets_y)
    offsets_x: int

    def window(
        self,
        u: torch.Tensor,
        h: int,
        w: int,
        vflip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[n, C, h, w] float32 windows; ``u`` [n, 3] uniforms pick texture, dy and dx.

        One ``index_select`` of ``n·C·h`` rows of ``w`` contiguous values: each selected row
        starts anywhere in the flat storage (a sliding-window view), so the row offset, the
        column offset and a vertical flip are all just the choice of row starts."""
        k_count, c, r, s = self.textures.shape
        device = self.textures.device
        k = (u[:, 0] * k_count).long().clamp_(max=k_count - 1)
        dy = (u[:, 1] * self.offsets_y).long().clamp_(max=self.offsets_y - 1)
        dx = (u[:, 2] * self.offsets_x).long().clamp_(max=self.offsets_x - 1)
        y = torch.arange(h, device=device)
        rows = y[None, :] + dy[:, None]
        if vflip is not None:
            rows = torch.where(vflip[:, None], (h - 1 - y)[None, :] + dy[:, None], rows)
        rows = rows % r  # [n, h]
        plane = k[:, None] * c + torch.arange(c, device=device)[None, :]  # [n, C]
        starts = (plane[:, :, None] * r + rows[:, None, :]) * s + dx[:, None, None]
        flat = self.textures.reshape(-1)
        sliding = flat.as_strided((flat.numel() - w + 1, w), (1, 1))
        out = sliding.index_select(0, starts.reshape(-1))
        return out.view(-1, c, h, w)


def _bank_key(bank_seed: int, *tags: int) -> torch.Tensor:
    key = _mix64(torch.tensor([bank_seed], dtype=torch.int64))
    for tag in tags:
        key = _derive(key, tag)
    return key


def _spec_tags(spec: _Particles) -> tuple[int, ...]:
    """Stable integer identity of a layer recipe (Python's hash() is salted per process)."""
    numbers = (*spec.size, *spec.speed)
    return (1 if spec.kind == "rain" else 2, *(int(round(v * 10_000)) for v in numbers))


def _canvas(h: int, w: int) -> tuple[int, int]:
    """Particle textures are rendered 1.5x the image in each direction: windows are real crops
    (no wrap seams through streaks or the density field) with (h/2 + 1)·(w/2 + 1) offsets."""
    return h + max(1, h // 2), w + max(1, w // 2)


def _render_particle_bank(
    spec: _Particles,
    size: int,
    h: int,
    w: int,
    reference_size: int | None,
    bank_seed: int,
    device: torch.device,
    chunk: int = 6,
) -> _Bank:
    """``size`` textures of one Rain/Snowflakes augmenter, each the composite of its 1-3 layers
    (texture k has 1 + k mod 3 layers, so the layer count is exactly uniform when 3 | size),
    drawn with the exact layer renderer on a canvas 1.5x the image at the image's scale.

    Rain stores the transmission ``prod(1 - a_j)`` (C = 1): the layers' successive lerps to
    the drop grey compose to one lerp. Snow stores (A, B) (C = 2) of the composite map
    ``x -> max(min(x + A, 1), B)``: each layer ``max(min(x + s·L, 1), min(1, m·L))`` is of
    that form and the form is closed under composition (A = A1 + A2,
    B = max(min(B1 + A2, 1), B2)), so a stack of snow layers is exactly one such map."""
    hc, wc = _canvas(h, w)
    gate_cells = max(8, round(8 * max(hc, wc) / max(h, w)))
    keys = _derive(_bank_key(bank_seed, *_spec_tags(spec)).expand(size), torch.arange(size))
    keys = keys.to(device)
    channels = 1 if spec.kind == "rain" else 2
    out = torch.empty(size, channels, hc, wc, dtype=torch.float32, device=device)
    for lo in range(0, size, chunk):
        hi = min(lo + chunk, size)
        tex = torch.arange(lo, hi, device=device)
        n_layers = 1 + tex % 3
        slot = torch.arange(3, device=device)
        active = slot[None, :] < n_layers[:, None]  # [k, 3]
        layer_keys = _derive(keys[lo:hi, None], slot[None, :] + 1)[active]
        noise, params = _streak_maps(
            layer_keys, spec, hc, wc, reference_size, max(h, w), gate_cells
        )
        full = torch.zeros(hi - lo, 3, hc, wc, device=device)  # inactive slots: identity
        if spec.kind == "rain":
            full[active] = noise[:, 0].mul_(1.3).clamp_(0, 1)
            out[lo:hi, 0] = (1.0 - full).prod(1)
            continue
        u = params["flake_uniformity"].view(-1, 1, 1)
        flakes = P.pow(noise[:, 0].clamp_(0, 1), 1.0 + 2.0 * (1.0 - u))
        flakes = flakes.mul_(1.0 + 5.0 * (1.0 - u))
        speed = params["speed"].view(-1, 1, 1)
        gain_add = torch.zeros(hi - lo, 3, 1, 1, device=device)
        gain_max = torch.zeros(hi - lo, 3, 1, 1, device=device)
        gain_add[active] = 0.1 + 20.0 * speed
        gain_max[active] = 1.0 + 20.0 * speed
        full[active] = flakes
        add_total = torch.zeros(hi - lo, hc, wc, device=device)
        floor = torch.zeros(hi - lo, hc, wc, device=device)
        for j in range(3):
            a = full[:, j] * gain_add[:, j]
            b = (full[:, j] * gain_max[:, j]).clamp_(max=1.0)
            floor = torch.maximum((floor + a).clamp_(max=1.0), b)
            add_total += a
        out[lo:hi, 0] = add_total
        out[lo:hi, 1] = floor
    return _Bank(out, hc - h + 1, wc - w + 1)


def _circular_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize (half-pixel centres, as F.interpolate) of a periodic map [N, C, h, w],
    wrapping around the borders so the result is periodic too."""
    n, c, h0, w0 = x.shape
    h1, w1 = size
    if (h0, w0) == (h1, w1):
        return x
    padded = F.pad(x, (2, 2, 2, 2), mode="circular")
    device = x.device
    ys = (torch.arange(h1, device=device) + 0.5) * (h0 / h1) - 0.5 + 2.0
    xs = (torch.arange(w1, device=device) + 0.5) * (w0 / w1) - 0.5 + 2.0
    gy = ys / (h0 + 3) * 2.0 - 1.0  # align_corners=True normalisation of the padded map
    gx = xs / (w0 + 3) * 2.0 - 1.0
    grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), -1)
    grid = grid[None].expand(n, -1, -1, -1)
    return P.grid_sample(padded, grid, mode="bicubic", padding_mode="border", align_corners=True)


def _render_fog_bank(size: int, h: int, w: int, bank_seed: int, device: torch.device) -> _Bank:
    """``size`` CloudLayer maps (1 - alpha, alpha·intensity) at the image size, made periodic
    (frequency noise is periodic; the resizes wrap), so any roll is seamless. Stored with the
    columns twice so a window is a plain slice; rows wrap modulo h."""
    keys = _derive(_bank_key(bank_seed, 3).expand(size), torch.arange(size)).to(device)
    mid_h, mid_w = _small_size(h, w, 64)
    ah, aw = _small_size(h, w, 10)
    alpha_local = _circular_resize(_frequency_noise(keys, 0, ah, aw, -2.0)[:, None], (mid_h, mid_w))
    alpha = (P.pow(1.0 + 0.9 * alpha_local.clamp(0, 1), 0.9) * 0.5).clamp_(0, 1)
    coarse = 225.0 + 2.0 * _normal(keys[:, None], 4, torch.arange(64, device=device))
    intensity = _circular_resize(coarse.view(size, 1, 8, 8), (mid_h, mid_w))
    fine = _frequency_noise(keys, 10, mid_h, mid_w, -2.0)[:, None]
    intensity = (intensity + 225.0 * (2.0 * fine - 1.0) / 5.0).clamp_(0, 255) / 255.0
    maps = _circular_resize(torch.cat([1.0 - alpha, alpha * intensity], 1), (h, w))
    keep = maps[:, :1].clamp(0, 1)
    add = torch.minimum(maps[:, 1:].clamp(min=0), 1.0 - keep)  # so x·keep + add stays in [0, 1]
    maps = torch.cat([keep, add], 1)
    return _Bank(torch.cat([maps, maps], 3), h, w)


def _runs(stages: tuple[object, ...]) -> list[tuple[str, list[tuple[int, object]]]]:
    """Consecutive stages of the same kind, with their stage numbers (for the per-image keys):
    a run of rain or snow layers composes into one map before it touches the image."""
    runs: list[tuple[str, list[tuple[int, object]]]] = []
    for number, stage in enumerate(stages):
        kind = stage.kind if isinstance(stage, _Particles) else str(stage)
        if runs and runs[-1][0] == kind and kind in ("rain", "snow"):
            runs[-1][1].append((number, stage))
        else:
            runs.append((kind, [(number, stage)]))
    return runs


RUNS = {name: _runs(stages) for name, stages in RECIPES.items()}
_BANKED = ("fog", "rain", "snow")
_DROP_GREY = 240.0 / 255.0


class WeatherSynth:
    """Callable batched weather transform.

    ``synth(images, conditions=None, generator=None, seeds=None) -> (images, conditions)``:
    ``images`` float [B, 3, H, W] in [0, 1] on any device (not modified); ``conditions`` a
    LongTensor [B] of indices into :data:`CONDITIONS` (None: uniform random per image);
    ``seeds`` an int64 tensor [B] of per-image keys (None: drawn from ``generator``).
    ``reference_size``: None applies the recipe at the tensor's own pixel scale, as imgaug
    does; an int (e.g. 512) draws flakes, drops and the wind kernel as they would look at that
    long-side size, for images already resized smaller.

    ``exact=False`` (default) draws rain, snow and fog from texture banks (module docstring):
    ``bank_size`` textures per layer recipe and image size, rendered lazily on first use from
    ``bank_seed`` and kept for the ``bank_cache`` most recent (H, W, device). ``exact=True``
    renders every layer for every image (15-35x slower for rain and snow; the reference the
    banks are tested against). Dark, light and wind are the same in both modes. ``chunk``:
    images per pass of a condition (keeps the per-pixel maps cache-sized).

    ``threads`` (default 1): torch intra-op CPU threads while synthesising, restored after the
    call; None leaves torch's setting. The work is many ops on a few images each, too small for
    OpenMP to pay off, and on a shared, loaded CPU each parallel op waits for a descheduled
    thread (measured at load ~8 on 2 cores: mix 57 images/s with 2 threads, 430 with 1).
    """

    def __init__(
        self,
        reference_size: int | None = None,
        *,
        exact: bool = False,
        bank_size: int = 18,
        bank_seed: int = 0,
        bank_cache: int = 4,
        chunk: int = 8,
        threads: int | None = 1,
    ) -> None:
        if reference_size is not None and reference_size < 8:
            raise ConfigError(f"reference_size must be None or >= 8, got {reference_size}")
        if bank_size < 3 or bank_size % 3:
            raise ConfigError(f"bank_size must be a positive multiple of 3, got {bank_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be None or >= 1, got {threads}")
        if bank_cache < 1 or chunk < 1:
            raise ConfigError(f"bank_cache and chunk must be >= 1, got {bank_cache}, {chunk}")
        self.reference_size = reference_size
        self.exact = exact
        self.bank_size = bank_size
        self.bank_seed = int(bank_seed)
        self.bank_cache = bank_cache
        self.chunk = chunk
        self.threads = threads
        self._banks: OrderedDict[tuple[int, int, str], dict[object, _Bank]] = OrderedDict()

    def __call__(
        self,
        images: torch.Tensor,
        conditions: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"weather expects images [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ConfigError(f"weather expects float images in [0, 1], got {images.dtype}")
        b = images.shape[0]
        device = images.device
        if conditions is None:
            conditions = torch.randint(0, len(CONDITIONS), (b,), generator=generator)
        conditions = torch.as_tensor(conditions, dtype=torch.long).to(device)
        if conditions.shape != (b,):
            raise ConfigError(f"conditions must have shape ({b},), got {tuple(conditions.shape)}")
        if b and (int(conditions.min()) < 0 or int(conditions.max()) >= len(CONDITIONS)):
            raise ConfigError(f"condition indices must lie in [0, {len(CONDITIONS) - 1}]")
        if seeds is None:
            seeds = torch.randint(0, 2**62, (b,), generator=generator, dtype=torch.int64)
        seeds = torch.as_tensor(seeds, dtype=torch.int64).to(device)
        if seeds.shape != (b,):
            raise ConfigError(f"seeds must have shape ({b},), got {tuple(seeds.shape)}")

        threads = torch.get_num_threads()
        pin = device.type == "cpu" and self.threads is not None and self.threads != threads
        if pin:
            torch.set_num_threads(self.threads)
        try:
            out = self._synthesise(images, conditions, _mix64(seeds))
        finally:
            if pin:
                torch.set_num_threads(threads)
        return out, conditions

    def _synthesise(
        self, images: torch.Tensor, conditions: torch.Tensor, keys: torch.Tensor
    ) -> torch.Tensor:
        b = images.shape[0]
        device = images.device
        present = torch.unique(conditions).tolist()
        if len(present) == 1:  # one condition: work in place on a copy, chunk by chunk
            out = images.to(torch.float32, copy=True)
            for lo in range(0, b, self.chunk):
                part = out[lo : lo + self.chunk]
                result = self.apply_condition(
                    part, CONDITIONS[present[0]], keys[lo : lo + self.chunk]
                )
                if result.data_ptr() != part.data_ptr():
                    part.copy_(result)
            return out.to(images.dtype)
        # Each condition runs only on its own images, gathered and written back image by image
        # (per-image copies are several times faster than index_select / index_copy_ on CPU),
        # in chunks so the single-channel maps stay cache-sized.
        out = torch.empty(images.shape, dtype=torch.float32, device=device)
        for cond in present:
            idx = (conditions == cond).nonzero().squeeze(1).tolist()
            if not RECIPES[CONDITIONS[cond]]:
                for i in idx:
                    out[i].copy_(images[i])
                continue
            for lo in range(0, len(idx), self.chunk):
                part = idx[lo : lo + self.chunk]
                group = torch.stack([images[i] for i in part]).to(torch.float32)
                index = torch.tensor(part, device=device)
                result = self.apply_condition(group, CONDITIONS[cond], keys[index])
                for j, i in enumerate(part):
                    out[i].copy_(result[j])
        return out.to(images.dtype)

    def apply_condition(self, images: torch.Tensor, name: str, keys: torch.Tensor) -> torch.Tensor:
        """Run one condition's recipe on a float32 batch with hashed per-image keys (the batch
        may be modified in place; use the returned tensor)."""
        if not self.exact:
            return self._apply_banked(images, name, keys)
        for stage_number, stage in enumerate(RECIPES[name]):
            stage_keys = _derive(keys, stage_number)
            if isinstance(stage, _Particles):
                images = _apply_particles(images, stage_keys, stage, self.reference_size)
            else:
                images = self._apply_pointwise(images, str(stage), stage_keys)
        return images

    def _apply_pointwise(
        self, images: torch.Tensor, stage: str, keys: torch.Tensor
    ) -> torch.Tensor:
        if stage == "fog":
            return _apply_fog(images, keys)
        if stage == "dark":
            return _apply_dark(images, keys)
        if stage == "light":
            return _apply_light(images, keys)
        if stage == "wind":
            return _apply_wind(images, keys, self.reference_size)
        raise ConfigError(f"unknown weather stage {stage!r}")

    # -- banked path --------------------------------------------------------------------------

    def bank(self, kind: object, h: int, w: int, device: torch.device | str = "cpu") -> _Bank:
        """The texture bank of a layer recipe (a rain/snow stage, or ``"fog"``) at (h, w)."""
        device = torch.device(device)
        size_key = (h, w, str(device))
        banks = self._banks.get(size_key)
        if banks is None:
            banks = self._banks[size_key] = {}
            while len(self._banks) > self.bank_cache:
                self._banks.popitem(last=False)
        self._banks.move_to_end(size_key)
        if kind not in banks:
            if kind == "fog":
                banks[kind] = _render_fog_bank(self.bank_size, h, w, self.bank_seed, device)
            elif isinstance(kind, _Particles):
                banks[kind] = _render_particle_bank(
                    kind, self.bank_size, h, w, self.reference_size, self.bank_seed, device
                )
            else:
                raise ConfigError(f"no texture bank for {kind!r}")
        return banks[kind]

    def _apply_banked(self, images: torch.Tensor, name: str, keys: torch.Tensor) -> torch.Tensor:
        """Run by run: fog and rain are per-pixel affine maps ``x·M + A`` (single-channel M, A)
        that compose before touching the image; a snow run is one ``max(min(x + A, 1), B)``."""
        n, _, h, w = images.shape
        device = images.device
        # Every banked stage's draws (texture, dy, dx, flip) in one hash evaluation: [n, S, 4].
        numbers = [num for kind, run in RUNS[name] if kind in _BANKED for num, _ in run]
        if numbers:
            stage_keys = _derive(keys[:, None], torch.tensor(numbers, device=device))
            counter = torch.arange(4, device=device)
            all_draws = _uniform(stage_keys[:, :, None], _BANK_STREAM, counter)
            column = {num: j for j, num in enumerate(numbers)}
        keep: torch.Tensor | None = None  # pending affine map x -> x·keep + add
        add: torch.Tensor | None = None
        for kind, stages in RUNS[name]:
            if kind not in _BANKED:
                images = self._apply_pointwise(images, kind, _derive(keys, stages[0][0]))
                continue
            draws = [all_draws[:, column[number]] for number, _ in stages]
            if kind == "fog":  # fog has no direction: also mirrored top-bottom half the time
                maps = self.bank("fog", h, w, device).window(draws[0], h, w, draws[0][:, 3] < 0.5)
                m, a = maps[:, :1], maps[:, 1:]
            elif kind == "rain":
                m = self.bank(stages[0][1], h, w, device).window(draws[0], h, w)
                for (_, stage), u in zip(stages[1:], draws[1:], strict=True):
                    m.mul_(self.bank(stage, h, w, device).window(u, h, w))
                a = torch.mul(m, -_DROP_GREY).add_(_DROP_GREY)  # lerp to grey by 1 - T
            else:
                snow = self.bank(stages[0][1], h, w, device).window(draws[0], h, w)
                total, floor = snow[:, :1], snow[:, 1:]
                for (_, stage), u in zip(stages[1:], draws[1:], strict=True):
                    more = self.bank(stage, h, w, device).window(u, h, w)
                    floor = torch.maximum(floor.add_(more[:, :1]).clamp_(max=1.0), more[:, 1:])
                    total.add_(more[:, :1])
                if keep is not None:  # flush the pending affine map first
                    images = images.mul_(keep).add_(add)
                    keep = add = None
                images = images.add_(total).clamp_(max=1.0)
                images = torch.maximum(images, floor, out=images)
                continue
            if keep is None:
                keep, add = m, a
            else:  # (x·keep + add)·m + a
                keep = keep.mul_(m)
                add = add.mul_(m).add_(a)
        if keep is not None:
            images = images.mul_(keep).add_(add)
        return images


def conditions_from_seeds(seeds: torch.Tensor) -> torch.Tensor:
    """A uniform random condition index per image, a pure function of its seed."""
    keys = _derive(_mix64(torch.as_tensor(seeds, dtype=torch.int64)), 7777)
    return (_uniform(keys, 0) * len(CONDITIONS)).long().clamp_(max=len(CONDITIONS) - 1)
