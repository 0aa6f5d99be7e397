"""The ablation grid of notebook 04: variants -> ``train_run`` -> evaluation -> tidy tables.

GeoViewMatch (Remote Sensing 2024, 16, 678; Tables 5 and 6): the base model with and without contrastive learning
(CL) and multi-scale features (MF), and the Swin stages feeding the descriptor. Two labels of
the paper name one configuration each, and the paper's own numbers show it (its Table 6 rows f4
and f4+f3 repeat Table 5's BS+CL and BS+CL+MF): a variant whose effective configuration
(contrastive or not, stages used) equals an earlier one's reuses that run.

MCGF (the paper has no ablation table): the full model, the matching branch alone (w/o
restoration) and the restoration branch without the noising (w/o diffusion, :data:`NO_DIFFUSION`).

Every variant trains at the same seed into ``runs_dir/ablations/<run>``, with its preset's
epochs unless ``epochs`` (per model, as notebook 01's parameter) says otherwise. A folder that
already holds a finished run with the same ``run.json`` settings is loaded, not retrained; an
interrupted one with the same settings resumes from its last checkpoint. A variant without
overrides is its model's main run: at equal settings it is 01_train's run, reused.
A variant's ``overrides`` are structured as every run's (``{"model": {...}, "train": {...},
"run": {...}}``, :mod:`geoloc_lib.training.recipes`).

Repeated over seeds (:func:`run_street_seeds`, :func:`run_mcgf_seeds`, the claims of notebook
05): seed 0 uses the folders above (so notebook 04's runs are reused) and seed s > 0
``runs_dir/ablations/<run>_seed<s>``. Each seed is a training run and, for MCGF, its own
evaluation sample (query subset and weather draw seeded ``EVAL_WEATHER_SEED + s``; seed 0 is
04's sample). The results keep every query's metrics, so the tables carry 95 % bootstrap
intervals (:mod:`geoloc_lib.eval.uncertainty`) and :mod:`geoloc_lib.analysis.claims` pairs
variants query by query.

``weights`` (the notebooks' parameter, ``{model: {part key: file}}``,
:func:`geoloc_lib.training.runs.check_weights`) gives every variant of a model that model's
pretrained files: they join the variant's overrides when it trains and when its ``run.json`` is
compared (:func:`run_settings`), so 01's run trained with the same files is reused and a run
trained with other weights, or none, is not.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.parallel import map_side_by_side, runs_at_once
from geoloc_lib.data.sources import DataSources
from geoloc_lib.eval.uncertainty import bound_columns, interval_table, paired_interval
from geoloc_lib.training import runs
from geoloc_lib.training.recipes import Preset, preset_for
from geoloc_lib.training.runs import Run

ABLATION_DIR = "ablations"
STREET_METRICS = ("R@1", "R@5", "R@10", "R@1%")
MCGF_METRICS = ("R@1", "R@5", "R@10", "AP")

TABLE5 = ("BS", "BS+CL", "BS+MF", "BS+CL+MF")
TABLE6 = ("f4", "f4+f3", "f4+f3+f2", "f4+f3+f2+f1")

# GeoViewMatch (Remote Sens. 2024) Tables 5 and 6: R@1, R@5, R@10, R@1%. The text's Table 5 prints
# "9853" for BS's CVUSA R@5 (a lost decimal point): 98.53.
PAPER_TABLE5: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CVUSA": {
        "BS": (94.99, 98.53, 99.71, 99.84),
        "BS+CL": (95.28, 98.77, 99.20, 99.81),
        "BS+MF": (95.32, 98.81, 99.31, 99.82),
        "BS+CL+MF": (95.52, 99.22, 99.67, 99.83),
    },
    "CVACT": {
        "BS": (88.65, 95.27, 96.67, 98.39),
        "BS+CL": (89.17, 95.81, 96.92, 98.41),
        "BS+MF": (89.25, 95.67, 96.59, 98.41),
        "BS+CL+MF": (89.71, 95.93, 96.92, 98.48),
    },
}
PAPER_TABLE6: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CVUSA": {
        "f4": (95.28, 98.77, 99.20, 99.81),
        "f4+f3": (95.52, 99.22, 99.67, 99.83),
        "f4+f3+f2": (95.38, 98.68, 99.25, 99.81),
        "f4+f3+f2+f1": (50.11, 71.65, 78.18, 91.86),
    },
    "CVACT": {
        "f4": (89.17, 95.81, 96.92, 98.41),
        "f4+f3": (89.71, 95.93, 96.92, 98.48),
        "f4+f3+f2": (89.25, 95.67, 96.57, 98.39),
        "f4+f3+f2+f1": (35.12, 59.06, 68.66, 91.37),
    },
}
# GeoViewMatch Table 4 (RTX 4090, batch 16): GFLOPs, GPU memory (GB), inference time (ms),
# parameters (M), CVACT R@1.
PAPER_TABLE4: dict[str, tuple[float, float, float, float, float]] = {
    "SAFA": (42.24, 9.63, 120.0, 81.66, 81.03),
    "L2LTR": (44.16, 15.50, 82.0, 195.90, 84.89),
    "GeoViewMatch": (9.7616, 11.40, 42.0, 57.47, 89.71),
}
# The paper changes of Table 5/6 we test: (name, from variant, to variant).
STREET_CLAIMS = (
    ("+ contrastive learning", "BS", "BS+CL"),
    ("+ multi-scale features", "BS", "BS+MF"),
    ("+ both (full model)", "BS", "BS+CL+MF"),
    ("f4 -> f4+f3", "f4", "f4+f3"),
    ("f4+f3 -> f4+f3+f2", "f4+f3", "f4+f3+f2"),
    ("f4+f3+f2 -> all four stages", "f4+f3+f2", "f4+f3+f2+f1"),
)


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: its label, how to train it (structured ``overrides``),
    and the run folder it uses."""

    label: str
    model: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_name: str = ""
    # config fields changed on the trained model before evaluation (test-time ablations)
    eval_overrides: dict[str, Any] = field(default_factory=dict)


