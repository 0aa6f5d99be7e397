"""Training precision on a CPU: ``amp="auto"`` decided per model and machine, and the training
step both ``fit``'s decision and ``geoloc bench train`` time.

bf16 autocast was ≈10× slower than fp32 on a CPU without native bf16 (``geoloc bench train``,
docs/benchmarks.md) and 0.95–1.45× as fast on one with AVX512-BF16/AMX depending on the model, so neither
"always" nor "never" is right. :func:`resolve_fit_amp` states the rule.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from geoloc_lib.core.device import (
    BF16_MIN_SPEEDUP,
    amp_cache_key,
    autocast_dtype,
    batch_size,
    choose_cpu_amp,
    cpu_bf16_support,
    read_amp_cache,
    resolve_amp,
    resolve_device,
    to_device,
    write_amp_cache,
)
from geoloc_lib.core.distributed import broadcast_object, dist_info
from geoloc_lib.core.seeding import rng_state, set_rng_state


def train_step(
    model: nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    dtype: torch.dtype | None,
    device_type: str,
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> torch.Tensor:
    """One full training step as the engine runs it: the batch transform, forward + backward
    under autocast (``dtype`` None: off), and the optimizer step; a closure optimizer (ASAM) gets
    its second forward + backward on the same batch. Returns the detached loss."""
    x = batch_transform(dict(batch)) if batch_transform is not None else batch

    def forward_backward() -> torch.Tensor:
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = model.training_losses(x)["loss"]
        loss.backward()
        return loss.detach()

    optimizer.zero_grad(set_to_none=True)
    loss = forward_backward()
    if getattr(optimizer, "requires_closure", False):

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=False)
            return forward_backward()

        optimizer.step(closure)
    else:
        optimizer.step()
    return loss


def measure_throughput(
    model: nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    amp: str = "off",
    steps: int = 5,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> float:
    """Training images per second of ``model`` on one repeated ``batch`` (:func:`train_step`).

    Used to decide whether bf16 autocast pays on a CPU; it trains the model, so pass a copy.
    """
    dev = resolve_device(device)
    mode = resolve_amp(amp, dev)
    dtype = autocast_dtype(mode)
    model.train().to(dev)
    b = to_device(batch, dev)
    n = batch_size(b)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
        train_step(model, b, optimizer, dtype, dev.type, batch_transform)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return steps * n / (time.perf_counter() - t0)


def random_batch(model: torch.nn.Module, batch_size: int) -> dict[str, Any]:
    """One random training batch of ``model`` at its config's image sizes (CPU tensors)."""
    cfg = model.cfg
    if hasattr(cfg, "img_size"):  # MCGF family: clean + weathered drone, satellite, label
        s = cfg.img_size
        img = lambda: torch.rand(batch_size, 3, s, s)  # noqa: E731
        return {
            "drone": img(),
            "drone_weather": img(),
            "satellite": img(),
            "label": torch.arange(batch_size) % cfg.num_classes,
        }
    (gh, gw), (ah, aw) = cfg.ground_size, cfg.aerial_size
    return {
        "ground": torch.rand(batch_size, 3, gh, gw),
        "aerial": torch.rand(batch_size, 3, ah, aw),
        "index": torch.arange(batch_size),
    }


