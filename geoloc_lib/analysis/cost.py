"""Computational cost of a model: parameters, FLOPs, peak memory, latency (any nn.Module).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs,
matmuls, convolutions and attention only: norms, softmax and element-wise ops are not counted).
torch's counter has no formula for the CPU attention kernel
(``_scaled_dot_product_flash_attention_for_cpu``): :func:`flop_counter` adds one, so a model
using ``F.scaled_dot_product_attention`` counts the same on CPU, CUDA and the meta device.
Papers often report multiply-accumulates from ``thop``/``fvcore`` under the name "FLOPs";
``gmacs`` (= GFLOPs/2) is returned for that comparison.

Convention of :func:`cost_table`: ``gflops`` are FLOPs (2 per multiply-add) of one retrieval
*pair*, the query image and the gallery image both embedded; ``gflops_query`` and
``gflops_gallery`` split it per branch (batch 1). GeoViewMatch's paper preset measures 26.79
GFLOPs per pair at batch 16 (26.86 at batch 1: SwinV2's position-bias MLP runs once per batch),
i.e. 13.4 GMACs: the 128x640 panorama 14.97 GFLOPs (7.49 GMACs), the 256x256 tile 11.88
GFLOPs (5.94 GMACs, timm's published count for ``swinv2_tiny_window8_256``); the linear layers
are 92 % of it, attention and the FA modules the rest. Table 4's 9.76 (RTX 4090, batch 16) is
below both branches in MACs (13.4) and above either branch alone (5.94 / 7.49), so no single
convention (FLOPs vs MACs, one branch vs both) reproduces it; the paper names no counter or
input. The gap is a factor of about 2.7 in FLOPs, 1.37 in MACs.

Memory without a GPU: :class:`TensorMemoryTracker` counts the bytes of every tensor the forward
allocates and frees (a dispatch mode), so the peak is known on CPU and on the meta device, where
a paper-size model costs nothing to run. It counts tensors, not allocator caches or the CUDA
context, so it is a lower bound of what ``nvidia-smi`` shows.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from geoloc_lib.core.errors import ConfigError

aten = torch.ops.aten


def _sdpa_cpu_flop(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """q @ kᵀ and attn @ v: 2·B·H·Lq·Lk·(d + d_v) FLOPs (as torch's formula for CUDA kernels)."""
    *batch, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * lq * lk * (d + dv)


_EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {}
if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FLOP_FORMULAS[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter plus the CPU attention kernel it misses."""
    return FlopCounterMode(display=False, custom_mapping=dict(_EXTRA_FLOP_FORMULAS))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Distinct parameters (shared weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of the tensors allocated by the ops run inside it (any device, meta included).

    A new storage counts from the op that creates it until the last tensor viewing it is
    garbage-collected. Outputs that alias an input (views, in-place ops) are not new memory.
    Tensors that exist before entering (weights, inputs) are not counted: add them yourself.
    ``used_storages`` collects the storages every op read, so the parameters a forward really
    uses can be told from those it carries (a training-only head).
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.used_storages: set[int] = set()
        self._live: dict[int, int] = {}  # storage key -> bytes
        self._refs: dict[int, int] = {}  # storage key -> live tensors viewing it

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.current -= self._live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        inputs = [
            _storage_key(t)
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        ]
        self.used_storages.update(inputs)
        out = func(*args, **kwargs)
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = _storage_key(t)
            if key not in self._live:
                if key in inputs:  # a view of a weight or an input: not new memory
                    continue
                self._live[key] = t.untyped_storage().nbytes()
                self.current += self._live[key]
                self.peak = max(self.peak, self.current)
            self._refs[key] = self._refs.get(key, 0) + 1
            weakref.finalize(t, self._release, key)
        return out


def _tensor_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in torch.utils._pytree.tree_leaves(tensors):
        if isinstance(t, torch.Tensor):
            seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _default_forward(m: nn.Module, x: Any) -> Any:
    return m(*x) if isinstance(x, tuple | list) else m(x)


def model_cost(
    model: nn.Module,
    inputs: Any,
    *,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    repeats: int = 3,
    warmup: int = 1,
    measure_latency: bool = True,
) -> dict[str, float]:
    """Cost of one inference call ``forward(model, inputs)`` (default ``model(*inputs)``).

    Returns ``params_m`` (millions, shared weights once), ``inference_params_m`` (the
    parameters the call reads), ``gflops`` and ``gmacs`` of one call, ``tensor_mem_gb`` (weights
    + inputs + the peak of the tensors the call allocates, :class:`TensorMemoryTracker`),
    ``latency_ms`` (median over ``repeats`` after ``warmup``, in eval mode without gradients;
    NaN on the meta device or with ``measure_latency=False``), ``peak_mem_gb`` (the CUDA
    allocator's peak during the timed calls, CUDA only, else NaN) and ``device``.
    """
    forward = forward or _default_forward
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, Any] = {"params_m": count_parameters(model) / 1e6, "device": str(device)}
    with torch.no_grad():
        counter, tracker = flop_counter(), TensorMemoryTracker()
        with counter, tracker:
            forward(model, inputs)
        flops = counter.get_total_flops()
        out["gflops"] = flops / 1e9
        out["gmacs"] = flops / 2e9
        params = {_storage_key(p): p.numel() for p in model.parameters()}
        used = sum(n for k, n in params.items() if k in tracker.used_storages)
        out["inference_params_m"] = used / 1e6
        resident = _tensor_bytes((list(model.parameters()), list(model.buffers()), inputs))
        out["tensor_mem_gb"] = (resident + tracker.peak) / 1e9
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        timed = measure_latency and device.type != "meta"
        for i in range(warmup + repeats if timed else 0):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            forward(model, inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out["latency_ms"] = float(sorted(times)[len(times) // 2] * 1e3) if times else float("nan")
        out["peak_mem_gb"] = (
            torch.cuda.max_memory_allocated(device) / 1e9
            if device.type == "cuda" and times
            else float("nan")
        )
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- retrieval models

STREET_VIEWS = ("ground", "aerial")
UNIVERSITY_VIEWS = ("drone", "satellite")


def view_pair(model: nn.Module) -> tuple[str, str]:
    """(query view, gallery view) of a retrieval model: street->aerial or drone->satellite."""
    cfg = getattr(model, "cfg", None)
    if hasattr(cfg, "ground_size"):
        return STREET_VIEWS
    if hasattr(cfg, "img_size"):
        return UNIVERSITY_VIEWS
    raise ConfigError(
        f"{type(model).__name__}: cost needs a model with cfg.ground_size/aerial_size "
        "(street->aerial) or cfg.img_size (drone->satellite)"
    )


def pair_inputs(
    model: nn.Module, batch: int = 1, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (query, gallery) images at the model's input sizes, on ``device`` (the model's)."""
    device = device or next(model.parameters()).device
    cfg = model.cfg  # type: ignore[attr-defined]
    if view_pair(model) == STREET_VIEWS:
        sizes = (tuple(cfg.ground_size), tuple(cfg.aerial_size))
    else:
        sizes = ((cfg.img_size, cfg.img_size),) * 2
    gen = torch.Generator().manual_seed(0)
    return tuple(  # type: ignore[return-value]
        torch.rand(batch, 3, *s, generator=gen).to(device)
        if torch.device(device).type != "meta"
        else torch.empty(batch, 3, *s, device="meta")
        for s in sizes
    )


def pair_forward(model: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """Embed a (query, gallery) batch: the inference cost of one retrieval pair per row.

    Street models embed (ground, aerial); MCGF embeds (drone, satellite): the drone query goes
    through the DDIM restoration steps, the satellite straight to the matching branch.
    """
    query_view, gallery_view = view_pair(model)
    query, gallery = inputs
    return model.embed(query, query_view), model.embed(gallery, gallery_view)


def branch_gflops(model: nn.Module) -> tuple[float, float]:
    """FLOPs (G, 2 per multiply-add) of embedding one query image and one gallery image."""
    query_view, gallery_view = view_pair(model)
    out = []
    for view, x in zip((query_view, gallery_view), pair_inputs(model, 1), strict=True):
        counter = flop_counter()
        was_training = model.training
        model.eval()
        with torch.no_grad(), counter:
            model.embed(x, view)
        model.train(was_training)
        out.append(counter.get_total_flops() / 1e9)
    return out[0], out[1]


def build_for_cost(
    name: str, preset: str, device: str | torch.device = "meta", **overrides: Any
) -> nn.Module:
    """The model of ``name`` at ``preset`` (:func:`~geoloc_lib.training.recipes.preset_for`)
    with config fields ``overrides``, without pretrained weights, on ``device``.

    On ``"meta"`` no memory is allocated and nothing is initialised: parameters, FLOPs and
    tensor memory of a paper-size model in about a second.
    """
    from geoloc_lib.training.recipes import preset_for

    resolved = preset_for(name, preset)
    with torch.device(device):
        return resolved.build(**{**overrides, "pretrained": False}).eval()


def _device_gflops_per_s(device: torch.device) -> float:
    """Rough matmul throughput of ``device`` (only used to decide whether timing is affordable)."""
    n = 512
    a = torch.rand(n, n, device=device)
    best = math.inf
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / max(best, 1e-9) / 1e9


ModelSpec = str | tuple[str, str, dict[str, Any]]


def cost_table(
    models: Sequence[ModelSpec],
    presets: Sequence[str] = ("paper", "default"),
    *,
    batch_size: int = 16,
    device: str | torch.device = "auto",
    latency_budget_s: float = 5.0,
    repeats: int = 3,
) -> pd.DataFrame:
    """GeoViewMatch Table 4's columns for every (model, preset), one row each.

    ``models``: registry names, or ``(label, name, config overrides)`` for a variant. The
    deterministic columns come from one meta-device pass over a batch of ``batch_size`` pairs:
    ``params_m`` (all parameters, shared weights once), ``inference_params_m`` (those inference
    reads), ``gflops``/``gmacs`` per query+gallery pair (``gflops_query``/``gflops_gallery``:
    one image of each branch, batch 1) (the batch's count / ``batch_size``, so
    per-call work such as SwinV2's position-bias MLP is shared by the batch: +0.2% at batch 1) and ``tensor_mem_gb`` per batch. Measured on ``device`` with random
    weights: ``latency_ms`` and (CUDA) ``peak_mem_gb`` per batch, only when the estimated time of
    ``1 + repeats`` batches fits ``latency_budget_s`` (else NaN, the reason in ``note``).
    """
    from geoloc_lib.core.device import resolve_device

    if batch_size < 1:
        raise ConfigError(f"cost_table: batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    speed = _device_gflops_per_s(dev)
    specs = [(m, m, {}) if isinstance(m, str) else m for m in models]
    rows = []
    for preset in presets:
        for label, name, overrides in specs:
            meta = build_for_cost(name, preset, "meta", **overrides)
            batch = model_cost(meta, pair_inputs(meta, batch_size), forward=pair_forward)
            per_query, per_gallery = branch_gflops(meta)
            row: dict[str, Any] = {
                "model": label,
                "preset": preset,
                "params_m": batch["params_m"],
                "inference_params_m": batch["inference_params_m"],
                "gflops": batch["gflops"] / batch_size,
                "gmacs": batch["gmacs"] / batch_size,
                "gflops_query": per_query,
                "gflops_gallery": per_gallery,
                "tensor_mem_gb": batch["tensor_mem_gb"],
                "latency_ms": float("nan"),
                "peak_mem_gb": float("nan"),
                "device": str(dev),
                "note": "",
            }
            estimate = batch["gflops"] / speed * (1 + repeats)
            if estimate > latency_budget_s:
                row["note"] = (
                    f"not timed: ~{estimate:.0f} s for {1 + repeats} batches on {dev.type} "
                    f"(budget {latency_budget_s:g} s)"
                )
            else:
                net = build_for_cost(name, preset, dev, **overrides)
                measured = model_cost(
                    net, pair_inputs(net, batch_size), forward=pair_forward, repeats=repeats
                )
                row["latency_ms"] = measured["latency_ms"]
                row["peak_mem_gb"] = measured["peak_mem_gb"]
                del net
            rows.append(row)
    return pd.DataFrame(rows)
