"""Plain containers the loaders return: lists of files plus labels and metadata.

Loaders only index files; pixels are read lazily by the torch datasets in
``geoloc_lib.data.torch_datasets``. Keeping the index separate from the
decoding lets the evaluation code work on labels and coordinates without
touching images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class ImageSet:
    """One set of images (a query set, a gallery, a training view).

    ``labels`` are integer class ids shared across the views of one dataset
    (University-1652: the building id as an int); -1 marks junk. ``names`` are
    the location ids as strings as they appear on disk. ``attrs`` carries
    optional per-image attributes (weather condition, altitude, ...).
    """

    name: str
    paths: list[Path]
    labels: np.ndarray
    names: list[str]
    attrs: pd.DataFrame | None = None
    coords: np.ndarray | None = None  # [N, 2] easting, northing in metres

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.paths)
        if len(self.labels) != n or len(self.names) != n:
            raise ValueError(
                f"ImageSet {self.name!r}: {n} paths but {len(self.labels)} labels "
                f"and {len(self.names)} names"
            )
        if self.attrs is not None and len(self.attrs) != n:
            raise ValueError(f"ImageSet {self.name!r}: attrs has {len(self.attrs)} rows, not {n}")
        if self.coords is not None:
            self.coords = np.asarray(self.coords, dtype=np.float64)
            if self.coords.shape != (n, 2):
                raise ValueError(
                    f"ImageSet {self.name!r}: coords shape {self.coords.shape}, expected ({n}, 2)"
                )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.labels[self.labels >= 0]))

    def select(self, index: np.ndarray, name: str | None = None) -> ImageSet:
        """The images at ``index`` (integer positions, in that order), their attributes with them."""
        index = np.asarray(index, dtype=np.int64)
        return ImageSet(
            name=self.name if name is None else name,
            paths=[self.paths[i] for i in index],
            labels=self.labels[index],
            names=[self.names[i] for i in index],
            attrs=None if self.attrs is None else self.attrs.iloc[index].reset_index(drop=True),
            coords=None if self.coords is None else self.coords[index],
        )


@dataclass
class PairSet:
    """Street-view / aerial pairs (CVUSA, CVACT): item i of ``ground`` matches item i of ``aerial``."""

    name: str
    ground: list[Path]
    aerial: list[Path]
    ids: list[str]
    coords: np.ndarray | None = None  # [N, 2] UTM easting, northing (CVACT)
    missing: list[str] = field(default_factory=list)  # ids listed but absent on disk

    def __post_init__(self) -> None:
        if not (len(self.ground) == len(self.aerial) == len(self.ids)):
            raise ValueError(
                f"PairSet {self.name!r}: {len(self.ground)} ground, {len(self.aerial)} aerial, "
                f"{len(self.ids)} ids"
            )
        if self.coords is not None:
            self.coords = np.asarray(self.coords, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.ids)
