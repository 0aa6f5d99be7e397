"""The real-format loaders read tiny fixture trees written in each layout."""

from __future__ import annotations

import numpy as np
import pytest
from layouts import make_cvact, make_cvusa, make_university160k_wx, make_university1652

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.data.street import load_cvact, load_cvusa
from geoloc_lib.data.university import load_university160k_wx, load_university1652


def test_university1652_sets_and_labels(tmp_path):
    data = load_university1652(make_university1652(tmp_path / "u"))
    assert set(data.sets) == {
        "train/drone",
        "train/satellite",
        "test/query_drone",
        "test/gallery_drone",
        "test/query_satellite",
        "test/gallery_satellite",
    }
    assert len(data.sets["train/drone"]) == 9
    assert data.all_train_classes.tolist() == [1, 2, 3]
    # 3 training locations: one held out for validation (at most half), two to train on
    train, val = data.train_val_split()
    assert len(val) == 1 and sorted([*train, *val]) == [1, 2, 3]
    assert data.train_classes.tolist() == train.tolist() and data.val_classes.tolist() == val
    drone, satellite = data.train_sets()
    assert set(drone.labels) == set(satellite.labels) == set(train) and len(drone) == 6
    q, g = data.task("drone->satellite", split="val")
    assert set(q.labels) == set(val) and len(q) == 3
    assert g.names == ["0001", "0002", "0003"]  # held-out tiles + the training ones
    q, g = data.task("drone->satellite")
    assert len(q) == 6 and len(g) == 5  # 2 test locations + 3 distractors
    assert set(q.labels.tolist()) == {10, 11}
    assert g.names == ["0010", "0011", "0020", "0021", "0022"]
    q, g = data.task("satellite->drone")
    assert len(q) == 2 and (g.labels == 10).sum() == 3  # several true matches per query


def test_university1652_missing_folder_names_it(tmp_path):
    root = make_university1652(tmp_path / "u")
    for f in (root / "test/query_drone").rglob("*"):
        if f.is_file():
            f.unlink()
    for d in sorted((root / "test/query_drone").rglob("*"), reverse=True):
        d.rmdir()
    (root / "test/query_drone").rmdir()
    with pytest.raises(DatasetError, match=r"test/query_drone.*university1652"):
        load_university1652(root)


def test_university1652_missing_root_and_bad_task(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*data_manifest"):
        load_university1652(tmp_path / "nope")
    data = load_university1652(make_university1652(tmp_path / "u"))
    with pytest.raises(DatasetError, match="valid choices: drone->satellite"):
        data.task("drone->street")
    with pytest.raises(DatasetError, match="needs .*query_street"):
        data.task("street->satellite")
    with pytest.raises(DatasetError, match="valid choices: test, val"):
        data.task("drone->satellite", split="train")
    one = load_university1652(make_university1652(tmp_path / "one", train_ids=(1,)))
    with pytest.raises(DatasetError, match="too few to hold any out.*'val_queries': 0"):
        one.task("drone->satellite", split="val")


def test_university1652_stray_file_is_an_error(tmp_path):
    root = make_university1652(tmp_path / "u")
    (root / "train/drone/0001/notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="notes.txt"):
        load_university1652(root)


def test_university160k_wx_keeps_list_order(tmp_path):
    root = make_university160k_wx(tmp_path / "wx")
    test = load_university160k_wx(root)
    listed = (root / "query_drone_name.txt").read_text().split()
    assert [p.name for p in test.queries.paths] == listed
    assert test.gallery.names == [f"g{i:05d}" for i in range(5)]
    (root / "query_drone_160k_wx_24" / listed[1]).unlink()
    with pytest.raises(DatasetError, match="1 queries listed"):
        load_university160k_wx(root)


def test_cvusa_reads_split_csvs(tmp_path):
    root = make_cvusa(tmp_path / "cvusa")
    train, val = load_cvusa(root, "train"), load_cvusa(root, "val")
    assert len(train) == 4 and len(val) == 2
    assert train.ground[0].name == "0000001.jpg" and "bingmap" in str(train.aerial[0])
    with pytest.raises(DatasetError, match="valid choices: train, val"):
        load_cvusa(root, "test")
    (root / "streetview/panos/0000002.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 4 pairs"):
        load_cvusa(root, "train")


@pytest.mark.parametrize(
    "row, message",
    [
        (
            "streetview/panos/0000002.jpg,bingmap/19/0000002.jpg,annotations/0000002.png",
            r"train-19zl.csv:2: the aerial and panorama columns are swapped",
        ),
        (
            "bingmap/19/0000002.jpg,streetview/panos/0000002.jpg,annotations/0000002.png,extra",
            r"train-19zl.csv:2: expected 2 or 3 columns .*got 4",
        ),
        (
            "bingmap/19/0000002.jpg,bingmap/19/0000003.jpg",
            r"train-19zl.csv:2: column 2 is 'bingmap/19/0000003.jpg', expected a path under "
            r"streetview/",
        ),
        ("0000002.jpg", r"train-19zl.csv:2: expected 2 or 3 columns"),
    ],
)
def test_cvusa_rows_must_hold_the_expected_folders(tmp_path, row, message):
    root = make_cvusa(tmp_path / "cvusa")
    csv_path = root / "splits/train-19zl.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = row
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_cvusa(root, "train")


def test_cvact_one_based_indices_utm_and_missing(tmp_path):
    root = make_cvact(tmp_path / "cvact")
    train = load_cvact(root, "train")
    # indices 1..4 are ids 0..3; id0003 is missing on disk: skipped and counted
    assert train.ids == ["id0000", "id0001", "id0002"]
    assert train.missing == ["id0003"]
    np.testing.assert_allclose(train.coords[:, 0], [690000.0, 690010.0, 690020.0])
    test = load_cvact(root, "test")
    assert test.ids == ["id0006", "id0007"] and "ANU_data_test" in str(test.ground[0])
    with pytest.raises(DatasetError, match="1 of 4 CVACT 'train' pairs are missing"):
        load_cvact(root, "train", on_missing="error")
    with pytest.raises(DatasetError, match="valid choices: test, train, val"):
        load_cvact(root, "small")


def test_cvact_bad_mat_names_file(tmp_path):
    root = make_cvact(tmp_path / "cvact")
    (root / "ACT_data.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="ACT_data.mat"):
        load_cvact(root, "val")


def test_eval_loader_cache_gives_the_same_images(tmp_path):
    import torch

    from geoloc_lib.data.university_torch import eval_loader

    data = load_university1652(make_university1652(tmp_path / "u", train_ids=(1, 2), views=2))
    query, _ = data.task("drone->satellite")
    plain = eval_loader(query, 24, batch_size=3)
    cached = eval_loader(query, 24, batch_size=3, cache=True)
    for _ in range(2):  # the second pass reads the cache
        for a, b in zip(plain, cached, strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
    assert len(cached.dataset.cache.store) == len(query)
