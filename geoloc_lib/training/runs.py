"""One entry point for every model the notebooks train: ``train_run`` / ``load_run``.

A *run* is a folder ``runs_dir/<name>/`` holding the engine's ``checkpoint_last.pt`` and
``history.csv`` plus ``run.json`` (model, preset, epochs, seed, the structured overrides
(:mod:`geoloc_lib.training.recipes`), the resolved config, training time, and
the dataset roots it trained on, relative to the repository when inside it). The
notebooks pass run folders between each other: 01 trains, 02-04 load them by name.

Runs are written only under a ``runs_dir`` that is geoloc's (:func:`claim_runs_dir`): the
repository's ``runs/``, a folder with geoloc's ``.geoloc`` marker (or inside one), or a new or
empty folder, which gets the marker. A folder of someone else is refused before anything is
written, also when a notebook is opened interactively rather than run by ``geoloc run``.

Each model trains by its own recipe (:mod:`geoloc_lib.training.recipes`), which names its task:

- ``mcgf``, ``mcgf_matching_only``: drone -> satellite (University-1652 layout, weathered drones);
- ``geoviewmatch``, ``infonce_baseline``: street -> aerial (CVUSA / CVACT layout).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from geoloc_lib.core.checkpoints import (
    checkpoint_model,
    load_checkpoint,
    save_checkpoint,
)
from geoloc_lib.core.distributed import dist_info
from geoloc_lib.core.errors import ConfigError, choices_message, not_writable
from geoloc_lib.core.locks import folder_lock
from geoloc_lib.core.outputs import LIBRARY_FIX, claim_output_dir, output_dir_problem
from geoloc_lib.core.parallel import map_side_by_side, runs_at_once
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.data.sources import DataSources
from geoloc_lib.models import load_model
from geoloc_lib.training.engine import (
    CHECKPOINT_LAST,
    checkpoint_elapsed_s,
    run_settings_differences,
)
from geoloc_lib.training.recipes import Preset, check_overrides, preset_for, recipe_for, recipes

TASKS = {name: recipe.task for name, recipe in recipes().items()}
# The model-config keys of each model's pretrained parts: what the notebooks' ``weights``
# parameter may name (``{model: {key: file}}``). The matching-only MCGF has no restoration
# encoder, so no encoder file.
WEIGHT_PARTS: dict[str, tuple[str, ...]] = {
    "mcgf": ("encoder_pretrained_file", "content_pretrained_file"),
    "mcgf_matching_only": ("content_pretrained_file",),
    "geoviewmatch": ("pretrained_file",),
    "infonce_baseline": ("pretrained_file",),
}
RUN_FILE = "run.json"
# settings of a run in progress (ensure_run), written before its first epoch; whether it resumes
# is decided by the settings its checkpoint records
PENDING_FILE = "ablation_pending.json"


@dataclass
class Run:
    """A trained run: its folder, what trained it, its per-epoch history and the model."""

    name: str
    model_name: str
    out_dir: Path
    info: dict[str, Any]
    history: pd.DataFrame
    model: nn.Module

    @property
    def task(self) -> str:
        return TASKS[self.model_name]

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_LAST


def claim_runs_dir(runs_dir: str | Path) -> Path:
    """``runs_dir`` (resolved) once it may hold runs: geoloc's, new or empty (a new or empty
    folder gets the ``.geoloc`` marker). A folder of someone else, an empty path, the repository
    root and ``notebooks/`` are a one-line :class:`ConfigError` naming the folder and the fix.
    In a distributed run only the main process writes the marker; the others only check."""
    what = "parameter runs_dir"
    if dist_info().is_main:
        return claim_output_dir(runs_dir, what, kind="runs", fix=LIBRARY_FIX)
    problem = output_dir_problem(runs_dir, what, fix=LIBRARY_FIX)
    if problem:
        raise ConfigError(problem)
    return Path(runs_dir).expanduser().resolve()


def check_model(model: str) -> str:
    recipe_for(model)
    return model


def model_task(model: str) -> str:
    """The notebooks' task of ``model``: ``"drone"`` (drone -> satellite) or ``"street"``."""
    return "drone" if recipe_for(model).task.startswith("drone") else "street"


