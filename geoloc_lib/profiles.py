"""Run profiles: one reviewed file (``configs/profiles.yaml``) holding every notebook's parameters.

A profile maps each numbered notebook to the full set of its parameters. The
parameters a notebook accepts are read from its ``parameters``-tagged cell, so
a profile that names an unknown parameter, or forgets one, is rejected before
anything runs.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geoloc_lib.errors import ConfigError, choices_message
from geoloc_lib.paths import NOTEBOOKS_DIR, PROFILES_FILE

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def load_profiles(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    path = Path(path) if path is not None else PROFILES_FILE
    with Path(path).open() as fh:
        profiles = yaml.safe_load(fh)
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


@dataclass
class ResolvedRun:
    notebook: Path
    parameters: dict[str, Any]


def _matches(notebook: Path, selector: str) -> bool:
    return notebook.stem == selector or notebook.name[:2] == selector


def resolve_profile(
    profile: str,
    only: list[str] | None = None,
    overrides: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    profiles: dict[str, dict[str, Any]] | None = None,
) -> list[ResolvedRun]:
    """Check a profile against the notebooks and return what to run, in order."""
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
    if only:
        unknown = [s for s in only if not any(_matches(nb, s) for nb in notebooks)]
        if unknown:
            raise ConfigError(
                choices_message("notebook", unknown[0], [nb.name[:2] for nb in notebooks])
            )
        notebooks = [nb for nb in notebooks if any(_matches(nb, s) for s in only)]

    parsed = [parse_override(o) for o in overrides or []]
    runs = []
    for nb in notebooks:
        defaults = notebook_parameters(nb)
        if nb.stem not in spec:
            raise ConfigError(f"profile {profile!r} has no section for notebook {nb.stem!r}")
        params = dict(spec[nb.stem] or {})
        unknown = set(params) - set(defaults)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"profile {profile!r}, notebook {nb.stem}: "
                + choices_message("parameter", key, defaults)
            )
        missing = set(defaults) - set(params)
        if missing:
            raise ConfigError(
                f"profile {profile!r}, notebook {nb.stem}: missing parameters {sorted(missing)} "
                f"(every profile lists every parameter; edit {PROFILES_FILE.name})"
            )
        runs.append(ResolvedRun(notebook=nb, parameters=params))

    for target, key, value in parsed:
        hit = False
        for run in runs:
            if target is not None and not _matches(run.notebook, target):
                continue
            if key in run.parameters:
                run.parameters[key] = value
                hit = True
        if not hit:
            valid = sorted({k for r in runs for k in r.parameters})
            where = f"notebook {target}" if target else "the selected notebooks"
            raise ConfigError(f"--set: {choices_message('parameter', key, valid)} (in {where})")
    return runs
