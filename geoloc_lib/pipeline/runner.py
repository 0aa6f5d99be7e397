"""``geoloc run``: execute the numbered notebooks with papermill for a profile.

Executed copies go to the profile's ``reports_dir``/``executed/`` (``reports/executed/`` for
``default`` and ``claims``, ``reports/smoke/executed/`` for ``smoke``) unless ``--out`` names
another folder; ``notebooks/`` is never written. Every folder a run writes must be geoloc's
(it carries a ``.geoloc`` marker, or is the repository's own ``reports/`` or ``runs/``), new or
empty; ``--force`` accepts a folder of someone else. A run that wrote the repository's
``reports/`` rewrites the results block of ``README.md`` from its tables
(:mod:`geoloc_lib.pipeline.readme`).
On failure the command exits with status 1 naming the notebook and the cell; a usage error
(bad flag, unknown profile, bad ``--set``, missing data in a dry run) exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from geoloc_lib.core.errors import ConfigError, GeolocError
from geoloc_lib.core.outputs import claim_output_dir, output_dir_problem
from geoloc_lib.core.paths import NOTEBOOKS_DIR, REPO_ROOT, REPORTS_DIR
from geoloc_lib.pipeline.profiles import ResolvedRun, resolve_profile
from geoloc_lib.pipeline.readme import README_FILE, update_readme
from geoloc_lib.pipeline.reports_index import write_reports_index

KERNEL = "python3"


class NotebookFailed(GeolocError):
    """A notebook raised; the message names the notebook and the failing cell."""

    exit_status = 1  # a runtime failure, not a usage error (geoloc_lib.pipeline.cli)


def _kernel_env() -> None:
    # With MPLBACKEND=Agg in the environment, executed notebooks capture no
    # figures; the notebooks display saved PNGs, but keep the kernel's default.
    os.environ.pop("MPLBACKEND", None)


def _failing_cell(output: Path) -> str:
    """Find the cell that raised in papermill's output notebook (index and first line)."""
    import nbformat

    try:
        nb = nbformat.read(output, as_version=4)
    except Exception:  # the output may be unreadable if the kernel died mid-write
        return "unknown cell"
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            return (
                f"code cell {code_index} (execution count {cell.get('execution_count')}): {first!r}"
            )
    return "unknown cell"


def kernel_transport(socket_dir: str) -> dict[str, Any]:
    """Kernel options for papermill or nbclient: on POSIX the kernel talks to papermill over local IPC sockets
    in ``socket_dir`` instead of TCP on localhost (ipykernel warns on every start that TCP is
    unencrypted; IPC sockets are reachable by this user only). Elsewhere: TCP, as before."""
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc", "ip": f"{socket_dir}/k"}})}


def execute(run: ResolvedRun, out_dir: Path, progress: bool = True) -> Path:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / run.notebook.name
    try:
        with tempfile.TemporaryDirectory(prefix="geoloc-kernel-") as sockets:
            pm.execute_notebook(
                str(run.notebook),
                str(output),
                parameters=run.parameters,
                kernel_name=KERNEL,
                cwd=str(run.notebook.parent),
                progress_bar=progress,
                request_save_on_cell_execute=True,
                **kernel_transport(sockets),
            )
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"notebook {run.notebook.name} failed in {_failing_cell(output)}: "
            f"{err.ename}: {err.evalue}\n  executed copy with the traceback: {output}"
        ) from err
    _stable_metadata(output)
    return output


