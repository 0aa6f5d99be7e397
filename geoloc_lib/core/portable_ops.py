"""Float ops that give the same bits on every x86-64 CPU, for outputs that must be exact.

PyTorch compiles its CPU kernels once per instruction set (``ATEN_CPU_CAPABILITY``: default,
avx2, avx512) and picks one at run time; behind some of them MKL picks its own vector-math
path (``MKL_ENABLE_INSTRUCTIONS``). Elementwise add, mul, div, rsqrt, clamp, max, floor, round,
the reductions used here and ``area`` resizes round the same way everywhere. These do not
(measured; ``tests/test_portability.py`` checks the results):

- fused multiply-adds: ``addcmul``, ``lerp``, ``add(..., alpha=)``, ``linalg.cross``: the
  AVX2 and AVX-512 builds round once (FMA), the default build twice;
- ``F.interpolate`` (bilinear, bicubic) and ``F.grid_sample``: the vectorised kernels compute
  the weights and accumulate the taps differently (in float64 too, by a few units in the last
  place, enough to round a value near a float32 midpoint the other way);
- ``pow`` with a non-integer exponent, ``sigmoid``, ``softplus``, ``atan2``: vectorised
  approximations;
- ``sqrt``, ``exp``, ``log``, ``sin``, ``cos``, ``tan`` on float32: MKL's fast vector math,
  whose last bit depends on the instruction set (``sqrt`` included: 0.6 % of random inputs);
- the CPU FFT (MKL's).

GeoSynth's renderer and the weather synthesis are deterministic by construction, so their bytes
must not depend on the CPU. They use the helpers below: multiply-adds as two correctly rounded
ops; resampling as gathers, products and sums; transcendental functions and the FFT from numpy
in float64, rounded to float32 (accurate to an ulp or so of a double, which the rounding
removes); the square root from numpy (correctly rounded).

Model code does not use these: a trained model's numbers differ in their last bits between CPUs
anyway (matrix products and convolutions sum in other orders) and are compared with a
tolerance (``tests/smoke_reference/``).
"""

from __future__ import annotations

import numpy as np
import torch


def mul_add(x: torch.Tensor, gain: torch.Tensor | float, shift: torch.Tensor | float):
    """``x·gain + shift`` rounded after each op (``torch.addcmul`` fuses them on AVX2)."""
    return torch.mul(x, gain) + shift


def lerp(start: torch.Tensor, end: torch.Tensor | float, weight: torch.Tensor | float):
    """``start + weight·(end - start)``, each op rounded (``torch.lerp`` fuses them on AVX2)."""
    return start + (end - start) * weight


_CUBIC_A = -0.75  # the cubic-convolution coefficient of F.interpolate / grid_sample


def _taps(coord: torch.Tensor, size: int, mode: str, zeros: bool):
    """1-D resampling taps at float64 source coordinates: ``[(index, weight)]`` with the weights
    in float32; indices clamped to the border, or (``zeros``) their weight zeroed outside."""
    base = torch.floor(coord)
    t = coord - base
    if mode == "bilinear":
        offsets, weights = (0, 1), (1.0 - t, t)
    elif mode == "bicubic":
        a, s = _CUBIC_A, t + 1.0
        w0 = ((a * s - 5.0 * a) * s + 8.0 * a) * s - 4.0 * a
        w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
        u = 1.0 - t
        w2 = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0
        offsets, weights = (-1, 0, 1, 2), (w0, w1, w2, 1.0 - w0 - w1 - w2)
    else:
        raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}")
    taps = []
    for off, weight in zip(offsets, weights, strict=True):
        index = base.long() + off
        if zeros:
            weight = weight * ((index >= 0) & (index < size))
        taps.append((index.clamp(0, size - 1), weight.float()))
    return taps


