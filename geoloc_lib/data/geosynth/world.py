"""Procedural 2.5D city districts ("campuses") for GeoSynth.

A campus is a square raster in metric coordinates (``res`` metres per pixel,
row 0 = north edge) holding everything the renderers need: a height map
(metres above ground), an albedo map, a vegetation weight (for seasonal tint),
a material class per pixel and a building key per pixel with per-building
facade parameters. Every campus is built from a rotated road grid of varying
block sizes whose blocks become dense buildings, detached houses, parks,
parking lots, fields, plazas or sports grounds, plus rivers and trees.

Everything is vectorised over pixels (torch); randomness comes from a
``numpy.random.Generator`` per campus, so a campus is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from geoloc_lib.core import portable_ops as P

# Material classes stored per pixel.
GROUND, ROAD, SIDEWALK, BUILDING, TREE, GRASS, WATER, FIELD, PARKING, PLAZA, SPORTS = range(11)
CLASS_NAMES = (
    "ground", "road", "sidewalk", "building", "tree", "grass",
    "water", "field", "parking", "plaza", "sports",
)  # fmt: skip

# Block types.
B_DENSE, B_HOUSES, B_PARK, B_PARKING, B_FIELD, B_PLAZA, B_SPORTS = range(7)

# Campus kinds -> block-type probabilities (order as the B_* constants), building
# height median (m), block size range (m), sidewalk width (m).
CAMPUS_KINDS: dict[str, dict] = {
    "downtown": dict(p=(0.60, 0.02, 0.10, 0.10, 0.00, 0.12, 0.06), h_med=24.0, block=(55, 110), sw=3.0),
    "mixed": dict(p=(0.40, 0.25, 0.12, 0.10, 0.03, 0.05, 0.05), h_med=14.0, block=(60, 130), sw=2.5),
    "suburb": dict(p=(0.12, 0.55, 0.12, 0.06, 0.08, 0.02, 0.05), h_med=9.0, block=(70, 150), sw=2.0),
    "periurban": dict(p=(0.15, 0.30, 0.10, 0.08, 0.30, 0.02, 0.05), h_med=10.0, block=(80, 190), sw=1.5),
}  # fmt: skip

FLAT_ROOFS = np.array(
    [
        [0.62, 0.62, 0.60], [0.46, 0.46, 0.46], [0.26, 0.26, 0.28], [0.80, 0.80, 0.78],
        [0.58, 0.53, 0.45], [0.30, 0.40, 0.22], [0.36, 0.43, 0.52], [0.52, 0.34, 0.26],
    ],
    dtype=np.float32,
)  # fmt: skip
PITCHED_ROOFS = np.array(
    [
        [0.62, 0.30, 0.20], [0.42, 0.28, 0.20], [0.28, 0.29, 0.33], [0.52, 0.52, 0.52],
        [0.56, 0.22, 0.18], [0.26, 0.38, 0.30],
    ],
    dtype=np.float32,
)  # fmt: skip
FACADES = np.array(
    [
        [0.62, 0.60, 0.57], [0.74, 0.66, 0.52], [0.56, 0.31, 0.23], [0.84, 0.84, 0.82],
        [0.32, 0.40, 0.47], [0.32, 0.30, 0.29], [0.76, 0.66, 0.42],
    ],
    dtype=np.float32,
)  # fmt: skip
CROPS = np.array(
    [
        [0.36, 0.48, 0.20], [0.62, 0.56, 0.30], [0.48, 0.38, 0.26], [0.44, 0.52, 0.24],
        [0.70, 0.62, 0.36], [0.30, 0.42, 0.18],
    ],
    dtype=np.float32,
)  # fmt: skip
MAX_LOTS_U, MAX_LOTS_V = 16, 4


@dataclass
class Campus:
    """One generated district: rasters plus the road grid used to place street views."""

    name: str
    split: str  # train | test | distractor
    origin: tuple[float, float]  # UTM easting, northing of the south-west corner (m)
    res: float  # metres per pixel
    kind: str
    height: torch.Tensor  # [H, W] float32, metres above ground
    albedo: torch.Tensor  # [3, H, W] float32 in [0, 1]
    veg: torch.Tensor  # [H, W] float32 vegetation weight in [0, 1]
    klass: torch.Tensor  # [H, W] uint8 material class
    building: torch.Tensor  # [H, W] int64 building key + 1 (0 = no building)
    facade: torch.Tensor  # [K + 1, 4] facade rgb and window fraction per building key
    angle: float  # road grid rotation (radians)
    roads_u: np.ndarray  # road centre lines u = const (rotated frame)
    roads_v: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.height.shape[0]), int(self.height.shape[1])

    @property
    def size_m(self) -> float:
        return self.shape[1] * self.res

    def to_pixel(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local metric (x east, y north) -> continuous (col, row) pixel coordinates."""
        return x / self.res - 0.5, self.shape[0] - y / self.res - 0.5

    def utm(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([self.origin[0] + np.asarray(x), self.origin[1] + np.asarray(y)], axis=-1)


def hash_uniform(a: torch.Tensor, b: torch.Tensor, salt: int) -> torch.Tensor:
    """Deterministic per-integer-cell uniforms in [0, 1) (an integer hash; no RNG state)."""
    m = 0x7FFFFFFF
    h = (a.long() * 1103515245 + b.long() * 374761393 + (salt * 668265263 + 1013904223)) & m
    h = ((h ^ (h >> 15)) * 2246822519) & m
    h = ((h ^ (h >> 13)) * 3266489917) & m
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).float() / 16777216.0