def geoviewmatch_variants(
    labels: tuple[str, ...] = TABLE5 + TABLE6, preset: str = "default"
) -> list[Variant]:
    """GeoViewMatch ablations; labels with the same effective configuration share one run,
    named after the first such label in ``ABLATIONS`` (f4 -> BS+CL, whatever ``labels`` holds).
    The labels that are the preset's own model (BS+CL+MF, f4+f3) carry no overrides, so at 01's
    budget they reuse 01's ``geoviewmatch`` run (:func:`ensure_run`) instead of training it again."""
    from geoloc_lib.models.geoviewmatch import ABLATIONS, ablation_fields

    base = preset_for("geoviewmatch", preset).config

    def key(label: str) -> tuple:
        cfg = dataclasses.replace(base, **ABLATIONS[label])
        # all that differs between the variants
        return (cfg.contrastive, cfg.used_stages, cfg.share_backbone)

    canonical: dict[tuple, str] = {}
    for label in ABLATIONS:
        canonical.setdefault(key(label), label)
    full = (base.contrastive, base.used_stages, base.share_backbone)
    out: list[Variant] = []
    for label in labels:
        if label not in ABLATIONS:
            raise ConfigError(
                f"GeoViewMatch ablations: {choices_message('variant', label, ABLATIONS)}"
            )
        run = canonical[key(label)]
        overrides = {} if key(label) == full else {"model": ablation_fields(run)}
        out.append(Variant(label, "geoviewmatch", overrides, run))
    return out


# The MCGF grid's labels. Each comparison of the claims changes one thing: a training variant
# changes one setting of the full model's training; a test-time variant evaluates the full
# model's own run (or the no-noise run) differently.
FULL = "MCGF (full)"  # the paper's method at CPU size (joint L_res + L_mat + L_cls, eq. 11)
WITHOUT_RESTORATION = "w/o restoration"  # the matching branch alone, on the weathered drone
NO_NOISE = "no training noise"  # the restorer trained without the forward process's noise
NO_NOISE_ONE_PASS = "w/o diffusion (no noise, one pass)"  # the no-noise run, one pass at test
ONE_PASS = "one restoration pass"  # the full run, one DDIM step at test
LAST_STEP = "last step only"  # the full run, the last DDIM step's features (no pooling)
NOT_RESTORED = "queries not restored"  # the full run, weathered queries matched as they are
CLEAN_QUERY = "clean query (oracle)"  # the full run's matcher on the clean query: a ceiling
CLEAN = "clean_queries"  # an eval override: evaluate the queries without weather (the oracle)

# CPU-size departures from the paper's method and their alternatives, each a training variant
# measured against FULL (claims role "measured"): what each choice of the CPU presets costs
# or buys. "paper noise levels": the paper preset's training noise range and DDIM start as
# fractions of the schedule (t_max = T/5, t_start = T/10, started from a noise draw), so the
# smoke preset's shorter schedule scales them (:func:`paper_noise_levels`).
PAPER_NOISE = "paper noise levels"


def paper_noise_levels(preset: str) -> dict[str, Any]:
    """The paper preset's noise levels on ``preset``'s schedule (see :data:`DEVIATIONS`), as
    model-config fields."""
    paper, here = preset_for("mcgf", "paper").config, preset_for("mcgf", preset).config
    scale = here.timesteps / paper.timesteps
    return {
        "t_max": round(paper.t_max * scale),
        "t_start": round(paper.t_start * scale),
        "infer_start": paper.infer_start,
    }


DEVIATIONS: tuple[Variant, ...] = (
    Variant("detached restorer", "mcgf", {"model": {"mat_to_restorer": False}}, "mcgf_detached"),
    Variant(
        "InfoNCE on the clean drone", "mcgf", {"model": {"nce_drone": "clean"}}, "mcgf_nce_clean"
    ),
    Variant("without InfoNCE", "mcgf", {"model": {"w_nce": 0.0}}, "mcgf_no_nce"),
    Variant(PAPER_NOISE, "mcgf", {"model": paper_noise_levels("default")}, "mcgf_paper_noise"),
)


def mcgf_variants(deviations: bool = True, preset: str = "default") -> list[Variant]:
    """The MCGF grid: the full model, w/o restoration (the matching branch alone), no training
    noise, and test-time variants of those runs: one restoration pass, the last DDIM step only,
    queries not restored, the clean query (an oracle ceiling), and the no-noise run with one
    pass (the two halves of "w/o diffusion"); ``deviations`` adds :data:`DEVIATIONS`."""
    out = [
        Variant(FULL, "mcgf", {}, "mcgf"),
        Variant(WITHOUT_RESTORATION, "mcgf_matching_only", {}, "mcgf_matching_only"),
        Variant(NO_NOISE, "mcgf", {"model": {"train_noise": False}}, "mcgf_no_noise"),
        Variant(
            NO_NOISE_ONE_PASS, "mcgf", {"model": {"train_noise": False}}, "mcgf_no_noise",
            {"infer_steps": 1},
        ),
        Variant(ONE_PASS, "mcgf", {}, "mcgf", {"infer_steps": 1}),
        Variant(LAST_STEP, "mcgf", {}, "mcgf", {"pool_steps": False}),
        Variant(NOT_RESTORED, "mcgf", {}, "mcgf", {"restore_queries": False}),
        Variant(CLEAN_QUERY, "mcgf", {}, "mcgf", {"restore_queries": False, CLEAN: True}),
    ]  # fmt: skip
    if not deviations:
        return out
    scaled = {PAPER_NOISE: {"model": paper_noise_levels(preset)}}
    return out + [
        dataclasses.replace(d, overrides=scaled.get(d.label, d.overrides)) for d in DEVIATIONS
    ]


