"""Renderers for GeoSynth: nadir orthophoto, oblique drone views, ground panoramas.

All three read the same campus rasters (height, albedo, vegetation, class,
building key) and differ in geometry and capture conditions:

- ``render_orthophoto``: orthographic nadir view of a whole campus with cast
  shadows from one sun, one season and one colour balance (the "satellite").
- ``render_drone``: perspective views from a descending orbit, found by
  ray-marching the height field for all pixels of a batch of views at once;
  facades are shaded with their own material and window pattern; the capture
  conditions are the satellite's or the view's own (``GeoSynthProfile.drone_capture``).
- ``render_panorama``: 360-degree north-aligned equirectangular panoramas at
  eye height. Per azimuth column the height field is sampled at growing
  distances; the running maximum of the elevation angle is monotone, so the
  first surface hit by every row is a ``searchsorted`` (no per-pixel loop).

Angles: bearings/azimuths are degrees clockwise from north; x = east, y = north.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from geoloc_lib.core import portable_ops as P
from geoloc_lib.data.geosynth.world import TREE, WATER, Campus

SEASONS: dict[str, tuple[float, float, float]] = {
    "summer": (1.0, 1.0, 1.0),
    "spring": (1.08, 1.12, 0.85),
    "autumn": (1.45, 1.0, 0.55),
    "dry": (1.35, 1.15, 0.85),
    "winter": (1.15, 0.95, 0.95),
}


@dataclass
class Conditions:
    """Capture conditions: sun, season tint on vegetation, colour balance, haze."""

    sun_az: float  # degrees clockwise from north
    sun_el: float  # degrees above the horizon
    season: str
    gains: tuple[float, float, float]  # white balance
    exposure: float
    haze: float  # extinction per 100 m (drone, panorama) or constant veil (orthophoto)
    haze_rgb: tuple[float, float, float]

    def sun_vector(self) -> torch.Tensor:
        az, el = math.radians(self.sun_az), math.radians(self.sun_el)
        return torch.tensor(
            [math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)]
        )


def sample_conditions(rng: np.random.Generator, kind: str) -> Conditions:
    """Random capture conditions; ``kind`` is satellite, drone or street (different ranges)."""
    if kind == "satellite":
        az, el = rng.uniform(130, 230), rng.uniform(42, 68)
        seasons, haze = ["summer", "spring", "dry"], rng.uniform(0.02, 0.08)
        gain_sd, exposure = 0.05, rng.uniform(0.95, 1.1)
    elif kind == "drone":
        az, el = rng.uniform(70, 290), rng.uniform(25, 60)
        seasons, haze = list(SEASONS), rng.uniform(0.05, 0.35)
        gain_sd, exposure = 0.08, rng.uniform(0.85, 1.2)
    else:
        az, el = rng.uniform(60, 300), rng.uniform(20, 65)
        seasons, haze = list(SEASONS), rng.uniform(0.03, 0.2)
        gain_sd, exposure = 0.07, rng.uniform(0.85, 1.15)
    season = str(rng.choice(seasons))
    gains = tuple(float(g) for g in np.clip(1 + gain_sd * rng.standard_normal(3), 0.75, 1.25))
    hz = tuple(float(c) for c in np.clip([0.72, 0.76, 0.82] + 0.05 * rng.standard_normal(3), 0, 1))
    return Conditions(float(az), float(el), season, gains, float(exposure), float(haze), hz)


def as_oblique(sat: Conditions) -> Conditions:
    """The satellite's capture conditions for a view rendered from the same imagery.

    Sun, season and colour balance are the satellite's (the same texture, the same baked-in
    shadows); the satellite's veil strength (0.02-0.08) becomes the extinction per 100 m, a light
    haze: at most ~20 % of the light lost over the drone orbit's slant range of <= 250 m.
    """
    return replace(sat)


def _season_albedo(albedo: torch.Tensor, veg: torch.Tensor, season: str) -> torch.Tensor:
    gain = torch.tensor(SEASONS[season]).reshape(3, *([1] * (albedo.dim() - 1)))
    return albedo * (1 + veg.unsqueeze(0) * (gain - 1))


def _finish(rgb: torch.Tensor, cond: Conditions) -> torch.Tensor:
    """Colour balance, exposure and a display gamma; rgb is [3, ...] linear-ish."""
    gains = torch.tensor(cond.gains).reshape(3, *([1] * (rgb.dim() - 1)))
    out = P.pow((rgb * gains * cond.exposure).clamp(0, 1), 1 / 1.6)
    return out


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """[3, H, W] -> HxWx3 uint8 (also accepts [B, 3, H, W] -> BxHxWx3)."""
    arr = (rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return arr.movedim(-3, -1).contiguous().numpy()


def shadow_visibility(
    height: torch.Tensor, res: float, sun_az: float, sun_el: float
) -> torch.Tensor:
    """Sunlit fraction per pixel (1 = lit) from cast shadows, via shifted height maps.

    Computed on a 2x max-pooled grid with steps that grow with distance, then
    upsampled bilinearly (soft penumbra-like edges).
    """
    coarse = F.max_pool2d(height[None, None], 2)[0, 0]
    cres = res * 2
    Hc, Wc = coarse.shape
    tan_el = math.tan(math.radians(sun_el))
    reach = float(height.max()) / max(tan_el, 1e-3)
    az = math.radians(sun_az)
    dists, d = [], cres
    while d <= reach + cres:
        dists.append(d)
        d += cres if d < 16 else (2 * cres if d < 48 else 4 * cres)
    pad = int(math.ceil((reach + 4 * cres) / cres)) + 1
    padded = F.pad(coarse[None, None], (pad, pad, pad, pad))[0, 0]
    occl = torch.full_like(coarse, -1e3)
    for dist in dists:
        dc = int(round(dist * math.sin(az) / cres))
        dr = int(round(-dist * math.cos(az) / cres))
        shifted = padded[pad + dr : pad + dr + Hc, pad + dc : pad + dc + Wc]
        torch.maximum(occl, shifted - dist * tan_el, out=occl)
    lit = (occl <= coarse + 0.3).float()
    up = P.resize(lit[None, None], tuple(height.shape), mode="bilinear")
    return up[0, 0]


def render_orthophoto(campus: Campus, cond: Conditions) -> np.ndarray:
    """The campus seen from nadir: HxWx3 uint8 (north up), before the optics blur.

    The slight satellite blur is applied per tile by the writer (cheaper than on the
    whole campus, identical away from the tile border).
    """
    sun = cond.sun_vector()
    lit = shadow_visibility(campus.height, campus.res, cond.sun_az, cond.sun_el)
    h = campus.height
    hp = F.pad(h[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    gx = ((hp[1:-1, 2:] - hp[1:-1, :-2]) / (2 * campus.res)).clamp_(-1.5, 1.5)
    gy = ((hp[:-2, 1:-1] - hp[2:, 1:-1]) / (2 * campus.res)).clamp_(-1.5, 1.5)
    # n = (-gx, -gy, 1) / |.|, so n.sun needs no normal field in memory.
    ndl = ((sun[2] - gx * sun[0] - gy * sun[1]) * torch.rsqrt(1 + gx * gx + gy * gy)).clamp_(min=0)
    del gx, gy, hp
    albedo = _season_albedo(campus.albedo, campus.veg, cond.season)
    ambient = torch.tensor([0.36, 0.40, 0.48])[:, None, None]
    sun_rgb = torch.tensor([1.0, 0.96, 0.88])[:, None, None]
    rgb = albedo * (ambient + 0.95 * sun_rgb * (ndl * lit)[None])
    rgb = torch.where((campus.klass == WATER)[None], rgb + 0.04, rgb)  # sky reflection on water
    hz = torch.tensor(cond.haze_rgb)[:, None, None]
    rgb = rgb * (1 - cond.haze) + hz * cond.haze
    return _to_uint8(_finish(rgb, cond))


class _Sampler:
    """Gathers from campus rasters at metric positions.

    The rasters' outer ring is bare ground, and indices are clamped, so anything
    beyond the campus reads as flat open land without per-sample masks.
    """

    def __init__(self, campus: Campus):
        self.c = campus
        self.H, self.W = campus.shape
        self.res = campus.res
        self.inv = 1.0 / campus.res
        self.top = self.H * campus.res  # y of the north edge
        h = campus.height.clone()
        h[0], h[-1], h[:, 0], h[:, -1] = 0, 0, 0, 0
        self.hflat = h.reshape(-1)
        # 2x max-pooled heights (cache-friendlier) for the coarse drone march.
        h2 = F.max_pool2d(h[None, None], 2)[0, 0]
        self.H2, self.W2 = h2.shape
        self.h2flat = h2.reshape(-1)
        # 2x prefiltered albedo and vegetation for minified lookups.
        self.alb2 = F.avg_pool2d(campus.albedo[None], 2)[0]
        self.veg2 = F.avg_pool2d(campus.veg[None, None], 2)[0, 0]
        self.hmax = float(h.max())
        # 32 px (16 m) max grid for bounding the heights around a view.
        self.hcoarse = F.max_pool2d(h[None, None], 32, ceil_mode=True)[0, 0]

    @staticmethod
    def of(campus: Campus) -> _Sampler:
        """One sampler per campus (cached: building it pools whole rasters)."""
        if "sampler" not in campus.extra:
            campus.extra["sampler"] = _Sampler(campus)
        return campus.extra["sampler"]

    def index(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        col = (x * self.inv).long().clamp_(0, self.W - 1)
        row = ((self.top - y) * self.inv).long().clamp_(0, self.H - 1)
        return row * self.W + col

    def height(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.hflat[self.index(x, y)]

    def height2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        col = (x * (self.inv / 2)).long().clamp_(0, self.W2 - 1)
        row = ((self.top - y) * (self.inv / 2)).long().clamp_(0, self.H2 - 1)
        return self.h2flat[row * self.W2 + col]

    def max_height_near(self, x: float, y: float, radius: float) -> float:
        cell = 32 * self.res
        c0, c1 = int(max(0, (x - radius) // cell)), int(max(0, (x + radius) // cell + 1))
        r0 = int(max(0, (self.top - y - radius) // cell))
        r1 = int(max(0, (self.top - y + radius) // cell + 1))
        block = self.hcoarse[r0:r1, c0:c1]
        return float(block.max()) if block.numel() else 0.0

    def nearest(self, raster: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        return raster.reshape(-1)[self.index(x, y)]

    def bilinear(self, raster: torch.Tensor, res: float, x: torch.Tensor, y: torch.Tensor):
        """Bilinear lookup in a [C, h, w] raster of pixel size ``res``; returns [C, *x.shape]."""
        C, h, w = raster.shape
        fc = (x / res - 0.5).clamp(0, w - 1.001)
        fr = ((h * res - y) / res - 0.5).clamp(0, h - 1.001)
        c0, r0 = fc.floor().long(), fr.floor().long()
        wc, wr = fc - c0, fr - r0
        flat = raster.reshape(C, -1)
        i00 = r0 * w + c0
        v00, v01 = flat[:, i00], flat[:, i00 + 1]
        v10, v11 = flat[:, i00 + w], flat[:, i00 + w + 1]
        top = v00 + (v01 - v00) * wc
        bot = v10 + (v11 - v10) * wc
        return top + (bot - top) * wr

    def albedo(self, x, y, fine: bool = False):
        if fine:
            return self.bilinear(self.c.albedo, self.res, x, y)
        return self.bilinear(self.alb2, self.res * 2, x, y)

    def veg(self, x, y):
        return self.bilinear(self.veg2[None], self.res * 2, x, y)[0]

    def gradient(self, x, y, step: float):
        """Height gradient (d/dx, d/dy) by central differences at ``step`` metres."""
        gx = (self.height(x + step, y) - self.height(x - step, y)) / (2 * step)
        gy = (self.height(x, y + step) - self.height(x, y - step)) / (2 * step)
        return gx, gy


def _facade_colour(s: _Sampler, x, y, z, nx, ny, bkey):
    """Wall colour with floors and a window grid; windows are dark glass."""
    fac = s.c.facade[bkey]  # [..., 4]
    along = x * (-ny) + y * nx
    floor_f = torch.remainder(z, 3.3) / 3.3
    bay_f = torch.remainder(along, 3.0) / 3.0
    wf = fac[..., 3]
    window = (floor_f > 0.3) & (floor_f < 0.85) & ((bay_f - 0.5).abs() < wf / 2) & (z > 1.0)
    wall = fac[..., :3].movedim(-1, 0)
    glass = torch.tensor([0.13, 0.16, 0.21]).reshape(3, *([1] * x.dim()))
    return torch.where(window[None], glass, wall)


def _lighting(albedo, n, sun, lit, ambient_scale=1.0):
    ndl = (n * sun.reshape(3, *([1] * (n.dim() - 1)))).sum(0).clamp(min=0)
    ambient = torch.tensor([0.36, 0.40, 0.48]).reshape(3, *([1] * (n.dim() - 1))) * ambient_scale
    sun_rgb = torch.tensor([1.0, 0.95, 0.86]).reshape(3, *([1] * (n.dim() - 1)))
    return albedo * (ambient + 0.95 * sun_rgb * (ndl * lit)[None])


def _march_shadow(s: _Sampler, px, py, pz, sun: torch.Tensor, n_steps: int, hmax: float):
    """1 where the point sees the sun: march towards it over the height field."""
    horiz = math.hypot(float(sun[0]), float(sun[1]))
    tan_el = float(sun[2]) / max(horiz, 1e-6)
    reach = max(hmax - float(pz.min()), 1.0) / max(tan_el, 1e-3)
    k = torch.arange(1, n_steps + 1, dtype=torch.float32)
    dist = reach * P.pow(k / n_steps, 1.5)  # denser near the point
    shape = (-1,) + (1,) * px.dim()
    dist = dist.reshape(shape)
    ux, uy = float(sun[0]) / horiz, float(sun[1]) / horiz
    h = s.height(px[None] + dist * ux, py[None] + dist * uy)
    blocked = (h > pz[None] + dist * tan_el + 0.2).any(0)
    return (~blocked).float()


def drone_orbit(
    n_views: int, rng: np.random.Generator, loops: float = 2.0
) -> dict[str, np.ndarray]:
    """A descending orbit like University-1652's: altitude, radius and heading vary per view.

    Returns per-view arrays: ``bearing`` of the drone from the target (deg),
    ``altitude_m``, ``distance_m`` (horizontal), ``heading_deg`` (camera yaw,
    towards the target) and ``pitch_deg`` (below the horizon).
    """
    k = np.arange(n_views)
    frac = k / max(n_views - 1, 1)
    start = rng.uniform(0, 360)
    bearing = (start + 360.0 * loops * k / n_views + rng.uniform(-6, 6, n_views)) % 360
    altitude = 175.0 - 70.0 * frac + rng.uniform(-6, 6, n_views)
    distance = 165.0 - 65.0 * frac + rng.uniform(-8, 8, n_views)
    heading = (bearing + 180.0) % 360
    pitch = np.degrees(np.arctan2(altitude, distance))
    return dict(
        bearing=bearing,
        altitude_m=altitude,
        distance_m=distance,
        heading_deg=heading,
        pitch_deg=pitch,
    )


def render_drone(
    campus: Campus,
    target_xy: tuple[float, float],
    orbit: dict[str, np.ndarray],
    cond: Conditions,
    size: int = 128,
    fov_deg: float = 50.0,
    max_steps: int = 96,
    shadow_steps: int = 12,
) -> np.ndarray:
    """Oblique perspective views of ``target_xy`` from every orbit position: [V, S, S, 3] uint8."""
    s = _Sampler.of(campus)
    yaw = torch.from_numpy(np.radians(orbit["heading_deg"]).astype(np.float32))
    pitch = torch.from_numpy(np.radians(orbit["pitch_deg"]).astype(np.float32))
    brg = torch.from_numpy(np.radians(orbit["bearing"]).astype(np.float32))
    dist = torch.from_numpy(orbit["distance_m"].astype(np.float32))
    cx = target_xy[0] + dist * P.sin(brg)
    cy = target_xy[1] + dist * P.cos(brg)
    cz = torch.from_numpy(orbit["altitude_m"].astype(np.float32))
    fwd = torch.stack([P.sin(yaw) * P.cos(pitch), P.cos(yaw) * P.cos(pitch), -P.sin(pitch)], 1)
    right = torch.stack([P.cos(yaw), -P.sin(yaw), torch.zeros_like(yaw)], 1)
    up = P.cross(right, fwd, dim=1)
    t = math.tan(math.radians(fov_deg) / 2)
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(-g, g, indexing="ij")
    d = (
        fwd[:, :, None, None]
        + t * gx[None, None] * right[:, :, None, None]
        + t * gy[None, None] * up[:, :, None, None]
    )  # [V, 3, S, S]
    d = d * torch.rsqrt((d * d).sum(1, keepdim=True))
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2].clamp(max=-1e-3)
    ox, oy, oz = cx[:, None, None], cy[:, None, None], cz[:, None, None]
    # Slab [0, hmax] where hmax bounds the heights around this location (not the whole campus).
    hmax = s.max_height_near(target_xy[0], target_xy[1], 450.0) + 0.5
    t0 = (oz - hmax) / -dz
    t1 = oz / -dz
    # Coarse march (about 2 m horizontal steps on the shallowest ray) on the 2x max-pooled
    # heights, one step at a time over all rays (cache-sized tensors): the first sample below
    # the surface. The last sample (z = 0) always hits.
    shallow = float((-dz).min())
    slab = hmax * math.sqrt(max(1 - shallow**2, 0.0)) / shallow
    n_steps = int(min(max_steps, max(8, math.ceil(slab / 2.0))))
    dt = (t1 - t0) / n_steps
    inv2 = s.inv / 2
    col0, dcol = (ox + t0 * dx) * inv2, dt * dx * inv2
    row0, drow = (s.top - oy - t0 * dy) * inv2, -dt * dy * inv2
    z0, dzs = oz + t0 * dz, dt * dz
    first = torch.full(dz.shape, n_steps, dtype=torch.int64)
    found = torch.zeros(dz.shape, dtype=torch.bool)
    for k in range(1, n_steps):
        col = (col0 + dcol * k).long().clamp_(0, s.W2 - 1)
        row = (row0 + drow * k).long().clamp_(0, s.H2 - 1)
        hk = s.h2flat[row.mul_(s.W2).add_(col)]
        new = (z0 + dzs * k <= hk) & ~found
        first.masked_fill_(new, k)
        found |= new
        if k % 8 == 0 and bool(found.all()):
            break
    t_hi = t0 + first * dt
    t_lo = t_hi - dt
    for _ in range(6):  # bisection on the full-resolution heights
        tm = (t_lo + t_hi) / 2
        blocked = oz + tm * dz <= s.height(ox + tm * dx, oy + tm * dy)
        t_hi = torch.where(blocked, tm, t_hi)
        t_lo = torch.where(blocked, t_lo, tm)
    px, py, pz = ox + t_hi * dx, oy + t_hi * dy, oz + t_hi * dz
    h_here = s.height(px, py)
    facade = pz < h_here - 0.3
    pz = torch.where(facade, pz, h_here)

    # Normals: tops from the smoothed gradient, walls horizontal and facing out of the building.
    gx_, gy_ = s.gradient(px, py, 1.0)
    top_n = torch.stack([-gx_.clamp(-1.5, 1.5), -gy_.clamp(-1.5, 1.5), torch.ones_like(gx_)])
    wgx, wgy = s.gradient(px, py, 0.75)
    wn = torch.stack([-wgx, -wgy])
    wlen = P.sqrt(wn[0] * wn[0] + wn[1] * wn[1])
    wn = torch.where(wlen[None] > 1e-3, wn / wlen.clamp(min=1e-3), -d[:, :2].movedim(1, 0))
    wall_n = torch.cat([wn, torch.zeros_like(wn[:1])])
    n = torch.where(facade[None], wall_n, top_n)
    n = n * torch.rsqrt((n * n).sum(0, keepdim=True))

    klass = s.nearest(campus.klass, px, py)
    bkey = s.nearest(campus.building, px, py)
    alb = _season_albedo(s.albedo(px, py), s.veg(px, py), cond.season)
    wall = _facade_colour(s, px, py, pz, wn[0], wn[1], bkey)
    tree_side = facade & (klass == TREE)
    alb = torch.where(facade[None] & ~tree_side[None], wall, alb)
    alb = torch.where(tree_side[None], alb * 0.8, alb)
    sun = cond.sun_vector()
    lit = _march_shadow(s, px + 0.3 * n[0], py + 0.3 * n[1], pz + 0.1, sun, shadow_steps, hmax)
    rgb = _lighting(alb, n, sun, lit)
    rgb = torch.where((klass == WATER)[None] & ~facade[None], rgb + 0.05, rgb)
    # Aerial perspective: haze grows with the distance to the camera.
    trans = P.exp(-t_hi * cond.haze / 100.0)
    rgb = rgb * trans[None] + torch.tensor(cond.haze_rgb).reshape(3, 1, 1, 1) * (1 - trans[None])
    rgb = _finish(rgb, cond)  # [3, V, S, S]
    return _to_uint8(rgb.movedim(0, 1))


def pano_geometry(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column bearings (deg, north at the centre column, clockwise) and row elevations (deg)."""
    bearing = 360.0 * (torch.arange(width, dtype=torch.float32) + 0.5) / width - 180.0
    elev = 90.0 - 180.0 * (torch.arange(height, dtype=torch.float32) + 0.5) / height
    return bearing, elev


