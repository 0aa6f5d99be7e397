"""Embedding a set of images with a model: the first step of every retrieval evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from geoloc_lib.core.device import autocast_dtype, resolve_amp, resolve_device, to_device
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.runtime import resolve_progress


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    view: str,
    *,
    device: str | torch.device = "auto",
    amp: str = "off",
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: bool | None = None,
    desc: str | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Embed every image of ``loader`` with ``model.embed(images, view)``.

    The loader yields dicts with ``"image"`` ([B,3,H,W]) and ``"label"``; ``batch_transform`` runs
    on the device first (e.g. weather applied to a query set). Returns fp32 CPU features [N, D]
    and the labels as an int64 array, in loader order. The model is put in eval mode.
    """
    dev = resolve_device(device)
    mode = resolve_amp(amp, dev)
    dtype = autocast_dtype(mode)
    show = resolve_progress(progress)
    model.eval().to(dev)
    feats, labels = [], []
    total = len(loader) if hasattr(loader, "__len__") else None
    for batch in tqdm(
        loader, total=total, desc=desc or f"embed {view}", disable=not show, leave=False
    ):
        batch = to_device(batch, dev)
        if batch_transform is not None:
            batch = batch_transform(batch)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            f = model.embed(batch["image"], view)
        feats.append(f.float().cpu())
        labels.append(batch["label"].cpu())
    if not feats:
        raise ConfigError(f"no image to embed for view {view!r}: the evaluation loader is empty")
    return torch.cat(feats), torch.cat(labels).numpy().astype(np.int64)