# The baselines the papers compare with, as variants of the seeded grids: GeoViewMatch against
# the InfoNCE baseline at the same budget; MCGF against raw pixels (untrained, evaluation only).
INFONCE_BASELINE = Variant("InfoNCE baseline", "infonce_baseline", {}, "infonce_baseline")
RAW_PIXELS = "raw pixels 16x16"
# GeoViewMatch trained on geographic-neighbour batches (Sample4Geo's hard negatives) instead of
# the paper's random batches: a measured variant of the full model.
GEO_NEIGHBOURS = Variant(
    "geographic-neighbour batches", "geoviewmatch", {"train": {"geo_neighbours": True}},
    "geoviewmatch_geo_neighbours",
)  # fmt: skip


Epochs = int | Mapping[str, int] | None


def variant_epochs(model: str, epochs: Epochs) -> int | None:
    """The epochs of a ``model`` variant: ``epochs`` per model (a model left out: None, its
    preset's count), or one count for every variant."""
    if epochs is None:
        return None
    if isinstance(epochs, Mapping):
        return epochs.get(model)
    return epochs


def grid_epochs(preset: str, epochs: Epochs, models: Sequence[str]) -> dict[str, int]:
    """The epochs each of ``models`` trains in a grid at ``preset`` with ``epochs``."""
    if isinstance(epochs, Mapping):
        for model in epochs:
            runs.check_model(model)  # a typo fails here, before any training
    return {m: preset_for(m, preset).with_epochs(variant_epochs(m, epochs)).epochs for m in models}


def variant_preset(
    variant: Variant, preset: str, epochs: Epochs = None, weights: dict | None = None
) -> Preset:
    """The resolved preset of ``variant``: its overrides with the model's pretrained files of
    ``weights``, and its epochs (:func:`variant_epochs`)."""
    return runs.run_preset(
        variant.model, preset, variant_epochs(variant.model, epochs), variant.overrides, weights
    )


def run_settings(
    variant: Variant, preset: str, epochs: Epochs, seed: int, weights: dict | None = None
) -> dict[str, Any]:
    """The ``run.json`` fields that must match for a finished run of ``variant`` to be reused
    (its overrides with the model's pretrained files of ``weights``)."""
    return runs.run_settings(variant_preset(variant, preset, epochs, weights), seed)


def ensure_run(
    variant: Variant,
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str | Preset,
    epochs: Epochs = None,
    seed: int,
    device: str = "auto",
    progress: bool | None = None,
    weights: dict | None = None,
) -> tuple[Run, bool]:
    """Load ``runs_dir/ablations/<run>`` if it holds this finished run, else train it.

    ``preset``: a preset name, resolved here with the variant's overrides, ``epochs`` and
    ``weights`` (:func:`variant_preset`), or the variant's :class:`Preset` so resolved.
    A variant without overrides (a main model) first looks for 01_train's run of the model,
    ``runs_dir/<model>``: trained with the same settings (the same epochs and ``weights``
    files included), it is that run, reused as it is. Returns ``(run, trained_now)``; the
    caching itself is :func:`geoloc_lib.training.runs.ensure_run`.
    """
    if not isinstance(preset, Preset):
        preset = variant_preset(variant, preset, epochs, weights)
    runs.claim_runs_dir(runs_dir)  # runs_dir itself, not only its ablations/ folder
    if not variant.overrides:
        main = runs.finished_run(Path(runs_dir) / variant.model, runs.run_settings(preset, seed))
        if main is not None:
            return main, False
    return runs.ensure_run(
        preset,
        sources,
        Path(runs_dir) / ABLATION_DIR,
        name=variant.run_name,
        seed=seed,
        device=device,
        progress=progress,
    )


def seed_run_name(variant: Variant, seed: int) -> str:
    """The folder of ``variant``'s run for ``seed`` under ``runs_dir/ablations/``."""
    return variant.run_name if int(seed) == 0 else f"{variant.run_name}_seed{int(seed)}"


def ensure_seed_run(
    variant: Variant,
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seed: int,
    device: str = "auto",
    progress: bool | None = None,
    weights: dict | None = None,
) -> tuple[Run, bool]:
    """:func:`ensure_run` with one folder per seed (:func:`seed_run_name`), so the runs of several
    seeds coexist; a finished run of this seed in the seedless folder (where notebook 04 trains
    its one seed) is reused."""
    resolved = variant_preset(variant, preset, epochs, weights)
    if int(seed) != 0:
        held = runs.finished_run(
            Path(runs_dir) / ABLATION_DIR / variant.run_name, runs.run_settings(resolved, seed)
        )
        if held is not None:
            return held, False
        variant = dataclasses.replace(variant, run_name=seed_run_name(variant, seed))
    return ensure_run(
        variant, sources, runs_dir, preset=resolved, seed=seed, device=device, progress=progress
    )


