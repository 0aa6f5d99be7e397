"""``geoloc notebooks record``: re-execute ``notebooks/`` in place at the smoke profile.

The committed notebooks carry smoke-profile outputs; nbval in ``make test``
re-executes them and compares (cells printing trained numbers are tagged
``nbval-ignore-output``; their tables are compared within tolerances by
tests/test_smoke_results.py against tests/smoke_reference/tables/, which this
command records too). After an intended change of results, this command
refreshes those references. The parameters cell of each notebook
must equal the smoke profile (checked here and by tests/test_profiles.py), so
a notebook opened in JupyterLab runs the fast configuration out of the box.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.paths import NOTEBOOKS_DIR, REPO_ROOT, REPORTS_DIR
from geoloc_lib.pipeline.profiles import notebook_parameters, resolve_profile
from geoloc_lib.pipeline.runner import KERNEL, _kernel_env, kernel_transport

REFERENCE_TABLES_DIR = REPO_ROOT / "tests" / "smoke_reference" / "tables"


def record_notebooks(only: list[str] | None = None, profile: str = "smoke") -> None:
    import nbformat
    from nbclient import NotebookClient

    runs = resolve_profile(profile, only=only)
    for run in runs:
        defaults = notebook_parameters(run.notebook)
        if defaults != run.parameters:
            diff = {
                k: (defaults.get(k), v) for k, v in run.parameters.items() if defaults.get(k) != v
            }
            raise ConfigError(
                f"{run.notebook.name}: parameters cell differs from profile {profile!r} "
                f"(notebook, profile): {diff}; make them equal first"
            )
    _kernel_env()
    for run in runs:
        start = time.perf_counter()
        nb = nbformat.read(run.notebook, as_version=4)
        with tempfile.TemporaryDirectory(prefix="geoloc-kernel-") as sockets:
            client = NotebookClient(
                nb,
                kernel_name=KERNEL,
                resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
                record_timing=False,  # timestamps would make every re-record a diff
                timeout=None,
                **kernel_transport(sockets),
            )
            client.execute()
        nb.metadata.pop("papermill", None)
        nbformat.write(nb, run.notebook)
        print(f"recorded {run.notebook.name} in {time.perf_counter() - start:.1f} s")
    if only is None and profile == "smoke":
        record_reference_tables()


def record_reference_tables() -> None:
    """Copy the smoke run's result tables to ``tests/smoke_reference/tables/``, the values that
    ``tests/test_smoke_results.py`` compares later runs with (within its tolerances)."""
    source = REPORTS_DIR / "smoke" / "tables"
    target = REFERENCE_TABLES_DIR
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.csv"):
        old.unlink()  # a table the notebooks do not write must not linger as a reference
    for table in sorted(source.glob("*.csv")):
        shutil.copyfile(table, target / table.name)
    print(f"recorded {len(list(target.glob('*.csv')))} reference tables in {target}")


def main(args: argparse.Namespace) -> int:
    record_notebooks(args.only or None)
    return 0
