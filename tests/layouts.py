"""Tiny fixture trees in each real dataset layout, written with random pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def _jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    fmt = "WEBP" if path.suffix == ".webp" else "JPEG"
    Image.fromarray(pixels).save(path, format=fmt, quality=80)


def make_university1652(
    root: Path, train_ids=(1, 2, 3), test_ids=(10, 11), distractors=(20, 21, 22), views=3
) -> Path:
    rng = np.random.default_rng(0)
    for i in train_ids:
        loc = f"{i:04d}"
        for v in range(1, views + 1):
            _jpeg(root / "train/drone" / loc / f"image-{v:02d}.jpeg", rng)
        _jpeg(root / "train/satellite" / loc / f"{loc}.jpg", rng)
    for i in test_ids:
        loc = f"{i:04d}"
        for v in range(1, views + 1):
            for folder in ("query_drone", "gallery_drone"):
                _jpeg(root / "test" / folder / loc / f"image-{v:02d}.jpeg", rng)
        for folder in ("query_satellite", "gallery_satellite"):
            _jpeg(root / "test" / folder / loc / f"{loc}.jpg", rng)
    for i in distractors:
        loc = f"{i:04d}"
        _jpeg(root / "test/gallery_satellite" / loc / f"{loc}.jpg", rng)
        for v in range(1, views + 1):
            _jpeg(root / "test/gallery_drone" / loc / f"image-{v:02d}.jpeg", rng)
    return root


def make_university160k_wx(root: Path, n_query=4, n_gallery=5) -> Path:
    rng = np.random.default_rng(1)
    names = [f"q{i:014d}.jpeg" for i in range(n_query)][::-1]  # list order != sorted order
    for name in names:
        _jpeg(root / "query_drone_160k_wx_24" / name, rng)
    for i in range(n_gallery):
        _jpeg(root / "gallery_satellite_160k" / f"g{i:05d}.webp", rng)
    (root / "query_drone_name.txt").write_text("\n".join(names) + "\n")
    return root


def make_cvusa(root: Path, n_train=4, n_val=2) -> Path:
    rng = np.random.default_rng(2)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "val": []}
    for k in range(1, n_train + n_val + 1):
        name = f"{k:07d}"
        _jpeg(root / "bingmap/19" / f"{name}.jpg", rng)
        _jpeg(root / "streetview/panos" / f"{name}.jpg", rng, size=(44, 8))
        split = "train" if k <= n_train else "val"
        rows[split].append(
            f"bingmap/19/{name}.jpg,streetview/panos/{name}.jpg,annotations/{name}.png"
        )
    (root / "splits/train-19zl.csv").write_text("\n".join(rows["train"]) + "\n")
    (root / "splits/val-19zl.csv").write_text("\n".join(rows["val"]) + "\n")
    return root


def make_cvact(root: Path, n=8, missing=("id0003",)) -> Path:
    """8 panoramas: train = 1..4, val = 5..6, test (valSetAll) = 7..8 under ANU_data_test."""
    rng = np.random.default_rng(3)
    ids = [f"id{k:04d}" for k in range(n)]
    utm = np.stack([np.arange(n) * 10.0 + 690000.0, np.arange(n) * -5.0 + 6090000.0], axis=1)
    train, val, test = [1, 2, 3, 4], [5, 6], [7, 8]  # 1-based
    for idx_list, folder in ((train + val, "ANU_data_small"), (test, "ANU_data_test")):
        for one_based in idx_list:
            pid = ids[one_based - 1]
            if pid in missing:
                continue
            _jpeg(root / folder / "streetview" / f"{pid}_grdView.jpg", rng, size=(32, 16))
            _jpeg(root / folder / "satview_polish" / f"{pid}_satView_polish.jpg", rng)
    panos = np.empty((n, 1), dtype=object)
    for k, pid in enumerate(ids):
        panos[k, 0] = pid
    scipy.io.savemat(
        root / "ACT_data.mat",
        {
            "panoIds": panos,
            "utm": utm,
            "trainSet": {"trainInd": np.array(train, dtype=float).reshape(-1, 1)},
            "valSet": {"valInd": np.array(val, dtype=float).reshape(-1, 1)},
            "valSetAll": {"valInd": np.array(test, dtype=float).reshape(-1, 1)},
        },
    )
    return root


def make_university160k_wx_from(university_root: Path, root: Path, seed: int = 0) -> dict[str, str]:
    """A University160k-WX-layout test set (name-masked) from a University-1652 test split.

    Queries: ``test/query_drone`` copied under masked 15-character names, listed in a shuffled
    order; gallery: ``test/gallery_satellite`` as ``<id>.webp``. Returns the truth a challenge
    server holds: masked query stem -> location id (the gallery stem of its true match).
    """
    import hashlib
    import shutil

    rng = np.random.default_rng(seed)
    queries = sorted((university_root / "test" / "query_drone").glob("*/*"))
    truth, names = {}, []
    for path in queries:
        key = f"{seed}/{path.parent.name}/{path.name}".encode()
        stem = hashlib.sha256(key).hexdigest()[:15]
        (root / "query_drone_160k_wx_24").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / "query_drone_160k_wx_24" / f"{stem}.jpeg")
        truth[stem] = path.parent.name
        names.append(f"{stem}.jpeg")
    (root / "gallery_satellite_160k").mkdir(parents=True, exist_ok=True)
    for path in sorted((university_root / "test" / "gallery_satellite").glob("*/*")):
        with Image.open(path) as im:
            im.convert("RGB").save(root / "gallery_satellite_160k" / f"{path.parent.name}.webp")
    order = [names[i] for i in rng.permutation(len(names))]
    (root / "query_drone_name.txt").write_text("\n".join(order) + "\n")
    return truth
