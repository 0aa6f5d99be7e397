"""Folders and files geoloc may write: its own, new or empty ones; never a user's files.

A folder is geoloc's when geoloc created it, when it was empty when geoloc first wrote into it,
or when the user said so (``--force``): such a folder carries a marker file, :data:`MARKER`
(``.geoloc``), a short JSON object ``{"written_by": "geoloc", "kind": ..., "note": ...}``.
A folder inside a marked folder is geoloc's too, and so are the repository's own ``reports/``
and ``runs/`` folders and everything below them (the profiles' default outputs).

Never written, even with ``--force``: an empty path, the repository root or a folder above it,
and the ``notebooks/`` folder (or a folder inside it).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.paths import NOTEBOOKS_DIR, REPO_ROOT

MARKER = ".geoloc"
# The fix named where no --force flag is at hand (library calls, notebooks).
LIBRARY_FIX = f"create an empty {MARKER} file in it to let geoloc write there"
# The repository's folders that hold only what geoloc writes (reports/ is committed).
OWN_FOLDERS = (REPO_ROOT / "reports", REPO_ROOT / "runs")


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def marker_text(kind: str) -> str:
    return (
        json.dumps(
            {
                "written_by": "geoloc",
                "kind": kind,
                "note": "geoloc writes into this folder; delete this file to stop it",
            },
            indent=1,
        )
        + "\n"
    )


def is_geoloc_folder(path: str | Path) -> bool:
    """Whether ``path`` (a folder) is geoloc's: marked, inside a marked folder, or one of the
    repository's own output folders."""
    path = Path(path).resolve()
    if any(_within(path, own) for own in OWN_FOLDERS):
        return True
    return any((p / MARKER).is_file() for p in (path, *path.parents))


def _refused(path: Path, protected: tuple[Path, ...]) -> str | None:
    """Why ``path`` may never be written (even with --force), or None."""
    if path == REPO_ROOT or path in REPO_ROOT.parents:
        return "is the repository root (or a folder above it)"
    for folder in (NOTEBOOKS_DIR, *protected):
        if _within(path, folder.resolve()):
            return f"is inside the notebooks folder {folder.resolve()}"
    return None


def output_dir_problem(
    path: str | Path | None,
    what: str,
    *,
    force: bool = False,
    protected: tuple[Path, ...] = (),
    fix: str = "pass --force to write into it anyway",
) -> str | None:
    """Why geoloc must not write into folder ``path`` (None when it may). Nothing is written."""
    if path is None or str(path).strip() == "":
        return f"{what} is an empty path; name a folder for geoloc's output (a new or empty one)"
    resolved = Path(path).expanduser().resolve()
    refused = _refused(resolved, protected)
    if refused:
        return f"{what} {resolved} {refused}; geoloc never writes there: name a new or empty folder"
    if resolved.exists() and not resolved.is_dir():
        return f"{what} {resolved} is a file; name a folder"
    if is_geoloc_folder(resolved) or force:
        return None
    if resolved.is_dir() and any(resolved.iterdir()):
        return (
            f"{what} {resolved} holds files geoloc did not write (it has no {MARKER} marker "
            f"file); name a new or empty folder, or {fix}"
        )
    return None


def claim_output_dir(
    path: str | Path | None,
    what: str,
    *,
    kind: str = "output",
    force: bool = False,
    protected: tuple[Path, ...] = (),
    fix: str = "pass --force to write into it anyway",
) -> Path:
    """Create or accept folder ``path`` for geoloc's output and return it (resolved).

    New and empty folders get the :data:`MARKER` file; a folder of someone else is a
    :class:`ConfigError` naming it and the fix (``force`` marks it and goes on).
    """
    problem = output_dir_problem(path, what, force=force, protected=protected, fix=fix)
    if problem:
        raise ConfigError(problem)
    resolved = Path(path).expanduser().resolve()  # type: ignore[arg-type]
    if not is_geoloc_folder(resolved):
        resolved.mkdir(parents=True, exist_ok=True)
        (resolved / MARKER).write_text(marker_text(kind))
    else:
        resolved.mkdir(parents=True, exist_ok=True)
    return resolved


def is_answer_zip(path: Path) -> bool:
    """Whether ``path`` is an answer archive as geoloc writes it (a zip holding answer.txt only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist() == ["answer.txt"]
    except (OSError, zipfile.BadZipFile):
        return False