@dataclass(frozen=True)
class AmpChoice:
    """The precision a ``fit`` trains with: ``mode`` (``off`` | ``bf16`` | ``fp16``), what was
    asked, why, and the measured training images/s when it was measured (or read from the
    cache)."""

    asked: str
    mode: str
    reason: str
    fp32_img_s: float | None = None
    bf16_img_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The one line ``fit`` prints."""
        name = {"off": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[self.mode]
        return f"training precision: {name} (amp={self.asked}: {self.reason})"


def _has_batch_shape(model: nn.Module) -> bool:
    cfg = getattr(model, "cfg", None)
    return hasattr(cfg, "img_size") or (hasattr(cfg, "ground_size") and hasattr(cfg, "aerial_size"))


def measure_cpu_amp(
    model: nn.Module,
    batch: int,
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    *,
    steps: int = 3,
    warmup: int = 1,
) -> tuple[float, float]:
    """Training images/s of copies of ``model`` in fp32 and in bf16 autocast on the CPU, with a
    random batch of its training inputs (:func:`random_batch`), the same step as ``geoloc bench
    train``. The global RNG states are restored, so measuring never changes the training."""
    state = rng_state()
    try:
        data = random_batch(model, batch)
        rates = {}
        for amp in ("off", "bf16"):
            net = copy.deepcopy(model)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            rates[amp] = measure_throughput(
                net,
                data,
                opt,
                amp=amp,
                steps=steps,
                warmup=warmup,
                device="cpu",
                batch_transform=batch_transform,
            )
            del net, opt
    finally:
        set_rng_state(state)
    return rates["off"], rates["bf16"]


def resolve_fit_amp(
    amp: str,
    device: torch.device,
    model: nn.Module,
    *,
    preset: str | None,
    batch: int | None,
    fp32_cpu: bool = False,
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    cache_path: Path | None = None,
    measure: Callable[..., tuple[float, float]] | None = None,
) -> AmpChoice:
    """The precision ``fit`` trains ``model`` with.

    Anything but ``amp="auto"`` on a CPU is :func:`~geoloc_lib.core.device.resolve_amp`'s answer
    (bf16 on a CUDA GPU that has it, fp16 on one that does not). ``auto`` on a CPU, in order:

    1. a preset that asks for it (``fp32_cpu``: the ``smoke`` preset,
       :data:`~geoloc_lib.training.recipes.FP32_CPU_PRESETS`), or no preset given: **fp32
       without measuring**, so CI runs (smoke) train identically on CPUs with and without bf16;
    2. no native bf16 (:func:`~geoloc_lib.core.device.cpu_bf16_support`: no AVX512-BF16/AMX
       flag, or kernels below AVX-512, e.g. ``ATEN_CPU_CAPABILITY=default`` or ``avx2``): fp32
       without measuring;
    3. a model whose training batch cannot be built (no image sizes in its ``cfg``, no registry
       name) or an unknown batch size: fp32;
    4. otherwise the cached measurement for (CPU model name, kernels, torch version, model,
       preset, batch size, threads), or a new one (:func:`measure_cpu_amp`, a few seconds at the
       default preset) written to the cache (:func:`~geoloc_lib.core.device.amp_cache_path`):
       bf16 only when it trains at least
       :data:`~geoloc_lib.core.device.BF16_MIN_SPEEDUP` times faster than fp32.

    In a distributed run rank 0 decides and every rank uses its answer. A measurement taken
    while other jobs load the CPU can be off (the threads compete); the cache keeps it, so delete
    the cache file to measure again. ``fit`` prints the choice (with progress on) and records it
    in the history (``History.amp``), the checkpoint and ``run.json``; a resumed run keeps the
    precision it began with.
    """
    if amp != "auto" or device.type != "cpu":
        mode = resolve_amp(amp, device)
        why = "asked" if amp != "auto" else f"{device.type} device"
        return AmpChoice(amp, mode, why)
    if preset is None:
        return AmpChoice(amp, "off", "no preset given (FitConfig.preset), fp32 without measuring")
    if fp32_cpu:
        return AmpChoice(amp, "off", f"{preset} preset: fp32 on every CPU, not measured")
    cpu = cpu_bf16_support()
    if not cpu.native:
        return AmpChoice(amp, "off", f"no native bf16 on this CPU: {cpu.reason}")
    name = getattr(model, "registry_name", "") or ""
    if not name or not _has_batch_shape(model) or not batch:
        return AmpChoice(amp, "off", "native bf16, but the model's training batch is unknown")
    key = amp_cache_key(cpu, name, preset, int(batch), torch.get_num_threads())
    entry = broadcast_object(read_amp_cache(key, cache_path))
    if entry is None:
        if dist_info().is_main:
            fp32, bf16 = (measure or measure_cpu_amp)(model, int(batch), batch_transform)
            entry = {
                "mode": choose_cpu_amp(fp32, bf16),
                "fp32_img_s": round(fp32, 2),
                "bf16_img_s": round(bf16, 2),
            }
            write_amp_cache(key, entry, cache_path)
        entry = broadcast_object(entry)
        source = "measured"
    else:
        source = "cached"
    fp32, bf16 = float(entry["fp32_img_s"]), float(entry["bf16_img_s"])
    ratio = bf16 / fp32 if fp32 > 0 else float("nan")
    verdict = "≥" if entry["mode"] == "bf16" else "<"
    return AmpChoice(
        amp,
        entry["mode"],
        f"{source} on this CPU ({cpu.reason}): bf16 / fp32 = {ratio:.2f} {verdict} "
        f"{BF16_MIN_SPEEDUP:.2f}",
        fp32,
        bf16,
    )


def announce(choice: AmpChoice, show: bool) -> None:
    """Print the choice's line on stderr when the run shows progress (library calls are quiet
    unless asked, :mod:`geoloc_lib.core.runtime`)."""
    if show:
        tqdm.write(choice.line(), file=sys.stderr)
