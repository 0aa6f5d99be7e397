"""``geoloc evaluate`` and ``geoloc features``: a trained run on a dataset outside the notebooks.

``geoloc evaluate RUN --dataset NAME --root DIR`` writes the tables notebook 02 writes for the
run's task into ``--out`` (CSV, and Markdown with each metric's 95 % interval in its cell):

- a drone->satellite model (MCGF and its variants) on ``university1652`` (any
  University-1652-layout root, GeoSynth's included): :func:`geoloc_lib.eval.university.evaluate_mcgf`
  per weather condition, ``weather_drone_to_satellite`` (R@1/5/10/AP per condition, then
  ``mean``), ``mcgf_table1_mixed`` (when ``mixed`` is among the conditions),
  ``recall_at_k_drone_to_satellite`` and ``results_long`` (every row with ``n_queries``,
  ``n_skipped``, ``n_gallery``); ``--tasks`` adds ``satellite->drone``;
- a street model (GeoViewMatch, the InfoNCE baseline) on ``cvusa`` / ``cvact``:
  :func:`geoloc_lib.eval.street.evaluate_street_splits` on val (the papers' tables) and test,
  ``street_recall``, ``street_meter_level`` and ``street_topk_distance`` (with coordinates),
  ``street_recall_test`` and ``results_long``.

``geoloc features RUN --root DIR`` embeds a University160k-WX test set (name-masked layout)
into the feature file that ``geoloc submit`` turns into ``answer.zip``.

RUN is a run folder (``runs_dir/<name>/`` with ``checkpoint_last.pt``) or a checkpoint file
(a run's checkpoint or exported weights).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from geoloc_lib.core.errors import ConfigError, choices_message

DRONE_DATASETS = ("university1652",)
STREET_DATASETS = ("cvusa", "cvact")
DATASETS = (*DRONE_DATASETS, *STREET_DATASETS)
DRONE_TASKS = ("drone->satellite", "satellite->drone")


@dataclass
class TrainedModel:
    name: str  # the run folder's name, or the checkpoint's stem
    model_name: str
    task: str
    model: nn.Module


def load_trained(path: str | Path) -> TrainedModel:
    """The model of a run folder or a checkpoint file, with its name and task."""
    from geoloc_lib.core.checkpoints import load_checkpoint
    from geoloc_lib.models import load_model
    from geoloc_lib.training.engine import CHECKPOINT_LAST
    from geoloc_lib.training.runs import TASKS, load_run

    path = Path(path)
    if path.is_dir():
        run = load_run(path)
        return TrainedModel(run.name, run.model_name, run.task, run.model.eval())
    if not path.is_file():
        raise ConfigError(
            f"RUN {path} not found: pass a run folder (holding {CHECKPOINT_LAST}) or a checkpoint"
        )
    model_name = str(load_checkpoint(path).get("model_name"))
    if model_name not in TASKS:
        raise ConfigError(
            f"checkpoint {path} holds model {model_name!r}, which no recipe trains; valid: "
            f"{', '.join(sorted(TASKS))}"
        )
    name = path.parent.name if path.name == CHECKPOINT_LAST else path.stem
    return TrainedModel(name, model_name, TASKS[model_name], load_model(path).eval())


def _check_dataset(trained: TrainedModel, dataset: str) -> None:
    valid = DRONE_DATASETS if trained.task.startswith("drone") else STREET_DATASETS
    if dataset not in valid:
        raise ConfigError(
            f"--dataset {dataset}: {trained.name} is a {trained.model_name} model "
            f"({trained.task}); evaluate it on {' or '.join(valid)}"
        )


def evaluate_tables(
    trained: TrainedModel,
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    conditions: list[str] | None = None,
    tasks: tuple[str, ...] = ("drone->satellite",),
    max_queries: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> list[Path]:
    """Evaluate ``trained`` on ``dataset`` at ``root``; write the tables; return their CSV paths."""
    from geoloc_lib.core.device import resolve_device
    from geoloc_lib.eval.tables import stack_results
    from geoloc_lib.reporting import ReportDir

    _check_dataset(trained, dataset)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--root {root}: folder not found")
    dev = str(resolve_device(device))
    report = ReportDir(out_dir)
    report.tables = report.root  # the tables straight into --out
    written: list[str] = []

    def table(df, name: str, floatfmt: str = ".2f") -> None:
        report.table(df, name, floatfmt)
        written.append(name)

    if dataset in DRONE_DATASETS:
        from geoloc_lib.data.university import load_university1652
        from geoloc_lib.eval.tables import mcgf_table1, weather_table
        from geoloc_lib.eval.uncertainty import recall_curves
        from geoloc_lib.eval.university import evaluate_mcgf
        from geoloc_lib.weather.sets import MIXED
        from geoloc_lib.weather.synth import CONDITIONS

        conds = list(conditions) if conditions else [*CONDITIONS, MIXED]
        result, per_query = evaluate_mcgf(
            trained.model,
            load_university1652(root),
            conds,
            tasks=tasks,
            max_queries=max_queries,
            device=dev,
            progress=progress,
            per_query=True,
        )
        long = stack_results({trained.name: result})
        table(long, "results_long")
        for task in tasks:
            table(weather_table(long, task), f"weather_{task.replace('->', '_to_')}")
        if MIXED in conds and "drone->satellite" in tasks:
            table(mcgf_table1(long, "drone->satellite", MIXED), "mcgf_table1_mixed")
        if "drone->satellite" in tasks:
            curves = recall_curves(per_query[per_query["task"] == "drone->satellite"])
            table(curves, "recall_at_k_drone_to_satellite")
    else:
        from geoloc_lib.data.sources import DataSources
        from geoloc_lib.eval.street import PAPER_TABLE_SPLIT, evaluate_street_splits
        from geoloc_lib.eval.tables import (
            meter_level_table,
            street_recall_table,
            topk_distance_table,
        )

        if max_queries is not None:
            raise ConfigError(
                f"--max-queries subsamples drone queries ({', '.join(DRONE_DATASETS)}); the "
                "street tables rank every pair of a split"
            )
        sources = DataSources("real", None, root, dataset)
        long = evaluate_street_splits(
            {trained.name: trained.model},
            sources,
            ("val", "test"),
            dataset=dataset.upper(),
            device=dev,
            progress=bool(progress),
        )
        table(long, "results_long")
        paper = long[long["split"] == PAPER_TABLE_SPLIT].drop(columns="split")
        table(street_recall_table(paper), "street_recall")
        if "top1_within_0m" in paper.columns:
            table(meter_level_table(paper), "street_meter_level")
            table(topk_distance_table(paper), "street_topk_distance", ".1f")
        test = long[long["split"] == "test"].drop(columns="split")
        if len(test):
            table(street_recall_table(test), "street_recall_test")
    return [report.root / f"{name}.csv" for name in written]


def main(args: argparse.Namespace) -> int:
    from geoloc_lib.core.runtime import terminal_progress

    if args.max_queries is not None and args.max_queries < 1:
        raise ConfigError(f"--max-queries: expected an integer >= 1, got {args.max_queries}")
    if args.dataset not in DATASETS:  # argparse checks it; kept for direct calls
        raise ConfigError(choices_message("dataset", args.dataset, DATASETS))
    trained = load_trained(args.run)
    out = args.out if args.out is not None else Path("evaluation") / trained.name
    paths = evaluate_tables(
        trained,
        args.dataset,
        args.root,
        out,
        conditions=args.conditions,
        tasks=tuple(dict.fromkeys(args.tasks)),
        max_queries=args.max_queries,
        device=args.device,
        progress=terminal_progress(args.quiet),
    )
    print(f"{trained.name} ({trained.model_name}) on {args.dataset} at {args.root}:")
    for path in paths:
        print(f"  {path} (+ .md)")
    return 0
