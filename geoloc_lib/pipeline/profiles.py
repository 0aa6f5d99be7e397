"""Run profiles: one reviewed file (``configs/profiles.yaml``) holding every notebook's parameters.

A profile states its shared parameters once (``shared``: the dataset, the roots, the run and
report folders, ...: each goes to every notebook whose ``parameters`` cell has it) and each
numbered notebook's own parameters under ``notebooks`` (a notebook's value wins over a shared
one). The parameters a notebook accepts are read from its ``parameters``-tagged cell, so a
profile that names an unknown parameter, or forgets one, is rejected before anything runs.

Paths: a path-valued parameter (by name, :func:`geoloc_lib.core.paths.is_path_parameter`:
``*_root``, ``*_dir``, ``*_file``, also inside ``overrides`` and ``weights``) written in the
profiles file is relative to ``notebooks/`` (papermill runs the notebooks there); one given with
``--set`` is relative to the caller's working folder and is passed to the notebook as an
absolute path.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.paths import NOTEBOOKS_DIR, PROFILES_FILE, absolute_paths

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def load_profiles(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    path = Path(path) if path is not None else PROFILES_FILE
    if not path.is_file():
        raise ConfigError(
            f"profiles file {path} not found; restore it (git checkout -- configs/profiles.yaml) "
            "or run from a complete checkout of the repository"
        )
    try:
        with Path(path).open() as fh:
            profiles = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "invalid YAML"
        raise ConfigError(f"profiles file {path} is not valid YAML ({first}); fix it") from None
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path} must map profile names to notebook parameters")
    return profiles


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in run order."""
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Default values of the notebook's ``parameters`` cell (literal assignments only)."""
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(
            f"{path.name} must have exactly one cell tagged 'parameters' (found {len(cells)})"
        )
    source = "".join(cells[0]["source"])
    params: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if not isinstance(target, ast.Name) or node.value is None:
                raise ConfigError(f"{path.name}: parameters cell may only assign plain names")
            try:
                params[target.id] = ast.literal_eval(node.value)
            except ValueError as err:
                raise ConfigError(
                    f"{path.name}: parameter {target.id!r} must be a literal (derived values "
                    "belong in a later cell)"
                ) from err
    return params


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """``[notebook.]key=value`` → (notebook stem or number or None, key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value or NN.key=value")
    lhs, value = text.split("=", 1)
    notebook, _, key = lhs.rpartition(".")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: cannot parse value: {err}") from err
    return (notebook or None), key, parsed


# ----------------------------------------------------------------------------- value checks

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _choices(*valid: str) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in valid:
            return None
        return f"expected one of {', '.join(valid)}"

    return check


def _int(low: int = 0, none: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if none and value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return None
        return f"expected an integer >= {low}" + (" or null" if none else "")

    return check


def _str_list(valid: tuple[str, ...] | None = None) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "expected a list of names"
        if valid is not None:
            bad = [v for v in value if v not in valid]
            if bad:
                return f"unknown name {bad[0]!r}; expected names from {', '.join(valid)}"
        if len(set(value)) != len(value):
            return "expected each name once"
        return None

    return check


def _model_map(inner: Any, example: str) -> Any:
    def check(value: Any) -> str | None:
        from geoloc_lib.training.runs import TASKS

        if not isinstance(value, dict):
            return f"expected a mapping from model names, e.g. --set '{example}'"
        for key, item in value.items():
            if key not in TASKS:
                return f"unknown model {key!r}; expected models from {', '.join(sorted(TASKS))}"
            problem = inner(item)
            if problem:
                return f"entry {key}: {problem}"
        return None

    return check


def _device(value: Any) -> str | None:
    if isinstance(value, str) and _DEVICE.match(value):
        return None
    return "expected auto, cpu, mps, cuda or cuda:N"


def _overrides(value: Any) -> str | None:
    """One model's overrides: sections ``model``, ``train``, ``run``, each a mapping (their keys
    are checked against the model when ``--dry-run`` resolves its preset)."""
    from geoloc_lib.training.recipes import OVERRIDE_SECTIONS

    example = "e.g. {model: {w_nce: 0.0}, train: {lr_head: 0.01}, run: {val_queries: 0}}"
    if not isinstance(value, dict):
        return f"expected a mapping of sections {', '.join(OVERRIDE_SECTIONS)}, {example}"
    for section, fields in value.items():
        if section not in OVERRIDE_SECTIONS:
            return (
                f"unknown section {section!r}; expected {', '.join(OVERRIDE_SECTIONS)} ({example})"
            )
        if not isinstance(fields, dict):
            return f"section {section}: expected a mapping of {OVERRIDE_SECTIONS[section]}"
    return None


def _int_list(value: Any) -> str | None:
    ok = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )
    return None if ok else "expected a list of integers"


def _seeds(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )
    if not ok or len(set(value)) != len(value):
        return "expected a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]"
    return None


def _tasks(value: Any) -> str | None:
    from geoloc_lib.data.sources import check_tasks

    try:
        check_tasks(value)
    except ConfigError as err:
        return str(err).removeprefix("parameter tasks: ")
    return None


def _weights(value: Any) -> str | None:
    from geoloc_lib.training.runs import check_weights

    try:
        check_weights(value)
    except ConfigError as err:
        return str(err).removeprefix("parameter weights").lstrip(":, ")
    return None


def _rules() -> dict[str, Any]:
    """Checks of the notebooks' parameters by name (the same name means the same thing)."""
    from geoloc_lib.data.geosynth.profiles import PROFILES
    from geoloc_lib.training.runs import TASKS
    from geoloc_lib.weather.synth import CONDITIONS

    models = tuple(sorted(TASKS))
    return {
        "dataset": _choices("geosynth", "real"),
        "geosynth_profile": _choices(*PROFILES),
        "street_format": _choices("cvact", "cvusa"),
        "preset": _choices("smoke", "default", "paper"),
        "seed": _int(0),
        "models": _str_list(models),
        "epochs": _model_map(_int(1), "epochs={geoviewmatch: 40}"),
        "overrides": _model_map(_overrides, "overrides={mcgf: {model: {w_nce: 0.0}}}"),
        "device": _device,
        "max_queries": _int(1, none=True),
        "gallery_views": _int(1, none=True),
        "figure_condition": _choices(*CONDITIONS, "mixed"),
        "figure_queries": _int(1),
        "n_examples": _int(1),
        "rotations": _int_list,
        "drone_runs": _str_list(),
        "street_runs": _str_list(),
        "seeds": _seeds,
        "parallel_runs": _int(1),
        "tasks": _tasks,
        "weights": _weights,
    }