def value_noise(
    rng: np.random.Generator, shape: tuple[int, int], cell_px: float, octaves: int = 1
) -> torch.Tensor:
    """Smooth noise in about [-1, 1]: random grids upsampled bilinearly, octaves halve the cell."""
    out = torch.zeros(shape)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh = max(2, int(math.ceil(shape[0] / cell_px)) + 2)
        gw = max(2, int(math.ceil(shape[1] / cell_px)) + 2)
        grid = torch.from_numpy(rng.uniform(-1, 1, size=(1, 1, gh, gw)).astype(np.float32))
        size = (int(gh * cell_px), int(gw * cell_px))  # as F.interpolate(scale_factor=cell_px)
        up = P.resize(grid, size, mode="bilinear", scale=1.0 / cell_px)
        out += amp * up[0, 0, : shape[0], : shape[1]]
        total += amp
        amp *= 0.5
        cell_px = max(1.0, cell_px / 2)
    return out / total


def _road_lines(rng: np.random.Generator, lo: float, hi: float, block: tuple[float, float]):
    """Road centre positions covering [lo, hi] with random block sizes, and their widths."""
    pos = [lo - rng.uniform(*block)]
    while pos[-1] < hi + block[1]:
        pos.append(pos[-1] + rng.uniform(*block))
    pos = np.asarray(pos)
    width = rng.uniform(7.5, 10.5, size=len(pos))
    main = rng.random(len(pos)) < 0.22  # arterial roads
    width[main] = rng.uniform(15.0, 22.0, size=int(main.sum()))
    return pos, width


def _rect_edge_distance(lx, ly, ax, bx, ay, by):
    return torch.minimum(torch.minimum(lx - ax, bx - lx), torch.minimum(ly - ay, by - ly))


BAND_ROWS = 96  # rows per band: keeps every per-pixel temporary in cache