def _sky(bearing, elev, cond: Conditions, rng: np.random.Generator) -> torch.Tensor:
    """Sky colour: zenith-to-horizon gradient, a sun glow and soft clouds; [3, H, W]."""
    e = elev.clamp(min=0)[:, None] / 90.0
    horizon = torch.tensor([0.78, 0.82, 0.88])[:, None, None]
    zenith = torch.tensor([0.32, 0.48, 0.80])[:, None, None]
    sky = horizon + (zenith - horizon) * P.pow(e[None], 0.6)
    b = torch.deg2rad(bearing)[None, :]
    el = torch.deg2rad(elev)[:, None]
    sv = cond.sun_vector()
    cosang = P.cos(el) * (P.sin(b) * sv[0] + P.cos(b) * sv[1]) / max(
        math.hypot(float(sv[0]), float(sv[1])), 1e-6
    ) * math.cos(math.radians(cond.sun_el)) + P.sin(el) * math.sin(math.radians(cond.sun_el))
    sky = sky + 0.25 * P.pow(cosang.clamp(min=0), 32)[None]
    cover = rng.uniform(0.0, 0.7)
    # Clouds: two octaves of smooth noise, flattened towards the horizon.
    clouds = torch.zeros(len(elev), len(bearing))
    for rows, cols, amp in ((10, 24, 0.65), (20, 48, 0.35)):
        grid = torch.from_numpy(rng.uniform(0, 1, (1, 1, rows, cols)).astype(np.float32))
        clouds += amp * P.resize(grid, tuple(clouds.shape), mode="bilinear")[0, 0]
    amount = ((clouds - (1 - cover)) / 0.25).clamp(0, 1) * (e > 0.02).float()
    return sky * (1 - amount[None]) + torch.tensor([0.9, 0.9, 0.92])[:, None, None] * amount[None]


