"""University-1652 and University160k-WX loaders (the benchmarks of MCGF).

Layout (University-1652)::

    ROOT/train/{drone,satellite,street,google}/<id>/<files>
    ROOT/test/{query_drone,gallery_drone,query_satellite,gallery_satellite,
               query_street,gallery_street,4K_drone}/<id>/<files>

Ids are 4-digit strings; the integer value of the id is the class label, so
labels agree across views and across query/gallery sets. Loaders index files
only; pixels are decoded later.

Validation: the dataset has no validation split, and the test split is for the final
evaluation of a trained model only. :func:`split_train_locations` holds a fixed share of the
*training* locations out as validation (:meth:`University1652.train_val_split`); training uses
the rest (:meth:`University1652.train_sets`) and monitors ``task(..., split="val")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoloc_lib.core.errors import DatasetError, choices_message
from geoloc_lib.data.images import IMAGE_SUFFIXES, not_a_file
from geoloc_lib.data.text import read_name_list
from geoloc_lib.data.types import ImageSet

# Folders every University-1652 copy has; the others are optional.
REQUIRED_SETS = (
    "train/drone",
    "train/satellite",
    "test/query_drone",
    "test/gallery_drone",
    "test/query_satellite",
    "test/gallery_satellite",
)
OPTIONAL_SETS = (
    "train/street",
    "train/google",
    "test/query_street",
    "test/gallery_street",
    "test/4K_drone",
)

# task -> (query set, gallery set)
TASKS = {
    "drone->satellite": ("test/query_drone", "test/gallery_satellite"),
    "satellite->drone": ("test/query_satellite", "test/gallery_drone"),
    "street->satellite": ("test/query_street", "test/gallery_satellite"),
}
# The same tasks on the validation locations: queries of the held-out training locations,
# the gallery every training location's images of the other view.
VAL_TASKS = {
    "drone->satellite": ("train/drone", "train/satellite"),
    "satellite->drone": ("train/satellite", "train/drone"),
    "street->satellite": ("train/street", "train/satellite"),
}
SPLITS = ("test", "val")

# Validation locations held out of the training split. About a tenth of the training
# locations (70 of University-1652's 701, 70 of GeoSynth default's 704) gives the monitor
# ~3,800 (real) or ~840 (GeoSynth) drone views to subsample; at least VAL_MIN_LOCATIONS so a
# small copy still has a few true matches to rank, and at most half the locations so training
# keeps the larger part. The permutation's seed is fixed, independent of the training seed:
# every run on one dataset holds out the same locations (seeds and variants stay comparable).
VAL_FRACTION = 0.1
VAL_MIN_LOCATIONS = 3
VAL_SPLIT_SEED = 1652
VAL_SPLIT = (
    f"University-1652 training locations: {VAL_FRACTION:.0%} (at least {VAL_MIN_LOCATIONS}) "
    f"held out, seeded permutation {VAL_SPLIT_SEED} of the sorted ids"
)


def split_train_locations(
    locations: np.ndarray,
    fraction: float = VAL_FRACTION,
    min_locations: int = VAL_MIN_LOCATIONS,
    seed: int = VAL_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: sorted location ids, the validation ones the first
    ``clip(round(fraction * n), min_locations, n // 2)`` of a permutation of the sorted unique
    ids drawn with ``seed``. Deterministic in the set of ids only (not in their order)."""
    ids = np.unique(np.asarray(locations, dtype=np.int64))
    n = len(ids)
    n_val = min(max(min_locations, int(round(fraction * n))), n // 2)
    order = np.random.default_rng(seed).permutation(n)
    val = np.sort(ids[order[:n_val]])
    return np.setdiff1d(ids, val), val


def _label_of(location_id: str, folder: Path) -> int:
    if not location_id.isdigit():
        raise DatasetError(
            f"folder {folder / location_id} is not a University-1652 location id "
            "(expected a numeric id such as 0001). Remove stray folders from the dataset tree."
        )
    return int(location_id)


def index_image_folder(folder: Path, name: str) -> ImageSet:
    """Index ``folder/<id>/<image>`` into an :class:`ImageSet` (sorted, deterministic).

    Files that are not images (by suffix) are not silently dropped: they raise,
    because a stray file in a dataset tree usually means a bad extraction.
    """
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder}")
    paths: list[Path] = []
    names: list[str] = []
    labels: list[int] = []
    for loc_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = _label_of(loc_dir.name, folder)
        for f in sorted(loc_dir.iterdir()):
            if f.name.startswith("."):
                continue  # .DS_Store and similar OS litter
            problem = not_a_file(f)
            if problem:
                raise DatasetError(
                    f"{f} is {problem}; every entry of a location folder must be an image file: "
                    "remove it or re-extract the dataset"
                )
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(
                    f"unexpected file {f} (not an image: {', '.join(IMAGE_SUFFIXES)}); "
                    "remove it or re-extract the dataset"
                )
            paths.append(f)
            names.append(loc_dir.name)
            labels.append(label)
    if not paths:
        raise DatasetError(f"folder {folder} holds no images in <id>/ subfolders")
    return ImageSet(name=name, paths=paths, labels=np.asarray(labels), names=names)