def _source_coords(
    n_in: int, n_out: int, align_corners: bool, clamp_low: bool, scale: float | None
) -> torch.Tensor:
    out = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        return out * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    src = (out + 0.5) * (n_in / n_out if scale is None else scale) - 0.5
    return src.clamp(min=0.0) if clamp_low else src


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    mode: str = "bilinear",
    align_corners: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Bilinear or bicubic resize of ``[..., H, W]`` float32 maps to ``size``, separable, with
    the source coordinates and taps of ``F.interpolate`` (equal to it up to rounding), each tap
    a gather, a product and a sum, so the bits are the same on every CPU. ``scale``: source
    pixels per output pixel (``F.interpolate``'s ``1 / scale_factor``); default in/out."""
    for dim, n_out in ((-2, size[0]), (-1, size[1])):
        n_in = x.shape[dim]
        if n_in == n_out and not align_corners and scale is None:
            continue
        coords = _source_coords(n_in, n_out, align_corners, mode == "bilinear", scale)
        shape = [1] * x.dim()
        shape[dim] = n_out
        out = None
        for index, weight in _taps(coords, n_in, mode, zeros=False):
            term = x.index_select(dim, index.to(x.device)) * weight.to(x.device).view(shape)
            out = term if out is None else out.add_(term)
        x = out
    return x


def grid_sample(
    x: torch.Tensor,
    grid: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> torch.Tensor:
    """``F.grid_sample`` (bilinear or bicubic; zeros or border padding) of ``x`` [N, C, H, W]
    at ``grid`` [N, Ho, Wo, 2] in [-1, 1], as gathers, products and sums (same bits on every
    CPU; equal to ``F.grid_sample`` up to rounding)."""
    if padding_mode not in ("zeros", "border"):
        raise ValueError(f"padding_mode must be 'zeros' or 'border', got {padding_mode!r}")
    n, c, h, w = x.shape
    g = grid.double()
    gx, gy = g[..., 0], g[..., 1]
    if align_corners:
        ix, iy = (gx + 1.0) / 2.0 * (w - 1), (gy + 1.0) / 2.0 * (h - 1)
    else:
        ix, iy = ((gx + 1.0) * w - 1.0) / 2.0, ((gy + 1.0) * h - 1.0) / 2.0
    zeros = padding_mode == "zeros"
    if not zeros and mode == "bilinear":  # border: the coordinate itself is clipped
        ix, iy = ix.clamp(0, w - 1), iy.clamp(0, h - 1)
    flat = x.reshape(n, c, h * w)
    out = None
    for yi, yw in _taps(iy, h, mode, zeros):
        for xi, xw in _taps(ix, w, mode, zeros):
            index = (yi * w + xi).reshape(n, 1, -1).expand(-1, c, -1).to(x.device)
            weight = (yw * xw).reshape(n, 1, -1).to(x.device)
            term = torch.gather(flat, 2, index) * weight
            out = term if out is None else out.add_(term)
    return out.view(n, c, *grid.shape[1:3])


def atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``torch.atan2`` evaluated in float64 and rounded back to float32."""
    return torch.atan2(y.double(), x.double()).to(torch.result_type(y, x))


def pow(x: torch.Tensor, exponent: torch.Tensor | float) -> torch.Tensor:  # noqa: A001
    """``x ** exponent`` evaluated in float64 and rounded back to ``x.dtype`` (a non-integer
    power is a vectorised approximation that differs between kernel builds)."""
    if isinstance(exponent, torch.Tensor):
        exponent = exponent.double()
    return torch.pow(x.double(), exponent).to(x.dtype)


def cross(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.linalg.cross`` written as products and differences (the kernel fuses them)."""
    a0, a1, a2 = a.unbind(dim)
    b0, b1, b2 = b.unbind(dim)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim)


def _numpy_float64(name: str):
    fn = getattr(np, name)

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        values = fn(x.detach().cpu().numpy().astype(np.float64))
        return torch.from_numpy(values.astype(np.float32)).to(x.device)

    wrapped.__name__ = name
    wrapped.__doc__ = (
        f"``{name}`` of a float32 tensor, computed by numpy in float64 and rounded to float32. "
        "torch's float32 kernels call MKL's vector math in its fast mode, whose last bits differ "
        "between AVX2 and AVX-512 paths, in float64 too; numpy's float64 functions are accurate "
        "to an ulp or so of a double, which the rounding to float32 removes."
    )
    return wrapped


sin, cos, tan, exp, log = (_numpy_float64(n) for n in ("sin", "cos", "tan", "exp", "log"))


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square root (numpy's, the hardware instruction); torch's float32
    ``sqrt`` goes through MKL's vector math, which is not correctly rounded and differs between
    AVX2 and AVX-512 (0.6 % of random inputs in the last bit)."""
    values = np.sqrt(x.detach().cpu().numpy())
    return torch.from_numpy(values).to(x.device)