def _train_one(
    variant: Variant, sources: DataSources, runs_dir: str | Path, preset: str, epochs: Epochs,
    seed: int, device: str, weights: dict | None = None,
) -> tuple[str, int, bool]:  # fmt: skip
    """One run of :func:`train_grid` (in a worker process when runs train side by side)."""
    run, trained = ensure_seed_run(
        variant, sources, runs_dir, preset=preset, epochs=epochs, seed=seed, device=device,
        progress=False, weights=weights,
    )  # fmt: skip
    return variant.run_name, seed, trained


def train_grid(
    variants: Sequence[Variant],
    seeds: Sequence[int],
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    device: str = "auto",
    parallel_runs: int = 1,
    weights: dict | None = None,
) -> dict[tuple[str, int], bool]:
    """Train (or find) the run of every (variant, seed), ``parallel_runs`` at a time, each
    with its model's pretrained files of ``weights`` and its epochs (:func:`variant_epochs`).

    On a CPU each run trains in a worker process of its own (spawned: a clean torch per process)
    with ``cores // parallel_runs`` threads; on a GPU the runs train one at a time (a warning
    says so). Between small operators the threads of one run wait on each other; two runs keep
    both cores busy: on 2 cores notebook 04's street grid trained ≈ 1.25× faster (docs/benchmarks.md,
    "Runs side by side"). A run's numbers depend in their last bits on its thread count (``run.json``
    records it). Returns ``{(run_name, seed): trained_now}``, empty when the runs would train
    one at a time (``parallel_runs`` 1, one run, or a GPU): the caller's :func:`ensure_seed_run`
    then trains them; otherwise it loads them from their folders. Every variant's preset is
    resolved first, so a bad preset or key fails before any training.
    """
    jobs: dict[tuple[str, int], tuple] = {}
    for v in variants:
        variant_preset(v, preset, epochs, weights)
    for seed in seeds:
        for v in variants:
            jobs.setdefault(
                (v.run_name, seed), (v, sources, runs_dir, preset, epochs, seed, device, weights)
            )
    n = runs_at_once(parallel_runs, device, jobs=len(jobs))
    if n == 1:
        return {}  # the caller's loop trains them one at a time here, with its progress bars
    done = map_side_by_side(_train_one, list(jobs.values()), n)
    return {(name, seed): trained for name, seed, trained in done}


def _train_seconds(run: Run) -> float:
    """The run's recorded training time (``run.json``), NaN where it has none."""
    value = run.info.get("train_time_s")
    return float(value) if value is not None else float("nan")


def check_seeds(seeds: object) -> list[int]:
    """``seeds`` as a list of distinct non-negative integers (a clear error otherwise)."""
    ok = (
        isinstance(seeds, Sequence)
        and not isinstance(seeds, str)
        and len(seeds) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    )
    if not ok or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"seeds must be a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]; got {seeds!r}"
        )
    return [int(s) for s in seeds]


@dataclass(frozen=True)
class SeedResults:
    """A grid evaluated for several seeds.

    ``summary``: one row per (seed, variant[, condition]) with the metrics and their 95 %
    bounds; ``per_query``: one row per (seed, variant[, condition], query) with ``query`` (row of
    the evaluated set), ``rank`` and the per-query metrics (NaN: a query the protocol skips).
    """

    summary: pd.DataFrame
    per_query: pd.DataFrame


def street_eval_split(sources: DataSources) -> str:
    """The evaluation split of the street ablations: on real data the split the paper's Tables
    5/6 report (CVACT val / CVUSA val); on GeoSynth its larger ``test`` split. Training reads
    neither: its monitor uses pairs held out of the train split
    (:func:`geoloc_lib.data.street.split_train_pairs`)."""
    return "test" if sources.dataset == "geosynth" else "val"


def street_gallery_overlap(sources: DataSources, split: str | None = None) -> pd.DataFrame:
    """How many of the evaluated street split's aerial tiles are near-duplicates: one row with
    ``split, tiles, tile_m`` and ``near-duplicate rate`` (the fraction of tiles overlapping
    another by more than half, :func:`geoloc_lib.data.street.near_duplicate_rate`; NaN without
    coordinates, as CVUSA). Neighbouring tiles that overlap make in-batch negatives and
    top-1 confusions near-duplicates, which is why the claims report the meter-level recall
    beside R@1 (GeoViewMatch Table 2)."""
    from geoloc_lib.data.street import near_duplicate_rate

    split = split or street_eval_split(sources)
    pairs = sources.street(split)
    tile_m = sources.street_tile_m()
    rate = near_duplicate_rate(pairs, tile_m) if pairs.coords is not None else float("nan")
    return pd.DataFrame(
        [{"split": split, "tiles": len(pairs), "tile_m": tile_m, "near-duplicate rate": rate}]
    )


