"""Checks behind ``geoloc run --dry-run``: every configuration resolves without running anything.

Each check looks at the resolved parameters of one notebook; paths resolve as the notebook will
read them (relative to its folder, ``notebooks/``; ``--set`` paths are already absolute).

- Tasks: the ``tasks`` parameter (``drone`` and/or ``street``) decides which datasets and
  models a notebook uses; a task left out is reported (``street task skipped: tasks=['drone']``)
  and its root, models and runs are not checked.
- Data: with ``dataset="real"``, every root the notebook needs (University-1652 for the
  drone->satellite models, the street root for the street models, each only when its task is
  in ``tasks``; the roots of ``tasks`` for the notebooks that take no model list) must exist and
  pass a quick layout check (the folders the loaders need, nothing opened: ``geoloc data
  verify`` checks the contents); so must a given University160k-WX root (``wx_root``, notebook
  02's challenge answer). A failure raises :class:`ConfigError` naming the ``--set``
  that fixes it. GeoSynth roots are only reported: notebook 00 generates them.
- Weights: every file the ``weights`` parameter names must exist (relative paths resolve
  against ``notebooks/``).
- Models: every model a training notebook trains is built on the meta device, with the local
  weight files its ``overrides`` and ``weights`` name; the notebooks that train variants (no
  model list) build each model of their tasks that ``weights`` names, with its files.
"""

from __future__ import annotations

from pathlib import Path

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.paths import absolute_paths
from geoloc_lib.data.sources import TASK_NAMES, TASK_ROOTS, resolve_sources, skip_note
from geoloc_lib.pipeline.profiles import ResolvedRun
from geoloc_lib.training.runs import (
    TASKS,
    check_config,
    check_model,
    model_task,
    with_weights,
)

DRONE, STREET = "university_root", "street_root"
WX, WX_DATASET = "wx_root", "university160k_wx"  # notebook 02's challenge test set


def _tasks(params: dict) -> tuple[str, ...]:
    """The tasks the notebook runs (both for a notebook without the ``tasks`` parameter)."""
    tasks = params.get("tasks")
    return tuple(tasks) if isinstance(tasks, list | tuple) else TASK_NAMES


def _needed_roots(params: dict) -> set[str]:
    """The root parameters the notebook reads: by its models or runs within ``tasks``, else the
    roots of ``tasks`` (without that parameter: every given root)."""
    by_tasks = {TASK_ROOTS[t] for t in _tasks(params)}
    by_models = _roots_of_models(params)
    if by_models is None:
        if "tasks" in params:
            return by_tasks
        return {key for key in (DRONE, STREET) if params.get(key)} or {DRONE}
    return by_models & by_tasks


def _roots_of_models(params: dict) -> set[str] | None:
    """The roots of the models or runs the notebook names (None: it names none)."""
    names: list[str] = []
    if isinstance(params.get("models"), list):
        names = [TASKS[m] for m in params["models"] if m in TASKS]
    elif "drone_runs" in params or "street_runs" in params:
        names = ["drone"] * bool(params.get("drone_runs")) + ["street"] * bool(
            params.get("street_runs")
        )
    elif "drone_run" in params or "street_run" in params:
        names = ["drone"] * bool(params.get("drone_run")) + ["street"] * bool(
            params.get("street_run")
        )
    else:
        return None
    return {DRONE if str(task).startswith("drone") else STREET for task in names}


def _manifest_layout(dataset: str) -> list[tuple[str, str]]:
    """``(path, kind)`` of the manifest's layout entry for ``dataset``."""
    from geoloc_lib.data.verify import load_manifest

    entry = load_manifest().get(dataset, {})
    return [(str(item["path"]), item.get("kind", "dir")) for item in entry.get("layout", [])]


def layout_problem(key: str, root: Path, street_format: str = "cvact") -> str | None:
    """Why ``root`` cannot be the dataset of parameter ``key`` (quick: folders and files only)."""
    from geoloc_lib.data.university import REQUIRED_SETS

    if not root.exists():
        return f"folder {root} not found"
    if not root.is_dir():
        return f"{root} is a file, not a dataset folder"
    if key == DRONE:
        expected = [(s, "dir") for s in REQUIRED_SETS]
        layout = "University-1652 layout: train/ and test/ with <id>/ folders"
    else:
        name = WX_DATASET if key == WX else street_format
        expected = _manifest_layout(name)
        label = "University160k-WX" if key == WX else street_format.upper()
        layout = f"{label} layout, data_manifest.yaml entry '{name}'"
    missing = [
        rel
        for rel, kind in expected
        if not ((root / rel).is_file() if kind == "file" else (root / rel).is_dir())
    ]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        )
        return f"{root} lacks {shown} ({layout})"
    if key == DRONE:
        empty = [s for s in REQUIRED_SETS if not any(p.is_dir() for p in (root / s).iterdir())]
        if empty:
            return f"{root / empty[0]} holds no <id>/ folders ({layout})"
    return None


