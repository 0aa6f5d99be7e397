"""GeoSynth generation: plan the districts, render each one, write the real layouts.

Each district ("campus") is an independent task with its own random streams
(``PCG64([seed, campus_index, stream])``) and pre-assigned ids, so tasks can run
in any order or in parallel processes and still produce byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from tqdm import tqdm

from geoloc_lib.core.checkpoints import check_writable
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.locks import folder_lock
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.data.geosynth import render as R
from geoloc_lib.data.geosynth.profiles import GeoSynthProfile, get_profile
from geoloc_lib.data.geosynth.world import Campus, generate_campus
from geoloc_lib.data.geosynth.writer import (
    GENERATOR,
    MANIFEST,
    OUTPUT_DIRS,
    PARTIAL,
    in_data_folders,
    list_files,
    read_json,
    write_manifest,
    write_tables,
)

JPEG_QUALITY = 90
# UTM-like placement: train districts west, test districts east, distractors in a far band.
UTM_BASE = (500_000.0, 4_000_000.0)
DISTRICT_PITCH_M = 6_000.0
_SAT_BLUR = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 4, 2, 1, 2, 1], scale=16)


@dataclass
class CampusTask:
    index: int
    name: str
    split: str  # train | test | distractor
    origin: tuple[float, float]
    size_px: int
    location_ids: list[str]
    street_quota: dict[str, int]  # street split -> pairs
    street_ids: dict[str, list[int]]  # street split -> global pair numbers (1-based)
    seed: int
    profile: GeoSynthProfile
    out: str


def pano_id(seed: int, number: int) -> str:
    """A CVACT-like 22-character panorama id, deterministic in (seed, pair number)."""
    import base64

    digest = hashlib.sha256(f"geosynth-{seed}-{number}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def plan(profile: GeoSynthProfile, seed: int, out: Path) -> list[CampusTask]:
    """Districts with their ids: University-1652 ids are 4 digits, street pairs numbered 1..N."""
    tasks: list[CampusTask] = []
    n_loc = profile.campus_grid**2
    train_base, test_base, distractor_base = 1, 2001, 5001
    n_dis = profile.distractor_campuses * profile.distractor_grid**2
    if (
        profile.train_campuses * n_loc > 2000
        or profile.test_campuses * n_loc > 3000
        or n_dis > 4999
    ):
        raise ConfigError("GeoSynth profile too large for 4-digit University-1652 ids")
    pair = 1
    street_ids: dict[int, dict[str, list[int]]] = {}
    # Pair numbers: all train pairs, then val, then test (the order of ACT_data.mat).
    for split, quota, campuses in (
        ("train", profile.street_train, range(profile.train_campuses)),
        ("val", profile.street_val, range(profile.train_campuses, profile.train_campuses + profile.test_campuses)),
        ("test", profile.street_test, range(profile.train_campuses, profile.train_campuses + profile.test_campuses)),
    ):  # fmt: skip
        for c in campuses:
            street_ids.setdefault(c, {})[split] = list(range(pair, pair + quota))
            pair += quota
    index = 0
    # Train districts in the west, test districts 12 pitches east (72 km): disjoint areas.
    for split, campuses, id_base, pitch_offset in (
        ("train", profile.train_campuses, train_base, 0),
        ("test", profile.test_campuses, test_base, 12),
    ):
        for c in range(campuses):
            ids = [f"{id_base + c * n_loc + k:04d}" for k in range(n_loc)]
            origin = (UTM_BASE[0] + (c + pitch_offset) * DISTRICT_PITCH_M, UTM_BASE[1])
            tasks.append(
                _task(
                    index,
                    f"{split}-{c}",
                    split,
                    origin,
                    profile.campus_px,
                    ids,
                    street_ids[index],
                    seed,
                    profile,
                    out,
                )
            )
            index += 1
    n_tile = profile.distractor_grid**2
    for c in range(profile.distractor_campuses):
        ids = [f"{distractor_base + c * n_tile + k:04d}" for k in range(n_tile)]
        origin = (
            UTM_BASE[0] + (c % 8) * DISTRICT_PITCH_M,
            UTM_BASE[1] + (3 + c // 8) * DISTRICT_PITCH_M,
        )
        tasks.append(
            _task(
                index,
                f"distractor-{c}",
                "distractor",
                origin,
                profile.distractor_px,
                ids,
                {},
                seed,
                profile,
                out,
            )
        )
        index += 1
    return tasks


def planned_files(tasks: list[CampusTask]) -> set[str]:
    """Relative paths of every file a generation of ``tasks`` writes (the manifest aside)."""
    files = {"University-1652/locations.csv", "University-1652/drone_views.csv"}
    streets = False
    for task in tasks:
        p = task.profile
        for loc in task.location_ids:
            if task.split == "distractor":
                files.add(f"University-1652/test/gallery_satellite/{loc}/{loc}.jpg")
                continue
            train = task.split == "train"
            for d in ["train/satellite"] if train else ["test/query_satellite", "test/gallery_satellite"]:  # fmt: skip
                files.add(f"University-1652/{d}/{loc}/{loc}.jpg")
            for d in ["train/drone"] if train else ["test/query_drone", "test/gallery_drone"]:
                for v in range(p.drone_views):
                    files.add(f"University-1652/{d}/{loc}/image-{v + 1:02d}.jpeg")
        for split, numbers in task.street_ids.items():
            for number in numbers:
                streets = True
                pid = pano_id(task.seed, number)
                base = "CVACT/" + ("ANU_data_test" if split == "test" else "ANU_data_small")
                files.add(f"{base}/streetview/{pid}_grdView.jpg")
                files.add(f"{base}/satview_polish/{pid}_satView_polish.jpg")
                if split != "val":
                    files.add(f"CVUSA/streetview/panos/{number:07d}.jpg")
                    files.add(f"CVUSA/bingmap/19/{number:07d}.jpg")
    if streets:
        files |= {"CVUSA/splits/train-19zl.csv", "CVUSA/splits/val-19zl.csv"}
        files.add("CVACT/ACT_data.mat")
    return files


def _task(index, name, split, origin, size_px, ids, streets, seed, profile, out) -> CampusTask:
    quota = {k: len(v) for k, v in streets.items()}
    return CampusTask(
        index, name, split, origin, size_px, ids, quota, streets, seed, profile, str(out)
    )


def _rng(task: CampusTask, stream: int, *extra: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([task.seed, task.index, stream, *extra]))


def _save_jpeg(pixels: np.ndarray | Image.Image, path: Path) -> None:
    """Byte-deterministic JPEG (fixed quality, no EXIF or timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format="JPEG", quality=JPEG_QUALITY)


