"""Weathered drone query sets: the per-image key, the evaluation transform, and files on disk.

Evaluation weathers query sets in memory with :func:`eval_weather`; ``geoloc data weather``
writes the same sets as files (University-1652-WX / University160k-WX style). Both key image
``i`` of a set weathered with ``seed`` by :func:`weather_keys`, so ``geoloc data weather --seed N
--size S`` writes exactly the pixels an evaluation at input size S with seed N uses.

``geoloc data weather --root DIR --condition NAME|mixed|all --seed N --out DIR`` writes
``OUT/test/<query_folder>/<id>/<file>`` with the weather applied, plus ``OUT/weather.csv``
(``id, file, condition, condition_idx``) so evaluation can break results down by weather.
``all`` writes one such tree per condition under ``OUT/<condition>/``. Only the query folder is
written: the gallery is the clean one of the source dataset.

Each image's weather (and, for ``mixed``, its condition) is a pure function of ``seed`` and
the image's index in the sorted query list (:func:`weather_keys`), so the files do not depend on
the batch size.

``OUT`` must be geoloc's, new or empty (:mod:`geoloc_lib.core.outputs`; ``--force`` accepts a
folder of someone else and marks it), and never holds a weather set already: an existing
``weather.csv`` or query folder at the paths it writes is never replaced, even with ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from geoloc_lib.core.errors import ConfigError, DatasetError, choices_message
from geoloc_lib.core.outputs import claim_output_dir, output_dir_problem
from geoloc_lib.core.runtime import resolve_progress, terminal_progress
from geoloc_lib.data.images import read_image
from geoloc_lib.data.types import ImageSet
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth, conditions_from_seeds

# The weather recipe was published for 512 px drone images (weather applied before resizing);
# drawing it at that reference scale keeps drops, flakes and blur the same relative size.
WEATHER_REFERENCE_SIZE = 512
EVAL_WEATHER_SEED = 20240611
# University160k-WX-style query set: each image gets its own random condition.
MIXED = "mixed"
SPECIAL = (MIXED, "all")


def _query_set(root: Path, query_folder: str) -> ImageSet:
    """The query images of ``root/test/<query_folder>`` via the University-1652 loader."""
    from geoloc_lib.data import university

    key = f"test/{query_folder}"
    known = tuple(university.REQUIRED_SETS) + tuple(university.OPTIONAL_SETS)
    if key in known:
        return university.load_university1652(root, sets=(key,)).sets[key]
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist")
    return university.index_image_folder(root / "test" / query_folder, key)


# |seed| <= 2**31 - 1 keeps every key (index * 1_000_003 + seed) inside int64.
SEED_LIMIT = 2**31 - 1


def _check_int(name: str, value: object, low: int | None, high: int | None) -> None:
    """A ConfigError naming the argument when ``value`` is not an integer in [low, high]."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if ok and low is not None and value < low:  # type: ignore[operator]
        ok = False
    if ok and high is not None and value > high:  # type: ignore[operator]
        ok = False
    if not ok:
        if high is None:
            want = f"an integer >= {low}"
        else:
            want = f"an integer from {low} to {high}"
        raise ConfigError(f"{name}: expected {want}, got {value!r}")


def weather_keys(index: torch.Tensor | int, seed: int) -> torch.Tensor:
    """The weather key of image ``index`` of a set weathered with ``seed`` (int64).

    The one per-image key of the project: evaluation (:func:`eval_weather`), validation during
    training, ``geoloc data weather`` and the explain figures all key an image this way, so an
    image gets the same weather wherever it is drawn. Two sets whose seeds differ by less than
    1_000_003 share no key.
    """
    return torch.as_tensor(index, dtype=torch.int64) * 1_000_003 + int(seed)


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def _save(tensor: torch.Tensor, path: Path, quality: int) -> None:
    arr = tensor.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality)
    else:
        image.save(path)


def _write_one(
    queries: ImageSet,
    out: Path,
    condition: str,
    seed: int,
    query_folder: str,
    size: int | None,
    batch_size: int,
    quality: int,
    progress: bool,
    synth: WeatherSynth,
) -> Path:
    n = len(queries)
    seeds = weather_keys(torch.arange(n), seed)
    if condition == "mixed":
        conds = conditions_from_seeds(seeds)
    else:
        conds = torch.full((n,), CONDITIONS.index(condition), dtype=torch.long)
    rows = []
    target = (size, size) if size else None
    bar = tqdm(
        total=n, desc=f"weather {condition}", unit="img", disable=not resolve_progress(progress)
    )
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pil = [read_image(p, target) for p in queries.paths[start:stop]]
        # Images of different sizes go through the transform in same-size groups.
        by_size: dict[tuple[int, int], list[int]] = {}
        for offset, im in enumerate(pil):
            by_size.setdefault(im.size, []).append(offset)
        for offsets in by_size.values():
            idx = torch.tensor([start + o for o in offsets])
            batch = _to_tensor([pil[o] for o in offsets])
            weathered, _ = synth(batch, conds[idx], seeds=seeds[idx])
            for o, image in zip(offsets, weathered, strict=True):
                src = queries.paths[start + o]
                rel = Path("test") / query_folder / src.parent.name / src.name
                _save(image, out / rel, quality)
        for i in range(start, stop):
            src = queries.paths[i]
            c = int(conds[i])
            rows.append(
                {
                    "id": src.parent.name,
                    "file": (Path("test") / query_folder / src.parent.name / src.name).as_posix(),
                    "condition": CONDITIONS[c],
                    "condition_idx": c,
                }
            )
        bar.update(stop - start)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["id", "file", "condition", "condition_idx"]).to_csv(
        out / "weather.csv", index=False
    )
    return out


