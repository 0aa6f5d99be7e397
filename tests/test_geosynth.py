"""GeoSynth: determinism, the real layouts, geometry of the views, manifest verification.

Generations use the ``tiny`` profile (a few seconds each, in-process).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from geoloc_lib.core.errors import ConfigError, DatasetError
from geoloc_lib.data.geosynth import (
    PROFILES,
    generate_geosynth,
    load_geosynth_meta,
    verify_geosynth,
)
from geoloc_lib.data.geosynth import render as R
from geoloc_lib.data.geosynth.world import BUILDING, GROUND, Campus
from geoloc_lib.data.sources import resolve_sources
from geoloc_lib.eval import evaluate_pairs
from geoloc_lib.eval.baselines import raw_pixel_features, trivial_matchers

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def gens(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("geosynth")
    out = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate_geosynth(base / name, profile=TINY, seed=seed, progress=False, workers=1)
        out[name] = base / name
    return out


def _manifest(root: Path) -> dict:
    return json.loads((root / "geosynth.json").read_text())


def test_same_seed_identical_other_seed_differs(gens):
    a, b, c = (_manifest(gens[k]) for k in "abc")
    assert a["content_sha256"] == b["content_sha256"]
    assert a["file_sha256"] == b["file_sha256"]
    assert (gens["a"] / "geosynth.json").read_bytes() == (gens["b"] / "geosynth.json").read_bytes()
    assert a["content_sha256"] != c["content_sha256"]
    assert a["generator"] == "geosynth" and a["version"] == "1.0" and a["profile"] == "tiny"
    assert a["params"]["campus_grid"] == TINY.campus_grid


def _ids(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()}


def test_university_layout_and_counts(gens):
    uni = gens["a"] / "University-1652"
    n_loc = TINY.campus_grid**2
    train, test = _ids(uni / "train/drone"), _ids(uni / "test/query_drone")
    distractors = _ids(uni / "test/gallery_satellite") - test
    assert len(train) == n_loc * TINY.train_campuses and len(test) == n_loc * TINY.test_campuses
    assert len(distractors) == TINY.distractor_campuses * TINY.distractor_grid**2
    assert not (train & test) and not (train & distractors)
    assert all(len(i) == 4 and i.isdigit() for i in train | test | distractors)
    assert _ids(uni / "train/satellite") == train
    assert _ids(uni / "test/query_satellite") == test == _ids(uni / "test/gallery_drone")
    for loc in sorted(train)[:2]:
        names = sorted(p.name for p in (uni / "train/drone" / loc).iterdir())
        assert names == [f"image-{k:02d}.jpeg" for k in range(1, TINY.drone_views + 1)]
        assert (uni / "train/satellite" / loc / f"{loc}.jpg").is_file()
    loc = sorted(test)[0]
    for k in range(1, TINY.drone_views + 1):  # the gallery holds the query's very images
        q = (uni / "test/query_drone" / loc / f"image-{k:02d}.jpeg").read_bytes()
        assert q == (uni / "test/gallery_drone" / loc / f"image-{k:02d}.jpeg").read_bytes()
    with Image.open(uni / "test/gallery_satellite" / loc / f"{loc}.jpg") as im:
        assert im.size == (TINY.tile_px, TINY.tile_px)
    with Image.open(uni / "test/query_drone" / loc / "image-01.jpeg") as im:
        assert im.size == (TINY.drone_px, TINY.drone_px)


def test_meta_tables_and_disjoint_areas(gens):
    meta = load_geosynth_meta(gens["a"])
    locs, views = meta["locations"], meta["drone_views"]
    assert list(locs.columns) == ["id", "split", "easting", "northing"]
    assert list(views.columns) == [
        "id",
        "file",
        "split",
        "altitude_m",
        "distance_m",
        "heading_deg",
        "pitch_deg",
    ]
    assert len(views) == TINY.drone_views * (locs["split"] != "distractor").sum()
    xy = {
        s: locs.loc[locs["split"] == s, ["easting", "northing"]].to_numpy()
        for s in ("train", "test", "distractor")
    }
    gap = np.sqrt(((xy["train"][:, None] - xy["test"][None]) ** 2).sum(-1)).min()
    assert gap > 2_000  # separate districts, like separate universities
    assert np.sqrt(((xy["distractor"][:, None] - xy["test"][None]) ** 2).sum(-1)).min() > 2_000
    assert (
        views["altitude_m"].std() > 1 and views["heading_deg"].std() > 10
    )  # an orbit, not one pose


def test_street_layouts(gens):
    root = gens["a"]
    mat = scipy.io.loadmat(root / "CVACT/ACT_data.mat")
    ids = [str(np.asarray(c).ravel()[0]) for c in mat["panoIds"].ravel()]
    n = len(ids)
    assert n == TINY.street_train + TINY.street_val + TINY.street_test and len(set(ids)) == n
    assert all(len(i) == 22 for i in ids)
    assert mat["utm"].shape == (n, 2)
    tr = mat["trainSet"][0, 0]["trainInd"].ravel().astype(int)
    va = mat["valSet"][0, 0]["valInd"].ravel().astype(int)
    te = mat["valSetAll"][0, 0]["valInd"].ravel().astype(int)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(
        range(1, n + 1)
    )  # 1-based, a partition
    assert mat["trainSet"][0, 0]["trainInd"].shape == (len(tr), 1)
    for idx, folder in ((tr, "ANU_data_small"), (va, "ANU_data_small"), (te, "ANU_data_test")):
        for k in idx:
            pid = ids[k - 1]
            assert (root / "CVACT" / folder / "streetview" / f"{pid}_grdView.jpg").is_file()
            assert (
                root / "CVACT" / folder / "satview_polish" / f"{pid}_satView_polish.jpg"
            ).is_file()
    with Image.open(
        root / "CVACT/ANU_data_test/streetview" / f"{ids[te[0] - 1]}_grdView.jpg"
    ) as im:
        assert im.size[0] == 2 * im.size[1]
    rows = (root / "CVUSA/splits/train-19zl.csv").read_text().splitlines()
    assert len(rows) == TINY.street_train
    first = rows[0].split(",")
    assert first[0] == "bingmap/19/0000001.jpg" and first[1] == "streetview/panos/0000001.jpg"
    assert first[2] == "annotations/0000001.png"
    assert len((root / "CVUSA/splits/val-19zl.csv").read_text().splitlines()) == TINY.street_test
    with Image.open(root / "CVUSA" / first[1]) as im:
        assert abs(im.size[0] / im.size[1] - 5.5) < 0.1


def test_real_loaders_read_geosynth(gens):
    from geoloc_lib.data.street import load_cvact, load_cvusa
    from geoloc_lib.data.university import load_university1652

    uni = load_university1652(gens["a"] / "University-1652")
    q, g = uni.task("drone->satellite")
    assert len(q) == TINY.campus_grid**2 * TINY.drone_views and set(q.labels) <= set(g.labels)
    assert len(load_cvact(gens["a"] / "CVACT", "test")) == TINY.street_test
    assert len(load_cvusa(gens["a"] / "CVUSA", "val")) == TINY.street_test


def test_verify_detects_changes(gens, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    assert verify_geosynth(root)["files"] == _manifest(root)["files"]
    target = sorted((root / "University-1652/test/query_drone").rglob("*.jpeg"))[0]
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(
        DatasetError, match=r"modified: University-1652/test/query_drone/.*geoloc data generate"
    ):
        verify_geosynth(root)
    (root / "geosynth.json").unlink()
    with pytest.raises(DatasetError, match="manifest .* is missing"):
        verify_geosynth(root)


def _one_building_campus(
    size_px=400, res=0.5, bx=(95.0, 105.0), by=(95.0, 105.0), h=30.0
) -> Campus:
    """Flat grey ground with one tower: blue roof, pure red facade."""
    H = W = size_px
    x = (torch.arange(W) + 0.5) * res
    y = (H - torch.arange(H) - 0.5) * res
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    inside = (xx > bx[0]) & (xx < bx[1]) & (yy > by[0]) & (yy < by[1])
    height = torch.where(inside, h, 0.0)
    albedo = torch.full((3, H, W), 0.4)
    albedo[:, inside] = torch.tensor([0.1, 0.1, 0.8])[:, None]
    facade = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.9, 0.05, 0.05, 0.0]])
    return Campus(
        name="t", split="test", origin=(0.0, 0.0), res=res, kind="test", height=height, albedo=albedo,
        veg=torch.zeros(H, W), klass=torch.where(inside, BUILDING, GROUND).to(torch.uint8),
        building=inside.long(), facade=facade, angle=0.0, roads_u=np.zeros(2), roads_v=np.zeros(2),
    )  # fmt: skip


def _red(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.int32)
    return (img[..., 0] > 120) & (img[..., 0] > 2 * img[..., 1]) & (img[..., 0] > 2 * img[..., 2])


def test_drone_views_show_facades_not_rotated_crops():
    campus = _one_building_campus()
    cond = R.Conditions(180.0, 50.0, "summer", (1.0, 1.0, 1.0), 1.0, 0.0, (0.7, 0.7, 0.7))
    ortho = R.render_orthophoto(campus, cond)
    assert _red(ortho).sum() == 0  # nadir: roofs only, no walls
    orbit = R.drone_orbit(4, np.random.Generator(np.random.PCG64(0)), loops=1.0)
    views = R.render_drone(campus, (100.0, 100.0), orbit, cond, size=96)
    red = _red(views).reshape(len(views), -1).sum(1)
    assert (red > 20).all()  # every oblique view sees a sunlit or shaded red wall


def test_panorama_north_alignment():
    width = 360
    cond = R.Conditions(180.0, 50.0, "summer", (1.0, 1.0, 1.0), 1.0, 0.0, (0.7, 0.7, 0.7))
    # Tower 30 m east of the camera at (100, 100): bearing 90 degrees.
    for bearing, bx, by in (
        (90.0, (128.0, 134.0), (97.0, 103.0)),
        (0.0, (97.0, 103.0), (128.0, 134.0)),
    ):
        campus = _one_building_campus(bx=bx, by=by)
        shadow = R.shadow_visibility(campus.height, campus.res, cond.sun_az, cond.sun_el)
        rng = np.random.Generator(np.random.PCG64(0))
        pano = R.render_panorama(campus, (100.0, 100.0), cond, shadow, rng, width=width, height=180)
        cols = np.flatnonzero(_red(pano).sum(0) > 5)
        centre = cols.mean()
        expected = (bearing + 180.0) / 360.0 * width - 0.5
        assert abs(centre - expected) < 3, (bearing, centre, expected)
        # The tower spans about 2*atan(3/31) = 11 degrees of azimuth.
        assert 6 <= len(cols) <= 16
        rows = np.flatnonzero(_red(pano).sum(1) > 0)
        assert rows.min() < 90 - 30  # rises well above the horizon (atan(27.8/28) = 45 degrees)


def test_raw_pixel_baseline(gens):
    paths = sorted((gens["a"] / "University-1652/test/gallery_satellite").rglob("*.jpg"))
    feats = raw_pixel_features(paths, size=8)
    assert feats.shape == (len(paths), 192)
    assert torch.allclose(feats.norm(dim=1), torch.ones(len(paths)), atol=1e-5)
    assert torch.allclose(feats.mean(dim=1), torch.zeros(len(paths)), atol=1e-6)
    assert evaluate_pairs(feats, feats, progress=False)["R@1"] == 100.0  # images match themselves
    table = trivial_matchers(resolve_sources("geosynth", gens["a"]), size=8)
    assert set(table["task"]) == {"drone->satellite", "satellite->drone", "street->aerial"}
    assert set(table["matcher"]) == {"random", "raw pixels"}
    assert table["R@1"].between(0.0, 100.0).all()


def test_location_figure(gens, tmp_path):
    from matplotlib.figure import Figure

    from geoloc_lib.viz.geosynth import location_figure

    loc = load_geosynth_meta(gens["a"])["locations"].query("split == 'test'")["id"].iloc[0]
    fig = location_figure(gens["a"], loc, path=tmp_path / "loc.png")
    assert isinstance(fig, Figure) and (tmp_path / "loc.png").stat().st_size > 0
    with pytest.raises(DatasetError, match="not in"):
        location_figure(gens["a"], "9999")


def test_cli_rejects_unknown_dataset_and_profile(tmp_path, capsys):
    from geoloc_lib.pipeline.cli import main

    assert main(["data", "generate", "cvusa", "--out", str(tmp_path)]) == 2
    assert "valid choices: geosynth" in capsys.readouterr().err
    assert main(["data", "generate", "geosynth", "--profile", "huge", "--out", str(tmp_path)]) == 2
    assert "default, default_capture_gap, smoke" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        generate_geosynth(tmp_path, profile="huge")
    assert math.isclose(PROFILES["default"].tile_m, 128.0)


def test_refuses_to_replace_folders_it_did_not_write(tmp_path):
    (tmp_path / "CVACT").mkdir()
    (tmp_path / "CVACT" / "ACT_data.mat").write_bytes(b"real data")
    with pytest.raises(ConfigError, match="without a geosynth.json"):
        generate_geosynth(tmp_path, profile=TINY, workers=1, progress=False)
    assert (tmp_path / "CVACT" / "ACT_data.mat").read_bytes() == b"real data"


def test_planned_files_are_the_files_written(gens):
    from geoloc_lib.data.geosynth.generate import plan, planned_files

    written = set(_manifest(gens["a"])["file_sha256"])
    assert planned_files(plan(TINY, 0, gens["a"])) == written


def test_prepare_keeps_user_files_and_reuses_the_copy(gens, tmp_path):
    from geoloc_lib.data.sources import prepare_geosynth
    from geoloc_lib.data.verify import verify_dataset

    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    user = root / "University-1652/fog_queries/0001/image-01.jpeg"
    user.parent.mkdir(parents=True)
    user.write_bytes(b"user weather image")
    with pytest.warns(UserWarning, match="1 file.* not written by the generator and are kept"):
        meta = prepare_geosynth(root, "tiny", 0)
    assert meta["reused"] is True and meta["kept_files"] == [
        "University-1652/fog_queries/0001/image-01.jpeg"
    ]
    assert user.read_bytes() == b"user weather image"
    report = verify_dataset("geosynth", root)
    assert report.ok and "1 other files kept" in report.checked[-1]
    # A changed seed regenerates: only the generator's files are replaced, the user's stay.
    with pytest.warns(UserWarning, match="keeping 1 file"):
        meta = prepare_geosynth(root, "tiny", 1)
    assert meta["reused"] is False and user.read_bytes() == b"user weather image"
    assert _manifest(root)["content_sha256"] == _manifest(gens["c"])["content_sha256"]
    assert "University-1652/fog_queries/0001/image-01.jpeg" not in _manifest(root)["file_sha256"]


def test_damaged_copy_is_regenerated_with_a_warning(gens, tmp_path):
    from geoloc_lib.data.sources import prepare_geosynth

    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    target = sorted((root / "University-1652/test/query_drone").rglob("*.jpeg"))[0]
    target.write_bytes(b"broken")
    with pytest.warns(UserWarning, match="1 modified: University-1652/test/query_drone"):
        meta = prepare_geosynth(root, "tiny", 0)
    assert meta["reused"] is False
    assert verify_geosynth(root)["content_sha256"] == _manifest(gens["a"])["content_sha256"]


def test_user_file_inside_the_dataset_folders_is_refused_not_deleted(gens, tmp_path):
    from geoloc_lib.data.sources import prepare_geosynth

    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    user = root / "University-1652/test/query_drone/my_notes.txt"
    user.write_text("mine")
    with pytest.raises(DatasetError, match="1 unexpected in the dataset's folders"):
        verify_geosynth(root)
    with pytest.warns(UserWarning, match="regenerating"):
        with pytest.raises(ConfigError, match="query_drone/my_notes.txt; move them out"):
            prepare_geosynth(root, "tiny", 0)
    assert user.read_text() == "mine"


def test_corrupt_manifest_is_a_clear_error(gens, tmp_path):
    from geoloc_lib.data.sources import prepare_geosynth

    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    (root / "geosynth.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"geosynth.json is damaged \(not valid JSON"):
        prepare_geosynth(root, "tiny", 0)
    with pytest.raises(DatasetError, match="is damaged"):
        generate_geosynth(root, profile=TINY, workers=1, progress=False)
    assert (root / "University-1652/locations.csv").is_file()


def test_interrupted_generation_is_finished_by_a_rerun(gens, tmp_path, monkeypatch):
    from geoloc_lib.data.geosynth import generate as G

    root = tmp_path / "out"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "mine.txt").write_text("mine")
    calls = {"n": 0}
    real = G.run_campus

    def dies_on_second(task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(G, "run_campus", dies_on_second)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="keeping 1 file"):
        generate_geosynth(root, profile=TINY, workers=1, progress=False)
    monkeypatch.setattr(G, "run_campus", real)
    assert (root / "University-1652").is_dir() and not (root / "geosynth.json").exists()
    with pytest.raises(
        DatasetError, match=r"profile tiny, seed 0\) did not finish.*--profile tiny"
    ):
        verify_geosynth(root)
    with pytest.warns(UserWarning, match="keeping 1 file"):
        generate_geosynth(root, profile=TINY, workers=1, progress=False)
    assert verify_geosynth(root)["content_sha256"] == _manifest(gens["a"])["content_sha256"]
    assert (root / "notes" / "mine.txt").read_text() == "mine"
    assert not (root / "geosynth.partial.json").exists()


def test_missing_manifest_hint_does_not_guess_a_profile(tmp_path):
    (tmp_path / "University-1652").mkdir()
    with pytest.raises(DatasetError, match="--profile PROFILE") as e:
        verify_geosynth(tmp_path)
    assert "--profile default" not in str(e.value)


def test_symlinked_output_folders_are_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "CVACT").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="CVACT is a symbolic link"):
        generate_geosynth(out, profile=TINY, workers=1, progress=False)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="broken symbolic link"):
        generate_geosynth(tmp_path / "dangling", profile=TINY, workers=1, progress=False)


def test_user_file_hashed_into_an_old_manifest_is_kept(gens, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    user = root / "notes.txt"
    user.write_text("mine")
    manifest = _manifest(root)  # as an older generator wrote it: every file hashed
    manifest["file_sha256"]["notes.txt"] = "0" * 64
    (root / "geosynth.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="keeping 1 file"):
        generate_geosynth(root, profile=TINY, seed=1, workers=1, progress=False)
    assert user.read_text() == "mine"


def test_weather_set_saved_inside_geosynth_survives_notebook_00(gens, tmp_path):
    from geoloc_lib.data.sources import prepare_geosynth
    from geoloc_lib.weather.sets import materialise_weather_queries

    root = tmp_path / "copy"
    shutil.copytree(gens["a"], root)
    out = materialise_weather_queries(
        root / "University-1652", root / "University-1652/fog_queries", "fog", progress=False
    )
    files = sorted(p for p in out.rglob("*") if p.is_file())
    # images + weather.csv + the .geoloc marker of the new folder
    assert len(files) == TINY.campus_grid**2 * TINY.drone_views + 2
    with pytest.warns(UserWarning, match=f"{len(files)} file.* are kept"):
        meta = prepare_geosynth(root, "tiny", 0)
    assert meta["reused"] is True and len(meta["kept_files"]) == len(files)
    assert all(p.is_file() for p in files)


@pytest.mark.slow  # two spawned workers import torch (~15 s)
def test_two_workers_write_the_same_bytes_as_one(gens, tmp_path, monkeypatch):
    """Districts rendered in parallel processes finish in any order: the files and the manifest
    are byte-identical to a one-process generation (the default is 2 workers). The districts'
    results are taken in the reverse of their completion order, which is never the districts'
    own order: output that follows the completion order fails."""
    from concurrent import futures

    from geoloc_lib.data.geosynth import generate as G

    monkeypatch.setattr(G, "as_completed", lambda fs: reversed(list(futures.as_completed(fs))))
    out = tmp_path / "two"
    generate_geosynth(out, profile=TINY, seed=0, progress=False, workers=2)
    assert (out / "geosynth.json").read_bytes() == (gens["a"] / "geosynth.json").read_bytes()
    for rel in ("University-1652/drone_views.csv", "University-1652/locations.csv"):
        assert (out / rel).read_bytes() == (gens["a"] / rel).read_bytes()
    verify_geosynth(out)


_HOLD_LOCK = """
import sys, time
from geoloc_lib.core.locks import folder_lock
with folder_lock(sys.argv[1], "GeoSynth generation"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_one_generation_per_output_folder(tmp_path):
    """A second generation into a folder being generated fails at once naming the first one's
    process (not with a FileNotFoundError on the other's marker); a killed generation's lock
    file does not block the next one."""
    import os
    import signal
    import subprocess
    import sys

    from geoloc_lib.core.locks import LOCK_FILE, FolderLockedError

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLockedError, match=f"{out} is in use by process {holder.pid}"):
            generate_geosynth(out, profile=TINY, workers=1, progress=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    generate_geosynth(out, profile=TINY, workers=1, progress=False)
    verify_geosynth(out)  # the lock file is neither hashed nor reported as a user file


def test_an_unwritable_output_folder_fails_in_one_line(tmp_path):
    from geoloc_lib.core.errors import NotWritableError

    (tmp_path / "file").write_text("")
    with pytest.raises(NotWritableError, match="GeoSynth output folder .*Not a directory") as e:
        generate_geosynth(tmp_path / "file" / "out", profile=TINY, workers=1, progress=False)
    assert "\n" not in str(e.value)