def _tile(ortho: np.ndarray, campus: Campus, xy: tuple[float, float], size: int) -> Image.Image:
    """North-up tile centred on ``xy`` with the satellite optics blur (3x3 binomial)."""
    col = int(round(xy[0] / campus.res))
    row = int(round(campus.shape[0] - xy[1] / campus.res))
    half = size // 2
    r0, c0 = row - half - 1, col - half - 1
    crop = ortho[max(r0, 0) : r0 + size + 2, max(c0, 0) : c0 + size + 2]
    if crop.shape[:2] != (size + 2, size + 2):  # at the district border: replicate edge pixels
        pad_top, pad_left = max(-r0, 0), max(-c0, 0)
        pad_bottom = size + 2 - crop.shape[0] - pad_top
        pad_right = size + 2 - crop.shape[1] - pad_left
        crop = np.pad(crop, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
    image = Image.fromarray(np.ascontiguousarray(crop)).filter(_SAT_BLUR)
    return image.crop((1, 1, size + 1, size + 1))


def _location_grid(task: CampusTask, rng: np.random.Generator) -> np.ndarray:
    """Location centres: a jittered grid inside the margin, snapped to the pixel grid; [n, 2]."""
    p = task.profile
    g = p.campus_grid
    centre = p.margin_m + p.tile_m * (np.arange(g) + 0.5)
    xs, ys = np.meshgrid(centre, centre[::-1])  # north row first
    xy = np.stack([xs.ravel(), ys.ravel()], 1) + rng.uniform(-12, 12, size=(g * g, 2))
    return np.round(xy / p.res_m) * p.res_m


def _street_points(
    task: CampusTask, campus: Campus, rng: np.random.Generator, n: int, taken: np.ndarray
):
    """``n`` panorama positions in runs along road centre lines, inside the location area."""
    p = task.profile
    lo, hi = p.margin_m, campus.size_m - p.margin_m
    ca, sa = np.cos(campus.angle), np.sin(campus.angle)
    lines = [("u", c) for c in campus.roads_u] + [("v", c) for c in campus.roads_v]
    chosen: list[np.ndarray] = []
    pool = taken.reshape(-1, 2)
    for _ in range(2000):
        if sum(len(c) for c in chosen) >= n:
            break
        family, c = lines[rng.integers(len(lines))]
        start = rng.uniform(-campus.size_m, 2 * campus.size_m)
        along = start + p.street_spacing_m * np.arange(p.street_run)
        u, v = (np.full_like(along, c), along) if family == "u" else (along, np.full_like(along, c))
        x, y = ca * u - sa * v, sa * u + ca * v  # back from the rotated road frame
        pts = np.stack([x, y], 1)
        pts = pts[(pts >= lo).all(1) & (pts <= hi).all(1)]
        if len(pts) == 0:
            continue
        pts = np.round(pts / p.res_m) * p.res_m
        if len(pool):  # no two panoramas closer than 4 m (crossing runs)
            d = np.sqrt(((pts[:, None] - pool[None]) ** 2).sum(-1)).min(1)
            pts = pts[d > 4.0]
        chosen.append(pts)
        pool = np.concatenate([pool, pts])
    points = np.concatenate(chosen) if chosen else np.zeros((0, 2))
    if len(points) < n:
        raise ConfigError(
            f"GeoSynth district {task.name}: only {len(points)} street positions for {n}"
        )
    return points[:n]


def run_campus(task: CampusTask) -> dict:
    """Render one district and write its images; returns its table rows."""
    torch.set_num_threads(1)  # one process per district; threads would oversubscribe 2 cores
    p = task.profile
    out = Path(task.out)
    uni = out / "University-1652"
    campus = generate_campus(
        [task.seed, task.index, 0], task.size_px, p.res_m, task.origin, task.name, task.split
    )
    sat_cond = R.sample_conditions(_rng(task, 1), "satellite")
    ortho = R.render_orthophoto(campus, sat_cond)
    rows: dict[str, list] = {"locations": [], "drone_views": [], "streets": []}
    if task.split == "distractor":
        g = p.distractor_grid
        centre = p.tile_m * (np.arange(g) + 0.5)
        xs, ys = np.meshgrid(centre, centre[::-1])
        xy = np.stack([xs.ravel(), ys.ravel()], 1)
    else:
        xy = _location_grid(task, _rng(task, 2))
    for k, loc in enumerate(task.location_ids):
        utm = campus.utm(xy[k, 0], xy[k, 1])
        rows["locations"].append((loc, task.split, float(utm[0]), float(utm[1])))
        tile = _tile(ortho, campus, (xy[k, 0], xy[k, 1]), p.tile_px)
        if task.split == "distractor":
            _save_jpeg(tile, uni / "test/gallery_satellite" / loc / f"{loc}.jpg")
            continue
        sat_dirs = (
            ["train/satellite"]
            if task.split == "train"
            else ["test/query_satellite", "test/gallery_satellite"]
        )
        for d in sat_dirs:
            _save_jpeg(tile, uni / d / loc / f"{loc}.jpg")
        rng = _rng(task, 3, k)
        orbit = R.drone_orbit(p.drone_views, rng, loops=p.orbit_loops)
        views = R.render_drone(
            campus, (xy[k, 0], xy[k, 1]), orbit, drone_conditions(p, sat_cond, rng), size=p.drone_px
        )
        drone_dirs = (
            ["train/drone"] if task.split == "train" else ["test/query_drone", "test/gallery_drone"]
        )
        for v in range(len(views)):
            name = f"image-{v + 1:02d}.jpeg"
            for d in drone_dirs:
                _save_jpeg(views[v], uni / d / loc / name)
            rows["drone_views"].append(
                (loc, f"{drone_dirs[0]}/{loc}/{name}", task.split, float(orbit["altitude_m"][v]),
                 float(orbit["distance_m"][v]), float(orbit["heading_deg"][v]), float(orbit["pitch_deg"][v]))
            )  # fmt: skip
    if task.street_quota:
        rows["streets"] = _render_streets(task, campus, ortho, sat_cond, out)
    return rows


def drone_conditions(
    profile: GeoSynthProfile, sat_cond: R.Conditions, rng: np.random.Generator
) -> R.Conditions:
    """The capture conditions of a location's drone orbit (``GeoSynthProfile.drone_capture``)."""
    if profile.drone_capture == "same_imagery":
        return R.as_oblique(sat_cond)
    return R.sample_conditions(rng, "drone")


def _render_streets(
    task: CampusTask, campus: Campus, ortho: np.ndarray, sat_cond: R.Conditions, out: Path
) -> list:
    p = task.profile
    rng = _rng(task, 4)
    cond = R.sample_conditions(rng, "street")  # drawn in both modes: the same later streams
    if p.street_capture == "same_time":
        cond = R.as_oblique(sat_cond)
    shadow = R.shadow_visibility(campus.height, campus.res, cond.sun_az, cond.sun_el)
    width, height = p.pano_width, p.pano_width // 2
    band = round(width * 112 / 616)  # CVUSA keeps the horizon band (1232x224 = 5.5:1)
    rows = []
    taken = np.zeros((0, 2))
    for split in ("train", "val", "test"):
        n = task.street_quota.get(split, 0)
        if n == 0:
            continue
        pts = _street_points(task, campus, rng, n, taken)
        taken = np.concatenate([taken, pts])
        for number, (x, y) in zip(task.street_ids[split], pts, strict=True):
            prng = _rng(task, 5, number)
            pano = R.render_panorama(
                campus, (float(x), float(y)), cond, shadow, prng, width=width, height=height
            )
            aerial = _tile(ortho, campus, (float(x), float(y)), p.tile_px)
            pid = pano_id(task.seed, number)
            base = out / "CVACT" / ("ANU_data_test" if split == "test" else "ANU_data_small")
            full = Image.fromarray(pano).resize(
                (512 * width // 616, 256 * width // 616), Image.BILINEAR
            )
            _save_jpeg(full, base / "streetview" / f"{pid}_grdView.jpg")
            _save_jpeg(aerial, base / "satview_polish" / f"{pid}_satView_polish.jpg")
            if split != "val":  # CVUSA has train and val (= our test) splits only
                top = (height - band) // 2
                name = f"{number:07d}.jpg"
                _save_jpeg(pano[top : top + band], out / "CVUSA/streetview/panos" / name)
                _save_jpeg(aerial, out / "CVUSA/bingmap/19" / name)
            utm = campus.utm(float(x), float(y))
            rows.append((number, pid, split, float(utm[0]), float(utm[1])))
    return rows


def _owned_files(out: Path) -> set[str] | None:
    """Files a previous generation into ``out`` wrote (None: no GeoSynth output there).

    Read from the in-progress marker of an interrupted generation and from geosynth.json."""
    owned: set[str] | None = None
    for name, what in ((PARTIAL, "GeoSynth in-progress marker"), (MANIFEST, "GeoSynth manifest")):
        path = out / name
        if not path.is_file():
            continue
        data = read_json(path, what)
        if name == PARTIAL:
            listed = set(data.get("owned_files") or ())
        else:
            listed = set(data.get("file_sha256") or ())
            try:  # older generators hashed every file: keep only the paths GeoSynth writes
                prof = GeoSynthProfile(**data["params"])
                listed &= planned_files(plan(prof, int(data["seed"]), out))
            except (KeyError, TypeError, ValueError, ConfigError):
                pass
        owned = (owned or set()) | listed
    return owned


def _shown(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _remove_owned(out: Path, owned: set[str]) -> None:
    """Delete the files a previous generation wrote, then the folders they leave empty."""
    dirs: set[Path] = set()
    for rel in owned:
        path = out / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
        parent = path.parent
        while parent != out and out in parent.parents:
            dirs.add(parent)
            parent = parent.parent
    for folder in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def generate_geosynth(
    out: str | Path,
    profile: str | GeoSynthProfile = "smoke",
    seed: int = 0,
    progress: bool | None = None,
    workers: int | None = None,
) -> dict:
    """Generate GeoSynth into ``out`` and return its manifest (also written to geosynth.json).

    ``workers`` processes render districts in parallel (default: up to 2, the CPU count);
    the files do not depend on it. Only files a previous generation wrote (listed in its
    geosynth.json, or in the ``geosynth.partial.json`` marker of an interrupted one) are replaced:
    other files in ``out`` are kept, reported, and left out of the manifest (the returned dict
    lists them under ``kept_files``). A file of someone else at a path the generator writes, or
    folders named like the real datasets without a GeoSynth manifest, are refused, never deleted.
    Generation first writes the marker, so an interrupted run is finished by running it again.
    The folder is locked while generating (:func:`geoloc_lib.core.locks.folder_lock`): a second
    generation into it fails at once naming the first one's process.
    """
    prof = get_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"parameter seed: expected a non-negative integer, got {seed!r}")
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"output folder {out} is a broken symbolic link; pass an existing folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is a file; pass a folder to --out")
    check_writable(out, "GeoSynth output folder")
    # One generation per output folder: a second one fails at once, naming the first.
    with folder_lock(out, f"GeoSynth generation, profile {prof.name}, seed {seed}"):
        return _generate(out, prof, seed, progress, workers)


def _generate(
    out: Path, prof: GeoSynthProfile, seed: int, progress: bool | None, workers: int | None
) -> dict:
    linked = [name for name in OUTPUT_DIRS if (out / name).is_symlink()]
    if linked:
        raise ConfigError(
            f"output folder {out}: {', '.join(linked)} is a symbolic link; GeoSynth does not "
            "write through links (it could reach a real dataset): pass a folder without them"
        )
    owned = _owned_files(out)
    present = [name for name in OUTPUT_DIRS if (out / name).exists()]
    if present and owned is None:
        # Never delete folders that may hold a real dataset.
        raise ConfigError(
            f"output folder {out} already holds {', '.join(present)} without a geosynth.json; "
            "pass an empty folder (or a previous GeoSynth output) to --out"
        )
    owned = owned or set()
    tasks = plan(prof, seed, out)
    planned = planned_files(tasks)
    foreign = sorted(set(list_files(out)) - owned)
    clash = [rel for rel in foreign if rel in planned or in_data_folders(rel)]
    if clash:
        raise ConfigError(
            f"output folder {out} holds {len(clash)} file(s) that GeoSynth did not write inside "
            f"the dataset's folders: {_shown(clash)}; move them out of {out} (or pass another "
            "--out), then run again"
        )
    if foreign:
        warnings.warn(
            f"GeoSynth output {out}: keeping {len(foreign)} file(s) it did not write "
            f"(not in its manifest): {_shown(foreign)}",
            stacklevel=2,
        )
    marker = {
        "generator": GENERATOR,
        "status": "in progress",
        "profile": prof.name,
        "seed": seed,
        "owned_files": sorted(owned | planned),
    }
    (out / PARTIAL).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()
    _remove_owned(out, owned)
    start = time.perf_counter()
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    results: dict[int, dict] = {}

    # Biggest districts first so the pool ends evenly.
    def work(t: CampusTask) -> int:  # districts with drone and street views cost about twice
        return t.size_px**2 * (1 if t.split == "distractor" else 2)

    order = sorted(tasks, key=lambda t: (-work(t), t.index))
    progress = resolve_progress(progress)
    bar = tqdm(total=len(tasks), desc="GeoSynth districts", unit="district", disable=not progress)
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            for task in order:
                results[task.index] = run_campus(task)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_campus, task): task.index for task in order}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    rows = {
        key: [r for i in sorted(results) for r in results[i][key]]
        for key in ("locations", "drone_views", "streets")
    }
    write_tables(out, rows)
    manifest = write_manifest(out, prof, seed, rows, progress=progress, keep=set(foreign))
    (out / PARTIAL).unlink()
    manifest["generation_seconds"] = round(time.perf_counter() - start, 2)
    if foreign:
        manifest["kept_files"] = foreign
    return manifest
