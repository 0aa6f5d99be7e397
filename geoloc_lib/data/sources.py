"""Which folders a run reads: the embedded GeoSynth benchmark or real datasets.

Notebooks take a ``dataset`` parameter (``geosynth`` or ``real``) and roots;
this module turns them into the University-1652-layout root (drone/satellite)
and the street root (CVACT or CVUSA layout), generating GeoSynth when needed.

The ``tasks`` parameter says which of the two tasks a run covers: ``"drone"`` (drone <->
satellite, University-1652 layout) and/or ``"street"`` (street -> aerial, CVACT or CVUSA).
A task left out has no root in :class:`DataSources`: its data is neither needed nor read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.data.geosynth.writer import read_json
from geoloc_lib.data.street import STREET_TILE_M, load_cvact, load_cvusa
from geoloc_lib.data.types import PairSet
from geoloc_lib.data.university import University1652, load_university1652

DATASETS = ("geosynth", "real")
STREET_FORMATS = ("cvact", "cvusa")
TASK_NAMES = ("drone", "street")
# The root parameter and the dataset each task reads.
TASK_ROOTS = {"drone": "university_root", "street": "street_root"}
_TASK_DATA = {
    "drone": "University-1652 (drone <-> satellite)",
    "street": "CVACT or CVUSA (street -> aerial)",
}


def check_tasks(tasks: object) -> list[str]:
    """``tasks`` as a list of task names (``"drone"``, ``"street"``), each once; a clear error
    naming the parameter otherwise."""
    example = "e.g. tasks=['drone'] (University-1652 only) or tasks=['drone', 'street']"
    if (
        not isinstance(tasks, list | tuple)
        or not tasks
        or not all(isinstance(t, str) for t in tasks)
    ):
        raise ConfigError(
            "parameter tasks: expected a non-empty list of drone and/or street, "
            f"{example}; got {tasks!r}"
        )
    bad = [t for t in tasks if t not in TASK_NAMES]
    if bad:
        raise ConfigError(
            f"parameter tasks: {choices_message('task', bad[0], TASK_NAMES)} ({example})"
        )
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"parameter tasks: each task once, {example}; got {list(tasks)!r}")
    return list(tasks)


def skip_note(task: str, tasks: list[str] | tuple[str, ...]) -> str:
    """The line a notebook or the dry run prints for a task left out of ``tasks``."""
    return f"{task} task skipped: tasks={list(tasks)!r}"


def select_tasks(tasks: object) -> list[str]:
    """Check ``tasks`` (:func:`check_tasks`), print one line per task left out
    (``street task skipped: tasks=['drone']``) and return the checked list."""
    tasks = check_tasks(tasks)
    for task in TASK_NAMES:
        if task not in tasks:
            print(skip_note(task, tasks))
    return tasks


@dataclass
class DataSources:
    dataset: str
    university_root: Path | None
    street_root: Path | None
    street_format: str
    tasks: tuple[str, ...] = TASK_NAMES  # the tasks the run covers (a left-out task has no root)

    def _no_root(self, task: str) -> ConfigError:
        what = {"drone": "University-1652", "street": "street-view"}[task]
        if task not in self.tasks:
            return ConfigError(
                f"the {task} task is not run ({skip_note(task, self.tasks)}): no {what} data; "
                f"add {task!r} to parameter tasks and give {TASK_ROOTS[task]}"
            )
        return ConfigError(f"no {what} root configured (parameter {TASK_ROOTS[task]})")

    def university(self) -> University1652:
        if self.university_root is None:
            raise self._no_root("drone")
        return load_university1652(self.university_root)

    def street_tile_m(self) -> float:
        """The side of an aerial tile in metres: GeoSynth's from its manifest (``geosynth.json``
        beside or above the street root), CVACT's 144 m otherwise (reference facts, §1)."""
        if self.dataset == "geosynth" and self.street_root is not None:
            for folder in (self.street_root, self.street_root.parent):
                manifest = folder / "geosynth.json"
                if manifest.is_file():
                    return float(read_json(manifest, "GeoSynth manifest")["conventions"]["tile_m"])
        return STREET_TILE_M

    def street(self, split: str) -> PairSet:
        """Street/aerial pairs; for CVUSA the 'test' split is its 'val' split (no other exists)."""
        if self.street_root is None:
            raise self._no_root("street")
        if self.street_format == "cvusa":
            return load_cvusa(self.street_root, "val" if split == "test" else split)
        return load_cvact(self.street_root, split)

    @property
    def street_splits(self) -> tuple[str, ...]:
        return ("train", "val") if self.street_format == "cvusa" else ("train", "val", "test")


