"""How close MCGF's restorer brings a weathered drone query to its clean image (MCGF §2.3).

:func:`restoration_quality` weathers the test drone queries exactly as :func:`evaluate_mcgf
<geoloc_lib.eval.university.evaluate_mcgf>` does (the same seeded subset for the same ``seed``
and ``max_queries``, the same per-image weather draw per condition, at the model's input size),
runs the restorer's deterministic DDIM pass once per batch (``model.restore_query``: every
step's ẑ_0 in [0, 1]) and compares the weathered input and every step's ẑ_0 with the clean image.
One row per (condition, query, step); step 0 is the weathered input itself.

Metrics, per image, on pixels in [0, 1]:

- ``psnr``: ``10 log10(1 / MSE)`` in dB over all pixels and channels. An image identical to the
  clean one (MSE 0: the weathered input of ``"normal"``) has infinite PSNR; it is capped at
  :data:`PSNR_CAP_DB` (100 dB), and so is any finite PSNR above it. Means over conditions that
  include ``"normal"`` therefore carry the cap: the summary's ``psnr_capped`` gives the share
  of capped values in each mean, and ``mean_over`` chooses the conditions of the ``"mean"`` row.
- ``ssim``: the Gaussian-window SSIM of Wang et al. (2004): an 11x11 window of sigma 1.5,
  ``C1 = 0.01²``, ``C2 = 0.03²`` (dynamic range 1), computed on each RGB channel separately over
  the "valid" window positions (no padding) and averaged over positions and channels.
- ``corr``: the Pearson correlation between the image and the clean one over all pixels and
  channels. It is invariant to a brightness offset and a positive contrast gain, which is what
  remains after the matching branch's per-image standardisation (``content_norm="per_image"``).
  NaN when either image is constant.

:func:`restoration_summary` gives per (condition, step) the means and 95 % intervals, and
:func:`restoration_deltas` the change from the weathered input (restored minus weathered). Their
intervals are cluster bootstraps over locations (:func:`cluster_bootstrap_interval`): the views
of one location are not independent queries, so a resample draws locations with replacement
and keeps all views of each drawn location.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from geoloc_lib.core.device import resolve_device, to_device
from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.data.sources import DataSources, university
from geoloc_lib.data.university import University1652
from geoloc_lib.data.university_torch import eval_loader
from geoloc_lib.eval.uncertainty import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    N_RESAMPLES,
    bootstrap_interval,
    bound_columns,
)
from geoloc_lib.eval.university import subset_images
from geoloc_lib.models import load_model
from geoloc_lib.models.diffusion import ddim_timesteps
from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, MIXED, WEATHER_REFERENCE_SIZE, eval_weather
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
METRICS: tuple[str, ...] = ("psnr", "ssim", "corr")
WEATHERED = "weathered"  # the label of step 0, the weathered input
MEAN = "mean"  # the condition label of the mean over conditions
PER_QUERY_COLUMNS: tuple[str, ...] = (
    "condition", "query", "location", "step", "stage", "t", *METRICS,
)  # fmt: skip
# Pixels of the channel images one SSIM convolution sees at once (x5 moments, float64).
_SSIM_CHUNK_PIXELS = 2**22


# --------------------------------------------------------------------------- image metrics


def _check_pair(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ConfigError(
            f"{name}: expected two image batches [B, C, H, W] of the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def psnr(images: Tensor, clean: Tensor, cap: float = PSNR_CAP_DB) -> Tensor:
    """Per-image PSNR [B] in dB of ``images`` against ``clean`` (both [B, C, H, W] in [0, 1]),
    ``10 log10(1 / MSE)`` over all pixels and channels, capped at ``cap`` (MSE 0 gives ``cap``)."""
    _check_pair(images, clean, "psnr")
    mse = (images.double() - clean.double()).pow(2).flatten(1).mean(1)
    return (-10.0 * torch.log10(mse)).clamp(max=float(cap))  # log10(0) = -inf: the cap


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(device=device, dtype=dtype)[None, None]


def ssim(
    images: Tensor,
    clean: Tensor,
    *,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Tensor:
    """Per-image SSIM [B] of ``images`` against ``clean`` (both [B, C, H, W] in [0, 1]).

    Gaussian window ``window`` x ``window`` of std ``sigma``, ``C1 = k1²``, ``C2 = k2²``; local
    means, variances and covariance by one convolution over the valid positions (no padding);
    the SSIM map is averaged over positions and channels. Images need H, W >= ``window``.
    """
    _check_pair(images, clean, "ssim")
    b, c, h, w = images.shape
    if h < window or w < window:
        raise ConfigError(f"ssim: images of {h}x{w} are smaller than the {window}x{window} window")
    x = images.reshape(b * c, 1, h, w)
    y = clean.reshape(b * c, 1, h, w)
    kernel = _gaussian_window(window, sigma, x.device, torch.float64)
    c1, c2 = k1**2, k2**2
    # float64: var = E[x²] - E[x]² loses ~1e-8 to cancellation in float32, 1e-5 of C2
    rows = max(1, _SSIM_CHUNK_PIXELS // (h * w))  # bounds memory; results do not depend on it
    means = []
    for start in range(0, b * c, rows):
        xs, ys = x[start : start + rows].double(), y[start : start + rows].double()
        # the five local moments of every channel in one convolution (valid positions)
        moments = F.conv2d(torch.cat([xs, ys, xs * xs, ys * ys, xs * ys]), kernel)
        mu_x, mu_y, xx, yy, xy = moments.chunk(5)
        var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
        num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        means.append((num / den).flatten(1).mean(1))
    return torch.cat(means).view(b, c).mean(1)


def pearson_corr(images: Tensor, clean: Tensor) -> Tensor:
    """Per-image Pearson correlation [B] between ``images`` and ``clean`` over all pixels and
    channels (NaN when either image is constant)."""
    _check_pair(images, clean, "pearson_corr")
    a = images.double().flatten(1)
    r = clean.double().flatten(1)
    a = a - a.mean(1, keepdim=True)
    r = r - r.mean(1, keepdim=True)
    den = (a.pow(2).sum(1) * r.pow(2).sum(1)).sqrt()
    return (a * r).sum(1) / den.where(den > 0, torch.full_like(den, float("nan")))


def image_metrics(images: Tensor, clean: Tensor) -> dict[str, Tensor]:
    """``{"psnr", "ssim", "corr"}`` of ``images`` against ``clean``, each a float64 CPU [B]."""
    return {
        "psnr": psnr(images, clean).cpu(),
        "ssim": ssim(images, clean).cpu(),
        "corr": pearson_corr(images, clean).cpu(),
    }


# --------------------------------------------------------------------------- per-query table


def _stage(step: int) -> str:
    return WEATHERED if step == 0 else f"step {step}"


def _restorer(checkpoint_or_model: str | Path | nn.Module) -> nn.Module:
    model = (
        load_model(checkpoint_or_model, expect=("mcgf", "mcgf_matching_only"))
        if isinstance(checkpoint_or_model, str | Path)
        else checkpoint_or_model
    )
    cfg = getattr(model, "cfg", None)
    if not hasattr(model, "restore_query") or getattr(cfg, "restoration", False) is not True:
        what = (
            "an MCGF with restoration=False (the matching-only baseline)"
            if cfg is not None and getattr(cfg, "restoration", None) is False
            else f"a {type(model).__name__}"
        )
        raise ConfigError(
            f"restoration_quality needs an MCGF model with a restoration module, got {what}: it "
            "has no restorer to measure"
        )
    return model


def restoration_quality(
    checkpoint_or_model: str | Path | nn.Module,
    sources_or_data: DataSources | University1652 | str | Path,
    conditions: Sequence[str] = CONDITIONS,
    *,
    max_queries: int | None = None,
    seed: int = EVAL_WEATHER_SEED,
    device: str = "auto",
    batch_size: int = 64,
    img_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Per-query restoration quality: one row per (condition, query, step).

    The queries are the test drone images of ``drone->satellite``, subsampled as
    :func:`~geoloc_lib.eval.university.evaluate_mcgf` does with the same ``max_queries`` and
    ``seed``; each condition is applied as evaluation applies it (``eval_weather(condition,
    seed=seed)``, the clean image the loader's one at the model's input size, or ``img_size``).
    ``conditions`` may include ``"mixed"`` (a condition per image). The model is run in eval
    mode without gradients (its mode is restored afterwards), one ``restore_query`` per batch.

    Columns (module docstring for the metrics): ``condition``; ``query`` (row in the evaluated
    query set); ``location`` (the query's class label: all views of a location share it);
    ``step`` (0 = the weathered input, k = the ẑ_0 of the k-th DDIM step, 1..K); ``stage``
    (``"weathered"``, ``"step 1"``, ...); ``t`` (the DDIM timestep the step's ẑ_0 is predicted
    at; NaN for the weathered input); ``psnr`` (dB, capped at :data:`PSNR_CAP_DB`); ``ssim``;
    ``corr``. Rows are ordered by condition (as given), query, step.
    """
    model = _restorer(checkpoint_or_model)
    bad = [c for c in conditions if c not in CONDITIONS and c != MIXED]
    if bad:
        valid = (*CONDITIONS, MIXED)
        raise ConfigError(f"restoration_quality: {choices_message('condition', bad[0], valid)}")
    if not len(conditions):
        raise ConfigError("restoration_quality: no condition given")
    show = resolve_progress(progress)
    dev = resolve_device(device)
    data = university(sources_or_data)
    queries = subset_images(data.task("drone->satellite")[0], max_queries, seed)
    size = img_size or model.input_size("drone")[0]
    steps = int(model.cfg.infer_steps)
    ts = ddim_timesteps(model.schedule, int(model.cfg.t_start), steps)
    n_steps = len(ts)  # restore_query returns one ẑ_0 per DDIM timestep
    synth = WeatherSynth(reference_size=WEATHER_REFERENCE_SIZE)
    loader = eval_loader(queries, size, batch_size, cache=True)  # decoded once
    n = len(queries)
    labels = np.asarray(queries.labels, dtype=np.int64)
    was_training = model.training
    model.eval().to(dev)
    frames = []
    bar = tqdm(total=len(conditions) * len(loader), desc="restoration", disable=not show)
    try:
        for name in conditions:
            weather = eval_weather(name, synth, seed)
            values = {m: [] for m in METRICS}  # per batch: [n_steps + 1, B]
            for batch in loader:
                batch = to_device(batch, dev)
                clean = batch["image"]
                weathered = weather(batch)["image"]
                with torch.no_grad():
                    preds = model.restore_query(weathered)
                if len(preds) != n_steps:
                    raise ConfigError(
                        f"restore_query returned {len(preds)} steps; the DDIM schedule has "
                        f"{n_steps} timesteps {ts}"
                    )
                # one step at a time: a stack of every step would multiply the peak memory
                per = [image_metrics(image, clean) for image in (weathered, *preds)]
                for m in METRICS:
                    values[m].append(torch.stack([p[m] for p in per]))  # [S + 1, B]
                bar.update(1)
            cols = {m: torch.cat(values[m], dim=1).T.numpy() for m in METRICS}  # [N, S + 1]
            step = np.tile(np.arange(n_steps + 1), n)
            frames.append(
                pd.DataFrame(
                    {
                        "condition": name,
                        "query": np.repeat(np.arange(n), n_steps + 1),
                        "location": np.repeat(labels, n_steps + 1),
                        "step": step,
                        "stage": np.array([_stage(k) for k in range(n_steps + 1)])[step],
                        "t": np.array([np.nan, *ts], dtype=np.float64)[step],
                        **{m: cols[m].ravel() for m in METRICS},
                    }
                )
            )
    finally:
        bar.close()
        model.train(was_training)
    return pd.concat(frames, ignore_index=True)[list(PER_QUERY_COLUMNS)]


