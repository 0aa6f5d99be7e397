"""``geoloc bench data`` on a tiny slice: the files it writes, the folders it refuses, and the
projection's arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from geoloc_lib.bench import data as B
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.pipeline.cli import main

TINY = dict(n=4, gallery_size=48, query_size=32)


def test_write_slice_writes_then_reuses(tmp_path):
    out = tmp_path / "slice"
    paths = B.write_slice(out, B.SliceSpec(**TINY, seed=3))
    assert [p.name for p in paths["query"]] == [f"{i:06d}.jpeg" for i in range(4)]
    assert [p.suffix for p in paths["gallery"]] == [".webp"] * 4
    with Image.open(paths["gallery"][0]) as im:
        assert (im.format, im.size) == ("WEBP", (48, 48))
    with Image.open(paths["query"][1]) as im:
        assert (im.format, im.size) == ("JPEG", (32, 32))
        assert np.asarray(im).std() > 5  # textured, not flat
    assert json.loads((out / B.MANIFEST).read_text())["n"] == 4
    assert not list(out.rglob("*.part"))
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.name != B.MANIFEST}
    paths["query"][2].unlink()  # an interrupted run: only the missing file is written again
    (out / "notes.txt").write_text("mine")  # a user's file in the folder is kept
    B.write_slice(out, B.SliceSpec(**TINY, seed=3))
    assert paths["query"][2].is_file() and (out / "notes.txt").read_text() == "mine"
    for p, t in stamps.items():
        if p != paths["query"][2]:
            assert p.stat().st_mtime_ns == t, p


def test_same_seed_same_pixels(tmp_path):
    a = B.write_slice(tmp_path / "a", B.SliceSpec(**TINY, seed=1))
    b = B.write_slice(tmp_path / "b", B.SliceSpec(**TINY, seed=1))
    assert a["gallery"][3].read_bytes() == b["gallery"][3].read_bytes()
    assert a["gallery"][3].read_bytes() != a["gallery"][2].read_bytes()


def test_refuses_a_foreign_or_different_folder(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match=r"--out .*photos.*not empty.*not written by"):
        B.write_slice(foreign, B.SliceSpec(**TINY))
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    ours = tmp_path / "ours"
    B.write_slice(ours, B.SliceSpec(**TINY, seed=0))
    with pytest.raises(ConfigError, match="seed: 0 there, 5 asked"):
        B.write_slice(ours, B.SliceSpec(**TINY, seed=5))
    with pytest.raises(ConfigError, match="--n"):
        B.write_slice(tmp_path / "new", B.SliceSpec(n=0))


def test_projection_arithmetic():
    counts = {"query": 1000, "gallery": 4000}
    decode = {"query": 50.0, "gallery": 20.0}
    # 2 workers: query decode 10 s vs model 10 s; gallery decode 100 s vs model 40 s
    t = B.project_eval_time(decode, 100.0, 2, counts)
    assert t == pytest.approx({"query": 10.0, "gallery": 100.0, "total": 110.0})
    # 8 workers: the model limits both views
    t = B.project_eval_time(decode, 100.0, 8, counts)
    assert t == pytest.approx({"query": 10.0, "gallery": 40.0, "total": 50.0})
    # 0 workers: the main process decodes, then embeds
    t = B.project_eval_time(decode, 100.0, 0, counts)
    assert t == pytest.approx({"query": 30.0, "gallery": 240.0, "total": 270.0})
    full = B.project_eval_time({"query": 1.0, "gallery": 1.0}, 1e9, 1)
    assert full["total"] == pytest.approx(B.U160K_QUERIES + B.U160K_GALLERY)
    with pytest.raises(ConfigError, match="--model-img-s"):
        B.project_eval_time(decode, 0.0, 2, counts)


def test_command_on_a_tiny_slice(tmp_path, capsys):
    out, csv = tmp_path / "slice", tmp_path / "t.csv"
    argv = ["bench", "data", "--out", str(out), "--n", "4", "--gallery-size", "48"]
    argv += ["--query-size", "32", "--size", "24", "--sample", "3", "--loader-images", "4"]
    argv += ["--batch-size", "2", "--loader-workers", "0", "--model-img-s", "100"]
    argv += ["--workers", "2", "--csv", str(csv), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert B.LIBRARY_METHOD in text and "PIL + draft" in text and "eval_loader" in text
    assert "projected University160k-WX" in text
    import pandas as pd

    table = pd.read_csv(csv)
    lib = table[table["what"] == B.LIBRARY_METHOD]
    assert len(lib) == 2 and (lib["vs library"] == 1.0).all()
    proj = table[table["view"] == "projection"]
    assert len(proj) == 2 and (proj["workers"] == 2).all()
    assert (proj["total s"] >= (B.U160K_QUERIES + B.U160K_GALLERY) / 100 - 1e-6).all()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    assert main(["bench", "data", "--out", str(foreign), "--n", "2", "--model-img-s", "1"]) == 2
    assert "not written by geoloc bench data" in capsys.readouterr().err