def materialise_weather_queries(
    root: str | Path,
    out: str | Path,
    condition: str = "mixed",
    seed: int = 0,
    query_folder: str = "query_drone",
    size: int | None = None,
    progress: bool | None = None,
    batch_size: int = 16,
    quality: int = 95,
    reference_size: int | None = WEATHER_REFERENCE_SIZE,
    force: bool = False,
) -> Path:
    """Write a weathered copy of ``root/test/<query_folder>`` under ``out`` and return ``out``.

    ``condition``: one of :data:`CONDITIONS` (every query gets it), ``mixed`` (a random
    condition per query, recorded in ``weather.csv``) or ``all`` (one tree per condition
    under ``out/<condition>/``). ``size``: resize to size x size first (None keeps the source
    size, as the published sets do: weather is applied before resizing). ``out`` must be
    geoloc's, new or empty; ``force`` accepts a folder of someone else. The paths the set is
    written to (``weather.csv``, ``test/<query_folder>``) must not exist, ``force`` or not.
    """
    if condition not in CONDITIONS and condition not in SPECIAL:
        raise ConfigError(choices_message("--condition", condition, CONDITIONS + SPECIAL))
    _check_int("--batch-size", batch_size, 1, None)
    _check_int("--seed", seed, -SEED_LIMIT, SEED_LIMIT)
    _check_int("--quality", quality, 1, 100)
    if size is not None:
        _check_int("--size", size, 1, None)
    if reference_size is not None:
        _check_int("--reference-size", reference_size, 1, None)
    problem = output_dir_problem(out, "--out folder", force=force)
    if problem:
        raise ConfigError(problem)
    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve():
        raise ConfigError(f"--out {out} is the dataset root; choose a separate output folder")
    for folder in ("train", "test"):
        inside = (root / folder).resolve()
        if out.resolve() == inside or inside in out.resolve().parents:
            raise ConfigError(
                f"--out {out} is inside {root / folder}, a folder the dataset loader reads: the "
                f"weathered copy would break the dataset's next load; choose a folder outside "
                f"{root / folder}"
            )
    sets = [out / name for name in CONDITIONS] if condition == "all" else [out]
    taken = [
        path
        for folder in sets
        for path in (folder / "weather.csv", folder / "test" / query_folder)
        if path.exists()
    ]
    if taken:
        raise ConfigError(
            f"--out folder {out.resolve()} already holds a weather set ({taken[0]} exists); "
            "geoloc never replaces it: name a new or empty folder (move or delete the old "
            "weather set first to rewrite it)"
        )
    queries = _query_set(root, query_folder)
    claim_output_dir(out, "--out folder", kind="weathered queries", force=force)
    synth = WeatherSynth(reference_size=reference_size)
    options = (size, batch_size, quality, progress, synth)
    if condition == "all":
        for name in CONDITIONS:
            _write_one(queries, out / name, name, seed, query_folder, *options)
        return out
    return _write_one(queries, out, condition, seed, query_folder, *options)


def main(args: argparse.Namespace) -> int:
    out = materialise_weather_queries(
        args.root,
        args.out,
        condition=args.condition,
        seed=args.seed,
        query_folder=args.query_folder,
        size=args.size,
        progress=terminal_progress(args.no_progress),
        batch_size=args.batch_size,
        quality=args.quality,
        reference_size=args.reference_size,
        force=args.force,
    )
    print(f"wrote weathered queries under {out}")
    return 0


def _fixed_weather(condition: int, synth: WeatherSynth, seed: int) -> Any:
    """Query transform: one condition for every image, per-image keys from (seed, index)."""

    def apply(batch: dict[str, Any]) -> dict[str, Any]:
        idx = batch["index"].to(torch.int64)
        cond = torch.full_like(idx, condition)
        img, _ = synth(batch["image"], cond, seeds=weather_keys(idx, seed))
        return {**batch, "image": img.clamp(0, 1)}

    return apply


def eval_weather(
    condition: str, synth: WeatherSynth | None = None, seed: int = EVAL_WEATHER_SEED
) -> Any:
    """``batch_transform`` weathering ``batch["image"]`` for evaluation.

    ``condition``: one of :data:`CONDITIONS` for every image, or ``"mixed"`` (a condition per
    image drawn from its key, as in University160k-WX). Keys come from ``(seed, index in the
    set)``, so an image looks the same whatever the batch size or the call. With ``"mixed"``
    the batch also gets ``"condition"``, the index drawn for each image.
    """
    synth = synth or WeatherSynth(reference_size=WEATHER_REFERENCE_SIZE)
    if condition != MIXED:
        if condition not in CONDITIONS:
            raise ConfigError(choices_message("condition", condition, (*CONDITIONS, MIXED)))
        return _fixed_weather(CONDITIONS.index(condition), synth, seed)

    def apply(batch: dict[str, Any]) -> dict[str, Any]:
        keys = weather_keys(batch["index"], seed)
        img, cond = synth(batch["image"], conditions_from_seeds(keys), seeds=keys)
        return {**batch, "image": img.clamp(0, 1), "condition": cond}

    return apply
