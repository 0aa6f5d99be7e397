"""torch Datasets, a sharding sampler and DataLoader builders for University-1652-layout data.

Training (MCGF and the classification baseline) is per location: one item is a location, a
drone view of it and its satellite tile, with the location's class index. The sampler, not the
dataset, draws the drone view, from ``(seed, epoch)`` only, so the data order is a pure function
of the seed and the epoch whatever the number of workers or ranks: resumed and distributed runs
see exactly the batches an uninterrupted single run would. Images are float ``[3, H, W]`` in
``[0, 1]``; the weather is applied later, batched on the device (``geoloc_lib.weather``), which is
why the clean drone image is what the dataset returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geoloc_lib.core.distributed import dist_info
from geoloc_lib.core.errors import DatasetError
from geoloc_lib.core.seeding import make_generator, seed_worker
from geoloc_lib.data.augment import PairAugConfig, augment_pair, pair_augment
from geoloc_lib.data.images import read_image
from geoloc_lib.data.types import ImageSet
from geoloc_lib.data.university import University1652


def to_tensor(path: str | Path, size: int) -> torch.Tensor:
    """Read an image as float ``[3, size, size]`` in [0, 1] (bilinear resize)."""
    arr = np.asarray(read_image(path, (size, size)), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class _ImageCache:
    """Decoded, resized images kept in memory (uint8) so later epochs skip JPEG decoding."""

    def __init__(self, size: int, enabled: bool) -> None:
        self.size, self.enabled = size, enabled
        self.store: dict[Path, torch.Tensor] = {}

    def get(self, path: Path) -> torch.Tensor:
        if not self.enabled:
            return to_tensor(path, self.size)
        hit = self.store.get(path)
        if hit is None:
            hit = to_tensor(path, self.size).mul_(255).round_().to(torch.uint8)
            self.store[path] = hit
        return hit.float().div_(255.0)


class ShardedSampler(Sampler):
    """Deterministic (optionally shuffled) order over ``n`` items, sharded over ranks.

    Each epoch's permutation comes from ``(seed, epoch)``; ``repeats`` visits each item that many
    times per epoch. With ``views`` (the number of drone views of each item) it yields
    ``(item, view, draw)``: the view drawn uniformly from the same seed and ``draw``, a random
    integer the dataset seeds its augmentation with (so augmentations change every epoch yet stay
    a function of ``(seed, epoch)``). Like
    ``DistributedSampler`` the order is padded to a multiple of ``world_size`` and rank ``r`` takes
    positions ``r, r + W, r + 2W, ...``; rank and world size default to the current job.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        repeats: int = 1,
        views: Sequence[int] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if n < 1:
            raise DatasetError("the sampler got an empty dataset")
        info = dist_info()
        self.n, self.shuffle, self.seed, self.repeats = n, shuffle, seed, repeats
        self.views = None if views is None else np.asarray(views, dtype=np.int64)
        if self.views is not None and (len(self.views) != n or (self.views < 1).any()):
            raise DatasetError("views must give a positive number of drone views per item")
        self.rank = info.rank if rank is None else rank
        self.world_size = info.world_size if world_size is None else world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def __len__(self) -> int:
        return math.ceil(self.n * self.repeats / self.world_size)

    def _order(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        rng = np.random.default_rng([self.seed, self.epoch])
        items = np.tile(np.arange(self.n), self.repeats)
        if self.shuffle:
            items = items[rng.permutation(len(items))]
        total = len(self) * self.world_size
        items = np.concatenate([items, items[: total - len(items)]])  # pad like DistributedSampler
        views = draws = None
        if self.views is not None:
            views = np.floor(rng.random(len(items)) * self.views[items]).astype(np.int64)
            # own stream: the first n draws do not depend on the padding (world size)
            draws = np.random.default_rng([self.seed, self.epoch, 1]).integers(0, 2**31, len(items))
        return items, views, draws

    def __iter__(self) -> Iterator[Any]:
        items, views, draws = self._order()
        picked = slice(self.rank, None, self.world_size)
        if views is None or draws is None:
            yield from (int(i) for i in items[picked])
        else:
            yield from (
                (int(i), int(v), int(d))
                for i, v, d in zip(items[picked], views[picked], draws[picked], strict=True)
            )


class UniversityTrainSet(Dataset):
    """Per-location training items: ``{"drone", "satellite", "label", "location"}``.

    Index with ``(location, view, draw)`` (what :class:`ShardedSampler` yields with ``views``;
    ``draw`` seeds the augmentation), ``(location, view)`` or a plain location index (view 0). ``label`` is the contiguous class index of the location among
    ``classes`` (the sorted training locations).
    """

    def __init__(
        self,
        drone: ImageSet,
        satellite: ImageSet,
        size: int,
        *,
        augment: str | PairAugConfig | None = "flip_rot90",
        cache: bool = False,
    ) -> None:
        self.classes = np.unique(satellite.labels)
        drone_by_loc = {int(c): [] for c in self.classes}
        for path, label in zip(drone.paths, drone.labels, strict=True):
            if int(label) in drone_by_loc:
                drone_by_loc[int(label)].append(path)
        missing = [int(c) for c, paths in drone_by_loc.items() if not paths]
        if missing:
            raise DatasetError(
                f"{len(missing)} training locations have a satellite tile but no drone image "
                f"(e.g. {missing[:3]}) in {drone.name}; re-extract or regenerate the dataset"
            )
        sat_by_loc = {
            int(label): path for path, label in zip(satellite.paths, satellite.labels, strict=True)
        }
        self.drone_paths = [drone_by_loc[int(c)] for c in self.classes]
        self.sat_paths = [sat_by_loc[int(c)] for c in self.classes]
        self.size, self.augment = size, pair_augment(augment)
        self.cache = _ImageCache(size, cache)

    @property
    def views(self) -> list[int]:
        return [len(p) for p in self.drone_paths]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int | tuple[int, ...]) -> dict[str, Any]:
        loc, view, draw = (tuple(index) + (0, 0))[:3] if isinstance(index, tuple) else (index, 0, 0)
        drone = self.cache.get(self.drone_paths[loc][view % len(self.drone_paths[loc])])
        sat = self.cache.get(self.sat_paths[loc])
        if self.augment is not None:
            # Drawn from the sampler's draw so the batch is a function of (seed, epoch) only.
            rng = np.random.default_rng([loc, view, draw])
            drone, sat = augment_pair(drone, sat, self.augment, rng)
        return {"drone": drone, "satellite": sat, "label": loc, "location": int(self.classes[loc])}