def task_models(models: list[str], tasks: list[str] | tuple[str, ...]) -> list[str]:
    """The models of ``models`` whose task is in ``tasks`` (in their order); an error when none
    is, naming both parameters."""
    chosen = [m for m in models if model_task(m) in tasks]
    if models and not chosen:
        raise ConfigError(
            f"parameter models {list(models)!r} holds no model of tasks={list(tasks)!r}; add "
            "one (drone: mcgf, mcgf_matching_only; street: geoviewmatch, infonce_baseline) or "
            "change tasks"
        )
    return chosen


def check_weights(weights: object) -> dict[str, dict[str, str]]:
    """The ``weights`` parameter checked: ``{model: {part key: file}}`` with the models'
    :data:`WEIGHT_PARTS` keys and non-empty path strings (a clear error naming it otherwise)."""
    example = "e.g. {geoviewmatch: {pretrained_file: weights/swinv2_tiny.safetensors}}"
    if not isinstance(weights, Mapping):
        raise ConfigError(
            f"parameter weights: expected a mapping model -> {{part: file}}, {example}; "
            f"got {weights!r}"
        )
    out: dict[str, dict[str, str]] = {}
    for model, parts in weights.items():
        if model not in WEIGHT_PARTS:
            raise ConfigError(f"parameter weights: {choices_message('model', model, WEIGHT_PARTS)}")
        if not isinstance(parts, Mapping):
            raise ConfigError(
                f"parameter weights, model {model}: expected a mapping of "
                f"{' / '.join(WEIGHT_PARTS[model])} to a file, {example}; got {parts!r}"
            )
        for key, path in parts.items():
            if key not in WEIGHT_PARTS[model]:
                raise ConfigError(
                    f"parameter weights, model {model}: "
                    + choices_message("pretrained part", key, WEIGHT_PARTS[model])
                )
            if not isinstance(path, str | Path) or not str(path).strip():
                raise ConfigError(
                    f"parameter weights, model {model}, {key}: expected a file path, got {path!r}"
                )
        out[str(model)] = {str(k): str(v) for k, v in parts.items()}
    return out


def task_weights(weights: Mapping[str, Any] | None, task: str) -> dict[str, dict[str, str]]:
    """The entries of ``weights`` (:func:`check_weights`) for the models of ``task``
    (``"drone"`` or ``"street"``, :func:`model_task`)."""
    return {m: p for m, p in check_weights(weights or {}).items() if model_task(m) == task}