def run_street_seeds(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seeds: Sequence[int] = (0,),
    labels: tuple[str, ...] = TABLE5 + TABLE6,
    baselines: bool = False,
    deviations: bool = False,
    split: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
    parallel_runs: int = 1,
    weights: dict | None = None,
) -> SeedResults:
    """Train (or load) and evaluate each GeoViewMatch variant on street->aerial retrieval, once
    per seed; ``baselines=True`` adds :data:`INFONCE_BASELINE` at the same budget,
    ``deviations=True`` the geographic-neighbour batches (:data:`GEO_NEIGHBOURS`). Every
    variant of a model trains with that model's files of ``weights``.

    ``summary`` columns: ``seed, variant, run, trained_now, epochs, queries``, R@1/R@5/R@10/R@1%
    in percent, ``tied`` (queries whose true match ties another tile), then the metrics' bounds.
    A run shared by two labels is evaluated once per seed.
    """
    from geoloc_lib.eval.street import evaluate_street_model

    seeds = check_seeds(seeds)
    variants = geoviewmatch_variants(labels, preset) + ([INFONCE_BASELINE] if baselines else [])
    variants += [GEO_NEIGHBOURS] if deviations else []
    budget = {v.label: variant_preset(v, preset, epochs).epochs for v in variants}
    split = split or street_eval_split(sources)
    pairs = sources.street(split)
    trained_apart = train_grid(
        variants, seeds, sources, runs_dir, preset=preset, epochs=epochs, device=device,
        parallel_runs=parallel_runs, weights=weights,
    )  # fmt: skip
    rows, frames = [], []
    for seed in seeds:
        done: dict[str, tuple[dict[str, float], pd.DataFrame, bool, str, float]] = {}
        for v in variants:
            if v.run_name not in done:
                run, trained = ensure_seed_run(
                    v, sources, runs_dir, preset=preset, epochs=epochs, seed=seed,
                    device=device, progress=progress, weights=weights,
                )  # fmt: skip
                trained = trained or trained_apart.get((v.run_name, seed), False)
                with warnings.catch_warnings():
                    # Short ablation runs often leave ties; the table's "tied" column reports
                    # them per variant instead of one warning per run.
                    warnings.filterwarnings("ignore", "evaluate_pairs: the true match", UserWarning)
                    metrics, table = evaluate_street_model(
                        run.model, pairs, device=device, per_query=True
                    )
                train_s = _train_seconds(run)
                done[v.run_name] = (metrics, table, trained, run.out_dir.name, train_s)
            metrics, table, trained, folder, train_s = done[v.run_name]
            rows.append(
                {
                    "seed": seed,
                    "variant": v.label,
                    "run": folder,
                    "trained_now": trained,
                    "epochs": budget[v.label],
                    "train_s": train_s,
                    "queries": len(pairs),
                    **{m: float(metrics[m]) for m in STREET_METRICS},
                    "tied": int(metrics["n_tied"]),
                }
            )
            meters = [c for c in table.columns if c.startswith("top1_within_")]
            frame = table[["rank", *STREET_METRICS, *meters]].copy()
            frame.insert(0, "query", np.arange(len(frame)))
            frame.insert(0, "variant", v.label)
            frame.insert(0, "seed", seed)
            frames.append(frame)
    per_query = pd.concat(frames, ignore_index=True)
    bounds = interval_table(per_query, STREET_METRICS, by=["seed", "variant"])
    summary = pd.DataFrame(rows).merge(
        bounds.drop(columns=[*STREET_METRICS, "n_queries"]), on=["seed", "variant"], how="left"
    )
    return SeedResults(summary, per_query)