def _where(root: str | Path, base: Path) -> Path:
    root = Path(root).expanduser()
    return root if root.is_absolute() else (base / root).resolve()


def _data_checks(params: dict, base: Path) -> list[str]:
    if "dataset" not in params:
        return []
    sources = resolve_sources(
        params["dataset"],
        params.get("data_root", ""),
        params.get(DRONE, ""),
        params.get(STREET, ""),
        params.get("street_format", "cvact"),
    )
    roots = {DRONE: sources.university_root, STREET: sources.street_root}
    if params["dataset"] != "real":
        notes = []
        for label, key in (("University-1652", DRONE), ("street", STREET)):
            if roots[key] is None:
                continue
            state = "present" if _where(roots[key], base).exists() else "absent (generated by 00)"
            notes.append(f"{label} root {roots[key]}: {state}")
        return notes
    notes, problems = [], []
    needed = _needed_roots(params)
    for key in (k for k in (DRONE, STREET) if k in needed):
        if roots[key] is None:
            task = next(t for t, root in TASK_ROOTS.items() if root == key)
            rest = [t for t in _tasks(params) if t != task]
            leave = f" or leave its task out (--set tasks=[{', '.join(rest)}])" if rest else ""
            problems.append(
                f"--set {key}=PATH: not given, and this notebook reads that dataset "
                f"({task} task){leave}"
            )
            continue
        where = _where(roots[key], base)
        problem = layout_problem(key, where, sources.street_format)
        if problem:
            problems.append(f"--set {key}=PATH: {problem}")
        else:
            notes.append(f"{key} {where}: layout OK")
    if problems:
        raise ConfigError("dataset='real' needs data it cannot find:\n  " + "\n  ".join(problems))
    return notes


def _wx_checks(params: dict, base: Path) -> list[str]:
    """A given University160k-WX root (``wx_root``) has the challenge's layout (drone task)."""
    if not params.get(WX) or "drone" not in _tasks(params):
        return []
    where = _where(params[WX], base)
    problem = layout_problem(WX, where)
    if problem:
        raise ConfigError(f"--set {WX}=PATH: {problem} (or --set {WX}= for no challenge answer)")
    return [f"{WX} {where}: layout OK"]


def _weight_checks(params: dict, base: Path) -> list[str]:
    """Every file of the ``weights`` parameter exists (relative: to the notebook's folder)."""
    weights = absolute_paths("weights", params.get("weights") or {}, base)
    notes, problems = [], []
    for model, parts in weights.items():
        for key, path in parts.items():
            if Path(path).expanduser().is_file():
                notes.append(f"weights {model}.{key} {path}: found")
            else:
                problems.append(f"--set weights: {model}.{key}: file {path} not found")
    if problems:
        raise ConfigError("weights names files it cannot find:\n  " + "\n  ".join(problems))
    return notes


def _model_checks(params: dict, base: Path) -> list[str]:
    """Build (on the meta device) every model a training notebook's parameters name, within
    ``tasks``, with its weight files; a notebook without a model list (the ablation and seed
    grids) builds the models of its tasks that ``weights`` names."""
    if "preset" not in params or ("models" not in params and "weights" not in params):
        return []
    tasks = _tasks(params)
    # weight files named in the profile are relative to the notebook's folder, as it reads them
    weights = absolute_paths("weights", params.get("weights") or {}, base)
    if "models" not in params:
        models = [m for m in weights if model_task(m) in tasks]
        return [check_config(m, params["preset"], with_weights(m, {}, weights)) for m in models]
    overrides = absolute_paths("overrides", params.get("overrides") or {}, base)
    for name in overrides:
        check_model(name)
    models = [m for m in params["models"] if model_task(m) in tasks]
    return [
        check_config(m, params["preset"], with_weights(m, overrides.get(m), weights))
        for m in models
    ]


def check_run(run: ResolvedRun, profile: str) -> list[str]:
    """Raise on an invalid configuration; return notes on what was checked."""
    base = run.notebook.parent
    params = run.parameters
    skipped = [skip_note(t, params["tasks"]) for t in TASK_NAMES if t not in _tasks(params)]
    try:
        return (
            skipped
            + _data_checks(params, base)
            + _wx_checks(params, base)
            + _weight_checks(params, base)
            + _model_checks(params, base)
        )
    except ConfigError as err:
        raise ConfigError(f"profile {profile!r}, notebook {run.notebook.stem}: {err}") from err