# --------------------------------------------------------------------------- intervals


def cluster_bootstrap_interval(
    values: object,
    clusters: object,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile cluster-bootstrap interval of the mean over queries: ``(lo, hi)``
    (:func:`geoloc_lib.eval.uncertainty.bootstrap_interval` with ``clusters``: each resample
    draws whole locations with all their views). ``values``: [Q] (floats returned) or [Q, M]
    (arrays of M); ``clusters``: [Q] cluster ids. Deterministic for a given ``seed``."""
    groups = np.asarray(clusters)
    if np.ndim(values) not in (1, 2) or groups.shape != (np.shape(values)[0],):
        raise ConfigError(
            f"cluster_bootstrap_interval: values [Q] or [Q, M] and clusters [Q], got "
            f"{np.shape(values)} and {np.shape(clusters)}"
        )
    return bootstrap_interval(
        values, confidence=confidence, n_resamples=n_resamples, seed=seed, clusters=groups
    )


# --------------------------------------------------------------------------- summaries


def _check_per_query(per_query: pd.DataFrame, name: str) -> None:
    missing = [c for c in PER_QUERY_COLUMNS if c not in per_query.columns]
    if missing:
        raise ConfigError(
            f"{name}: the per-query table lacks {missing}; pass what restoration_quality returns"
        )


def _with_mean(
    per_query: pd.DataFrame, mean_over: Sequence[str] | None, columns: Sequence[str] = METRICS
) -> pd.DataFrame:
    """``per_query`` plus ``"mean"`` rows: per (query, step) the mean of ``columns`` over
    ``mean_over`` (every fixed condition of the table when None; never ``"mixed"``)."""
    present = list(dict.fromkeys(per_query["condition"]))
    fixed = [c for c in present if c != MIXED] if mean_over is None else list(mean_over)
    missing = [c for c in fixed if c not in present]
    if missing:
        raise ConfigError(f"mean_over: conditions {missing} are not in the table ({present})")
    if not fixed:
        return per_query
    part = per_query[per_query["condition"].isin(fixed)]
    keys = ["query", "location", "step", "stage", "t"]
    # a query's metric is averaged over the conditions where it is defined (NaN corr skipped)
    mean = part.groupby(keys, sort=False, dropna=False)[list(columns)].mean().reset_index()
    counts = part.groupby(keys, sort=False, dropna=False).size().to_numpy()
    if (counts != len(fixed)).any():
        raise ConfigError("mean_over: every query needs one row per condition and step")
    mean.insert(0, "condition", MEAN)
    return pd.concat([per_query, mean[list(per_query.columns)]], ignore_index=True)


def _interval_rows(
    frame: pd.DataFrame,
    keys: Sequence[str],
    metrics: Sequence[str],
    names: Sequence[str],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Per group of ``keys``: each metric's mean and cluster-bootstrap bounds (named ``names``)."""
    rows = []
    for key, part in frame.groupby(list(keys), sort=False, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for metric, out in zip(metrics, names, strict=True):
            ok = part[metric].notna().to_numpy()
            values = part[metric].to_numpy(dtype=np.float64)[ok]
            lo_name, hi_name = bound_columns(out)
            if len(values):
                lo, hi = cluster_bootstrap_interval(
                    values,
                    part["location"].to_numpy()[ok],
                    confidence=confidence,
                    n_resamples=n_resamples,
                    seed=seed,
                )
                row.update({out: float(values.mean()), lo_name: lo, hi_name: hi})
            else:
                row.update({out: np.nan, lo_name: np.nan, hi_name: np.nan})
        row["n_queries"] = len(part)
        row["n_locations"] = part["location"].nunique()
        rows.append(row)
    bounds = [c for m in names for c in bound_columns(m)]
    return pd.DataFrame(rows, columns=[*keys, *names, *bounds, "n_queries", "n_locations"])


def restoration_summary(
    per_query: pd.DataFrame,
    *,
    mean_over: Sequence[str] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Per (condition, step): the mean of each metric and its cluster-bootstrap interval.

    ``per_query`` is what :func:`restoration_quality` returns. A ``"mean"`` condition is added:
    per query and step, the mean over ``mean_over`` (default: every condition of the table but
    ``"mixed"``; with all ten, ``"normal"``'s capped PSNR enters it). Intervals resample
    locations with all their views (:func:`cluster_bootstrap_interval`); a query whose ``corr``
    is NaN (a constant image) is left out of that metric's mean and interval.

    Columns: ``condition, step, stage, t, psnr, ssim, corr``, then ``"<metric> lo"`` and
    ``"<metric> hi"`` for each, ``n_queries, n_locations``, ``psnr_capped`` (the share, 0 to 1, of
    the PSNR values averaged into the row that sit at the cap: 1 for the weathered ``"normal"``
    query, 0.1 for the ``"mean"`` row's weathered input over the ten conditions).
    """
    _check_per_query(per_query, "restoration_summary")
    frame = per_query.assign(psnr_capped=(per_query["psnr"] >= PSNR_CAP_DB).astype(np.float64))
    frame = _with_mean(frame, mean_over, (*METRICS, "psnr_capped"))
    keys = ["condition", "step", "stage", "t"]
    table = _interval_rows(frame, keys, METRICS, METRICS, confidence, n_resamples, seed)
    capped = frame.groupby(keys, sort=False, dropna=False)["psnr_capped"].mean().to_numpy()
    return table.assign(psnr_capped=capped)  # _interval_rows keeps the groups' order


def restoration_deltas(
    per_query: pd.DataFrame,
    *,
    mean_over: Sequence[str] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Per condition: restored minus weathered, for one DDIM pass (step 1) and the last step K.

    The per-query differences ``metric(step k) - metric(weathered)`` of the same query, their
    mean and cluster-bootstrap interval over locations: the interval a claim "the restorer moves
    the query towards the clean image" is decided on (positive: closer to the clean image, for
    every metric). A ``"mean"`` condition as in :func:`restoration_summary`. For ``"normal"``
    the weathered input is the clean image itself (PSNR at the cap, SSIM and corr 1), so its
    differences are at most 0. With K = 1 there is one row per condition.

    Columns: ``condition, step, stage`` (``"step 1 (one pass)"``, ``"step K (last)"``), ``t``,
    ``d_psnr, d_ssim, d_corr`` (dB, unitless), their ``lo``/``hi`` bounds, ``n_queries,
    n_locations``.
    """
    _check_per_query(per_query, "restoration_deltas")
    frame = _with_mean(per_query, mean_over)
    last = int(frame["step"].max())
    if last < 1:
        raise ConfigError("restoration_deltas: the table has no restored step (step >= 1)")
    keys = ["condition", "query"]
    base = frame[frame["step"] == 0].set_index(keys)[list(METRICS)]
    parts = []
    for step in dict.fromkeys((1, last)):
        rows = frame[frame["step"] == step]
        diff = rows.set_index(keys)[list(METRICS)] - base.reindex(rows.set_index(keys).index)
        diff.columns = [f"d_{m}" for m in METRICS]
        label = f"step {step} (one pass)" if step == 1 else f"step {step} (last)"
        if step == 1 and last == 1:
            label = "step 1 (one pass, last)"
        diff = diff.reset_index()
        diff["location"] = rows["location"].to_numpy()
        diff["step"], diff["stage"], diff["t"] = step, label, rows["t"].to_numpy()
        parts.append(diff)
    deltas = pd.concat(parts, ignore_index=True)
    names = [f"d_{m}" for m in METRICS]
    table = _interval_rows(
        deltas, ["condition", "step", "stage", "t"], names, names, confidence, n_resamples, seed
    )
    order = list(dict.fromkeys(frame["condition"]))
    table["_order"] = table["condition"].map(order.index)
    table = table.sort_values(["_order", "step"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)
