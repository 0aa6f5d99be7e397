"""GeoSynth tables, ``ACT_data.mat``, the manifest with content hashes, and its verification.

Layout written (the real datasets' layouts, read by the real loaders)::

    OUT/geosynth.json                       manifest (written last, not hashed)
    OUT/University-1652/{train,test}/...    drone / satellite tree, 4-digit ids
    OUT/University-1652/locations.csv       id,split,easting,northing (GeoSynth extra)
    OUT/University-1652/drone_views.csv     id,file,split,altitude_m,distance_m,heading_deg,pitch_deg
    OUT/CVUSA/{bingmap/19,streetview/panos}/0000001.jpg, splits/{train,val}-19zl.csv
    OUT/CVACT/ACT_data.mat, ANU_data_small/..., ANU_data_test/...

The content hash is SHA-256 over ``"<relative path>\\0<file sha256>\\n"`` for every
file but the manifest, in sorted path order; per-file hashes are stored too so
verification can say which files differ.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from geoloc_lib.data.geosynth.profiles import GeoSynthProfile
from geoloc_lib.errors import DatasetError

GENERATOR = "geosynth"
VERSION = "1.0"
MANIFEST = "geosynth.json"
OUTPUT_DIRS = ("University-1652", "CVUSA", "CVACT")
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by geoloc GeoSynth"


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_act_mat(path: Path, pano_ids: list[str], utm: np.ndarray, splits: list[str]) -> None:
    """CVACT's ``ACT_data.mat``: panoIds, utm, trainSet.trainInd, valSet.valInd, valSetAll.valInd.

    Indices are 1-based column vectors. scipy stamps the creation time into the
    header text; it is replaced by a fixed text so the file is byte-deterministic.
    """
    cells = np.empty((len(pano_ids), 1), dtype=object)
    for k, pid in enumerate(pano_ids):
        cells[k, 0] = pid
    split_arr = np.asarray(splits)

    def one_based(name: str) -> np.ndarray:
        return (np.flatnonzero(split_arr == name) + 1).astype(np.float64).reshape(-1, 1)

    buf = io.BytesIO()
    scipy.io.savemat(
        buf,
        {
            "panoIds": cells,
            "utm": np.asarray(utm, dtype=np.float64).reshape(-1, 2),
            "trainSet": {"trainInd": one_based("train")},
            "valSet": {"valInd": one_based("val")},
            "valSetAll": {"valInd": one_based("test")},
        },
    )
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def write_tables(out: Path, rows: dict[str, list]) -> None:
    """locations.csv, drone_views.csv, CVUSA split CSVs and ACT_data.mat from the districts' rows."""
    uni = out / "University-1652"
    locs = sorted(rows["locations"])
    _write_text(
        uni / "locations.csv",
        ["id,split,easting,northing"] + [f"{i},{s},{e:.2f},{n:.2f}" for i, s, e, n in locs],
    )
    views = sorted(rows["drone_views"], key=lambda r: (r[0], r[1]))
    _write_text(
        uni / "drone_views.csv",
        ["id,file,split,altitude_m,distance_m,heading_deg,pitch_deg"]
        + [f"{i},{f},{s},{a:.2f},{d:.2f},{h:.2f},{p:.2f}" for i, f, s, a, d, h, p in views],
    )
    streets = sorted(rows["streets"])
    if not streets:
        return
    for split, csv_name in (("train", "train-19zl.csv"), ("test", "val-19zl.csv")):
        lines = []
        for number, _, s, _, _ in streets:
            if s == split:
                name = f"{number:07d}"
                lines.append(
                    f"bingmap/19/{name}.jpg,streetview/panos/{name}.jpg,annotations/{name}.png"
                )
        _write_text(out / "CVUSA/splits" / csv_name, lines)
    write_act_mat(
        out / "CVACT/ACT_data.mat",
        [r[1] for r in streets],
        np.array([[r[3], r[4]] for r in streets]),
        [r[2] for r in streets],
    )