def _stable_metadata(output: Path) -> None:
    """Drop what differs between identical reruns: timestamps, durations, this machine's paths.

    The committed executed notebooks then change only when results change.
    """
    import nbformat

    nb = nbformat.read(output, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration"):
        meta.pop(key, None)
    for key in ("input_path", "output_path"):
        if meta.get(key):
            path = Path(meta[key]).resolve()
            meta[key] = (
                str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name
            )
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill draws a random id
    nbformat.write(nb, output)


def run_pipeline(
    profile: str,
    only: list[str] | None = None,
    overrides: list[str] | None = None,
    dry_run: bool = False,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    out_dir: Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> list[Path]:
    """Execute the profile's notebooks; returns the executed copies.

    Every folder the notebooks write (``reports_dir``, ``runs_dir``, the executed copies'
    folder) must be geoloc's, new or empty (:mod:`geoloc_lib.core.outputs`); ``force`` accepts
    a folder of someone else (it is marked). ``data_root`` of GeoSynth may not be empty, the
    repository root or ``notebooks/``. These are checked before anything runs, also by
    ``dry_run``.
    """
    runs = resolve_profile(profile, only=only, overrides=overrides, notebooks_dir=notebooks_dir)
    reports_dirs = sorted(
        {r.parameters["reports_dir"] for r in runs if "reports_dir" in r.parameters}
    )
    out_dir_given = out_dir is not None
    if out_dir is None:
        out_dir = _executed_dir(profile, reports_dirs, notebooks_dir)
    folders = _output_folders(runs, notebooks_dir, out_dir, given=out_dir_given)
    for path, what, _kind in folders:
        problem = output_dir_problem(path, what, force=force, protected=(notebooks_dir,))
        if problem:
            raise ConfigError(problem)
    _check_data_roots(runs, notebooks_dir)
    if dry_run:
        from geoloc_lib.pipeline.dry_run import check_run

        for run in runs:
            notes = check_run(run, profile)
            print(f"[dry-run] {run.notebook.name}: {len(run.parameters)} parameters resolved")
            for key in sorted(run.parameters):
                print(f"    {key} = {run.parameters[key]!r}")
            for note in notes:
                print(f"    check: {note}")
        print(f"[dry-run] profile {profile!r}: {len(runs)} notebook(s) resolve; nothing executed")
        return []
    for path, what, kind in folders:
        claim_output_dir(path, what, kind=kind, force=force, protected=(notebooks_dir,))
    _kernel_env()
    outputs = []
    total = time.perf_counter()
    for i, run in enumerate(runs, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(runs)}] {run.notebook.name} (profile {profile})", flush=True)
        outputs.append(execute(run, out_dir, progress=progress))
        print(f"[{i}/{len(runs)}] {run.notebook.name} done in {time.perf_counter() - start:.1f} s")
    print(f"all {len(runs)} notebook(s) done in {time.perf_counter() - total:.1f} s; see {out_dir}")
    for reports_dir in reports_dirs:
        ran = [r.notebook.name[:2] for r in runs if r.parameters.get("reports_dir") == reports_dir]
        index = write_reports_index(notebooks_dir / reports_dir, profile, notebooks=ran)
        print(f"reports index: {os.path.relpath(index, REPO_ROOT)}")
    refresh_readme([notebooks_dir / d for d in reports_dirs])
    return outputs


def refresh_readme(
    written: list[Path], readme: Path = README_FILE, reports: Path = REPORTS_DIR
) -> bool:
    """Rewrite the README's results block when the run wrote ``reports`` (the repository's
    ``reports/``); a run whose reports went elsewhere (``reports/smoke``, a user's folder) leaves
    it alone. A README without the block is reported, not an error: the run itself succeeded.
    Returns whether the README changed."""
    if not any(Path(w).resolve() == Path(reports).resolve() for w in written):
        return False
    try:
        changed = update_readme(readme, reports)
    except ConfigError as err:
        print(f"README results block not rewritten: {err}")
        return False
    if changed:
        print(f"README results block rewritten from {os.path.relpath(reports, REPO_ROOT)}/tables")
    return changed


def _shown(value: object) -> str:
    """A path parameter as the notebooks read it: absolute (given with --set), or relative to
    notebooks/ (written in the profile)."""
    if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
        return f"{value!r}, relative to notebooks/"
    return repr(value)


def _output_folders(
    runs: list[ResolvedRun], notebooks_dir: Path, out_dir: Path, given: bool
) -> list[tuple[Path | None, str, str]]:
    """(folder, description, marker kind) of every folder the run writes."""
    folders: list[tuple[Path | None, str, str]] = []
    seen = set()
    for run in runs:
        for key, kind in (("reports_dir", "reports"), ("runs_dir", "runs")):
            if key not in run.parameters or (key, run.parameters[key]) in seen:
                continue
            value = run.parameters[key]
            seen.add((key, value))
            path = (
                None if not isinstance(value, str) or not value.strip() else notebooks_dir / value
            )
            folders.append((path, f"parameter {key} ({_shown(value)})", kind))
    what = "--out folder" if given else "executed notebooks folder (reports_dir/executed)"
    folders.append((out_dir, what, "executed notebooks"))
    return folders


def _check_data_roots(runs: list[ResolvedRun], notebooks_dir: Path) -> None:
    """GeoSynth is generated into ``data_root``: never an empty path, the repository root or
    ``notebooks/`` (the generator itself keeps files it did not write)."""
    for run in runs:
        if run.parameters.get("dataset") != "geosynth" or "data_root" not in run.parameters:
            continue
        value = run.parameters["data_root"]
        path = None if not isinstance(value, str) or not value.strip() else notebooks_dir / value
        what = f"parameter data_root ({_shown(value)})"
        problem = output_dir_problem(path, what, force=True, protected=(notebooks_dir,))
        if problem:
            raise ConfigError(f"notebook {run.notebook.stem}: {problem}")


def _executed_dir(profile: str, reports_dirs: list[str], notebooks_dir: Path) -> Path:
    """The executed notebooks go beside the profile's reports, so one profile never overwrites
    another's (``smoke`` would otherwise replace the committed ``reports/executed/``)."""
    if len(reports_dirs) > 1:
        raise ConfigError(
            f"profile {profile!r} writes to several reports_dir ({', '.join(reports_dirs)}); "
            "pass --out to say where the executed notebooks go"
        )
    if not reports_dirs:
        raise ConfigError(
            f"profile {profile!r} sets no reports_dir for the notebooks it runs; "
            "pass --out to say where the executed notebooks go"
        )
    return (notebooks_dir / reports_dirs[0] / "executed").resolve()


def main(args: argparse.Namespace) -> int:
    only = args.only  # a list (ListAction): --only 00 02 or --only 00,02
    if only is not None and not only:
        raise ConfigError(
            "--only names no notebook; pass notebook numbers or names, e.g. --only 00 02 "
            "(leave --only out to run them all)"
        )
    run_pipeline(
        args.profile,
        only=only,
        overrides=args.overrides,
        dry_run=args.dry_run,
        out_dir=Path(args.out) if args.out else None,
        progress=not args.no_progress and sys.stderr.isatty(),
        force=args.force,
    )
    return 0
