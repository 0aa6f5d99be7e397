"""Where the repository's own files are (the package is installed editable from the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORTS_DIR = REPO_ROOT / "reports"
PROFILES_FILE = REPO_ROOT / "configs" / "profiles.yaml"
MANIFEST_FILE = REPO_ROOT / "data_manifest.yaml"

# Parameters whose value is a path, recognised by name wherever they appear (notebook
# parameters, ``--set`` values, model-config fields nested in ``overrides`` and ``weights``).
PATH_PARAMETER_SUFFIXES = ("_root", "_dir", "_file")


def is_path_parameter(name: str) -> bool:
    """Whether the parameter ``name`` holds a path (``data_root``, ``runs_dir``, ``*_file``...)."""
    return isinstance(name, str) and name.endswith(PATH_PARAMETER_SUFFIXES)


def absolute_from(value: object, cwd: str | Path) -> object:
    """A relative path string made absolute against ``cwd`` (``~`` expanded); an absolute path
    is kept, and so are ``""`` (not given), ``None`` and values that are not strings."""
    if not isinstance(value, str) or value == "":
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else Path(os.path.abspath(Path(cwd) / path)))


def absolute_paths(name: str, value: object, cwd: str | Path) -> object:
    """``value`` of the parameter ``name`` with every path in it made absolute against ``cwd``:
    the value itself when ``name`` is a path parameter, and the path-named entries of nested
    mappings (``overrides={mcgf: {encoder_pretrained_file: PATH}}``, the same in ``weights``)."""
    if isinstance(value, dict):
        return {k: absolute_paths(str(k), v, cwd) for k, v in value.items()}
    return absolute_from(value, cwd) if is_path_parameter(name) else value


def repo_relative(path: str | Path) -> str:
    """``path`` (relative to the working folder, or absolute) relative to the repository when it
    lies inside it, else absolute: how records name data and weights portably."""
    resolved = Path(path).expanduser().resolve()
    return (
        str(resolved.relative_to(REPO_ROOT))
        if resolved.is_relative_to(REPO_ROOT)
        else str(resolved)
    )