def _type_problem(value: Any, default: Any) -> str | None:
    """A value of another type than the notebook's default (None accepts anything)."""
    if default is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if ok:
        return None
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return f"expected {kind.get(type(default), 'a ' + type(default).__name__)}"


def check_value(key: str, value: Any, default: Any) -> str | None:
    """Why ``value`` is not valid for the notebook parameter ``key`` (None when it is)."""
    rule = _rules().get(key)
    if rule is not None:
        return rule(value)
    return _type_problem(value, default)


@dataclass
class ResolvedRun:
    notebook: Path
    parameters: dict[str, Any]


def _matches(notebook: Path, selector: str) -> bool:
    return notebook.stem == selector or notebook.name[:2] == selector


def _profile_notebooks(profile: str, run: Any, notebooks: list[Path]) -> list[Path]:
    """The notebooks a profile runs: its ``run`` list (in run order), else all of them."""
    if run is None:
        return notebooks
    if not isinstance(run, list) or not run or not all(isinstance(r, str) for r in run):
        raise ConfigError(
            f"profile {profile!r}: `run` must be a non-empty list of notebook numbers or names, "
            f"e.g. [00_data_prep, 05_claims]; got {run!r}"
        )
    for r in run:
        if not any(_matches(nb, r) for nb in notebooks):
            raise ConfigError(
                f"profile {profile!r}, `run`: "
                + choices_message("notebook", r, [nb.stem for nb in notebooks])
            )
    return [nb for nb in notebooks if any(_matches(nb, r) for r in run)]


