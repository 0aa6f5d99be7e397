"""Computational cost of a model: parameters, FLOPs, peak memory, latency (any nn.Module).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs,
matmuls and convolutions only: norms, softmax and element-wise ops are not counted). Papers often
report multiply-accumulates from ``thop``/``fvcore`` under the name "FLOPs"; ``gmacs`` (= GFLOPs/2)
is returned for that comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Distinct parameters (shared weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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

    Returns ``params_m`` (millions, shared weights once), ``gflops`` and ``gmacs`` of one call,
    ``latency_ms`` (median over ``repeats`` after ``warmup``, in eval mode without gradients),
    ``peak_mem_gb`` (CUDA only, else NaN) and ``device``.
    """
    if forward is None:

        def forward(m: nn.Module, x: Any) -> Any:
            return m(*x) if isinstance(x, tuple | list) else m(x)

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, float] = {"params_m": count_parameters(model) / 1e6, "device": str(device)}
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            forward(model, inputs)
        flops = counter.get_total_flops()
        out["gflops"] = flops / 1e9
        out["gmacs"] = flops / 2e9
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(warmup + repeats if measure_latency else 0):
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
            torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
        )
    model.train(was_training)
    return out


def pair_forward(model: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """Embed a (ground, aerial) batch: the inference cost of a street-view/aerial pair."""
    ground, aerial = inputs
    return model.embed(ground, "ground"), model.embed(aerial, "aerial")
