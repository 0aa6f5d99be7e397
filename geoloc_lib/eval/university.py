"""Drone <-> satellite retrieval under weather (MCGF's evaluation): one row per (task, condition).

The University-1652 protocol (drone->satellite and satellite->drone) with the drone images
weathered per condition (University-1652-WX) or with a random condition per image
(``"mixed"``, University160k-WX), each image keyed by :func:`geoloc_lib.weather.sets.weather_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from geoloc_lib.core.device import resolve_device
from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.data.sources import DataSources, university
from geoloc_lib.data.types import ImageSet
from geoloc_lib.data.university import University1652
from geoloc_lib.data.university_torch import eval_loader
from geoloc_lib.eval.features import extract_features
from geoloc_lib.eval.metrics import evaluate_university1652
from geoloc_lib.models import load_model
from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, MIXED, WEATHER_REFERENCE_SIZE, eval_weather
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth


def subset_images(images: ImageSet, n: int | None, seed: int) -> ImageSet:
    if n is None or n >= len(images):
        return images
    pick = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return _take(images, pick)


def eval_queries(
    images: ImageSet, max_queries: int | None, seed: int = EVAL_WEATHER_SEED
) -> ImageSet:
    """The drone queries :func:`evaluate_mcgf` uses with ``max_queries`` (a seeded subset)."""
    return subset_images(images, max_queries, seed)


def _views_per_location(images: ImageSet, k: int | None, seed: int) -> ImageSet:
    """At most ``k`` images per location (label), drawn with ``seed``; the order is kept."""
    if k is None:
        return images
    order = np.random.default_rng(seed).permutation(len(images))
    labels = images.labels[order]
    grouped = np.argsort(labels, kind="stable")  # random order within each location
    sorted_labels = labels[grouped]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    position = np.arange(len(images)) - np.repeat(starts, np.diff(np.r_[starts, len(images)]))
    pick = np.sort(order[grouped[position < k]])
    return _take(images, pick)


def _take(images: ImageSet, pick: np.ndarray) -> ImageSet:
    """The images at the (sorted) indices ``pick``."""
    return ImageSet(
        name=images.name,
        paths=[images.paths[i] for i in pick],
        labels=images.labels[pick],
        names=[images.names[i] for i in pick],
    )


def evaluate_mcgf(
    checkpoint_or_model: str | Path | nn.Module,
    root: DataSources | University1652 | str | Path,
    conditions: Sequence[str] = CONDITIONS,
    *,
    tasks: Sequence[str] = ("drone->satellite", "satellite->drone"),
    img_size: int | None = None,
    batch_size: int = 64,
    seed: int = EVAL_WEATHER_SEED,
    device: str = "auto",
    max_queries: int | None = None,
    max_gallery_drones: int | None = None,
    gallery_views_per_location: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Per-weather retrieval metrics: one row per (task, condition), R@1/5/10/AP in percent.

    Drone images (the queries of drone->satellite, the gallery of satellite->drone) get the
    condition applied on the fly, each image keyed by ``(seed, index)`` so the weathered sets are
    the same on every call. Works with any model that has ``embed(images, view)`` and (for
    models without ``cfg.img_size``) ``img_size``. ``max_queries`` / ``max_gallery_drones``
    subsample the drone sets with a fixed seed (CPU budgets); ``gallery_views_per_location``
    keeps that many drone views of every location in the satellite->drone gallery instead, so
    no satellite query loses all its true matches. ``conditions`` may include ``"mixed"`` (a
    random condition per drone image, University160k-WX style). A ``"mean"`` row per task
    averages the fixed conditions (not ``"mixed"``); ``n_queries``/``n_gallery`` give the sizes
    (``n_skipped``: queries without a true match in the gallery, left out by the protocol).
    """
    progress = resolve_progress(progress)
    model = (
        load_model(checkpoint_or_model)
        if isinstance(checkpoint_or_model, str | Path)
        else checkpoint_or_model
    )
    size = img_size or model.input_size("drone")[0]
    bad = [c for c in conditions if c not in CONDITIONS and c != MIXED]
    if bad:
        valid = (*CONDITIONS, MIXED)
        raise ConfigError(f"evaluate_mcgf: {choices_message('condition', bad[0], valid)}")
    data = university(root)
    dev = resolve_device(device)
    synth = WeatherSynth(reference_size=WEATHER_REFERENCE_SIZE)
    rows = []
    for task in tasks:
        query, gallery = data.task(task)
        drone_is_query = task.startswith("drone")
        if drone_is_query:
            query = subset_images(query, max_queries, seed)
        else:
            gallery = subset_images(gallery, max_gallery_drones, seed)
            gallery = _views_per_location(gallery, gallery_views_per_location, seed)
        fixed_view = "satellite"
        fixed = extract_features(
            model,
            eval_loader(gallery if drone_is_query else query, size, batch_size),
            fixed_view,
            device=dev,
            progress=progress,
            desc=f"{task} {fixed_view}",
        )
        # decoded once, weathered per condition
        drones = eval_loader(query if drone_is_query else gallery, size, batch_size, cache=True)
        for name in conditions:
            drone = extract_features(
                model,
                drones,
                "drone",
                device=dev,
                batch_transform=eval_weather(name, synth, seed),
                progress=progress,
                desc=f"{task} drone/{name}",
            )
            qf, ql = drone if drone_is_query else fixed
            gf, gl = fixed if drone_is_query else drone
            res = evaluate_university1652(qf, gf, ql, gl, progress=False)
            rows.append({"task": task, "condition": name, **res, "n_gallery": len(gf)})
    df = pd.DataFrame(rows)
    fixed = df[df["condition"] != MIXED]
    metrics = ["R@1", "R@5", "R@10", "AP", "n_queries", "n_skipped", "n_gallery"]
    means = fixed.groupby("task", sort=False)[metrics].mean().reset_index()
    means["condition"] = "mean"
    return pd.concat([df, means], ignore_index=True)
