"""CVUSA and CVACT loaders: street-view panorama / aerial pairs (the benchmarks of GeoViewMatch, Sec. 4.1).

CVUSA::

    ROOT/splits/train-19zl.csv, ROOT/splits/val-19zl.csv   (no header)
    rows: bingmap/19/0000001.jpg,streetview/panos/0000001.jpg,<annotation>.png

CVACT::

    ROOT/ACT_data.mat   panoIds, utm (N x 2 metres), trainSet.trainInd,
                        valSet.valInd (ACT_small val), valSetAll.valInd (ACT_test); 1-based
    ROOT/ANU_data_small/{streetview/<id>_grdView.jpg, satview_polish/<id>_satView_polish.jpg}
    ROOT/ANU_data_test/ (same two folders, for the test split)

CVACT lists some pairs whose images are absent on disk; every public codebase
skips them. We skip them too, but count them: ``PairSet.missing`` holds their
ids, and the loader can raise instead (``on_missing="error"``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from geoloc_lib.core.errors import DatasetError, choices_message
from geoloc_lib.data.types import PairSet

CVUSA_SPLITS = {"train": "splits/train-19zl.csv", "val": "splits/val-19zl.csv"}
CVACT_SPLITS = {
    # split -> (struct in ACT_data.mat, field, image folder)
    "train": ("trainSet", "trainInd", "ANU_data_small"),
    "val": ("valSet", "valInd", "ANU_data_small"),
    "test": ("valSetAll", "valInd", "ANU_data_test"),
}


def _root_exists(root: Path, entry: str) -> None:
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist. See data_manifest.yaml entry '{entry}' for how "
            f"to obtain it, or run 'geoloc data verify {entry} --root {root}'."
        )


CVUSA_ROW = "bingmap/...,streetview/...[,annotation]"


def _cvusa_row(csv_path: Path, lineno: int, row: list[str]) -> tuple[str, str]:
    """The (aerial, panorama) paths of one split-CSV row, checked against the CVUSA layout:
    two or three columns, the aerial tile under ``bingmap/``, the panorama under ``streetview/``."""
    cells = [c.strip() for c in row]
    where = f"{csv_path}:{lineno}"
    if not 2 <= len(cells) <= 3:
        raise DatasetError(
            f"{where}: expected 2 or 3 columns '{CVUSA_ROW}', got {len(cells)}: {row}; "
            "fix the row or restore the split file from the CVUSA archive"
        )
    aerial, ground = cells[0], cells[1]
    if aerial.startswith("streetview/") and ground.startswith("bingmap/"):
        raise DatasetError(
            f"{where}: the aerial and panorama columns are swapped ({row}); expected "
            f"'{CVUSA_ROW}' — fix the row or restore the split file from the CVUSA archive"
        )
    for col, (value, folder) in enumerate(((aerial, "bingmap/"), (ground, "streetview/")), 1):
        if not value.startswith(folder):
            raise DatasetError(
                f"{where}: column {col} is {value!r}, expected a path under {folder} "
                f"(rows read '{CVUSA_ROW}'); fix the row or restore the split file from the "
                "CVUSA archive"
            )
    return aerial, ground


def load_cvusa(root: str | Path, split: str = "train") -> PairSet:
    """Read a CVUSA split CSV into ground/aerial path pairs (ids = panorama file stems)."""
    root = Path(root)
    _root_exists(root, "cvusa")
    if split not in CVUSA_SPLITS:
        raise DatasetError(choices_message("CVUSA split", split, CVUSA_SPLITS))
    csv_path = root / CVUSA_SPLITS[split]
    if not csv_path.is_file():
        raise DatasetError(
            f"missing split file {csv_path} (CVUSA layout, data_manifest.yaml entry 'cvusa')"
        )
    ground: list[Path] = []
    aerial: list[Path] = []
    ids: list[str] = []
    with csv_path.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            a_rel, g_rel = _cvusa_row(csv_path, lineno, row)
            aerial.append(root / a_rel)
            ground.append(root / g_rel)
            ids.append(Path(g_rel).stem)
    if not ids:
        raise DatasetError(f"split file {csv_path} lists no pairs")
    missing = [
        i for i, g, a in zip(ids, ground, aerial, strict=True) if not (g.is_file() and a.is_file())
    ]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(ids)} pairs listed in {csv_path} are missing on disk, "
            f"e.g. {missing[:3]}; re-extract the CVUSA archive"
        )
    return PairSet(name=f"cvusa/{split}", ground=ground, aerial=aerial, ids=ids)


def _mat_strings(value: np.ndarray) -> list[str]:
    """panoIds may be a MATLAB cell array of char or a char matrix, depending on the writer."""
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return [str(s).strip() for s in arr.reshape(-1)]
    out = []
    for item in arr.reshape(-1):
        out.append(str(np.asarray(item).reshape(-1)[0]).strip())
    return out


def _mat_field(mat: dict, struct: str, field: str, path: Path) -> np.ndarray:
    if struct not in mat:
        raise DatasetError(f"{path} has no variable '{struct}' (CVACT ACT_data.mat layout)")
    s = mat[struct]
    try:
        return np.asarray(s[field][0, 0] if s.dtype.names else s.item()[field]).reshape(-1)
    except (KeyError, ValueError, IndexError) as err:
        raise DatasetError(f"{path}: '{struct}' has no field '{field}'") from err


def load_cvact(root: str | Path, split: str = "val", on_missing: str = "skip") -> PairSet:
    """Read CVACT pairs of a split (train, val = ACT_small validation, test = ACT_test).

    ``on_missing``: ``"skip"`` (count them in ``PairSet.missing``) or ``"error"``.
    Coordinates are UTM metres from ``utm``; indices in the .mat are 1-based.
    """
    import scipy.io

    root = Path(root)
    _root_exists(root, "cvact")
    if split not in CVACT_SPLITS:
        raise DatasetError(choices_message("CVACT split", split, CVACT_SPLITS))
    if on_missing not in ("skip", "error"):
        raise DatasetError(choices_message("on_missing", on_missing, ("skip", "error")))
    mat_path = root / "ACT_data.mat"
    if not mat_path.is_file():
        raise DatasetError(f"missing {mat_path} (CVACT layout, data_manifest.yaml entry 'cvact')")
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as err:  # scipy raises several types for corrupt files
        raise DatasetError(f"cannot read {mat_path}: {err}; re-download ACT_data.mat") from err
    for key in ("panoIds", "utm"):
        if key not in mat:
            raise DatasetError(f"{mat_path} has no variable '{key}' (CVACT ACT_data.mat layout)")
    pano_ids = _mat_strings(mat["panoIds"])
    utm = np.asarray(mat["utm"], dtype=np.float64)
    if utm.shape != (len(pano_ids), 2):
        raise DatasetError(
            f"{mat_path}: utm has shape {utm.shape}, expected ({len(pano_ids)}, 2) for "
            f"{len(pano_ids)} panoIds"
        )
    struct, field, folder = CVACT_SPLITS[split]
    one_based = _mat_field(mat, struct, field, mat_path).astype(np.int64)
    if one_based.size and (one_based.min() < 1 or one_based.max() > len(pano_ids)):
        raise DatasetError(
            f"{mat_path}: {struct}.{field} holds indices outside 1..{len(pano_ids)} "
            "(indices are 1-based in the CVACT format)"
        )
    idx = one_based - 1
    base = root / folder
    if not base.is_dir():
        raise DatasetError(f"missing folder {base} (CVACT layout, needed for split '{split}')")
    ids = [pano_ids[i] for i in idx]
    ground = [base / "streetview" / f"{pid}_grdView.jpg" for pid in ids]
    aerial = [base / "satview_polish" / f"{pid}_satView_polish.jpg" for pid in ids]
    present = np.array([g.is_file() and a.is_file() for g, a in zip(ground, aerial, strict=True)])
    missing = [pid for pid, ok in zip(ids, present, strict=True) if not ok]
    if missing and on_missing == "error":
        raise DatasetError(
            f"{len(missing)} of {len(ids)} CVACT '{split}' pairs are missing under {base}, "
            f"e.g. {missing[:3]}"
        )
    keep = np.flatnonzero(present)
    return PairSet(
        name=f"cvact/{split}",
        ground=[ground[i] for i in keep],
        aerial=[aerial[i] for i in keep],
        ids=[ids[i] for i in keep],
        coords=utm[idx[keep]],
        missing=missing,
    )
