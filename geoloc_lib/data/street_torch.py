"""Torch datasets and samplers for street-view / aerial pairs (CVUSA, CVACT, GeoSynth).

Items are dicts ``{"ground": [3, Hg, Wg], "aerial": [3, Ha, Wa], "index": i}`` of float images in
``[0, 1]``; the models normalise internally, so the photometric augmentations can run on the batch.

- CVACT panoramas are full spheres (832 rows): the common preprocessing keeps the middle half of
  the rows (208–624 of 832) before resizing. CVUSA panoramas are already cropped to the horizon band.
- :class:`GeoNeighbourBatchSampler` fills each training batch with groups of geographically near
  pairs (an anchor and its nearest unused neighbours), so the in-batch negatives are hard ones
  (Sample4Geo's strategy). Without coordinates (CVUSA) it is a seeded random batching.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.images import read_image
from geoloc_lib.data.types import PairSet


def is_cvact(pairs: PairSet) -> bool:
    return pairs.name.lower().startswith("cvact")


def _to_tensor(img) -> Tensor:
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).contiguous()  # uint8 [3, H, W]


def load_ground(path, size_hw: tuple[int, int], crop_middle_half: bool) -> Tensor:
    """A panorama as uint8 ``[3, H, W]`` at ``size_hw``; optionally its middle half of rows first."""
    img = read_image(path)
    if crop_middle_half:
        w, h = img.size
        img = img.crop((0, h // 4, w, h - h // 4))  # rows 208..624 of 832
    return _to_tensor(img.resize((size_hw[1], size_hw[0]), resample=2))  # 2 = bilinear


def load_aerial(path, size_hw: tuple[int, int]) -> Tensor:
    return _to_tensor(read_image(path, (size_hw[1], size_hw[0])))


class StreetPairDataset(Dataset):
    """Ground/aerial pairs of a :class:`PairSet` at a model's input sizes.

    ``cache=True`` keeps the decoded, resized uint8 images in memory after the first read (small
    images on CPU: decoding dominates otherwise). ``crop_middle_half=None`` applies the CVACT
    rule when the pair set is CVACT.
    """

    def __init__(
        self,
        pairs: PairSet,
        ground_size: tuple[int, int],
        aerial_size: tuple[int, int],
        *,
        crop_middle_half: bool | None = None,
        cache: bool = False,
    ) -> None:
        if len(pairs) == 0:
            raise ConfigError(f"pair set {pairs.name!r} is empty")
        self.pairs = pairs
        self.ground_size, self.aerial_size = tuple(ground_size), tuple(aerial_size)
        self.crop = is_cvact(pairs) if crop_middle_half is None else crop_middle_half
        self._cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> tuple[Tensor, Tensor]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        g = load_ground(self.pairs.ground[i], self.ground_size, self.crop)
        a = load_aerial(self.pairs.aerial[i], self.aerial_size)
        if self._cache is not None:
            self._cache[i] = (g, a)
        return g, a

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        g, a = self._load(int(i))
        return {"ground": g.float() / 255.0, "aerial": a.float() / 255.0, "index": int(i)}


class ViewDataset(Dataset):
    """One view of a pair dataset (for ``eval.features.extract_features``): ``{"image", "label"}``."""

    def __init__(self, pairs: StreetPairDataset, view: str) -> None:
        if view not in ("ground", "aerial"):
            raise ConfigError(f"ViewDataset: view must be 'ground' or 'aerial', got {view!r}")
        self.pairs, self.view = pairs, view

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        item = self.pairs[i]
        return {"image": item[self.view], "label": item["index"]}  # label = pair index


class GeoNeighbourSampler(Sampler[int]):
    """An epoch order whose consecutive ``batch_size`` chunks are batches of geographic neighbours.

    The order is built from groups of ``group_size``: a random unused anchor plus its nearest
    unused neighbours (among its ``k`` nearest), so in-batch negatives are nearby, hard ones.
    Every index appears once per epoch; use it with ``DataLoader(batch_size=batch_size,
    drop_last=True)`` and the incomplete tail is dropped. With ``coords=None`` (CVUSA) the order
    is a seeded random permutation. The order depends on ``(seed, epoch)`` only: the engine calls
    :meth:`set_epoch`, so a resumed run replays the same batches.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        coords: np.ndarray | None = None,
        *,
        group_size: int = 4,
        k: int = 32,
        seed: int = 0,
    ) -> None:
        if batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (in-batch negatives), got {batch_size}")
        if n < batch_size:
            raise ConfigError(f"only {n} pairs for a batch of {batch_size}; lower batch_size")
        self.n, self.batch_size, self.group_size = n, batch_size, max(1, group_size)
        self.seed, self.epoch = seed, 0
        self.neighbours: np.ndarray | None = None
        if coords is not None:
            from scipy.spatial import cKDTree

            coords = np.asarray(coords, dtype=np.float64)
            if coords.shape != (n, 2):
                raise ConfigError(f"coords must be [{n}, 2], got {coords.shape}")
            kk = min(k + 1, n)
            _, idx = cKDTree(coords).query(coords, k=kk)
            self.neighbours = np.asarray(idx).reshape(n, kk)[:, 1:]  # drop self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def __len__(self) -> int:
        return self.n

    def order(self) -> list[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(self.n)
        if self.neighbours is None:
            return perm.tolist()
        used = np.zeros(self.n, dtype=bool)
        out: list[int] = []
        for anchor in perm:
            if used[anchor]:
                continue
            used[anchor] = True
            out.append(int(anchor))
            taken = 1
            for j in self.neighbours[anchor]:
                if taken >= self.group_size:
                    break
                if not used[j]:
                    used[j] = True
                    out.append(int(j))
                    taken += 1
        return out

    def batches(self) -> list[list[int]]:
        """The full batches of this epoch (what a ``drop_last`` DataLoader yields)."""
        o = self.order()
        return [
            o[i : i + self.batch_size]
            for i in range(0, len(o) - self.batch_size + 1, self.batch_size)
        ]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())