def resolve_profile(
    profile: str,
    only: list[str] | None = None,
    overrides: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    profiles: dict[str, dict[str, Any]] | None = None,
    cwd: str | Path | None = None,
) -> list[ResolvedRun]:
    """Check a profile against the notebooks and return what to run, in order.

    Relative paths in ``overrides`` (``--set``) resolve against ``cwd`` (default: the current
    working folder); those of the profiles file stay relative to ``notebooks/``."""
    profiles = profiles if profiles is not None else load_profiles()
    if profile not in profiles:
        raise ConfigError(choices_message("profile", profile, profiles))
    spec = profiles[profile].get("notebooks", {})
    notebooks = list_notebooks(notebooks_dir)
    if not notebooks:
        raise ConfigError(f"no numbered notebooks in {notebooks_dir}")
    stems = {nb.stem for nb in notebooks}
    extra = set(spec) - stems
    if extra:
        raise ConfigError(
            f"profile {profile!r} names notebooks that do not exist: {sorted(extra)}; "
            f"notebooks: {sorted(stems)}"
        )
    every = notebooks
    notebooks = _profile_notebooks(profile, profiles[profile].get("run"), notebooks)
    not_run = set(spec) - {nb.stem for nb in notebooks}
    if not_run:
        raise ConfigError(
            f"profile {profile!r} has a section for {sorted(not_run)} but does not run it; add "
            "it to the profile's `run` list or remove the section"
        )
    if only:
        unknown = [s for s in only if not any(_matches(nb, s) for nb in every)]
        if unknown:
            raise ConfigError(
                choices_message("notebook", unknown[0], [nb.name[:2] for nb in every])
            )
        skipped = [s for s in only if not any(_matches(nb, s) for nb in notebooks)]
        if skipped:
            raise ConfigError(
                f"--only {skipped[0]}: profile {profile!r} does not run that notebook (it runs "
                f"{', '.join(nb.name[:2] for nb in notebooks)}); pick a profile that runs it"
            )
        notebooks = [nb for nb in notebooks if any(_matches(nb, s) for s in only)]

    here = Path.cwd() if cwd is None else Path(cwd)
    parsed = [
        (target, key, absolute_paths(key, value, here))
        for target, key, value in (parse_override(o) for o in overrides or [])
    ]
    all_notebooks = list_notebooks(notebooks_dir)
    for (target, _key, _value), text in zip(parsed, overrides or [], strict=True):
        if target is not None and not any(_matches(nb, target) for nb in all_notebooks):
            raise ConfigError(
                f"--set {text!r}: no notebook {target}; notebooks: "
                + ", ".join(nb.name[:2] for nb in all_notebooks)
            )
        if target is not None and not any(_matches(nb, target) for nb in notebooks):
            raise ConfigError(
                f"--set {text!r}: notebook {target} is not among the selected notebooks "
                f"({', '.join(nb.name[:2] for nb in notebooks)}); select it with --only or drop "
                "the setting"
            )
    shared = dict(profiles[profile].get("shared") or {})
    if shared:
        accepted = {k for nb in all_notebooks for k in notebook_parameters(nb)}
        unused = sorted(set(shared) - accepted)
        if unused:
            raise ConfigError(
                f"profile {profile!r}: shared parameter {unused[0]!r} is a parameter of no "
                f"notebook; valid: {', '.join(sorted(accepted))}"
            )
    runs = []
    defaults_of: dict[Path, dict[str, Any]] = {}
    for nb in notebooks:
        defaults = defaults_of[nb] = notebook_parameters(nb)
        if nb.stem not in spec:
            raise ConfigError(f"profile {profile!r} has no section for notebook {nb.stem!r}")
        own = dict(spec[nb.stem] or {})
        unknown = set(own) - set(defaults)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"profile {profile!r}, notebook {nb.stem}: "
                + choices_message("parameter", key, defaults)
            )
        merged = {**{k: v for k, v in shared.items() if k in defaults}, **own}
        params = {k: merged[k] for k in defaults if k in merged}  # the notebook's order
        missing = set(defaults) - set(params)
        if missing:
            raise ConfigError(
                f"profile {profile!r}, notebook {nb.stem}: missing parameters {sorted(missing)} "
                f"(every profile gives every parameter, shared or per notebook; edit "
                f"{PROFILES_FILE.name})"
            )
        runs.append(ResolvedRun(notebook=nb, parameters=params))

    set_by: dict[tuple[Path, str], str] = {}
    for (target, key, value), text in zip(parsed, overrides or [], strict=True):
        hit = False
        for run in runs:
            if target is not None and not _matches(run.notebook, target):
                continue
            if key in run.parameters:
                run.parameters[key] = value
                set_by[(run.notebook, key)] = text
                hit = True
        if not hit:
            valid = sorted({k for r in runs for k in r.parameters})
            where = f"notebook {target}" if target else "the selected notebooks"
            raise ConfigError(f"--set: {choices_message('parameter', key, valid)} (in {where})")
    for run in runs:
        defaults = defaults_of[run.notebook]
        for key, value in run.parameters.items():
            problem = check_value(key, value, defaults.get(key))
            if problem:
                source = (
                    f"--set {set_by[(run.notebook, key)]!r}"
                    if (run.notebook, key) in set_by
                    else f"profile {profile!r} in {PROFILES_FILE.name}"
                )
                raise ConfigError(
                    f"{source}, notebook {run.notebook.stem}: parameter {key}: {problem}, "
                    f"got {value!r}"
                )
    return runs