def run_street_ablations(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seed: int = 0,
    labels: tuple[str, ...] = TABLE5 + TABLE6,
    split: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
    parallel_runs: int = 1,
    per_query: bool = False,
    weights: dict | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or load) and evaluate each GeoViewMatch variant on street->aerial retrieval
    (pretrained files: ``weights``, as :func:`run_street_seeds`).

    One row per label: ``variant``, ``run``, ``trained_now``, ``epochs``, ``queries``,
    R@1/R@5/R@10/R@1% in percent, ``tied``, then each metric's 95 % bounds (``"R@1 lo"``, ...).
    A run shared by two labels is evaluated once. ``per_query=True`` returns ``(table,
    per_query)`` (:class:`SeedResults`'s ``per_query`` of this one seed).
    """
    res = run_street_seeds(
        sources, runs_dir, preset=preset, epochs=epochs, seeds=[int(seed)], labels=labels,
        split=split, device=device, progress=progress, parallel_runs=parallel_runs,
        weights=weights,
    )  # fmt: skip
    table = res.summary.drop(columns="seed")
    return (table, res.per_query.drop(columns="seed")) if per_query else table


def run_mcgf_seeds(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seeds: Sequence[int] = (0,),
    labels: tuple[str, ...] | None = None,
    conditions: Sequence[str] | None = None,
    raw_pixels: bool = False,
    max_queries: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    parallel_runs: int = 1,
    weights: dict | None = None,
) -> SeedResults:
    """Train (or load) and evaluate the MCGF variants per weather (drone->satellite), per seed
    (every variant of a model with that model's files of ``weights``).

    ``labels``: the variants of :func:`mcgf_variants` to run (default all); ``conditions``:
    default the ten (``"mixed"`` may be added: MCGF Table 1's setting); ``raw_pixels=True`` adds
    the raw-pixel floor (:data:`RAW_PIXELS`, untrained: only its evaluation sample changes with
    the seed). Seed s evaluates ``max_queries`` queries drawn, and weathered, with
    ``EVAL_WEATHER_SEED + s``. ``summary``: one row per (seed, variant, condition) with the
    ``mean`` over the ten conditions, R@1/R@5/R@10/AP in percent and their bounds.
    """
    from geoloc_lib.eval.university import evaluate_mcgf
    from geoloc_lib.models.raw_pixel import RawPixelMatcher
    from geoloc_lib.weather.sets import EVAL_WEATHER_SEED
    from geoloc_lib.weather.synth import CONDITIONS

    seeds = check_seeds(seeds)
    variants = mcgf_variants(preset=preset)
    if labels is not None:
        known = {v.label for v in variants}
        bad = [lab for lab in labels if lab not in known]
        if bad:
            raise ConfigError(f"MCGF ablations: {choices_message('variant', bad[0], known)}")
        variants = [v for v in variants if v.label in labels]
    conditions = tuple(CONDITIONS if conditions is None else conditions)
    bounds = [c for m in MCGF_METRICS for c in bound_columns(m)]
    trained_apart = train_grid(
        variants, seeds, sources, runs_dir, preset=preset, epochs=epochs, device=device,
        parallel_runs=parallel_runs, weights=weights,
    )  # fmt: skip
    budget = {v.label: variant_preset(v, preset, epochs).epochs for v in variants}
    frames, per_query = [], []
    for seed in seeds:
        models: list[tuple[str, str, bool, int, float, bool, object]] = []
        img_size = None
        for v in variants:
            run, trained = ensure_seed_run(
                v, sources, runs_dir, preset=preset, epochs=epochs, seed=seed,
                device=device, progress=progress, weights=weights,
            )  # fmt: skip
            trained = trained or trained_apart.get((v.run_name, seed), False)
            model = run.model
            img_size = model.input_size("drone")[0]
            overrides = dict(v.eval_overrides)
            clean = bool(overrides.pop(CLEAN, False))
            if overrides:
                model = copy.deepcopy(model)
                for key, value in overrides.items():
                    setattr(model.cfg, key, value)
            # a test-time variant trains nothing of its own: no training time (compute ratios)
            train_s = np.nan if v.eval_overrides else _train_seconds(run)
            models.append(
                (v.label, run.out_dir.name, trained, budget[v.label], train_s, clean, model)
            )
        if raw_pixels:
            if img_size is None:
                raise ConfigError("run_mcgf_seeds: raw_pixels needs an MCGF variant for its size")
            raw = RawPixelMatcher(16, img_size=img_size)
            models.append((RAW_PIXELS, "", False, 0, np.nan, False, raw))
        for label, folder, trained, n_epochs, train_s, clean, model in models:
            res, pq = evaluate_mcgf(
                model,
                sources,
                (CLEAN_CONDITION,) if clean else conditions,
                tasks=("drone->satellite",),
                seed=EVAL_WEATHER_SEED + seed,
                max_queries=max_queries,
                device=device,
                progress=progress,
                per_query=True,
            )
            if clean:  # the clean queries' results stand for every condition's
                res, pq = _as_every_condition(res, pq, conditions)
            res = res[["condition", *MCGF_METRICS, *bounds]].copy()
            for i, (key, value) in enumerate(
                (("seed", seed), ("variant", label), ("run", folder), ("trained_now", trained),
                 ("epochs", n_epochs), ("train_s", train_s))
            ):  # fmt: skip
                res.insert(i, key, value)
            frames.append(res)
            pq = pq.drop(columns="task")
            pq.insert(0, "variant", label)
            pq.insert(0, "seed", seed)
            per_query.append(pq)
    summary = pd.concat(frames, ignore_index=True)
    return SeedResults(summary, pd.concat(per_query, ignore_index=True))


def run_restoration_seeds(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seeds: Sequence[int] = (0,),
    max_queries: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    weights: dict | None = None,
) -> pd.DataFrame:
    """The full MCGF run's restorer, measured per seed (MCGF §2.3): PSNR, SSIM and per-image
    correlation with the clean image of the weathered query and of every DDIM step's output
    (:func:`geoloc_lib.eval.restoration.restoration_quality`), under the ten conditions, on the
    queries and weather of that seed's retrieval evaluation. One row per (seed, condition,
    query, step); the run is :func:`run_mcgf_seeds`'s (trained here if it is not yet, with
    ``weights``)."""
    from geoloc_lib.eval.restoration import restoration_quality
    from geoloc_lib.weather.sets import EVAL_WEATHER_SEED
    from geoloc_lib.weather.synth import CONDITIONS

    full = next(v for v in mcgf_variants(deviations=False) if v.label == FULL)
    frames = []
    for seed in check_seeds(seeds):
        run, _ = ensure_seed_run(
            full, sources, runs_dir, preset=preset, epochs=epochs, seed=seed, device=device,
            progress=progress, weights=weights,
        )  # fmt: skip
        pq = restoration_quality(
            run.model, sources, CONDITIONS, max_queries=max_queries,
            seed=EVAL_WEATHER_SEED + seed, device=device, progress=progress,
        )  # fmt: skip
        pq.insert(0, "seed", seed)
        frames.append(pq)
    return pd.concat(frames, ignore_index=True)


CLEAN_CONDITION = "normal"  # no weather: the clean query


def _as_every_condition(
    res: pd.DataFrame, pq: pd.DataFrame, conditions: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One evaluation of the clean queries repeated under every condition's name (and the
    ``mean`` row), so the oracle pairs query by query with any variant under any condition."""
    clean_row = res[res["condition"] == CLEAN_CONDITION].iloc[0]
    named = [*conditions, *(["mean"] if any(c != "mixed" for c in conditions) else [])]
    rows = pd.DataFrame([clean_row] * len(named)).assign(condition=named)
    clean_pq = pq[pq["condition"] == CLEAN_CONDITION]
    frames = [clean_pq.assign(condition=c) for c in conditions]
    return rows.reset_index(drop=True), pd.concat(frames, ignore_index=True)


def run_mcgf_ablations(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: Epochs = None,
    seed: int = 0,
    max_queries: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    parallel_runs: int = 1,
    per_query: bool = False,
    weights: dict | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or load) and evaluate the MCGF variants per weather (drone->satellite), with the
    pretrained files of ``weights`` (as :func:`run_mcgf_seeds`).

    Tidy: one row per (variant, condition) including the ``mean`` over the ten conditions, with
    R@1/R@5/R@10/AP in percent, then their 95 % bounds; ``max_queries`` subsamples the drone
    queries (fixed seed). ``per_query=True`` returns ``(table, per_query)`` (one row per
    variant, condition and query), what :func:`mcgf_ablation_deltas` pairs.
    """
    res = run_mcgf_seeds(
        sources, runs_dir, preset=preset, epochs=epochs, seeds=[int(seed)],
        max_queries=max_queries, device=device, progress=progress, parallel_runs=parallel_runs,
        weights=weights,
    )  # fmt: skip
    table = res.summary.drop(columns="seed")
    return (table, res.per_query.drop(columns="seed")) if per_query else table


# --------------------------------------------------------------------------- tables


def ablation_table(results: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """Our rows of a paper table (``Method`` + R@1/R@5/R@10/R@1%) in the paper's order, then the
    metrics' 95 % bounds when ``results`` has them."""
    missing = [lab for lab in labels if lab not in set(results["variant"])]
    if missing:
        raise ConfigError(f"ablation_table: no results for variants {missing}")
    df = results.set_index("variant").loc[list(labels)].reset_index()
    bounds = [c for m in STREET_METRICS for c in bound_columns(m) if c in df.columns]
    return df.rename(columns={"variant": "Method"})[["Method", "run", *STREET_METRICS, *bounds]]


def paper_ablation_table(table: int) -> pd.DataFrame:
    """The paper's Table 5 or 6, one row per (dataset, method), labelled ``paper, <dataset>``."""
    source = {5: PAPER_TABLE5, 6: PAPER_TABLE6}.get(table)
    if source is None:
        raise ConfigError(f"paper_ablation_table: table must be 5 or 6, got {table}")
    rows = [
        {"Source": f"paper, {ds}", "Method": m, **dict(zip(STREET_METRICS, vals, strict=True))}
        for ds, methods in source.items()
        for m, vals in methods.items()
    ]
    return pd.DataFrame(rows)


def _paper_r1(label: str) -> dict[str, float]:
    for table in (PAPER_TABLE5, PAPER_TABLE6):
        if label in table["CVUSA"]:
            return {ds: table[ds][label][0] for ds in table}
    raise ConfigError(f"no paper numbers for variant {label!r}")


def _paired(
    per_query: pd.DataFrame, a: str, b: str, metric: str, by: Sequence[str] = ()
) -> tuple[float, float, float]:
    """Paired bootstrap of ``a - b`` (variants) over the queries both evaluated; whole
    locations are resampled when the table has a ``location`` column."""
    keys = [*by, "query", *(["location"] if "location" in per_query.columns else [])]
    wide = per_query.pivot_table(index=keys, columns="variant", values=metric, dropna=False)
    pair = wide[[a, b]].dropna()
    clusters = pair.index.get_level_values("location") if "location" in keys else None
    return paired_interval(pair[a].to_numpy(), pair[b].to_numpy(), clusters=clusters)


def ablation_claims(results: pd.DataFrame, per_query: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each change of Tables 5/6: R@1 difference ours vs the paper's, and whether the sign agrees.

    ``resolution`` is one query in percent: a difference below it is no difference at all. With
    ``per_query`` (from ``run_street_ablations(..., per_query=True)``) the difference gets its
    paired 95 % bootstrap interval over the queries (``ours ΔR@1 lo`` / ``hi``, last), and a
    difference whose interval holds 0 is ``undecided``: inside the noise of the queries (one
    seed; notebook 05 adds the seeds).
    """
    r1 = results.set_index("variant")["R@1"]
    queries = int(results["queries"].iloc[0])
    rows = []
    for name, a, b in STREET_CLAIMS:
        if a not in r1 or b not in r1:
            continue
        ours = float(r1[b] - r1[a])
        pa, pb = _paper_r1(a), _paper_r1(b)
        paper = {ds: round(pb[ds] - pa[ds], 2) for ds in pa}
        signs = {np.sign(v) for v in paper.values()}
        lo = hi = None
        if per_query is not None:
            _, lo, hi = _paired(per_query, b, a, "R@1")
        if ours == 0:
            verdict = "no change"
        elif lo is not None and lo <= 0 <= hi:
            verdict = "undecided"
        elif len(signs) == 1 and np.sign(ours) in signs:
            verdict = "same direction"
        else:
            verdict = "opposite direction"
        row = {
            "change": name,
            "from": a,
            "to": b,
            "ours ΔR@1": ours,
            "paper CVUSA ΔR@1": paper["CVUSA"],
            "paper CVACT ΔR@1": paper["CVACT"],
            "resolution": 100.0 / queries,
            "verdict": verdict,
        }
        if per_query is not None:
            row.update({"ours ΔR@1 lo": lo, "ours ΔR@1 hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def mcgf_weather_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per-weather R@1 and AP, one row per condition (the ten, then ``mean``), variants as
    column groups ``<variant> R@1`` / ``<variant> AP``, then (when ``results`` has them) their
    95 % bounds ``<variant> R@1 lo`` ... in the same order."""
    order = list(dict.fromkeys(results["condition"]))
    variants = list(dict.fromkeys(results["variant"]))
    metrics = ["R@1", "AP"]
    bounds = [c for m in metrics for c in bound_columns(m)]
    if all(c in results.columns for c in bounds):
        metrics += bounds
    wide = results.pivot(index="condition", columns="variant", values=metrics)
    cols = {f"{v} {m}": wide[(m, v)] for v in variants for m in ("R@1", "AP")}
    cols |= {f"{v} {m}": wide[(m, v)] for v in variants for m in metrics[2:]}
    return pd.DataFrame(cols).loc[order].reset_index()


# What each part adds: (part, a, b), each a single-factor comparison a - b.
MCGF_PARTS: tuple[tuple[str, str, str], ...] = (
    ("restoration branch", FULL, WITHOUT_RESTORATION),
    ("training noise", FULL, NO_NOISE),
    ("training noise at one pass", ONE_PASS, NO_NOISE_ONE_PASS),
    ("DDIM steps (pooled) vs one pass", FULL, ONE_PASS),
    ("pooling the DDIM steps", FULL, LAST_STEP),
    ("restoration pass at test", FULL, NOT_RESTORED),
    ("clean query (oracle) vs restored", CLEAN_QUERY, FULL),
    *((f"deviation: {d.label}", d.label, FULL) for d in DEVIATIONS),
)


def mcgf_ablation_deltas(
    results: pd.DataFrame, per_query: pd.DataFrame | None = None
) -> pd.DataFrame:
    """What each MCGF part adds (:data:`MCGF_PARTS`, each a single-factor comparison a - b):
    mean R@1/AP difference and the number of weather conditions (of ten) where a's R@1 is
    higher. Parts whose variants are not in ``results`` are left out.

    With ``per_query`` (from ``run_mcgf_ablations(..., per_query=True)``) each mean difference
    gets its paired 95 % bootstrap interval (``mean ΔR@1 lo`` ... last): per query, the
    difference averaged over the ten conditions, resampled by location (all views of a location
    together) when the per-query table has a ``location`` column.
    """
    from geoloc_lib.weather.synth import CONDITIONS

    per = results.pivot(index="condition", columns="variant", values=["R@1", "AP"])
    weather = [c for c in per.index if c != "mean"]
    if per_query is not None:
        fixed = per_query[per_query["condition"].isin(CONDITIONS)]
        keys = ["variant", "query", *(["location"] if "location" in fixed.columns else [])]
        per_q_mean = fixed.groupby(keys, sort=False)[["R@1", "AP"]].mean().reset_index()
    rows = []
    for part, a, b in MCGF_PARTS:
        if a not in per["R@1"].columns or b not in per["R@1"].columns:
            continue
        d = per["R@1"][a] - per["R@1"][b]
        row = {
            "part": part,
            "a": a,
            "b": b,
            "mean ΔR@1": float(d["mean"]),
            "mean ΔAP": float(per["AP"][a]["mean"] - per["AP"][b]["mean"]),
            "conditions better": f"{int((d[weather] > 0).sum())}/{len(weather)}",
            "conditions worse": f"{int((d[weather] < 0).sum())}/{len(weather)}",
        }
        if per_query is not None:
            for metric in ("R@1", "AP"):
                _, lo, hi = _paired(per_q_mean, a, b, metric)
                row.update({f"mean Δ{metric} lo": lo, f"mean Δ{metric} hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def cost_comparison(costs: pd.DataFrame) -> pd.DataFrame:
    """:func:`geoloc_lib.analysis.cost.cost_table` in Table 4's layout, the paper's GeoViewMatch
    row beside ours (``paper ...`` columns on the row ``model == "geoviewmatch"``, preset
    ``paper``; NaN elsewhere). Our ``GFLOPs/pair`` are FLOPs (2 per multiply-add) of a query and
    a gallery image; see :mod:`geoloc_lib.analysis.cost` for the gap to the paper's 9.76."""
    paper = PAPER_TABLE4["GeoViewMatch"]
    df = costs.rename(
        columns={
            "params_m": "params (M)",
            "inference_params_m": "inference params (M)",
            "gflops": "GFLOPs/pair",
            "gmacs": "GMACs/pair",
            "gflops_query": "GFLOPs/query image",
            "gflops_gallery": "GFLOPs/gallery image",
            "tensor_mem_gb": "tensor memory (GB, b16)",
            "latency_ms": "latency (ms, b16)",
            "peak_mem_gb": "CUDA peak (GB, b16)",
        }
    )
    # the paper's configuration only (two backbones), not variants such as a shared backbone
    is_gvm = ((df["model"] == "geoviewmatch") & (df["preset"] == "paper")).to_numpy()
    nan = float("nan")
    df["paper params (M)"] = np.where(is_gvm, paper[3], nan)
    df["paper GFLOPs"] = np.where(is_gvm, paper[0], nan)
    df["paper memory (GB)"] = np.where(is_gvm, paper[1], nan)
    df["paper latency (ms)"] = np.where(is_gvm, paper[2], nan)
    return df


def budget_line(preset: str, epochs: Epochs, models: Sequence[str]) -> str:
    """One line naming the epochs each model's variants train (:func:`grid_epochs`)."""
    budget = grid_epochs(preset, epochs, models)
    return "budget (epochs per variant): " + ", ".join(f"{m} {n}" for m, n in budget.items())
