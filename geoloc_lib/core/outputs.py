"""Folders and files geoloc may write: its own, new or empty ones; never a user's files.

A folder is geoloc's when geoloc created it, when it was empty when geoloc first wrote into it,
or when the user said so (``--force``): such a folder carries a marker file, :data:`MARKER`
(``.geoloc``), a short JSON object ``{"written_by": "geoloc", "kind": ..., "note": ...}``.
A folder inside a marked folder is geoloc's too, and so are the repository's own ``reports/``
and ``runs/`` folders and everything below them (the profiles' default outputs).

Never written, even with ``--force``: an empty path, the repository root or a folder above it,
and the ``notebooks/`` folder (or a folder inside it).

A single output file (``--csv FILE``) is geoloc's when geoloc recognises it as one it writes:
a table whose header row begins with the command's own columns (:func:`is_table_csv`), an
answer archive (:func:`is_answer_zip`). Any other existing file is replaced only with
``--force``; a file inside ``notebooks/`` never.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Sequence
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


def is_table_csv(path: Path, columns: Sequence[str]) -> bool:
    """Whether ``path`` is a CSV table whose header row begins with ``columns`` (a table a
    geoloc command with those leading columns wrote; later columns may differ)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return bool(columns) and header[: len(columns)] == list(columns)


def claim_output_file(
    path: str | Path | None,
    what: str,
    *,
    columns: Sequence[str],
    force: bool = False,
    fix: str = "pass --force to replace it",
) -> Path:
    """Accept ``path`` for a CSV table geoloc writes with leading ``columns``; create its folder.

    Refused (a :class:`ConfigError` naming the path and the fix): an empty path, a folder, a
    file inside ``notebooks/``, and an existing file that is not such a table (``force``
    accepts it). Nothing is written but the missing folders.
    """
    if path is None or str(path).strip() == "":
        raise ConfigError(f"{what} is an empty path; name the CSV file to write, e.g. bench.csv")
    resolved = Path(path).expanduser().resolve()
    refused = _refused(resolved, ())
    if refused:
        raise ConfigError(f"{what} {resolved} {refused}; geoloc never writes there")
    if resolved.is_dir():
        raise ConfigError(f"{what} {resolved} is a folder; name the CSV file to write")
    if resolved.exists() and not force and not is_table_csv(resolved, columns):
        raise ConfigError(
            f"{what} {resolved} exists and is not a table geoloc wrote (its header does not "
            f"begin with {','.join(columns)}); name another file, or {fix}"
        )
    resolved.parent.mkdir(parents=True, exist_ok=True)
    return resolved


def is_answer_zip(path: Path) -> bool:
    """Whether ``path`` is an answer archive as geoloc writes it (a zip holding answer.txt only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist() == ["answer.txt"]
    except (OSError, zipfile.BadZipFile):
        return False