def render_panorama(
    campus: Campus,
    xy: tuple[float, float],
    cond: Conditions,
    shadow: torch.Tensor,
    rng: np.random.Generator,
    width: int = 616,
    height: int = 308,
    eye: float = 2.2,
    n_samples: int = 224,
    max_dist: float = 260.0,
) -> np.ndarray:
    """A north-aligned equirectangular panorama at ``xy`` (eye height ``eye`` m): HxWx3 uint8.

    ``shadow`` is the campus's sunlit fraction for ``cond`` (see :func:`shadow_visibility`).
    """
    s = _Sampler.of(campus)
    bearing, elev = pano_geometry(width, height)
    b = torch.deg2rad(bearing)
    ux, uy = P.sin(b), P.cos(b)  # [W]
    dist = 0.8 * P.pow(
        torch.tensor(max_dist / 0.8), torch.arange(n_samples, dtype=torch.float32) / (n_samples - 1)
    )
    sx = xy[0] + ux[:, None] * dist[None]  # [W, K]
    sy = xy[1] + uy[:, None] * dist[None]
    hk = s.height(sx, sy)
    alpha = torch.rad2deg(P.atan2(hk - eye, dist[None]))
    reach = torch.cummax(alpha, dim=1).values  # monotone: first hit by searchsorted
    el_rows = elev[None, :].expand(width, -1).contiguous()
    first = torch.searchsorted(reach.contiguous(), el_rows)  # [W, H]: first k with reach >= elev
    sky_mask = first >= n_samples
    k = first.clamp(max=n_samples - 1)
    d_k = dist[k]
    tan_e = P.tan(torch.deg2rad(el_rows))
    h_hit = hk.gather(1, k)
    # Top surface (ground or a roof below the eye): exact intersection distance.
    d_top = (eye - h_hit) / (-tan_e).clamp(min=1e-4)
    top = (el_rows < 0) & (d_top <= d_k + 1e-3)
    d_hit = torch.where(top, d_top, d_k)
    px = xy[0] + ux[:, None] * d_hit
    py = xy[1] + uy[:, None] * d_hit
    pz = torch.where(top, h_hit, eye + d_hit * tan_e)

    gx_, gy_ = s.gradient(px, py, 0.5)
    top_n = torch.stack([-gx_.clamp(-1.5, 1.5), -gy_.clamp(-1.5, 1.5), torch.ones_like(gx_)])
    wn = torch.stack([-gx_, -gy_])
    wlen = P.sqrt(wn[0] * wn[0] + wn[1] * wn[1])
    wn = torch.where(
        wlen[None] > 1e-3,
        wn / wlen.clamp(min=1e-3),
        -torch.stack([ux, uy])[:, :, None].expand_as(wn),
    )
    facade = ~top
    n = torch.where(facade[None], torch.cat([wn, torch.zeros_like(wn[:1])]), top_n)
    n = n * torch.rsqrt((n * n).sum(0, keepdim=True))
    klass = s.nearest(campus.klass, px, py)
    bkey = s.nearest(campus.building, px, py)
    alb = s.albedo(px, py, fine=True)
    alb = _season_albedo(alb, s.veg(px, py), cond.season)
    wall = _facade_colour(s, px, py, pz, wn[0], wn[1], bkey)
    tree_side = facade & (klass == TREE)
    alb = torch.where(facade[None] & ~tree_side[None], wall, alb)
    alb = torch.where(tree_side[None], alb * 0.75, alb)
    lit_top = s.bilinear(shadow[None], campus.res, px, py)[0]
    lit = torch.where(top, lit_top, 1.0)
    rgb = _lighting(alb, n, cond.sun_vector(), lit, ambient_scale=1.1)
    trans = P.exp(-d_hit * cond.haze / 100.0)
    rgb = rgb * trans[None] + torch.tensor(cond.haze_rgb).reshape(3, 1, 1) * (1 - trans[None])
    sky = _sky(bearing, elev, cond, rng)  # [3, H, W]
    rgb = torch.where(sky_mask[None], sky.transpose(1, 2), rgb)  # rgb is [3, W, H]
    return _to_uint8(_finish(rgb.transpose(1, 2), cond))
