"""Seeding and RNG state (core): every random stream of a run starts here.

``seed_everything`` seeds Python, NumPy and torch; ``rng_state``/``set_rng_state`` capture and
restore them for checkpoints; ``make_generator``/``seed_worker`` give DataLoaders their own
seeded streams.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the legacy global state libraries use
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/Python seeds from the worker's torch seed.

    torch seeds each worker with ``base_seed + worker_id`` (base_seed drawn from the loader's
    generator); NumPy and ``random`` are not reseeded by torch, so workers would share streams.
    """
    s = torch.initial_seed() % 2**32
    np.random.seed(s)  # noqa: NPY002
    random.seed(s)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for DataLoaders and samplers)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _numpy_state() -> dict[str, Any]:
    # NumPy's legacy global state as plain values and a tensor (a checkpoint loads with
    # weights_only=True, which refuses NumPy arrays): the MT19937 key as int64.
    state = np.random.get_state(legacy=False)  # noqa: NPY002
    key = np.asarray(state["state"]["key"]).astype(np.int64)
    return {
        "bit_generator": str(state["bit_generator"]),
        "state": {"key": torch.from_numpy(key), "pos": int(state["state"]["pos"])},
        "has_gauss": int(state["has_gauss"]),
        "gauss": float(state["gauss"]),
    }


def _set_numpy_state(state: Any) -> None:
    if isinstance(state, Mapping):  # :func:`_numpy_state`
        key = state["state"]["key"]
        key = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        state = {**state, "state": {**state["state"], "key": key.astype(np.uint32)}}
    else:  # np.random.get_state()'s tuple, its key an array or a tensor
        name, key, *rest = state
        key = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        state = (name, key.astype(np.uint32), *rest)
    np.random.set_state(state)  # noqa: NPY002


def rng_state() -> dict[str, Any]:
    """Every global RNG state this process uses, as tensors and plain Python values."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`. torch takes its generator states as CPU byte tensors; a
    checkpoint loaded with ``map_location="cuda"`` (resuming on a GPU) holds them on the GPU."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
