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

Validation: the datasets' ``val`` split is what the papers report on (GeoViewMatch Table 5:
CVUSA val, CVACT val), so it is an evaluation split. Training monitors pairs held out of the
``train`` split instead (:func:`split_train_pairs`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from geoloc_lib.core.errors import DatasetError, choices_message
from geoloc_lib.data.text import read_text
from geoloc_lib.data.types import PairSet

CVUSA_SPLITS = {"train": "splits/train-19zl.csv", "val": "splits/val-19zl.csv"}
CVACT_SPLITS = {
    # split -> (struct in ACT_data.mat, field, image folder)
    "train": ("trainSet", "trainInd", "ANU_data_small"),
    "val": ("valSet", "valInd", "ANU_data_small"),
    "test": ("valSetAll", "valInd", "ANU_data_test"),
}


# Validation pairs held out of the training split: a tenth of the pairs (CVACT: ~3,500; GeoSynth
# default: ~64), in whole spatial blocks where coordinates exist. A block is 4 tiles on a side:
# large enough that the guard band around it (below) costs fewer training pairs than the block
# holds, small enough that CVACT's training area has hundreds of blocks to draw from. The tile
# is CVACT's (~144 m; GeoSynth's is 128 m, so the guard also covers it). The seed is fixed,
# independent of the training seed: every run on one dataset holds out the same pairs.
STREET_VAL_FRACTION = 0.1
STREET_TILE_M = 144.0
STREET_VAL_BLOCK_M = 4 * STREET_TILE_M
STREET_VAL_SPLIT_SEED = 1652
# Random block draws compared: in a small area (a GeoSynth smoke district is ~512 m across)
# the guard band of one unlucky draw can take most training pairs; the kept draw drops fewest.
STREET_VAL_DRAWS = 8
STREET_VAL_SPLIT = (
    f"street training pairs: {STREET_VAL_FRACTION:.0%} held out in {STREET_VAL_BLOCK_M:.0f} m "
    f"UTM blocks (halved while one block exceeds twice that share), training pairs whose "
    f"{STREET_TILE_M:.0f} m tile overlaps a validation tile dropped, fewest dropped of "
    f"{STREET_VAL_DRAWS} draws; without coordinates a permutation; seed {STREET_VAL_SPLIT_SEED}"
)


def _take_pairs(pairs: PairSet, index: np.ndarray, name: str) -> PairSet:
    index = np.asarray(index, dtype=np.int64)
    return PairSet(
        name=name,
        ground=[pairs.ground[i] for i in index],
        aerial=[pairs.aerial[i] for i in index],
        ids=[pairs.ids[i] for i in index],
        coords=None if pairs.coords is None else pairs.coords[index],
    )


def _blocks(coords: np.ndarray, target: int, block_m: float, min_block_m: float) -> np.ndarray:
    """Block index of each pair: squares of ``block_m``, halved (down to ``min_block_m``) while
    one block holds more than twice ``target`` pairs (a small area, e.g. a smoke dataset)."""
    while True:
        cell = np.floor((coords - coords.min(0)) / block_m).astype(np.int64)
        _, block, counts = np.unique(cell, axis=0, return_inverse=True, return_counts=True)
        if counts.max() <= 2 * target or block_m / 2 < min_block_m:
            return block.reshape(-1)
        block_m /= 2


def split_train_pairs(
    pairs: PairSet,
    fraction: float = STREET_VAL_FRACTION,
    *,
    seed: int = STREET_VAL_SPLIT_SEED,
    block_m: float = STREET_VAL_BLOCK_M,
    tile_m: float = STREET_TILE_M,
    draws: int = STREET_VAL_DRAWS,
) -> tuple[PairSet, PairSet]:
    """``(train, val)``: a training split cut into the pairs training uses and validation pairs.

    With coordinates (CVACT, GeoSynth's CVACT layout) validation takes whole square blocks of
    ``block_m`` metres of UTM coordinates (the side halved, down to ``tile_m``, while a block
    holds more than twice the target), drawn in a seeded random order until they hold
    ``round(fraction * n)`` pairs. Training pairs whose ``tile_m`` tile (square, centred on
    the pair, north-aligned) overlaps a validation pair's tile are dropped from both, so no
    validation tile shares ground with a tile training sees (GeoSynth's panoramas are 12 m
    apart along a street). Of ``draws`` such random draws (all from ``seed``) the one dropping
    the fewest pairs is kept. Without coordinates (CVUSA) validation is the first pairs of a
    permutation seeded with ``seed``. Each part keeps the order of ``pairs``; validation holds
    at most half the pairs.
    """
    n = len(pairs)
    target = min(max(1, int(round(fraction * n))), n // 2)
    if target == 0:
        raise DatasetError(f"{pairs.name} has {n} pair(s): too few to hold any out for validation")
    rng = np.random.default_rng(seed)
    if pairs.coords is None:
        val = np.sort(rng.permutation(n)[:target])
        train = np.setdiff1d(np.arange(n), val)
    else:
        from scipy.spatial import cKDTree

        coords = np.asarray(pairs.coords, dtype=np.float64)
        block = _blocks(coords, target, block_m, tile_m)
        counts = np.bincount(block)
        best: tuple[np.ndarray, np.ndarray] | None = None
        for _ in range(max(1, draws)):
            order = rng.permutation(len(counts))
            chosen = order[: int(np.searchsorted(np.cumsum(counts[order]), target)) + 1]
            val = np.flatnonzero(np.isin(block, chosen))
            if len(val) > n // 2:  # one block holds most pairs: a random share of it
                val = np.sort(rng.permutation(val)[:target])
            rest = np.setdiff1d(np.arange(n), val)
            # Chebyshev distance < tile: the two north-aligned square tiles overlap
            gap, _ = cKDTree(coords[val]).query(coords[rest], k=1, p=np.inf)
            kept = rest[gap >= tile_m]
            if best is None or len(kept) + len(val) > len(best[0]) + len(best[1]):
                best = (kept, val)
        train, val = best
    return (
        _take_pairs(pairs, train, f"{pairs.name}[fit]"),
        _take_pairs(pairs, val, f"{pairs.name}[val]"),
    )


def near_duplicate_rate(pairs: PairSet | np.ndarray, tile_size_m: float) -> float:
    """Fraction of gallery tiles that overlap another gallery tile by more than half their area.

    Tiles are axis-aligned squares of side ``tile_size_m`` centred on the pairs' UTM
    coordinates (``pairs.coords``, or an ``[N, 2]`` array); two tiles offset by (dx, dy)
    overlap on ``max(0, s - |dx|) * max(0, s - |dy|)``. Candidate pairs come from a k-d tree
    (Chebyshev radius ``s``), so the cost grows with the number of overlapping pairs, not N².
    """
    from scipy.spatial import cKDTree

    coords = pairs.coords if isinstance(pairs, PairSet) else pairs
    if coords is None:
        raise DatasetError(
            f"near_duplicate_rate: {pairs.name} has no coordinates (CVUSA has none; CVACT and "
            "GeoSynth's CVACT layout have UTM coordinates)"
        )
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if tile_size_m <= 0:
        raise DatasetError(f"near_duplicate_rate: tile_size_m must be > 0, got {tile_size_m}")
    if len(coords) < 2:
        return 0.0
    s = float(tile_size_m)
    close = cKDTree(coords).query_pairs(s, p=np.inf, output_type="ndarray")
    if not len(close):
        return 0.0
    d = np.abs(coords[close[:, 0]] - coords[close[:, 1]])
    overlap = np.clip(s - d[:, 0], 0, None) * np.clip(s - d[:, 1], 0, None)
    dup = close[overlap > s * s / 2]
    flagged = np.zeros(len(coords), dtype=bool)
    flagged[dup.reshape(-1)] = True
    return float(flagged.mean())


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
    text = read_text(csv_path, "split file", "restore it from the CVUSA archive")
    seen: dict[str, int] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row:
            continue
        a_rel, g_rel = _cvusa_row(csv_path, lineno, row)
        for rel in (a_rel, g_rel):
            if rel in seen:
                raise DatasetError(
                    f"{csv_path}:{lineno}: {rel} is listed again (first on line {seen[rel]}); "
                    "each pair appears once: remove the repeated row or restore the split file "
                    "from the CVUSA archive"
                )
            seen[rel] = lineno
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


def _mat_indices(values: np.ndarray, name: str, path: Path) -> np.ndarray:
    """1-based indices of a split as integers: a fractional, non-finite or repeated index is a
    :class:`DatasetError` naming its position."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: {name} holds {values.dtype} values, expected indices")
    floats = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(floats) | (floats != np.round(floats)))
    if bad.size:
        raise DatasetError(
            f"{path}: {name} entry {bad[0] + 1} is {float(floats[bad[0]])!r}, not a whole number "
            "(indices are 1-based integers in the CVACT format); restore ACT_data.mat"
        )
    ints = floats.astype(np.int64)
    _, first, counts = np.unique(ints, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = ints[first[np.argmax(counts > 1)]]
        where = np.flatnonzero(ints == dup)[:2] + 1
        raise DatasetError(
            f"{path}: {name} entries {where[0]} and {where[1]} both hold index {dup}; each pair "
            "appears once in a split: restore ACT_data.mat"
        )
    return ints


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
    bad = np.flatnonzero(~np.isfinite(utm).all(axis=1))
    if bad.size:
        raise DatasetError(
            f"{mat_path}: utm row {bad[0] + 1} (panoId {pano_ids[bad[0]]!r}) holds "
            f"{utm[bad[0]].tolist()}; {bad.size} row(s) are not finite coordinates: restore "
            "ACT_data.mat from the CVACT release"
        )
    first: dict[str, int] = {}
    for k, pid in enumerate(pano_ids, start=1):
        if pid in first:
            raise DatasetError(
                f"{mat_path}: panoIds {k} and {first[pid]} are both {pid!r}; each panorama "
                "appears once: restore ACT_data.mat from the CVACT release"
            )
        first[pid] = k
    struct, field, folder = CVACT_SPLITS[split]
    one_based = _mat_indices(
        _mat_field(mat, struct, field, mat_path), f"{struct}.{field}", mat_path
    )
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
