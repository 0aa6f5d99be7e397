"""``geoloc bench data``: the data pipeline of a University160k-WX evaluation, measured.

University160k-WX's test set is 37,855 drone queries (512×512 JPEG) against 168,437 satellite
tiles (1024×1024 WebP), every image decoded and resized to 448×448 (MCGF §3). The command

1. writes a synthetic slice of that size into ``--out`` (``--n`` images per view, smooth noise
   textures from ``--seed`` so the codecs do real work), or reuses the slice it wrote there before;
2. times decoding + resizing to 448×448 per worker (one process, one thread): PIL as the library's
   loaders read images (``Image.open`` + ``convert`` + ``resize``), PIL with ``Image.draft`` for
   the JPEG queries, and the torchvision decoders that exist in the installed version
   (``decode_image``, ``decode_jpeg``, ``decode_webp``) with ``transforms.v2.functional.resize``
   on uint8 or ``interpolate`` with antialias on floats; every path ends in the float
   ``[3, 448, 448]`` tensor in [0, 1] the models take;
3. times the library's evaluation loader (:func:`geoloc_lib.data.university_torch.eval_loader`)
   at several ``num_workers``;
4. prints one table (images/s and the ratio to the library's path) and the projected wall time of
   a full University160k-WX evaluation for a model throughput and a number of workers
   (:func:`project_eval_time`); ``--csv`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.outputs import claim_output_file
from geoloc_lib.core.runtime import terminal_progress
from geoloc_lib.data.types import ImageSet
from geoloc_lib.data.university_torch import eval_loader

# University160k-WX test set (data_manifest.yaml: query_drone_160k_wx_24, gallery_satellite_160k).
U160K_QUERIES = 37_855
U160K_GALLERY = 168_437
EVAL_SIZE = 448  # MCGF §3: images are resized to 448×448

MANIFEST = "geoloc_bench_data.json"
WRITER = "geoloc bench data"
# The table's leading columns: an existing --csv file whose header begins with them is one this
# command wrote and may be replaced; any other file needs --force.
CSV_COLUMNS = ("view", "what", "workers", "img/s", "vs library")
QUALITY = 90  # JPEG and WebP quality of the synthetic slice


@dataclass(frozen=True)
class View:
    """One side of the evaluation: where its files go, their size and format."""

    name: str
    folder: str
    size: int
    suffix: str
    pil_format: str
    count: int  # images of this view in University160k-WX's test set


def views(gallery_size: int = 1024, query_size: int = 512) -> tuple[View, View]:
    """The query and gallery views of the slice (University160k-WX's sizes by default)."""
    return (
        View("query", "query_drone", query_size, ".jpeg", "JPEG", U160K_QUERIES),
        View("gallery", "gallery_satellite", gallery_size, ".webp", "WEBP", U160K_GALLERY),
    )


# --------------------------------------------------------------------------- the synthetic slice


def _smooth_weights(cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``size`` pixels, the left node of a ``cells``-cell grid and the smoothstep
    weight of the right one: interpolation without block edges."""
    pos = np.linspace(0.0, cells, size)
    left = np.minimum(np.floor(pos).astype(np.int64), cells - 1)
    t = pos - left
    return left, (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` uint8 image: three octaves of smooth colour noise plus a fine grain,
    so JPEG and WebP spend about the effort they spend on aerial imagery (flat images would
    decode unrealistically fast)."""
    img = np.zeros((3, size, size), dtype=np.float32)
    for cells, weight in ((4, 0.55), (24, 0.3), (128, 0.15)):
        left, w = _smooth_weights(cells, size)
        grid = rng.random((3, cells + 1, cells + 1), dtype=np.float32)
        # separable: rows first, then columns, each a gather of two grid nodes
        rows = grid[:, left, :] * (1 - w)[None, :, None] + grid[:, left + 1, :] * w[None, :, None]
        img += weight * (rows[:, :, left] * (1 - w) + rows[:, :, left + 1] * w)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 0.04
    return np.clip(img.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SliceSpec:
    """What a slice folder holds; ``n`` may grow on a later run, the rest must match."""

    n: int
    seed: int = 0
    gallery_size: int = 1024
    query_size: int = 512
    quality: int = QUALITY

    def fixed(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "n"}


def image_path(out: Path, view: View, i: int) -> Path:
    return out / view.folder / f"{i:06d}{view.suffix}"


def _check_out(out: Path, spec: SliceSpec) -> dict | None:
    """The folder's manifest if this command wrote it; refuse anything else that is not empty."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"bench data --out {out}: is a file; name a new or empty folder")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text())
        except ValueError as err:
            raise ConfigError(
                f"bench data --out {out}: {MANIFEST} is damaged ({err}); delete the folder or "
                "name another one"
            ) from err
        if saved.get("written_by") != WRITER:
            raise ConfigError(f"bench data --out {out}: {MANIFEST} was not written by {WRITER}")
        given = spec.fixed()
        differ = {k: (saved.get(k), v) for k, v in given.items() if saved.get(k) != v}
        if differ:
            said = ", ".join(f"{k}: {a} there, {b} asked" for k, (a, b) in differ.items())
            raise ConfigError(
                f"bench data --out {out}: the slice there was written with other settings "
                f"({said}); pass the same settings, or name another folder"
            )
        return saved
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"bench data --out {out}: the folder is not empty and was not written by {WRITER} "
            f"(no {MANIFEST}); name a new or empty folder (nothing in it is touched)"
        )
    return None


def write_slice(out: str | Path, spec: SliceSpec, progress: bool = False) -> dict[str, list[Path]]:
    """Write (or complete) the synthetic slice in ``out``; return each view's image paths.

    Files already written by an earlier run with the same settings are kept, so a second run
    costs nothing and an interrupted one is finished. Each image goes to a temporary name first,
    so a file with the final name is always complete. Other files in the folder are left alone.
    """
    if spec.n < 1:
        raise ConfigError(f"bench data --n: expected an integer >= 1, got {spec.n}")
    for label, size in (("--gallery-size", spec.gallery_size), ("--query-size", spec.query_size)):
        if size < 16:
            raise ConfigError(f"bench data {label}: expected at least 16 pixels, got {size}")
    out = Path(out)
    saved = _check_out(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    n_written = max(spec.n, int(saved.get("n", 0))) if saved else spec.n
    manifest = {"written_by": WRITER, **spec.fixed(), "n": n_written}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    paths: dict[str, list[Path]] = {}
    todo = []
    for vi, view in enumerate(views(spec.gallery_size, spec.query_size)):
        (out / view.folder).mkdir(exist_ok=True)
        paths[view.name] = [image_path(out, view, i) for i in range(spec.n)]
        todo += [(vi, view, i) for i, p in enumerate(paths[view.name]) if not p.is_file()]
    bar = tqdm(todo, desc="writing the slice", unit="img", disable=not progress or not todo)
    for vi, view, i in bar:
        rng = np.random.default_rng([spec.seed, vi, i])
        img = Image.fromarray(texture(rng, view.size))
        final = image_path(out, view, i)
        tmp = final.with_name(final.name + ".part")
        img.save(tmp, format=view.pil_format, quality=spec.quality)
        os.replace(tmp, final)
    return paths


# --------------------------------------------------------------------------- decoders


def _pil(path: Path, size: int, draft: bool = False) -> torch.Tensor:
    """The library's read (:func:`geoloc_lib.data.images.read_image` + ``to_tensor``)."""
    with Image.open(path) as im:
        if draft and im.format == "JPEG":
            # Decodes at 1/2, 1/4 or 1/8 scale when that still covers ``size``.
            im.draft("RGB", (size, size))
        im.load()
        rgb = im.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float().div_(255.0)


def _tv_decoders() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The torchvision decoders this installation has, each to a uint8 ``[3, H, W]`` RGB."""
    import torchvision.io as tio

    rgb = tio.ImageReadMode.RGB
    found: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for name in ("decode_image", "decode_jpeg", "decode_webp"):
        fn = getattr(tio, name, None)
        if fn is not None:
            found[name] = lambda data, fn=fn: fn(data, mode=rgb)
    return found


def _resize_v2(img: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F2

    return F2.resize(img, [size, size], antialias=True).float().div_(255.0)


def _resize_interp(img: torch.Tensor, size: int) -> torch.Tensor:
    x = img.unsqueeze(0).float().div_(255.0)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)[0]


RESIZERS = {"v2.resize (uint8)": _resize_v2, "interpolate (float)": _resize_interp}
LIBRARY_METHOD = "PIL open+convert+resize (library)"


def decode_methods(view: View) -> dict[str, Callable[[Path, int], torch.Tensor]]:
    """Every decode + resize path that applies to the view's format, by name."""
    methods: dict[str, Callable[[Path, int], torch.Tensor]] = {LIBRARY_METHOD: _pil}
    if view.pil_format == "JPEG":
        methods["PIL + draft"] = lambda p, s: _pil(p, s, draft=True)
    import torchvision.io as tio

    wanted = {"JPEG": "decode_jpeg", "WEBP": "decode_webp"}[view.pil_format]
    for dec_name, dec in _tv_decoders().items():
        if dec_name not in ("decode_image", wanted):
            continue
        for res_name, res in RESIZERS.items():
            methods[f"torchvision {dec_name} + {res_name}"] = lambda p, s, dec=dec, res=res: res(
                dec(tio.read_file(str(p))), s
            )
    return methods


def time_decoder(
    fn: Callable[[Path, int], torch.Tensor], paths: Sequence[Path], size: int
) -> float:
    """Images per second of ``fn`` over ``paths`` (one warm-up image first, page cache warm)."""
    fn(paths[0], size)
    t0 = time.perf_counter()
    for p in paths:
        fn(p, size)
    return len(paths) / (time.perf_counter() - t0)


def pixel_difference(
    a: Callable[[Path, int], torch.Tensor],
    b: Callable[[Path, int], torch.Tensor],
    paths: Sequence[Path],
    size: int,
) -> tuple[float, float]:
    """Mean and max absolute difference of two paths' outputs, in 0–255 grey levels."""
    diffs = [(a(p, size) - b(p, size)).abs().mul_(255.0) for p in paths]
    return float(torch.stack([d.mean() for d in diffs]).mean()), float(max(d.max() for d in diffs))


def time_loader(paths: Sequence[Path], size: int, workers: int, batch_size: int) -> float:
    """Images per second of the library's evaluation loader over ``paths`` (workers started and
    stopped inside the timing, as one evaluation pass pays them)."""
    images = ImageSet(
        "bench", list(paths), np.zeros(len(paths), dtype=np.int64), [p.stem for p in paths]
    )
    loader = eval_loader(images, size, batch_size=batch_size, num_workers=workers)
    t0 = time.perf_counter()
    n = sum(int(batch["image"].shape[0]) for batch in loader)
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- projection


def project_eval_time(
    decode_img_s: dict[str, float],
    model_img_s: float,
    workers: int,
    counts: dict[str, int] | None = None,
) -> dict[str, float]:
    """Projected seconds of embedding every image of each view, and their ``total``.

    ``decode_img_s`` is one worker's decode + resize rate per view. With ``workers`` >= 1 the
    loader's workers decode while the model runs, so a view takes
    ``max(n / (workers * decode), n / model)`` (workers assumed to scale linearly, which holds
    up to the number of free cores); with 0 the main process does both in turn:
    ``n / decode + n / model``.
    """
    if model_img_s <= 0:
        raise ConfigError(f"bench data --model-img-s: expected a positive rate, got {model_img_s}")
    if workers < 0:
        raise ConfigError(f"bench data --workers: expected an integer >= 0, got {workers}")
    counts = counts or {"query": U160K_QUERIES, "gallery": U160K_GALLERY}
    out: dict[str, float] = {}
    for view, n in counts.items():
        decode_s = n / decode_img_s[view]
        model_s = n / model_img_s
        out[view] = decode_s + model_s if workers == 0 else max(decode_s / workers, model_s)
    out["total"] = sum(out[v] for v in counts)
    return out


def cpu_embed_rate(threads: int | None = None) -> float:
    """Gallery embeddings per second of the ``mcgf`` paper model (EVA-02 at 448², random weights,
    fp32, batch 2) on this CPU: the default model throughput of the projection."""
    from geoloc_lib.training.recipes import preset_for

    net = preset_for("mcgf", "paper").build(pretrained=False, num_classes=701).eval()
    x = torch.rand(2, 3, EVAL_SIZE, EVAL_SIZE)
    with torch.no_grad():
        net.embed(x, "satellite")  # warm-up
        t0 = time.perf_counter()
        net.embed(x, "satellite")
    return 2 / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- the command


def _worker_counts(given: list[int] | None) -> list[int]:
    if given is None:
        cores = os.cpu_count() or 1
        return sorted({0, 1, 2, *([cores] if cores > 2 else [])})
    counts = sorted({int(w) for w in given})
    if not counts or counts[0] < 0:
        raise ConfigError(f"bench data --loader-workers: expected integers >= 0, got {given!r}")
    return counts


def bench_data(
    out: str | Path,
    *,
    n: int = 2000,
    seed: int = 0,
    gallery_size: int = 1024,
    query_size: int = 512,
    size: int = EVAL_SIZE,
    sample: int = 200,
    loader_workers: Sequence[int] = (0, 1, 2),
    loader_images: int = 256,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, dict[str, tuple[float, float]]], dict[str, dict[str, float]]]:
    """Write or reuse the slice, then measure. Returns the table (one row per view and method or
    worker count), the mean/max pixel difference of every other path from the library's, and per
    view the one-worker rate of each decode path by name."""
    for label, value in (("--sample", sample), ("--loader-images", loader_images)):
        if value < 1:
            raise ConfigError(f"bench data {label}: expected an integer >= 1, got {value}")
    if size < 1:
        raise ConfigError(f"bench data --size: expected an integer >= 1, got {size}")
    spec = SliceSpec(n=n, seed=seed, gallery_size=gallery_size, query_size=query_size)
    paths = write_slice(out, spec, progress=progress)
    rows = []
    diffs: dict[str, dict[str, tuple[float, float]]] = {}
    rates: dict[str, dict[str, float]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loader worker runs one thread: measure what one worker does
    try:
        for view in views(gallery_size, query_size):
            some = paths[view.name][: min(sample, n)]
            methods = decode_methods(view)
            measured = {name: time_decoder(fn, some, size) for name, fn in methods.items()}
            base = measured[LIBRARY_METHOD]
            for name, rate in measured.items():
                rows.append(
                    {
                        "view": f"{view.name} {view.size}² {view.pil_format}",
                        "what": name,
                        "workers": 1,
                        "img/s": rate,
                        "vs library": rate / base,
                    }
                )
            rates[view.name] = measured
            few = some[: min(8, len(some))]
            diffs[view.name] = {
                name: pixel_difference(methods[LIBRARY_METHOD], fn, few, size)
                for name, fn in methods.items()
                if name != LIBRARY_METHOD
            }
    finally:
        torch.set_num_threads(threads)
    for view in views(gallery_size, query_size):
        some = paths[view.name][: min(loader_images, n)]
        base = None
        for w in loader_workers:
            rate = time_loader(some, size, w, batch_size)
            base = rate if base is None else base
            rows.append(
                {
                    "view": f"{view.name} {view.size}² {view.pil_format}",
                    "what": f"eval_loader, num_workers={w}",
                    "workers": w,
                    "img/s": rate,
                    "vs library": rate / rates[view.name][LIBRARY_METHOD],
                }
            )
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS)), diffs, rates


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "—"
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h} h {rem // 60:02d} min" if h else f"{rem // 60} min {rem % 60:02d} s"


def main(args: argparse.Namespace) -> int:
    from geoloc_lib.reporting import markdown_table  # matplotlib: only for this command

    csv = (
        claim_output_file(args.csv, "--csv", columns=CSV_COLUMNS, force=args.force)
        if args.csv
        else None
    )
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if workers < 0:
        raise ConfigError(f"bench data --workers: expected an integer >= 0, got {workers}")
    if args.model_img_s is not None and args.model_img_s <= 0:
        raise ConfigError(
            f"bench data --model-img-s: expected a positive rate, got {args.model_img_s}"
        )
    table, diffs, rates = bench_data(
        args.out,
        n=args.n,
        seed=args.seed,
        gallery_size=args.gallery_size,
        query_size=args.query_size,
        size=args.size,
        sample=args.sample,
        loader_workers=_worker_counts(args.loader_workers),
        loader_images=args.loader_images,
        batch_size=args.batch_size,
        progress=terminal_progress(args.quiet),
    )
    if args.model_img_s is None:
        model_img_s, model_what = cpu_embed_rate(), "mcgf paper gallery embedding on this CPU"
    else:
        model_img_s, model_what = args.model_img_s, "--model-img-s"
    print(
        f"decode + resize to {args.size}×{args.size}, images per second "
        f"(decoders: 1 process, 1 thread; loader: batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores):"
    )
    print(markdown_table(table))
    for view, d in diffs.items():
        shown = "; ".join(f"{k}: {m:.2f} / {x:.0f}" for k, (m, x) in d.items())
        print(f"{view}: mean / max |difference| from the library's pixels (0-255): {shown}")
    proj_rows = []
    fastest = {v: max(r, key=r.__getitem__) for v, r in rates.items()}
    for path in ("library", "fastest"):
        pick = {v: LIBRARY_METHOD if path == "library" else fastest[v] for v in rates}
        t = project_eval_time({v: rates[v][m] for v, m in pick.items()}, model_img_s, workers)
        proj_rows.append(
            {
                "view": "projection",
                "what": f"University160k-WX at {args.size}², "
                + (
                    "the library's decoder"
                    if path == "library"
                    else f"fastest decoders (query: {pick['query']}; gallery: {pick['gallery']})"
                ),
                "workers": workers,
                "img/s": (U160K_QUERIES + U160K_GALLERY) / t["total"],
                "vs library": float("nan"),
                "query s": t["query"],
                "gallery s": t["gallery"],
                "total s": t["total"],
            }
        )
    print(
        f"projected University160k-WX evaluation ({U160K_QUERIES:,} queries + {U160K_GALLERY:,} "
        f"tiles), model {model_img_s:.3g} img/s ({model_what}), {workers} loader workers, "
        "each view max(decode-limited, model-limited):"
    )
    for r in proj_rows:
        print(
            f"  {r['what']}: queries {_hms(r['query s'])}, gallery {_hms(r['gallery s'])}, "
            f"total {_hms(r['total s'])}"
        )
    if csv is not None:
        full = pd.concat([table, pd.DataFrame(proj_rows)], ignore_index=True)
        full["model img/s"] = model_img_s
        full.to_csv(csv, index=False)
        print(f"table written to {csv}")
    return 0
