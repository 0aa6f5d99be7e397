"""Validation is carved from the training split, for both tasks, and training never reads test.

Drone task: a fixed share of the training locations is held out (``split_train_locations``);
street task: training pairs are held out by spatial blocks with a guard band
(``split_train_pairs``). On the smoke GeoSynth: validation, training and test are disjoint by
location, and a training run (its monitor included) decodes no image of an evaluation split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from layouts import make_university1652

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.data import street_torch, university_torch
from geoloc_lib.data.geosynth import generate_geosynth
from geoloc_lib.data.sources import resolve_sources
from geoloc_lib.data.street import (
    STREET_TILE_M,
    load_cvact,
    near_duplicate_rate,
    split_train_pairs,
)
from geoloc_lib.data.types import PairSet
from geoloc_lib.data.university import (
    VAL_SPLIT_SEED,
    load_university1652,
    split_train_locations,
)
from geoloc_lib.training.recipes import preset_for


def _pairs(coords: np.ndarray | None, n: int | None = None) -> PairSet:
    n = len(coords) if coords is not None else n
    files = [Path(f"{i}.jpg") for i in range(n)]
    return PairSet("cvact/train", files, files, [f"p{i}" for i in range(n)], coords)


def _chebyshev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a[:, None, :] - b[None, :, :]).max(-1)


# --------------------------------------------------------------------------- unit


def test_location_split_is_fixed_sized_and_independent_of_order():
    ids = np.arange(1, 702) * 3  # 701 non-contiguous ids, as University-1652's
    train, val = split_train_locations(ids)
    assert len(val) == 70 and len(train) == 631 and not set(train) & set(val)
    assert sorted([*train, *val]) == ids.tolist()
    again = split_train_locations(np.random.default_rng(5).permutation(ids))
    assert all(np.array_equal(x, y) for x, y in zip(again, (train, val), strict=True))
    other = split_train_locations(ids, seed=VAL_SPLIT_SEED + 1)[1]
    assert not np.array_equal(other, val)
    assert len(split_train_locations(np.arange(16))[1]) == 3  # at least a few
    assert len(split_train_locations(np.arange(4))[1]) == 2  # at most half
    assert len(split_train_locations(np.arange(1))[1]) == 0


def test_pair_split_without_coordinates_is_a_seeded_permutation():
    train, val = split_train_pairs(_pairs(None, 50))
    assert len(val) == 5 and len(train) == 45 and not set(train.ids) & set(val.ids)
    assert val.ids == sorted(val.ids, key=lambda s: int(s[1:]))  # the pairs' order is kept
    assert split_train_pairs(_pairs(None, 50))[1].ids == val.ids
    with pytest.raises(DatasetError, match="too few"):
        split_train_pairs(_pairs(None, 1))


def test_pair_split_keeps_every_training_tile_off_the_validation_tiles():
    # streets of panoramas 12 m apart, as GeoSynth's, spread over ~3 km
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 3000, size=(60, 2))
    steps = np.where(rng.random(60)[:, None] < 0.5, [12.0, 0.0], [0.0, 12.0])
    coords = (starts[:, None, :] + np.arange(10)[None, :, None] * steps[:, None, :]).reshape(-1, 2)
    pairs = _pairs(coords + [500_000.0, 4_000_000.0])
    train, val = split_train_pairs(pairs)
    assert 0.08 * len(pairs) <= len(val) <= 0.2 * len(pairs)
    assert len(train) + len(val) >= 0.75 * len(pairs)
    assert not set(train.ids) & set(val.ids)
    assert _chebyshev(train.coords, val.coords).min() >= STREET_TILE_M
    again = split_train_pairs(pairs)
    assert again[0].ids == train.ids and again[1].ids == val.ids


def test_near_duplicate_rate_on_hand_placed_tiles():
    s = 100.0
    coords = np.array(
        [
            [0.0, 0.0],  # and the next: dx = 40 -> overlap 60 x 100 = 0.6 s^2 (> half)
            [40.0, 0.0],
            [1000.0, 0.0],  # and the next: dx = dy = 25 -> 75 x 75 = 0.5625 s^2 (> half)
            [1025.0, 25.0],
            [2000.0, 0.0],  # and the next: dx = 50 -> exactly half: not counted
            [2050.0, 0.0],
            [3000.0, 0.0],  # and the next: dx = dy = 40 -> 60 x 60 = 0.36 s^2
            [3040.0, 40.0],
            [5000.0, 5000.0],  # alone
            [7000.0, 7000.0],  # and the next: the same place
            [7000.0, 7000.0],
        ]
    )
    assert near_duplicate_rate(coords, s) == pytest.approx(6 / 11)
    assert near_duplicate_rate(_pairs(coords), s) == pytest.approx(6 / 11)
    assert near_duplicate_rate(coords, 10.0) == pytest.approx(2 / 11)
    assert near_duplicate_rate(coords[:1], s) == 0.0
    with pytest.raises(DatasetError, match="no coordinates"):
        near_duplicate_rate(_pairs(None, 3), s)


def test_university_validation_task_on_a_layout_tree(tmp_path):
    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    data = load_university1652(root)
    train, val = data.train_val_split()
    assert len(val) == 3 and len(train) == 5
    query, gallery = data.task("drone->satellite", split="val")
    assert set(query.labels) == set(val)
    assert sorted(gallery.labels) == list(range(1, 9))  # held-out tiles + training distractors
    assert all("/train/" in str(p) for p in [*query.paths, *gallery.paths])
    sat_query, drone_gallery = data.task("satellite->drone", split="val")
    assert set(sat_query.labels) == set(val) and len(drone_gallery) == 16


# --------------------------------------------------------------------------- smoke GeoSynth


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("geosynth") / "smoke"
    generate_geosynth(root, profile="smoke", seed=0, progress=False, workers=1)
    return resolve_sources("geosynth", data_root=root)


def test_drone_validation_locations_are_apart_from_training_and_test(smoke):
    data = smoke.university()
    train, val = data.train_val_split()
    test_q, test_g = data.task("drone->satellite")
    val_q, val_g = data.task("drone->satellite", split="val")
    assert len(val) >= 3 and not set(train) & set(val)
    assert set(val_q.labels) == set(val)
    test_locations = set(test_q.labels) | set(test_g.labels)
    assert not (set(val_q.labels) | set(val_g.labels)) & test_locations
    assert not {str(p) for p in val_q.paths + val_g.paths} & {
        str(p) for p in test_q.paths + test_g.paths
    }
    drone, satellite = data.train_sets()
    assert set(drone.labels) == set(satellite.labels) == set(train)


def test_street_validation_pairs_are_apart_from_training_and_test(smoke):
    pairs = smoke.street("train")
    train, val = split_train_pairs(pairs)
    assert len(val) >= 1 and len(train) >= 4
    assert not set(train.ids) & set(val.ids)
    assert _chebyshev(train.coords, val.coords).min() >= STREET_TILE_M  # no shared ground
    for split in ("val", "test"):  # the dataset's evaluation splits
        other = smoke.street(split)
        assert not set(other.ids) & (set(train.ids) | set(val.ids))
        assert _chebyshev(val.coords, other.coords).min() >= STREET_TILE_M


def _record_reads(monkeypatch) -> list[str]:
    """Every image path the data layer decodes from now on (training and its monitor)."""
    read: list[str] = []
    for module in (university_torch, street_torch):
        original = module.read_image

        def recording(path, *args, _original=original, **kwargs):
            read.append(str(Path(path).resolve()))
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(module, "read_image", recording)
    return read


def test_mcgf_training_and_its_monitor_never_read_a_test_image(smoke, monkeypatch):
    from geoloc_lib.training.mcgf import train_mcgf

    data = smoke.university()
    read = _record_reads(monkeypatch)
    preset = preset_for("mcgf_matching_only", "smoke", {
        "train": {"epochs": 1},
        "run": {"val_queries": 6, "max_steps_per_epoch": 1, "cache_images": False},
    })  # fmt: skip
    res = train_mcgf(data, preset, device="cpu", progress=False)
    assert res.history["val_r1"].notna().any()
    assert res.model.cfg.num_classes == len(data.train_classes)
    test_files = {str(p.resolve()) for key, s in data.sets.items() if key.startswith("test/")
                  for p in s.paths}  # fmt: skip
    assert read and not set(read) & test_files
    val_drones = {str(p.resolve()) for p in data.task("drone->satellite", split="val")[0].paths}
    assert set(read) & val_drones  # the monitor read validation views


def test_street_training_and_its_monitor_never_read_an_evaluation_pair(smoke, monkeypatch):
    from geoloc_lib.training.geoviewmatch import train_street_model

    read = _record_reads(monkeypatch)
    preset = preset_for(
        "geoviewmatch", "smoke", {"train": {"epochs": 1}, "run": {"max_steps_per_epoch": 1}}
    )
    res = train_street_model(smoke, preset, device="cpu", progress=False)
    assert res.history["val_R@1"].notna().any()
    evaluation = {
        str(p.resolve())
        for split in ("val", "test")
        for pairs in [smoke.street(split)]
        for p in [*pairs.ground, *pairs.aerial]
    }
    assert read and not set(read) & evaluation
    _, val = split_train_pairs(smoke.street("train"))
    assert {str(p.resolve()) for p in val.ground} & set(read)  # the monitor read held-out pairs


def test_cvact_layout_tree_still_splits(tmp_path):
    from layouts import make_cvact

    pairs = load_cvact(make_cvact(tmp_path / "cvact"), "train")  # 3 pairs 11 m apart
    train, val = split_train_pairs(pairs)
    assert len(val) == 1 and len(train) == 0  # every other tile overlaps the held-out one