class ImageListDataset(Dataset):
    """Plain evaluation items ``{"image", "label", "index"}`` from an :class:`ImageSet`."""

    def __init__(self, images: ImageSet, size: int, cache: bool = False) -> None:
        self.images, self.size = images, size
        self.cache = _ImageCache(size, cache)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "image": self.cache.get(Path(self.images.paths[i])),
            "label": int(self.images.labels[i]),
            "index": i,
        }


def train_loader(
    data: University1652,
    size: int,
    batch_size: int,
    *,
    seed: int = 0,
    repeats: int = 1,
    augment: str | PairAugConfig | None = "flip_rot90",
    num_workers: int = 0,
    cache: bool = False,
) -> DataLoader:
    """Seeded per-location training loader over ``train/drone`` + ``train/satellite`` of the
    locations training uses (:meth:`University1652.train_sets`: the validation ones held out).

    ``augment``: a :data:`~geoloc_lib.data.augment.PAIR_AUGMENTS` name, a ``PairAugConfig`` or None.
    Sharded over ranks when torch.distributed is initialised (``drop_last`` keeps BatchNorm
    batches full and every rank at the same number of steps).
    """
    drone, satellite = data.train_sets()
    dataset = UniversityTrainSet(drone, satellite, size, augment=augment, cache=cache)
    if len(dataset) < batch_size:
        raise DatasetError(
            f"batch_size {batch_size} exceeds the {len(dataset)} training locations of "
            f"{data.root} ({len(data.val_classes)} more are held out for validation); "
            "lower batch_size"
        )
    sampler = ShardedSampler(len(dataset), seed=seed, repeats=repeats, views=dataset.views)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
        persistent_workers=num_workers > 0 and cache,
    )


def eval_loader(
    images: ImageSet, size: int, batch_size: int = 64, num_workers: int = 0, cache: bool = False
) -> DataLoader:
    """Ordered loader over an evaluation set (query or gallery). ``cache`` keeps the decoded
    images for the loader's later passes (per-epoch validation)."""
    return DataLoader(
        ImageListDataset(images, size, cache),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
    )