def _file_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def content_hash(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(hashes):
        h.update(f"{rel}\0{hashes[rel]}\n".encode())
    return h.hexdigest()


def _counts(rows: dict[str, list]) -> dict[str, int]:
    locs = pd.Series([r[1] for r in rows["locations"]], dtype=object)
    views = pd.Series([r[2] for r in rows["drone_views"]], dtype=object)
    streets = pd.Series([r[2] for r in rows["streets"]], dtype=object)
    return {
        "train_locations": int((locs == "train").sum()),
        "test_locations": int((locs == "test").sum()),
        "distractor_tiles": int((locs == "distractor").sum()),
        "train_drone_images": int((views == "train").sum()),
        "test_drone_images": int((views == "test").sum()),
        "street_train": int((streets == "train").sum()),
        "street_val": int((streets == "val").sum()),
        "street_test": int((streets == "test").sum()),
    }


def write_manifest(
    out: Path, profile: GeoSynthProfile, seed: int, rows: dict[str, list], progress: bool = False
) -> dict:
    """Hash every file and write ``geosynth.json`` (deterministic: no times or host names)."""
    hashes = _file_hashes(out)
    manifest = {
        "generator": GENERATOR,
        "version": VERSION,
        "profile": profile.name,
        "seed": seed,
        "params": profile.as_dict(),
        "content_sha256": content_hash(hashes),
        "files": len(hashes),
        "counts": _counts(rows),
        "conventions": {
            "coordinates": "UTM-like metres (easting, northing); satellite tiles north-up",
            "res_m_per_px": profile.res_m,
            "tile_m": profile.tile_m,
            "panorama": "equirectangular, north at the centre column, bearing increases to the "
            "right (clockwise): column x <-> bearing 360*(x+0.5)/W - 180 deg",
            "cvusa": "horizon band (5.5:1) of the same panoramas; train-19zl = CVACT train pairs, "
            "val-19zl = CVACT test (valSetAll) pairs; CVACT val pairs are not in CVUSA",
            "drone_gallery": "test/gallery_drone holds the same images as test/query_drone",
        },
        "file_sha256": hashes,
    }
    (out / MANIFEST).write_text(
        json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {k: v for k, v in manifest.items() if k != "file_sha256"}


def _regen_hint(root: Path, meta: dict | None) -> str:
    profile = (meta or {}).get("profile", "default")
    seed = (meta or {}).get("seed", 0)
    return f"re-run `geoloc data generate geosynth --profile {profile} --seed {seed} --out {root}`"


def verify_geosynth(root: str | Path) -> dict:
    """Recompute every file hash under ``root`` and compare with ``geosynth.json``.

    Returns a summary dict; raises :class:`DatasetError` naming the root, the
    differing files and the command that regenerates it.
    """
    root = Path(root)
    meta_path = root / MANIFEST
    if not meta_path.is_file():
        raise DatasetError(f"GeoSynth manifest {meta_path} is missing; {_regen_hint(root, None)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"GeoSynth manifest {meta_path} is not valid JSON ({err}); {_regen_hint(root, None)}"
        ) from err
    if meta.get("generator") != GENERATOR:
        raise DatasetError(
            f"{meta_path} was not written by the GeoSynth generator; {_regen_hint(root, meta)}"
        )
    expected: dict[str, str] = meta.get("file_sha256", {})
    actual = _file_hashes(root)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    digest = content_hash(actual)
    if missing or extra or changed or digest != meta.get("content_sha256"):
        parts = []
        for label, items in (("missing", missing), ("modified", changed), ("unexpected", extra)):
            if items:
                shown = ", ".join(items[:5]) + (
                    f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                )
                parts.append(f"{len(items)} {label}: {shown}")
        detail = "; ".join(parts) or "content hash differs"
        raise DatasetError(
            f"GeoSynth at {root} does not match its manifest ({detail}); {_regen_hint(root, meta)}"
        )
    return {
        "root": str(root),
        "files": len(actual),
        "content_sha256": digest,
        "profile": meta.get("profile"),
        "seed": meta.get("seed"),
    }


def load_geosynth_meta(root: str | Path) -> dict[str, pd.DataFrame]:
    """GeoSynth's extra tables: ``locations``, ``drone_views`` and ``streets`` (from ACT_data.mat)."""
    root = Path(root)
    uni = root / "University-1652"
    out = {}
    for name in ("locations", "drone_views"):
        path = uni / f"{name}.csv"
        if not path.is_file():
            raise DatasetError(f"GeoSynth table {path} is missing; {_regen_hint(root, None)}")
        out[name] = pd.read_csv(path, dtype={"id": str})
    mat_path = root / "CVACT/ACT_data.mat"
    if mat_path.is_file():
        mat = scipy.io.loadmat(mat_path)
        ids = [str(np.asarray(c).ravel()[0]) for c in mat["panoIds"].ravel()]
        split = np.full(len(ids), "", dtype=object)
        for key, field, name in (
            ("trainSet", "trainInd", "train"),
            ("valSet", "valInd", "val"),
            ("valSetAll", "valInd", "test"),
        ):
            idx = np.asarray(mat[key][0, 0][field]).ravel().astype(int) - 1
            split[idx] = name
        utm = np.asarray(mat["utm"], dtype=np.float64)
        out["streets"] = pd.DataFrame(
            {"pano_id": ids, "split": split, "easting": utm[:, 0], "northing": utm[:, 1]}
        )
    return out