def with_weights(
    model: str, overrides: Mapping[str, Any] | None, weights: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The structured ``overrides`` of a ``model`` run with the model's entries of ``weights``
    added to its ``model`` section (:func:`check_weights`): each named file is loaded into its
    part when the model is built, and the run's resolved config (``run.json``) records it, so a
    run trained with other weights, or none, is not reused. A part given in both with different
    files is an error."""
    merged = {k: dict(v) for k, v in check_overrides(model, overrides).items()}
    section = merged.get("model", {})
    for key, path in check_weights(weights or {}).get(model, {}).items():
        if section.get(key) not in (None, "", path):
            raise ConfigError(
                f"model {model}: {key} is given twice ({section[key]!r} in overrides, "
                f"{path!r} in weights); give it once"
            )
        section[key] = path
    if section:
        merged["model"] = section
    return merged


def as_preset(
    model: str, preset: str | Preset, overrides: Mapping[str, Any] | None = None
) -> Preset:
    """``preset`` resolved for ``model`` (:func:`preset_for`) with ``overrides`` applied; a
    :class:`Preset` already resolved must be of ``model``."""
    if isinstance(preset, Preset):
        if preset.model != model:
            raise ConfigError(f"preset of model {preset.model!r} given to train {model!r}")
        return preset.with_overrides(overrides)
    return preset_for(model, preset, overrides)


def weights_source(net: nn.Module) -> dict[str, Any] | None:
    """Where each pretrained part of ``net`` got its initial weights (``random``,
    ``file:PATH [n/n tensors]`` or ``hub:ID``), as its backbones record it."""
    source = getattr(net, "weights_source", None)
    if source is None:
        source = getattr(getattr(net, "backbone", None), "weights_source", None)
        source = None if source is None else {"backbone": source}
    if isinstance(source, str):
        source = {"backbone": source}
    return None if source is None else dict(source)


def resolved_config(preset: Preset, *, load_files: bool = False) -> dict[str, Any]:
    """What a run of ``preset`` trains, fully resolved: the model's config and the training
    settings, built on the meta device (no weights, no data, no time).

    The pretrained files the config names (``*pretrained_file``) are recorded as given; they
    are read only with ``load_files=True`` (their tensor names and shapes checked against the
    model, nothing copied), as :func:`check_config` does.

    ``run.json`` stores it, so a run folder can be reused only by a run that would train the
    same thing (a changed preset changes it). ``training["val_split"]`` is the recipe's
    description of the validation hold-out (:attr:`Recipe.val_split`): a run from before the
    hold-out, or with another one, trained on other data and is not reused.
    """
    recipe = preset.recipe
    config = preset.config
    files = {k: v for k, v in asdict(config).items() if k.endswith("pretrained_file")}
    build = {} if load_files else dict.fromkeys(files)
    with torch.device("meta"), warnings.catch_warnings():
        # a file loaded into meta tensors is checked (names, shapes); the copy is a no-op
        warnings.filterwarnings("ignore", "for .*copying from a non-meta parameter", UserWarning)
        net = preset.build(**build, pretrained=False)
    cfg = {k: v for k, v in net.config_dict().items() if k != "num_classes"}  # set by the data
    cfg.update(files)  # what the run loads: a run with other files, or none, is another run
    params = sum(p.numel() for p in net.parameters())
    return json.loads(
        json.dumps(
            {
                "model": cfg,
                "training": {**asdict(preset.train), "val_split": recipe.val_split},
                "parameters": params,
            },
            default=str,
        )
    )


def check_config(
    model: str, preset: str | Preset, overrides: Mapping[str, Any] | None = None
) -> str:
    """Build the network a run would train on the meta device; a line describing it.

    ``geoloc run --dry-run`` calls it for every model a profile trains, with its structured
    ``overrides``; the weight files the config names are read and must fit the model."""
    resolved = as_preset(model, preset, overrides)
    params = resolved_config(resolved, load_files=True)["parameters"] / 1e6
    return f"{model} ({resolved.name} preset): {params:.2f} M parameters"


def train_run(
    model: str,
    sources: DataSources,
    runs_dir: str | Path,
    *,
    name: str | None = None,
    preset: str | Preset = "default",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> Run:
    """Train ``model`` into ``runs_dir/<name or model>`` and return the :class:`Run`.

    ``preset``: a preset name, resolved here (:func:`preset_for`), or a :class:`Preset` of
    ``model``; ``overrides``: structured (``{"model": {config fields}, "train": {training
    settings}, "run": {train-function options}}``, :mod:`geoloc_lib.training.recipes`), e.g.
    ``{"model": {"w_nce": 0.0}, "run": {"val_queries": 0, "compile": "inductor"}}``;
    ``epochs``: the training settings' epochs (None: the preset's). ``run.json`` records the
    overrides, the resolved config and the ``torch.compile`` backend.

    Every checkpoint records the run's settings (:func:`start_record`: model, preset, epochs,
    seed and the resolved config); ``resume=True`` refuses a checkpoint recorded with any other
    value, naming it. The folder is locked while training (:mod:`geoloc_lib.core.locks`): a
    second training into it fails at once, naming the process that holds it.
    """
    resolved = as_preset(model, preset, overrides).with_epochs(epochs)
    claim_runs_dir(runs_dir)
    name = name or model
    out_dir = Path(runs_dir) / name
    locked = dist_info().is_main
    with folder_lock(out_dir, f"training run {name}") if locked else nullcontext():
        return _train_run(resolved, sources, out_dir, name, seed, device, progress, resume)


def start_record(preset: Preset, seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """What a run trains, as its checkpoints record it (``FitConfig.run_settings``) and
    ``run.json`` describes it: model, preset, epochs, seed and the resolved config
    (:func:`resolved_config`)."""
    record = {
        "model": preset.model,
        "preset": preset.name,
        "epochs": preset.epochs,
        "seed": int(seed),
        "config": config,
    }
    return json.loads(json.dumps(record, default=str))


def _train_run(
    preset: Preset,
    sources: DataSources,
    out_dir: Path,
    name: str,
    seed: int,
    device: str,
    progress: bool | None,
    resume: bool,
) -> Run:
    model, recipe = preset.model, preset.recipe
    start = time.perf_counter()
    config = resolved_config(preset)
    record = start_record(preset, seed, config)
    ckpt_path = out_dir / CHECKPOINT_LAST
    resumed: dict[str, Any] | None = None
    if resume and ckpt_path.is_file():
        _check_same_run(out_dir, record)
        ckpt = load_checkpoint(ckpt_path)
        # An interrupted run has no run.json: its checkpoint records what it trains.
        diffs = run_settings_differences(ckpt.get("run_settings"), record)
        if diffs:
            shown = "; ".join(diffs[:6]) + (f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else "")
            raise ConfigError(
                f"cannot resume run {out_dir}: its {CHECKPOINT_LAST} was trained with other "
                f"settings (saved -> asked: {shown}). Resume with the saved settings, or train "
                "into another folder (another name or runs_dir), or pass resume=False to "
                "retrain it"
            )
        resumed = {"epoch": int(ckpt["epoch"]), "elapsed_s": checkpoint_elapsed_s(ckpt)}
        del ckpt
    # A run.json describes a finished run: removed first, so an interrupted (re)training never
    # looks finished with another run's description.
    old_info = _read_info(out_dir)
    (out_dir / RUN_FILE).unlink(missing_ok=True)
    res = recipe.train(
        sources,
        preset,
        out_dir=out_dir,
        seed=seed,
        device=device,
        progress=resolve_progress(progress),
        resume=resume,
        run_settings=record,
    )
    net, history, settings = res.model, res.history, res.settings
    train_time = time.perf_counter() - start
    if resumed is not None:
        if resumed["epoch"] >= int(settings.epochs) and old_info.get("train_time_s") is not None:
            train_time = float(old_info["train_time_s"])  # finished before: nothing trained now
        else:
            train_time += resumed["elapsed_s"]
    info = {
        "name": name,
        "model": model,
        "task": recipe.task,
        "preset": preset.name,
        "epochs": int(settings.epochs),
        "seed": seed,
        "overrides": preset.overrides,
        "config": config,
        "data": data_record(sources),
        # the initial weights of each pretrained part: "random", "file:PATH [n/n tensors]"...
        "weights_source": weights_source(net),
        "train_time_s": round(train_time, 1),
        "amp": getattr(res, "amp", None),
        "compile": getattr(res, "compile", None),
        # A trained model's numbers differ in their last bits with the CPU kernel set and the
        # thread count (reductions split otherwise): recorded so that a rerun can match them.
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
        },
    }
    if resumed is not None:
        info["resumed_from_epoch"] = resumed["epoch"]
    try:
        (out_dir / RUN_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    except OSError as err:
        raise not_writable(out_dir, err, f"{RUN_FILE} in") from None
    return Run(name, model, out_dir, info, history, net)


def data_record(sources: DataSources) -> dict[str, Any]:
    """The dataset and roots a run read, for ``run.json``: roots relative to the repository when
    they lie inside it (absolute otherwise), ``None`` for a root not used."""
    from geoloc_lib.core.paths import repo_relative

    def root(path: Path | None) -> str | None:
        return None if path is None else repo_relative(path)

    return {
        "dataset": sources.dataset,
        "university_root": root(sources.university_root),
        "street_root": root(sources.street_root),
        "street_format": sources.street_format,
    }


def _train_run_job(
    model: str, sources: DataSources, runs_dir: str | Path, kwargs: dict[str, Any]
) -> str:
    """One run of :func:`train_runs` in a worker process; the parent loads it from its folder."""
    return train_run(model, sources, runs_dir, progress=False, **kwargs).name


def _model_map(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A per-model parameter (``epochs``, ``overrides``) checked: a mapping of known models."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"parameter {name}: expected a mapping model -> value, e.g. "
            f"{{'mcgf': ...}}; got {value!r}"
        )
    for model in value:
        check_model(model)
    return dict(value)


def run_preset(
    model: str,
    preset: str | Preset,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    weights: Mapping[str, Any] | None = None,
) -> Preset:
    """The resolved preset of a ``model`` run: ``preset`` with its structured ``overrides``,
    the model's pretrained files of ``weights`` (:func:`with_weights`) and ``epochs`` (None:
    the preset's). Notebook 01's runs and the ablation grids' variants resolve through it, so
    equal settings give equal records (and 01's runs are reused)."""
    return as_preset(model, preset, with_weights(model, overrides, weights)).with_epochs(epochs)


def train_runs(
    models: list[str],
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str = "default",
    epochs: Mapping[str, int] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    parallel_runs: int = 1,
    progress: bool | None = None,
    weights: Mapping[str, Any] | None = None,
) -> dict[str, Run]:
    """:func:`train_run` for each model of ``models``, with its ``epochs[model]`` (a model left
    out keeps its preset's count), its structured ``overrides[model]`` and its pretrained files
    of ``weights`` (:func:`with_weights`), ``parallel_runs`` at a time on a CPU
    (:func:`geoloc_lib.core.parallel.map_side_by_side`: spawned workers with
    cores // ``parallel_runs`` threads, then each run loaded from its folder); one at a time in
    this process when ``parallel_runs`` or the number of models is 1, or on a GPU.

    Every model's preset and overrides are resolved before any training, so a bad key fails
    at once."""
    epochs, overrides = _model_map("epochs", epochs), _model_map("overrides", overrides)
    kwargs = {
        m: {"preset": run_preset(m, preset, epochs.get(m), overrides.get(m), weights)}
        for m in models
    }
    claim_runs_dir(runs_dir)
    n = runs_at_once(parallel_runs, device, jobs=len(kwargs))
    common = {"seed": seed, "device": device, "resume": resume}
    if n == 1:
        return {
            m: train_run(m, sources, runs_dir, progress=progress, **common, **kw)
            for m, kw in kwargs.items()
        }
    jobs = [(m, sources, runs_dir, {**common, **kw}) for m, kw in kwargs.items()]
    names = map_side_by_side(_train_run_job, jobs, n)
    return {m: load_run(Path(runs_dir) / name) for m, name in zip(kwargs, names, strict=True)}


def _read_info(out_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((out_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _check_same_run(out_dir: Path, want: dict[str, Any]) -> None:
    """Refuse to resume a finished run (its ``run.json``) with other settings."""
    info = _read_info(out_dir)
    if not info:
        return  # an interrupted run: fit compares with what its checkpoint saved
    want = json.loads(json.dumps(want, default=str))
    diffs = []
    for key in ("model", "preset", "epochs", "seed"):
        if key in info and info[key] != want[key]:
            diffs.append(f"{key}: {info[key]} -> {want[key]}")
    for part in ("model", "training"):
        old, new = (info.get("config") or {}).get(part) or {}, want["config"].get(part) or {}
        for key in sorted(set(old) | set(new)):
            if key == "epochs" and part == "training":
                continue
            if old.get(key) != new.get(key):
                diffs.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    if diffs:
        shown = "; ".join(diffs[:6]) + (f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else "")
        raise ConfigError(
            f"cannot resume run {out_dir}: its {RUN_FILE} was trained with other settings "
            f"(saved -> asked: {shown}). Resume with the saved settings, or train into another "
            "folder (another name or runs_dir), or pass resume=False to retrain it"
        )


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a trained run from its folder (``checkpoint_last.pt`` + ``history.csv``)."""
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_LAST
    if not ckpt_path.is_file():
        raise ConfigError(
            f"no trained run in {run_dir} (missing {CHECKPOINT_LAST}); train it with "
            "notebooks/01_train.ipynb or geoloc_lib.training.runs.train_run"
        )
    model_name, _ = checkpoint_model(load_checkpoint(ckpt_path), ckpt_path)
    check_model(model_name)
    model = load_model(ckpt_path).eval()
    info_file = run_dir / RUN_FILE
    info = json.loads(info_file.read_text()) if info_file.is_file() else {"model": model_name}
    history_file = run_dir / "history.csv"
    history = pd.read_csv(history_file) if history_file.is_file() else pd.DataFrame()
    return Run(run_dir.name, model_name, run_dir, info, history, model)


def load_runs(runs_dir: str | Path, names: list[str]) -> dict[str, Run]:
    """``{name: Run}`` for ``names`` under ``runs_dir``; a missing run is an error naming it."""
    runs_dir = Path(runs_dir)
    missing = [n for n in names if not (runs_dir / n / CHECKPOINT_LAST).is_file()]
    if missing:
        raise ConfigError(
            f"runs {missing} are not in {runs_dir}: run notebooks/01_train.ipynb with the same "
            "profile first (geoloc run --profile NAME --only 01), or fix parameter runs_dir"
        )
    return {n: load_run(runs_dir / n) for n in names}


def export_weights(run: Run, path: str | Path) -> Path:
    """Weights-only copy of a run (model name, config and state; no optimizer or RNG state).

    ``geoloc_lib.models.load_model`` reads it like a full checkpoint."""
    ckpt = load_checkpoint(run.checkpoint)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise not_writable(path.parent, err, "folder") from None
    keep = {k: ckpt[k] for k in ("model", "model_name", "model_config", "epoch") if k in ckpt}
    return save_checkpoint(keep, path)


def training_summary(runs: dict[str, Run]) -> pd.DataFrame:
    """One row per run: what trained, for how long, its parameters, last loss and the last
    validation recall in percent (``val R@1``, ``val R@1%``)."""
    rows = []
    for name, run in runs.items():
        last = run.history.iloc[-1] if len(run.history) else pd.Series(dtype=float)
        vals = {
            "val " + c.removeprefix("val_").replace("r1", "R@1"): run.history[c].dropna().iloc[-1]
            for c in run.history.columns
            if c.startswith("val_") and "ap" not in c.lower() and run.history[c].notna().any()
        }
        rows.append(
            {
                "run": name,
                "model": run.model_name,
                "task": run.task,
                "preset": run.info.get("preset"),
                "epochs": int(last.get("epoch", 0)),
                "params (M)": sum(p.numel() for p in run.model.parameters()) / 1e6,
                "final loss": float(last.get("loss", float("nan"))),
                **vals,
            }
        )
    return pd.DataFrame(rows)


def run_settings(preset: Preset, seed: int) -> dict[str, Any]:
    """The ``run.json`` fields that must match for a finished run of ``preset`` to be reused."""
    settings = {
        "model": preset.model,
        "preset": preset.name,
        "epochs": preset.epochs,
        "seed": int(seed),
        "overrides": preset.overrides,
        # the resolved model config and training settings: a changed preset retrains
        "config": resolved_config(preset),
    }
    return json.loads(json.dumps(settings, default=str))  # as run.json stores it


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished_run(run_dir: str | Path, want: dict[str, Any]) -> Run | None:
    """The run in ``run_dir`` when it finished with the settings ``want`` (else None)."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / RUN_FILE)
    if info is None or not (run_dir / CHECKPOINT_LAST).is_file():
        return None
    return load_run(run_dir) if {k: info.get(k) for k in want} == want else None


def ensure_run(
    preset: Preset,
    sources: DataSources,
    runs_dir: str | Path,
    *,
    name: str,
    seed: int,
    device: str = "auto",
    progress: bool | None = None,
) -> tuple[Run, bool]:
    """Load ``runs_dir/<name>`` if it holds this finished run of the resolved ``preset``, else
    train it there.

    Returns ``(run, trained_now)``. A run interrupted with the same settings (its checkpoint
    records them, :func:`start_record`) resumes from its last checkpoint; a folder with other
    settings, or with a checkpoint that cannot be read, is retrained from scratch. The folder is
    locked while training (:func:`train_run`).
    """
    claim_runs_dir(runs_dir)
    want = run_settings(preset, seed)
    out = Path(runs_dir) / name
    done = finished_run(out, want)
    if done is not None:
        return done, False
    with folder_lock(out, f"training run {name}") if dist_info().is_main else nullcontext():
        record = start_record(preset, seed, want["config"])
        resume = _checkpoint_record(out / CHECKPOINT_LAST) == record
        # Stale run.json first: a retrain interrupted later must not look finished.
        (out / RUN_FILE).unlink(missing_ok=True)
        (out / PENDING_FILE).write_text(json.dumps(want, indent=2) + "\n")
        run = train_run(
            preset.model,
            sources,
            runs_dir,
            name=name,
            preset=preset,
            seed=int(seed),
            device=device,
            progress=progress,
            resume=resume,
        )
        (out / PENDING_FILE).unlink(missing_ok=True)
    return run, True


def _checkpoint_record(path: Path) -> dict[str, Any] | None:
    """The run settings a checkpoint records (None: no checkpoint, or one that cannot be read)."""
    if not path.is_file():
        return None
    try:
        record = load_checkpoint(path).get("run_settings")
    except (ConfigError, AttributeError):
        return None
    return record if isinstance(record, dict) else None