def resolve_sources(
    dataset: str,
    data_root: str | Path = "",
    university_root: str | Path = "",
    street_root: str | Path = "",
    street_format: str = "cvact",
    tasks: list[str] | tuple[str, ...] | None = None,
) -> DataSources:
    """Map notebook parameters to dataset roots (empty string = not given).

    ``tasks`` (:func:`check_tasks`): the roots of the tasks left out are ``None`` (not read);
    with ``dataset="real"`` each task's root must be given. ``None``: the tasks whose roots
    are given (GeoSynth: both)."""
    if dataset not in DATASETS:
        raise ConfigError(f"parameter dataset: {choices_message('dataset', dataset, DATASETS)}")
    if street_format not in STREET_FORMATS:
        raise ConfigError(
            f"parameter street_format: {choices_message('street format', street_format, STREET_FORMATS)}"
        )
    uni = Path(university_root) if university_root else None
    street = Path(street_root) if street_root else None
    if dataset == "geosynth":
        if not data_root:
            raise ConfigError("parameter data_root: required when dataset='geosynth'")
        root = Path(data_root)
        uni = uni or root / "University-1652"
        street = street or root / ("CVACT" if street_format == "cvact" else "CVUSA")
    elif tasks is None and uni is None and street is None:
        raise ConfigError(
            "dataset='real' needs university_root and/or street_root (see data_manifest.yaml)"
        )
    if tasks is None:
        chosen = tuple(t for t, root in (("drone", uni), ("street", street)) if root is not None)
        return DataSources(dataset, uni, street, street_format, chosen or TASK_NAMES)
    chosen = tuple(check_tasks(tasks))
    roots = {"drone": uni, "street": street}
    for task in chosen:
        if roots[task] is None:
            other = [t for t in TASK_NAMES if t != task]
            raise ConfigError(
                f"parameter {TASK_ROOTS[task]}: not given, and tasks={list(chosen)!r} include "
                f"{task!r} ({_TASK_DATA[task]}); give the dataset's root, or leave the task "
                f"out (tasks={other!r})"
            )
    return DataSources(
        dataset,
        uni if "drone" in chosen else None,
        street if "street" in chosen else None,
        street_format,
        chosen,
    )


def prepare_geosynth(root: str | Path, profile: str, seed: int, progress: bool = False) -> dict:
    """Generate GeoSynth into ``root`` unless an intact copy of this profile and seed is there.

    Returns the generator's manifest (``geosynth.json``) with an added ``"reused"`` flag saying
    whether the copy on disk was kept. Files in ``root`` that the generator did not write (a
    weather set saved inside it, notes...) are never deleted: they are reported with a warning
    and listed under ``"kept_files"``. A damaged copy is regenerated with a warning that says
    why; an unreadable ``geosynth.json`` raises :class:`DatasetError`.
    """
    import warnings

    from geoloc_lib.core.errors import DatasetError
    from geoloc_lib.data.geosynth import generate_geosynth, verify_geosynth
    from geoloc_lib.data.geosynth.writer import PARTIAL, read_json

    root = Path(root)
    meta_file = root / "geosynth.json"
    if meta_file.is_file() and not (root / PARTIAL).exists():
        meta = read_json(meta_file, "GeoSynth manifest")
        if meta.get("profile") == profile and meta.get("seed") == seed:
            try:
                summary = verify_geosynth(root)
            except DatasetError as err:
                warnings.warn(f"{err}: regenerating its files", stacklevel=2)
            else:
                if summary["extra"]:
                    extra = summary["extra"]
                    shown = ", ".join(extra[:5]) + (
                        f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""
                    )
                    warnings.warn(
                        f"GeoSynth at {root}: reused; {len(extra)} file(s) in it were not "
                        f"written by the generator and are kept: {shown}",
                        stacklevel=2,
                    )
                    meta["kept_files"] = extra
                return {**meta, "reused": True}
    meta = generate_geosynth(root, profile=profile, seed=seed, progress=progress)
    return {**meta, "reused": False}


def counts_table(sources: DataSources) -> pd.DataFrame:
    """Locations and images per set, and street pairs per split (missing pairs counted)."""
    rows = []
    if sources.university_root is not None:
        uni = sources.university()
        for key, s in uni.sets.items():
            rows.append(
                {
                    "dataset": "University-1652 layout",
                    "set": key,
                    "locations": len(set(s.names)),
                    "images": len(s),
                    "missing": 0,
                }
            )
    if sources.street_root is not None:
        for split in sources.street_splits:
            pairs = sources.street(split)
            rows.append(
                {
                    "dataset": f"{sources.street_format.upper()} layout",
                    "set": split,
                    "locations": len(pairs),
                    "images": 2 * len(pairs),
                    "missing": len(pairs.missing),
                }
            )
    return pd.DataFrame(rows)


def university(sources_or_root: DataSources | University1652 | str | Path) -> University1652:
    """The University-1652-layout dataset of DataSources, a root folder, or the dataset itself."""
    if isinstance(sources_or_root, University1652):
        return sources_or_root
    if isinstance(sources_or_root, DataSources):
        return sources_or_root.university()
    return load_university1652(sources_or_root)


def street_pairs(sources_or_root: DataSources | str | Path, split: str) -> PairSet:
    """A split of a street dataset from DataSources, a CVACT/CVUSA root, or a GeoSynth root."""
    if isinstance(sources_or_root, DataSources):
        return sources_or_root.street(split)
    root = Path(sources_or_root)
    if (root / "ACT_data.mat").is_file():
        return load_cvact(root, split)
    if (root / "splits").is_dir():
        return load_cvusa(root, "val" if split == "test" else split)
    if (root / "CVACT" / "ACT_data.mat").is_file():  # a GeoSynth root: CVACT layout by default
        return load_cvact(root / "CVACT", split)
    raise ConfigError(
        f"sources_or_root {root}: not a CVACT root (ACT_data.mat), a CVUSA root (splits/) or a "
        "GeoSynth root (CVACT/ACT_data.mat); pass resolve_sources(...) or one of those folders"
    )
