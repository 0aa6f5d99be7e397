"""Trivial matchers that show GeoSynth is not solvable from raw pixels.

``raw_pixel_features`` is the "cosine similarity of raw downsampled pixels"
baseline: every image is shrunk to ``size`` x ``size``, mean-centred per image
and L2-normalised. ``trivial_matchers`` measures it and a random ranking on the
three tasks with the project's evaluation engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from geoloc_lib.data.images import read_image
from geoloc_lib.data.sources import DataSources
from geoloc_lib.eval import evaluate_pairs, evaluate_university1652


def raw_pixel_features(
    paths: Sequence[str | Path], size: int = 16, progress: bool = False
) -> torch.Tensor:
    """[N, 3*size*size] float32: downsampled RGB, mean-centred per image, L2-normalised."""
    feats = torch.empty(len(paths), 3 * size * size)
    for k, path in enumerate(tqdm(paths, desc="raw pixels", disable=not progress)):
        # PIL's BOX filter averages whole source pixels (area downsampling).
        img = read_image(path).resize((size, size), resample=4)
        feats[k] = torch.from_numpy(np.asarray(img, dtype=np.float32).ravel())
    feats -= feats.mean(dim=1, keepdim=True)
    return torch.nn.functional.normalize(feats, dim=1)


def random_features(n: int, dim: int, seed: int) -> torch.Tensor:
    """Seeded random unit vectors: ranking with them is a uniformly random ranking."""
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)


def _matcher_features(
    query_paths: Sequence[Path], gallery_paths: Sequence[Path], size: int, seed: int, progress: bool
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(query, gallery) features of each trivial matcher."""
    dim = 3 * size * size
    return {
        "raw pixels": (
            raw_pixel_features(query_paths, size, progress),
            raw_pixel_features(gallery_paths, size, progress),
        ),
        "random": (
            random_features(len(query_paths), dim, seed),
            random_features(len(gallery_paths), dim, seed + 1),
        ),
    }


def trivial_matchers(
    sources: DataSources, size: int = 16, seed: int = 0, progress: bool = False
) -> pd.DataFrame:
    """R@1/5/10 (%) of a random and a raw-pixel matcher for the three tasks, via the eval engine.

    drone->satellite: test/query_drone vs test/gallery_satellite (with distractors);
    satellite->drone: test/query_satellite vs test/gallery_drone (every view of the location
    is a true match); street->aerial: the street test split (query i matches aerial i). A task
    without a root in ``sources`` (left out of its ``tasks``) has no rows.
    """
    rows = []
    drone_tasks = ("drone->satellite", "satellite->drone")
    uni = sources.university() if sources.university_root is not None else None
    for task in drone_tasks if uni is not None else ():
        query, gallery = uni.task(task)
        feats = _matcher_features(query.paths, gallery.paths, size, seed, progress)
        for matcher, (qf, gf) in feats.items():
            m = evaluate_university1652(qf, gf, query.labels, gallery.labels, progress=False)
            rows.append({"task": task, "matcher": matcher, "queries": len(query),
                         "gallery": len(gallery), **m})  # fmt: skip
    pairs = sources.street("test") if sources.street_root is not None else None
    street_feats = (
        {} if pairs is None else _matcher_features(pairs.ground, pairs.aerial, size, seed, progress)
    )
    for matcher, (qf, gf) in street_feats.items():
        m = evaluate_pairs(qf, gf, progress=False)
        rows.append({"task": "street->aerial", "matcher": matcher, "queries": len(pairs),
                     "gallery": len(pairs), **m})  # fmt: skip
    # The engine's n_queries repeats our queries column.
    return pd.DataFrame(rows).drop(columns=["n_queries"], errors="ignore")


def main() -> None:
    """``python -m geoloc_lib.eval.baselines ROOT``: print the trivial-matcher table."""
    import sys

    from geoloc_lib.data.sources import resolve_sources

    root = sys.argv[1] if len(sys.argv) > 1 else "data/geosynth"
    table = trivial_matchers(resolve_sources("geosynth", root), progress=True)
    print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
