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
import torch
from torch import nn

from geoloc_lib.core.device import resolve_device
from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.data.sources import DataSources, university
from geoloc_lib.data.types import ImageSet
from geoloc_lib.data.university import University1652
from geoloc_lib.data.university_torch import eval_loader
from geoloc_lib.eval.features import extract_features
from geoloc_lib.eval.metrics import n_without_match, summarize, university1652_per_query
from geoloc_lib.eval.ranking import rank_gallery
from geoloc_lib.eval.uncertainty import bound_columns, interval_table
from geoloc_lib.models import load_model
from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, MIXED, WEATHER_REFERENCE_SIZE, eval_weather
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth

MCGF_METRICS: tuple[str, ...] = ("R@1", "R@5", "R@10", "AP")


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
    per_query: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
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
    (``n_skipped``: queries without a true match in the gallery, counted as misses over all
    ``n_queries`` as in the official University-1652 evaluation).

    Each metric has its 95 % cluster-bootstrap interval over the query locations (``"R@1 lo"``, ``"R@1 hi"``, ...,
    after the other columns; :mod:`geoloc_lib.eval.uncertainty`); the ``mean`` row's interval
    resamples the queries once for all conditions (every condition weathers the same queries).
    ``per_query=True`` returns ``(table, per_query)`` as well: one row per (task, condition,
    query) with ``query`` (row in the evaluated query set), ``location`` (the query's location
    label; intervals resample whole locations), ``rank`` (1-based rank of the best
    true match; NaN for a query without one, whose metrics are 0) and the per-query metrics,
    for paired comparisons.
    """
    progress = resolve_progress(progress)
    model = (
        load_model(checkpoint_or_model, expect=("mcgf", "mcgf_matching_only"))
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
    rows, per_query_frames = [], []
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
            # evaluate_university1652's ranking, kept per query for the intervals
            result = rank_gallery(qf, gf, ql, gl, topk=0, progress=False, ties="against")
            pq = university1652_per_query(result)
            summary = summarize(pq, n_skipped=n_without_match(result))
            rows.append({"task": task, "condition": name, **summary, "n_gallery": len(gf)})
            rank = result.first_rank.to(torch.float64).numpy() + 1
            pq.insert(0, "rank", np.where(result.n_good.numpy() > 0, rank, np.nan))
            pq.insert(0, "location", np.asarray(ql).reshape(-1))
            pq.insert(0, "query", np.arange(len(pq)))
            pq.insert(0, "condition", name)
            pq.insert(0, "task", task)
            per_query_frames.append(pq)
    df = pd.DataFrame(rows)
    fixed = df[df["condition"] != MIXED]
    sizes = ["n_queries", "n_skipped", "n_gallery"]
    means = fixed.groupby("task", sort=False)[[*MCGF_METRICS, *sizes]].mean().reset_index()
    means["condition"] = "mean"
    table = pd.concat([df, means], ignore_index=True)
    long = pd.concat(per_query_frames, ignore_index=True)
    keys = ["task", "condition"]
    # the views of one location move together: resample locations (cluster bootstrap)
    bounds = interval_table(long, MCGF_METRICS, by=keys, cluster="location")
    fixed_pq = long[long["condition"] != MIXED]
    if len(fixed_pq):
        # a query's mean over the fixed conditions; the mean row's interval resamples those
        per_q = fixed_pq.groupby(["task", "query", "location"], sort=False)[list(MCGF_METRICS)]
        mean_bounds = interval_table(
            per_q.mean().reset_index(), MCGF_METRICS, by=["task"], cluster="location"
        )
        mean_bounds.insert(1, "condition", "mean")
        bounds = pd.concat([bounds, mean_bounds], ignore_index=True)
    bound_cols = [c for m in MCGF_METRICS for c in bound_columns(m)]
    table = table.merge(bounds[[*keys, *bound_cols]], on=keys, how="left", sort=False)
    return (table, long) if per_query else table