def generate_campus(
    seed: int | list[int],
    size_px: int,
    res: float,
    origin: tuple[float, float],
    name: str,
    split: str,
    kind: str | None = None,
) -> Campus:
    """Build one campus raster of ``size_px`` x ``size_px`` pixels at ``res`` m/px.

    All random draws happen up front (fixed order); the rasterisation then runs in
    row bands so the many per-pixel temporaries stay cache-resident.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    if kind is None:
        kind = str(rng.choice(list(CAMPUS_KINDS), p=[0.25, 0.35, 0.25, 0.15]))
    style = CAMPUS_KINDS[kind]
    H = W = size_px
    size_m = size_px * res
    angle = float(rng.uniform(-math.pi / 4, math.pi / 4))
    span = size_m * 1.5
    roads_u, width_u = _road_lines(rng, -span, span, style["block"])
    roads_v, width_v = _road_lines(rng, -span, span, style["block"])
    nu_blocks, nv_blocks = len(roads_u) - 1, len(roads_v) - 1
    n_blocks = nu_blocks * nv_blocks
    n_keys = n_blocks * MAX_LOTS_U * MAX_LOTS_V
    ctx = dict(
        res=res, H=H, W=W, sw=style["sw"], h_med=style["h_med"], angle=angle,
        tu=torch.from_numpy(roads_u.astype(np.float32)),
        tv=torch.from_numpy(roads_v.astype(np.float32)),
        twu=torch.from_numpy(width_u.astype(np.float32)) / 2,
        twv=torch.from_numpy(width_v.astype(np.float32)) / 2,
        nv_blocks=nv_blocks,
        btype=torch.from_numpy(rng.choice(7, size=n_blocks, p=style["p"]).astype(np.int64)),
        # column-major tables so each gathered parameter is contiguous
        b_rand=torch.from_numpy(rng.random((8, n_blocks)).astype(np.float32)),
        l_rand=torch.from_numpy(rng.random((14, n_keys)).astype(np.float32)),
        l_norm=torch.from_numpy(rng.standard_normal(n_keys).astype(np.float32)),
    )  # fmt: skip
    ctx["noise_l"] = value_noise(rng, (H, W), 64 / res * 0.5, octaves=3)
    ctx["noise_f"] = value_noise(rng, (H, W), 4.0, octaves=2)
    river = None
    if rng.random() < 0.5:
        ra = float(rng.uniform(0, math.pi))
        q0 = float(rng.uniform(-0.3, 0.3) * size_m + (-math.sin(ra) + math.cos(ra)) * size_m / 2)
        river = (ra, q0, rng.uniform(20, 80), rng.uniform(300, 900), rng.uniform(0, 2 * math.pi),
                 rng.uniform(18, 45))  # fmt: skip
    ctx["river"] = river

    height = torch.zeros(H, W)
    albedo = torch.zeros(3, H, W)
    veg = torch.zeros(H, W)
    klass = torch.zeros(H, W, dtype=torch.uint8)
    building = torch.zeros(H, W, dtype=torch.int64)
    for r0 in range(0, H, BAND_ROWS):
        r1 = min(H, r0 + BAND_ROWS)
        out = _raster_band(ctx, r0, r1)
        height[r0:r1], albedo[:, r0:r1], veg[r0:r1] = out[0], out[1], out[2]
        klass[r0:r1], building[r0:r1] = out[3], out[4]

    # Facade table per lot key: colour and window fraction (glass towers mostly windows).
    lr = ctx["l_rand"].numpy()
    fac_i = np.minimum((lr[8] * len(FACADES)).astype(np.int64), len(FACADES) - 1)
    fac = FACADES[fac_i] * (0.85 + 0.3 * lr[9][:, None])
    win = 0.25 + 0.45 * lr[10]
    win[fac_i == 4] = 0.9
    facade = torch.from_numpy(
        np.concatenate([np.zeros((1, 4)), np.c_[fac, win]]).astype(np.float32)
    )

    _plant_trees(rng, res, height, albedo, veg, klass, building, ctx["noise_f"])
    return Campus(
        name=name, split=split, origin=origin, res=res, kind=kind, height=height,
        albedo=albedo.clamp_(0, 1), veg=veg, klass=klass, building=building, facade=facade,
        angle=angle, roads_u=roads_u, roads_v=roads_v,
        extra={"width_u": width_u, "width_v": width_v, "river": river},
    )  # fmt: skip


def _rgb(rgb: tuple[float, float, float]) -> torch.Tensor:
    return torch.tensor(rgb)[:, None]


def _raster_band(ctx: dict, r0: int, r1: int):
    """Rasterise rows [r0, r1) of a campus: height, albedo, veg, class, building key.

    The road grid is evaluated for every pixel; each block type's material is then
    computed only on that type's pixels (compacted index lists), which keeps the
    per-pixel work close to what the pixel actually needs.
    """
    res, H, W, sw = ctx["res"], ctx["H"], ctx["W"], ctx["sw"]
    tu, tv, twu, twv = ctx["tu"], ctx["tv"], ctx["twu"], ctx["twv"]
    nh = r1 - r0
    N = nh * W
    cols = (torch.arange(W, dtype=torch.float32) + 0.5) * res
    rows_y = (H - torch.arange(r0, r1, dtype=torch.float32) - 0.5) * res
    y, x = torch.meshgrid(rows_y, cols, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    ca, sa = math.cos(ctx["angle"]), math.sin(ctx["angle"])
    u = ca * x + sa * y
    v = -sa * x + ca * y
    noise_l = ctx["noise_l"][r0:r1].reshape(-1)
    noise_f = ctx["noise_f"][r0:r1].reshape(-1)

    iu = (torch.searchsorted(tu, u, right=True) - 1).clamp_(0, len(tu) - 2)
    iv = (torch.searchsorted(tv, v, right=True) - 1).clamp_(0, len(tv) - 2)
    du_lo, du_hi = u - tu[iu], tu[iu + 1] - u
    dv_lo, dv_hi = v - tv[iv], tv[iv + 1] - v
    hu = torch.where(du_lo < du_hi, twu[iu], twu[iu + 1])  # half width of the nearer road
    hv = torch.where(dv_lo < dv_hi, twv[iv], twv[iv + 1])
    du, dv = torch.minimum(du_lo, du_hi), torch.minimum(dv_lo, dv_hi)
    road_u, road_v = du < hu, dv < hv
    road = road_u | road_v
    walk = ((du < hu + sw) | (dv < hv + sw)) & ~road
    interior = ~(road | walk)
    block_id = iu * ctx["nv_blocks"] + iv
    bt = ctx["btype"][block_id]

    height = torch.zeros(N)
    albedo = _rgb((0.46, 0.39, 0.29)) * (1 + 0.12 * noise_l)  # bare soil
    veg = torch.zeros(N)
    klass = torch.full((N,), GROUND, dtype=torch.uint8)
    building = torch.zeros(N, dtype=torch.int64)

    def put(idx, rgb, cls, vegw=0.0):
        albedo[:, idx] = rgb
        klass[idx] = cls
        veg[idx] = vegw

    # Roads: asphalt with dashed centre lines on wide roads (not inside crossings).
    i = torch.nonzero(road).squeeze(1)
    asphalt = _rgb((0.25, 0.25, 0.26)) * (1 + 0.12 * noise_f[i] + 0.1 * noise_l[i])
    mark = ((du[i] < 0.25) & (hu[i] > 6) & ~road_v[i] & (torch.remainder(v[i], 9.0) < 4.5)) | (
        (dv[i] < 0.25) & (hv[i] > 6) & ~road_u[i] & (torch.remainder(u[i], 9.0) < 4.5)
    )
    put(i, torch.where(mark[None], 0.85, asphalt), ROAD)
    i = torch.nonzero(walk).squeeze(1)
    put(i, _rgb((0.58, 0.57, 0.55)) * (1 + 0.06 * noise_f[i]), SIDEWALK)

    def block_coords(i):
        iu_, iv_ = iu[i], iv[i]
        hlo_u, hlo_v = twu[iu_], twv[iv_]
        bu = du_lo[i] - hlo_u - sw
        bv = dv_lo[i] - hlo_v - sw
        Lu = tu[iu_ + 1] - tu[iu_] - hlo_u - twu[iu_ + 1] - 2 * sw
        Lv = tv[iv_ + 1] - tv[iv_] - hlo_v - twv[iv_ + 1] - 2 * sw
        return bu, bv, Lu, Lv, block_id[i]

    b_rand = ctx["b_rand"]
    water_rgb = (0.10, 0.18, 0.22)

    # Buildings (dense blocks, houses, plazas with a landmark).
    i = torch.nonzero(interior & ((bt == B_DENSE) | (bt == B_HOUSES) | (bt == B_PLAZA))).squeeze(1)
    if len(i):
        _buildings(
            ctx,
            i,
            block_coords(i),
            bt[i],
            noise_l[i],
            noise_f[i],
            height,
            albedo,
            veg,
            klass,
            building,
        )
    # Parks: grass and sometimes a pond.
    i = torch.nonzero(interior & (bt == B_PARK)).squeeze(1)
    if len(i):
        bu, bv, Lu, Lv, bid = block_coords(i)
        put(i, _grass(noise_l[i], noise_f[i]), GRASS, 1.0)
        pond_e = ((bu - Lu * (0.3 + 0.4 * b_rand[7][bid])) / (Lu * 0.25)) ** 2 + (
            (bv - Lv * 0.5) / (Lv * 0.2)
        ) ** 2
        j = i[(b_rand[6][bid] < 0.35) & (pond_e < 1)]
        put(j, _rgb(water_rgb) * (1 + 0.1 * noise_l[j]), WATER)
    # Parking lots: asphalt, bay stripes and parked cars (1.5 m high).
    i = torch.nonzero(interior & (bt == B_PARKING)).squeeze(1)
    if len(i):
        bu, bv, Lu, Lv, bid = block_coords(i)
        bay_w, bay_d = 2.6, 5.5
        bay_row = torch.floor(bv / bay_d)
        aisle = torch.remainder(bay_row, 3) == 2
        bay_i = torch.floor(bu / bay_w)
        mu, mv = torch.remainder(bu, bay_w), torch.remainder(bv, bay_d)
        car_p = hash_uniform(bay_i.long() + 7919 * bid, bay_row.long(), 23)
        car = (
            ~aisle
            & (car_p < 0.55)
            & (mu > 0.45)
            & (mu < bay_w - 0.45)
            & (mv > 0.5)
            & (mv < bay_d - 0.5)
        )
        car_cols = torch.tensor(
            [
                [0.8, 0.8, 0.8],
                [0.1, 0.1, 0.12],
                [0.55, 0.1, 0.1],
                [0.2, 0.3, 0.55],
                [0.5, 0.5, 0.52],
            ]
        ).T
        car_rgb = car_cols[:, (hash_uniform(bay_i.long(), bay_row.long(), 29) * 5).long()]
        lot_rgb = torch.where(
            ((mu < 0.2) & ~aisle)[None], 0.85, _rgb((0.31, 0.31, 0.32)) * (1 + 0.1 * noise_f[i])
        )
        put(i, torch.where(car[None], car_rgb, lot_rgb), PARKING)
        height[i[car]] = 1.5
    # Fields: crop stripes with per-stripe tone.
    i = torch.nonzero(interior & (bt == B_FIELD)).squeeze(1)
    if len(i):
        bu, bv, Lu, Lv, bid = block_coords(i)
        stripe_w = 3.0 + 6.0 * b_rand[3][bid]
        strip_i = torch.floor(torch.where(b_rand[4][bid] < 0.5, bu, bv) / stripe_w)
        crop_i = (b_rand[5][bid] * len(CROPS)).long().clamp_(max=len(CROPS) - 1)
        tone = 0.85 + 0.3 * hash_uniform(strip_i.long(), bid, 31)
        put(i, torch.from_numpy(CROPS).T[:, crop_i] * tone * (1 + 0.1 * noise_f[i]), FIELD, 1.0)
    # Sports grounds: a pitch with white lines inside a red running track.
    i = torch.nonzero(interior & (bt == B_SPORTS)).squeeze(1)
    if len(i):
        bu, bv, Lu, Lv, bid = block_coords(i)
        su, sv = bu - Lu / 2, bv - Lv / 2
        ru, rv = (Lu / 2 - 4).clamp(min=5), (Lv / 2 - 4).clamp(min=5)
        e2 = (su / ru) ** 2 + (sv / rv) ** 2
        track = (e2 < 1) & (e2 > 0.72)
        pitch = (su.abs() < ru * 0.6) & (sv.abs() < rv * 0.6)
        line = pitch & (
            (ru * 0.6 - su.abs() < 0.4) | (rv * 0.6 - sv.abs() < 0.4) | (su.abs() < 0.2)
        )
        rgb = torch.where(
            track[None],
            _rgb((0.62, 0.27, 0.22)),
            _rgb((0.26, 0.50, 0.20)) * (1 + 0.05 * noise_f[i]),
        )
        put(i, torch.where(line[None], 0.9, rgb), SPORTS, 0.6)
    # Rivers: a sinuous band in its own rotated frame; roads cross on bridges.
    if ctx["river"] is not None:
        ra, q0, amp, lam, phase, width = ctx["river"]
        p = math.cos(ra) * x + math.sin(ra) * y
        q = -math.sin(ra) * x + math.cos(ra) * y
        dq = (q - q0 - amp * P.sin(2 * math.pi * p / lam + phase)).abs()
        i = torch.nonzero((dq < width / 2 + 6) & ~road).squeeze(1)
        wet = dq[i] < width / 2
        bank = i[~wet & ~walk[i]]
        put(bank, _grass(noise_l[bank], noise_f[bank]), GRASS, 1.0)
        wi = i[wet]
        put(wi, _rgb(water_rgb) * (1 + 0.1 * noise_l[wi]), WATER)
        gone = i[~walk[i]]
        height[gone] = 0.0
        building[gone] = 0
    shape = (nh, W)
    return (
        height.view(shape),
        albedo.view(3, *shape),
        veg.view(shape),
        klass.view(shape),
        building.view(shape),
    )


def _grass(noise_l: torch.Tensor, noise_f: torch.Tensor) -> torch.Tensor:
    return (
        _rgb((0.30, 0.42, 0.18)) * (1 + 0.18 * noise_l + 0.08 * noise_f)
        + _rgb((0.04, 0.0, -0.02)) * noise_l
    )


def _buildings(ctx, i, coords, bt, noise_l, noise_f, height, albedo, veg, klass, building) -> None:
    """Lots and buildings on the pixels ``i`` of building blocks (writes into the outputs)."""
    bu, bv, Lu, Lv, block_id = coords
    b_rand, l_rand = ctx["b_rand"], ctx["l_rand"]
    is_house = bt == B_HOUSES
    is_dense = bt == B_DENSE
    is_plaza = bt == B_PLAZA
    # Lots: a row of lots along u, one or two deep along v.
    lot_target = torch.where(is_house, 12 + 7 * b_rand[0][block_id], 18 + 24 * b_rand[0][block_id])
    nlu = torch.floor(Lu / lot_target).clamp_(1, MAX_LOTS_U)
    nlv = torch.floor(Lv / torch.where(is_house, 14.0, 22.0)).clamp_(1, 2)
    lot_w, lot_h = Lu / nlu, Lv / nlv
    lu = torch.minimum(torch.floor(bu / lot_w).clamp_(min=0), nlu - 1)
    lv = torch.minimum(torch.floor(bv / lot_h).clamp_(min=0), nlv - 1)
    lot_key = (block_id * MAX_LOTS_U + lu.long()) * MAX_LOTS_V + lv.long()

    def lr(k: int) -> torch.Tensor:
        return l_rand[k][lot_key]

    # Plazas hold one large landmark building on the whole block.
    lx = torch.where(is_plaza, bu, bu - lu * lot_w)
    ly = torch.where(is_plaza, bv, bv - lv * lot_h)
    lw = torch.where(is_plaza, Lu, lot_w)
    lh = torch.where(is_plaza, Lv, lot_h)
    s_lo = torch.where(is_house, 0.18, 0.04) + torch.where(is_plaza, 0.3, 0.0)
    s_rng = torch.where(is_house, 0.18, 0.16)
    ax = lw * (s_lo + s_rng * lr(0))
    bx = lw * (1 - s_lo - s_rng * lr(1))
    ay = lh * (s_lo + s_rng * lr(2))
    by = lh * (1 - s_lo - s_rng * lr(3))
    # Houses are at most ~15 m deep.
    u13 = lr(13)
    by = torch.where(is_house, torch.minimum(by, ay + 9 + 6 * u13), by)
    in_rect = (lx > ax) & (lx < bx) & (ly > ay) & (ly < by)
    u4 = lr(4)
    shape_kind = torch.floor(u4 * 5).long()  # rect, L, courtyard, ellipse, podium+tower
    shape_kind = torch.where(is_house, (u4 >= 0.6).long(), shape_kind)
    cx, cy = (ax + bx) / 2, (ay + by) / 2
    rx, ry = (bx - ax) / 2, (by - ay) / 2
    u5, u6 = lr(5), lr(6)
    # L-shape: remove the quadrant beyond a cut point.
    cutx = ax + (bx - ax) * (0.35 + 0.3 * u5)
    cuty = ay + (by - ay) * (0.35 + 0.3 * u6)
    sx = torch.where(lr(7) < 0.5, 1.0, -1.0)
    sy = torch.where(lr(8) < 0.5, 1.0, -1.0)
    l_cut = (sx * (lx - cutx) > 0) & (sy * (ly - cuty) > 0)
    # Courtyard: remove an inner rectangle when the footprint is large enough.
    cm = 6 + 5 * u5
    court = (
        (lx > ax + cm) & (lx < bx - cm) & (ly > ay + cm) & (ly < by - cm)
        & (bx - ax > 2 * cm + 6) & (by - ay > 2 * cm + 6)
    )  # fmt: skip
    rho2 = ((lx - cx) / rx.clamp(min=1e-3)) ** 2 + ((ly - cy) / ry.clamp(min=1e-3)) ** 2
    footprint = torch.where(
        shape_kind == 1, in_rect & ~l_cut,
        torch.where(shape_kind == 2, in_rect & ~court,
                    torch.where(shape_kind == 3, rho2 < 1, in_rect)),
    )  # fmt: skip
    vacant = lr(9) < torch.where(is_house, 0.06, 0.10)
    bmask = footprint & ~vacant & (rx > 2.5) & (ry > 2.5)
    # Yards: grass around houses and landmarks, often paved in dense blocks.
    paved = is_dense & (b_rand[1][block_id] < 0.6)
    tile = ((torch.remainder(bu, 4.0) < 0.25) | (torch.remainder(bv, 4.0) < 0.25)).float()
    ground = torch.where(
        is_plaza[None], _rgb((0.66, 0.60, 0.52)) * (1 - 0.12 * tile) * (1 + 0.05 * noise_f),
        torch.where(paved[None], _rgb((0.52, 0.50, 0.47)) * (1 + 0.08 * noise_f + 0.05 * noise_l),
                    _grass(noise_l, noise_f)),
    )  # fmt: skip
    is_grass = ~is_plaza & ~paved
    # Heights: lognormal around the campus median in dense blocks, 1-2 storey houses.
    h_dense = P.exp(math.log(ctx["h_med"]) + 0.55 * ctx["l_norm"][lot_key]).clamp_(4.0, 55.0)
    u10, u11, u12 = lr(10), lr(11), lr(12)
    base_h = torch.where(
        is_house, 3.2 + 2.8 * torch.floor(u10 * 2 + 1),
        torch.where(is_plaza, (h_dense * 1.3).clamp(10.0, 60.0), h_dense),
    )  # fmt: skip
    tower_f = 0.35 + 0.25 * u11
    in_tower = ((lx - cx).abs() < rx * tower_f) & ((ly - cy).abs() < ry * tower_f)
    podium = (shape_kind == 4) & ~is_house
    bh = torch.where(
        podium, torch.where(in_tower, (base_h * 1.4).clamp(max=62.0), 4.0 + 4.0 * u12), base_h
    )
    # Roofs: pitched for most houses (ridge along the longer side), flat with parapet otherwise.
    pitched = is_house & (u12 < 0.8)
    ridge_dist = torch.where(rx >= ry, (ly - cy).abs(), (lx - cx).abs())
    rise = (torch.minimum(rx, ry) - ridge_dist).clamp(min=0) * (0.45 + 0.35 * u13)
    edge = torch.where(
        shape_kind == 3, (1 - P.sqrt(rho2.clamp(max=1))) * torch.minimum(rx, ry),
        _rect_edge_distance(lx, ly, ax, bx, ay, by),
    )  # fmt: skip
    parapet = ~pitched & (edge < 0.7)
    # Rooftop units on flat roofs: hashed 5 m cells.
    cellx, celly = torch.floor(lx / 5), torch.floor(ly / 5)
    unit_p = hash_uniform(cellx.long() + 977 * lot_key, celly.long(), 11)
    fx, fy = lx - cellx * 5, ly - celly * 5
    unit = (
        ~pitched
        & (edge > 1.5)
        & (unit_p < 0.12)
        & (fx > 1.2)
        & (fx < 3.8)
        & (fy > 1.2)
        & (fy < 3.6)
    )
    roof_h = (
        bh
        + torch.where(pitched, rise, 0.0)
        + torch.where(parapet, 0.9, 0.0)
        + torch.where(unit, 1.8, 0.0)
    )
    fi = (u6 * len(FLAT_ROOFS)).long().clamp_(max=len(FLAT_ROOFS) - 1)
    pi = (u6 * len(PITCHED_ROOFS)).long().clamp_(max=len(PITCHED_ROOFS) - 1)
    flat_c, pitch_c = torch.from_numpy(FLAT_ROOFS).T, torch.from_numpy(PITCHED_ROOFS).T
    roof_rgb = torch.where(pitched[None], pitch_c[:, pi], flat_c[:, fi]) * (0.85 + 0.3 * lr(7))
    roof_rgb = torch.where(parapet[None], roof_rgb * 1.12 + 0.05, roof_rgb)
    roof_rgb = torch.where(unit[None], _rgb((0.70, 0.70, 0.68)), roof_rgb)
    roof_rgb = roof_rgb * (1 + 0.06 * noise_f)

    albedo[:, i] = torch.where(bmask[None], roof_rgb, ground)
    green_roof = roof_rgb[1] > roof_rgb[0] + 0.05
    veg[i] = torch.where(bmask, green_roof.float() * 0.5, is_grass.float())
    klass[i] = torch.where(bmask, BUILDING, torch.where(is_grass, GRASS, PLAZA)).to(torch.uint8)
    height[i] = torch.where(bmask, roof_h, 0.0)
    building[i] = torch.where(bmask, lot_key + 1, 0)


def _plant_trees(rng, res, height, albedo, veg, klass, building, noise_f) -> None:
    """Trees on a jittered 7 m grid; the chance depends on the ground class under the trunk.

    Crowns are domes stamped into the rasters with a scatter-max, so the cost
    scales with the number of trees, not with the raster size.
    """
    H, W = height.shape
    cs = 7.0
    ncx, ncy = int(math.ceil(W * res / cs)) + 1, int(math.ceil(H * res / cs)) + 1
    jit = rng.uniform(-0.3, 0.3, size=(2, ncy, ncx)).astype(np.float32)
    gx = (np.arange(ncx, dtype=np.float32)[None, :] + 0.5 + jit[0]) * cs
    gy = (np.arange(ncy, dtype=np.float32)[:, None] + 0.5 + jit[1]) * cs
    tx, ty = torch.from_numpy(gx.ravel()), torch.from_numpy(gy.ravel())
    n = len(tx)
    col = (tx / res).long().clamp(0, W - 1)
    row = (H - 1 - (ty / res).long()).clamp(0, H - 1)
    under = klass[row, col].long()
    p_class = torch.zeros(len(CLASS_NAMES))
    p_class[GRASS], p_class[SIDEWALK], p_class[PLAZA] = 0.42, 0.45, 0.12
    p_class[PARKING], p_class[FIELD], p_class[GROUND] = 0.04, 0.012, 0.25
    alive = torch.from_numpy(rng.random(n).astype(np.float32)) < p_class[under]
    radius = torch.from_numpy(rng.uniform(2.2, 5.0, n).astype(np.float32))
    top = torch.from_numpy(rng.uniform(5.0, 15.0, n).astype(np.float32))
    shade = torch.from_numpy(rng.uniform(0.75, 1.2, (n, 3)).astype(np.float32))
    idx = torch.nonzero(alive).squeeze(1)
    if len(idx) == 0:
        return
    # Stamp offsets covering the largest crown.
    rmax = int(math.ceil(5.0 / res)) + 1
    off = torch.arange(-rmax, rmax + 1)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    ox, oy = ox.reshape(1, -1), oy.reshape(1, -1)
    tc = (tx[idx] / res - 0.5).round().long()[:, None] + ox
    tr = (H - ty[idx] / res - 0.5).round().long()[:, None] + oy
    px = (tc.float() + 0.5) * res
    py = (H - tr.float() - 0.5) * res
    d2 = (px - tx[idx, None]) ** 2 + (py - ty[idx, None]) ** 2
    rr = radius[idx, None] ** 2
    canopy = top[idx, None] * (0.55 + 0.45 * P.sqrt((1 - d2 / rr).clamp(min=0)))
    valid = (d2 < rr) & (tc >= 0) & (tc < W) & (tr >= 0) & (tr < H)
    # Pack (height in cm, tree index) into one int64 so a scatter-max keeps the tallest crown's id.
    key = (canopy * 100).long() * (1 << 24) + idx[:, None]
    flat = (tr * W + tc)[valid]
    best = torch.zeros(H * W, dtype=torch.int64)
    best.scatter_reduce_(0, flat, key[valid], reduce="amax")
    crown_h = (best >> 24).float() / 100
    tree = crown_h > height.reshape(-1)
    tpix = torch.nonzero(tree).squeeze(1)
    tid = best[tpix] & ((1 << 24) - 1)
    rgb = _rgb((0.17, 0.29, 0.11)) * shade[tid].T * (1 + 0.22 * noise_f.reshape(-1)[tpix])[None]
    albedo.view(3, -1)[:, tpix] = rgb
    height.view(-1)[tpix] = crown_h[tpix]
    veg.view(-1)[tpix] = 1.0
    klass.view(-1)[tpix] = TREE
    building.view(-1)[tpix] = 0