@dataclass
class University1652:
    """An indexed University-1652-layout dataset (real or GeoSynth)."""

    root: Path
    sets: dict[str, ImageSet] = field(default_factory=dict)

    def task(self, task: str, split: str = "test") -> tuple[ImageSet, ImageSet]:
        """(query, gallery) for ``drone->satellite``, ``satellite->drone`` or ``street->satellite``.

        ``split="test"``: the dataset's test sets (evaluation of a trained model).
        ``split="val"``: the validation locations held out of the training split
        (:meth:`train_val_split`); the queries are their images of the query view, the gallery
        holds the other view's images of *every* training location: the held-out locations'
        true matches plus the locations training uses as distractors.
        """
        if task not in TASKS:
            raise DatasetError(choices_message("University-1652 task", task, TASKS))
        if split not in SPLITS:
            raise DatasetError(choices_message("University-1652 split", split, SPLITS))
        q, g = (TASKS if split == "test" else VAL_TASKS)[task]
        for key in (q, g):
            if key not in self.sets:
                raise DatasetError(
                    f"task {task!r} ({split}) needs {self.root / key}, which this copy of the "
                    "dataset lacks"
                )
        if split == "test":
            return self.sets[q], self.sets[g]
        _, val = self.train_val_split()
        if not len(val):
            raise DatasetError(
                f"{self.root / 'train'} has {len(self.all_train_classes)} training location(s): "
                "too few to hold any out for validation; train without validation: overrides "
                "{'run': {'val_queries': 0}} (the val_queries option of train_mcgf)"
            )
        query = self.sets[q]
        return query.select(np.flatnonzero(np.isin(query.labels, val)), f"{q}[val]"), self.sets[g]

    @property
    def all_train_classes(self) -> np.ndarray:
        """Sorted location labels of the dataset's training split (validation ones included)."""
        return np.unique(self.sets["train/satellite"].labels)

    def train_val_split(self) -> tuple[np.ndarray, np.ndarray]:
        """``(train, val)`` location labels of the training split (:func:`split_train_locations`)."""
        return split_train_locations(self.all_train_classes)

    @property
    def train_classes(self) -> np.ndarray:
        """Sorted labels of the locations training uses (the classifier's classes): the training
        split without the validation locations."""
        return self.train_val_split()[0]

    @property
    def val_classes(self) -> np.ndarray:
        """Sorted labels of the validation locations (held out of the training split)."""
        return self.train_val_split()[1]

    def train_sets(self) -> tuple[ImageSet, ImageSet]:
        """``(drone, satellite)`` images of the locations training uses (:attr:`train_classes`)."""
        keep = self.train_classes
        out = []
        for key in ("train/drone", "train/satellite"):
            images = self.sets[key]
            out.append(images.select(np.flatnonzero(np.isin(images.labels, keep)), f"{key}[fit]"))
        return out[0], out[1]


def load_university1652(
    root: str | Path, sets: tuple[str, ...] | None = None, manifest_entry: str = "university1652"
) -> University1652:
    """Index a University-1652-layout tree. ``sets`` restricts which folders are read.

    A missing required folder raises :class:`DatasetError` naming it and the
    ``data_manifest.yaml`` entry that says how to obtain the dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist. See data_manifest.yaml entry "
            f"'{manifest_entry}' for how to obtain it, or run "
            f"'geoloc data verify {manifest_entry} --root {root}'."
        )
    wanted = sets if sets is not None else REQUIRED_SETS + OPTIONAL_SETS
    unknown = set(wanted) - set(REQUIRED_SETS + OPTIONAL_SETS)
    if unknown:
        raise DatasetError(
            choices_message(
                "University-1652 set", sorted(unknown)[0], REQUIRED_SETS + OPTIONAL_SETS
            )
        )
    data = University1652(root=root)
    for key in wanted:
        folder = root / key
        if not folder.is_dir():
            if key in REQUIRED_SETS:
                raise DatasetError(
                    f"missing folder {folder} (University-1652 layout, data_manifest.yaml entry "
                    f"'{manifest_entry}'). Check --root points at the folder holding train/ and test/."
                )
            continue
        data.sets[key] = index_image_folder(folder, key)
    return data


@dataclass
class University160kWXTest:
    """The name-masked University160k-WX test set: queries in list order, .webp gallery."""

    queries: ImageSet  # labels are -1: the truth is held by the challenge server
    gallery: ImageSet
    query_order: list[str]  # file names as listed in query_drone_name.txt


def load_university160k_wx(
    root: str | Path,
    query_folder: str = "query_drone_160k_wx_24",
    gallery_folder: str = "gallery_satellite_160k",
    query_list: str = "query_drone_name.txt",
) -> University160kWXTest:
    """Index the University160k-WX test set for writing a challenge submission.

    Queries follow the order of ``query_list``; every listed file must exist
    (a missing one is an error naming it). Gallery names are the file stems.
    """
    root = Path(root)
    qdir, gdir, qlist = root / query_folder, root / gallery_folder, root / query_list
    for p, what in ((qdir, "query folder"), (gdir, "gallery folder"), (qlist, "query list")):
        if not p.exists():
            raise DatasetError(
                f"missing {what} {p} (data_manifest.yaml entry 'university160k_wx'); the test "
                "set comes from the challenge organisers on request"
            )
    order = read_name_list(
        qlist, "query list", "restore query_drone_name.txt from the challenge's test archive"
    )
    if not order:
        raise DatasetError(f"query list {qlist} is empty")
    qpaths = [qdir / name for name in order]
    missing = [p.name for p in qpaths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} queries listed in {qlist} are missing from {qdir}, "
            f"e.g. {missing[:3]}; re-extract the test archive"
        )
    gpaths = sorted(p for p in gdir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not gpaths:
        raise DatasetError(f"gallery folder {gdir} holds no images")
    queries = ImageSet(
        name="query_drone_160k_wx",
        paths=qpaths,
        labels=np.full(len(qpaths), -1),
        names=[p.stem for p in qpaths],
    )
    gallery = ImageSet(
        name="gallery_satellite_160k",
        paths=gpaths,
        labels=np.full(len(gpaths), -1),
        names=[p.stem for p in gpaths],
    )
    return University160kWXTest(queries=queries, gallery=gallery, query_order=order)
