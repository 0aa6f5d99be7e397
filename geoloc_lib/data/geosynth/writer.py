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

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.core.locks import LOCK_FILE
from geoloc_lib.data.geosynth.profiles import GeoSynthProfile

GENERATOR = "geosynth"
VERSION = "1.0"
MANIFEST = "geosynth.json"
# Written before a generation touches anything, removed once geosynth.json is written: it names
# the profile and seed being generated and every file the generator may replace.
PARTIAL = "geosynth.partial.json"
# Folders the dataset loaders read: a file there that the generator did not write changes what
# loads, so it fails verification. Files elsewhere in the output (a weather set saved under
# University-1652/, notes...) are the user's: reported, kept, never hashed or replaced.
DATA_FOLDERS = (
    "University-1652/train/",
    "University-1652/test/",
    "CVUSA/bingmap/",
    "CVUSA/streetview/",
    "CVUSA/splits/",
    "CVACT/ANU_data_small/",
    "CVACT/ANU_data_test/",
)


def in_data_folders(rel: str) -> bool:
    """True for a relative path inside a folder the loaders read."""
    return rel.startswith(DATA_FOLDERS)


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


def list_files(root: Path) -> list[str]:
    """Relative paths of every file under ``root`` but the manifest, the in-progress marker
    and the generation's lock file."""
    rels = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(r for r in rels if r not in (MANIFEST, PARTIAL, LOCK_FILE))


def _file_hashes(root: Path, only: set[str] | None = None) -> dict[str, str]:
    hashes = {}
    for rel in list_files(root):
        if only is not None and rel not in only:
            continue
        hashes[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return hashes


def read_json(path: Path, what: str) -> dict:
    """A GeoSynth JSON file (manifest or marker), with a clear error when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(
            f"{what} {path} is damaged (not valid JSON: {err}); restore it, or move the folder "
            f"{path.parent} away and generate GeoSynth again"
        ) from None
    if not isinstance(data, dict) or data.get("generator") != GENERATOR:
        raise DatasetError(
            f"{path} was not written by the GeoSynth generator; restore it, or move the folder "
            f"{path.parent} away and generate GeoSynth again"
        )
    return data


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
    out: Path,
    profile: GeoSynthProfile,
    seed: int,
    rows: dict[str, list],
    progress: bool = False,
    keep: set[str] | frozenset[str] = frozenset(),
) -> dict:
    """Hash every file and write ``geosynth.json`` (deterministic: no times or host names).

    Files in ``keep`` (found in ``out`` but not written by the generator) are not hashed."""
    hashes = _file_hashes(out, set(list_files(out)) - set(keep))
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
    if not meta or "profile" not in meta:
        return (
            f"generate it with `geoloc data generate geosynth --profile PROFILE --seed SEED "
            f"--out {root}` (the profile and seed it was made with: smoke in CI, default for "
            "the benchmark)"
        )
    profile, seed = meta["profile"], meta.get("seed", 0)
    return f"re-run `geoloc data generate geosynth --profile {profile} --seed {seed} --out {root}`"


def _shown(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def verify_geosynth(root: str | Path) -> dict:
    """Recompute every file hash under ``root`` and compare with ``geosynth.json``.

    Returns a summary dict (``extra``: files the generator did not write, outside the folders
    the loaders read; they are the user's and accepted); raises :class:`DatasetError` naming the
    root, the differing files and the command that regenerates it (with the profile and seed the
    copy was made with). A file the generator did not write inside a folder the loaders read
    (:data:`DATA_FOLDERS`) fails: it would change the dataset.
    """
    root = Path(root)
    meta_path = root / MANIFEST
    partial = root / PARTIAL
    if partial.is_file():
        info = read_json(partial, "GeoSynth in-progress marker")
        raise DatasetError(
            f"GeoSynth generation into {root} (profile {info.get('profile')}, seed "
            f"{info.get('seed')}) did not finish ({partial} is still there); "
            f"{_regen_hint(root, info)} to finish it"
        )
    if not meta_path.is_file():
        raise DatasetError(f"GeoSynth manifest {meta_path} is missing; {_regen_hint(root, None)}")
    meta = read_json(meta_path, "GeoSynth manifest")
    expected: dict[str, str] = meta.get("file_sha256", {})
    present = list_files(root)
    extra = sorted(set(present) - set(expected))
    unexpected = [rel for rel in extra if in_data_folders(rel)]
    actual = _file_hashes(root, set(expected))
    missing = sorted(set(expected) - set(actual))
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    digest = content_hash(actual)
    if missing or changed or unexpected or digest != meta.get("content_sha256"):
        parts = []
        for label, items in (
            ("missing", missing),
            ("modified", changed),
            ("unexpected in the dataset's folders", unexpected),
        ):
            if items:
                parts.append(f"{len(items)} {label}: {_shown(items)}")
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
        "extra": extra,
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
