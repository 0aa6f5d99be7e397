"""``geoloc notebooks record``: re-execute ``notebooks/`` in place at the smoke profile.

The committed notebooks carry smoke-profile outputs; nbval in ``make test``
re-executes them and compares (cells printing trained numbers are tagged
``nbval-ignore-output``; their tables are compared within tolerances by
tests/test_smoke_results.py against tests/smoke_reference/tables/, which this
command records too). After an intended change of results, this command
refreshes those references. The parameters cell of each notebook
must equal the smoke profile (checked here and by tests/test_profiles.py), so
a notebook opened in JupyterLab runs the fast configuration out of the box.

Stored figures are downscaled (:func:`shrink_images`): nbval ignores image data, a reader of
the notebook only needs to see the figure, and the full-resolution figures are in
``reports/figures/`` and the executed notebooks in ``reports/executed/``.
"""

from __future__ import annotations

import argparse
import base64
import io
import shutil
import tempfile
import time
from typing import Any

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.paths import NOTEBOOKS_DIR, REPO_ROOT, REPORTS_DIR
from geoloc_lib.pipeline.profiles import notebook_parameters, resolve_profile
from geoloc_lib.pipeline.runner import KERNEL, _kernel_env, kernel_transport

REFERENCE_TABLES_DIR = REPO_ROOT / "tests" / "smoke_reference" / "tables"
# Stored notebook figures: at most this wide (px), on an adaptive palette of this many colours.
STORED_IMAGE_WIDTH = 480
STORED_IMAGE_COLOURS = 256


def shrink_png(data: bytes, max_width: int = STORED_IMAGE_WIDTH) -> bytes:
    """``data`` (a PNG) at most ``max_width`` pixels wide, flattened on white and stored on an
    adaptive palette; an image already that narrow is returned unchanged (shrinking twice gives
    the same bytes)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.width <= max_width:
        return data
    height = max(1, round(image.height * max_width / image.width))
    rgba = image.convert("RGBA").resize((max_width, height), Image.Resampling.LANCZOS)
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    small = flat.quantize(colors=STORED_IMAGE_COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def shrink_images(nb: Any, max_width: int = STORED_IMAGE_WIDTH) -> int:
    """Downscale every ``image/png`` output of the notebook ``nb`` in place (see
    :func:`shrink_png`); the outputs themselves (their number, types and text) stay as they are.
    Returns the number of images changed."""
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            raw = base64.b64decode(data["image/png"])
            small = shrink_png(raw, max_width)
            if small != raw:
                data["image/png"] = base64.b64encode(small).decode("ascii")
                output.get("metadata", {}).pop("image/png", None)  # its recorded width/height
                changed += 1
    return changed


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
        shrink_images(nb)
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
