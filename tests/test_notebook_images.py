"""Stored notebook figures are small previews (``geoloc notebooks record`` downscales them); the
full-resolution figures are in reports/figures/ and the executed notebooks in reports/executed/."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from geoloc_lib.pipeline.record import STORED_IMAGE_WIDTH, shrink_images, shrink_png

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_IMAGE_BYTES = 250_000  # per stored PNG


def _images(nb) -> list[bytes]:
    return [
        base64.b64decode(o["data"]["image/png"])
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


def _png(width: int, height: int) -> bytes:
    image = Image.effect_noise((width, height), 60).convert("RGBA")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_images_are_small(path):
    nb = nbformat.read(path, as_version=4)
    for data in _images(nb):
        image = Image.open(io.BytesIO(data))
        assert image.width <= STORED_IMAGE_WIDTH, f"{path.name}: a {image.size} image is stored"
        assert len(data) <= MAX_IMAGE_BYTES, f"{path.name}: a stored image has {len(data)} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_says_where_its_reported_outputs_are(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    assert f"reports/executed/{path.name}" in first.source


def test_shrinking_keeps_the_outputs_and_is_idempotent():
    big = _png(1200, 600)
    small = shrink_png(big)
    image = Image.open(io.BytesIO(small))
    assert image.size == (STORED_IMAGE_WIDTH, 240) and len(small) < len(big)
    assert shrink_png(small) == small
    encoded = base64.b64encode(big).decode("ascii")
    nb = nbformat.v4.new_notebook()
    outputs = [
        nbformat.v4.new_output("display_data", {"image/png": encoded, "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", text="done\n"),
    ]
    nb.cells.append(nbformat.v4.new_code_cell("show()", outputs=outputs))
    assert shrink_images(nb) == 1 and shrink_images(nb) == 0
    stored = nb.cells[0].outputs
    assert len(stored) == 2 and stored[0].data["text/plain"] == "<Figure>"
    assert Image.open(io.BytesIO(base64.b64decode(stored[0].data["image/png"]))).width == 480
    nbformat.validate(nb)
