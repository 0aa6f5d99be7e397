"""``geoloc bench train``: training throughput (images/s) of every model, fp32 vs bf16 autocast.

Each model is built at a preset, given one random batch of its training inputs at the preset's
image sizes, and timed over a few full steps (forward, backward, optimizer step; the model's own
batch augmentation and the weather included) with :func:`measure_throughput`.
The ratio column is what ``FitConfig(amp="auto")`` is decided from: on a CPU, autocast is used only
where it is faster.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from geoloc_lib.core.device import (
    autocast_dtype,
    batch_size,
    resolve_amp,
    resolve_device,
    to_device,
)
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.seeding import seed_everything
from geoloc_lib.models import create_model
from geoloc_lib.training.recipes import recipe_for
from geoloc_lib.training.runs import TASKS, check_model


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


def bench_train(
    models: list[str], preset: str = "default", batch_size: int = 16, steps: int = 5
) -> pd.DataFrame:
    """One row per model: fp32 and bf16-autocast training images/s on the CPU, and their ratio."""
    for label, value in (("--batch-size", batch_size), ("--steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"bench train {label}: expected an integer >= 1, got {value!r}")
    if not models:
        raise ConfigError("bench train --models: name at least one model")
    rows = []
    for name in models:
        check_model(name)
        seed_everything(0)
        base = create_model(name, preset=preset, **recipe_for(name).data_config)
        batch = random_batch(base, batch_size)
        rates = {}
        for amp in ("off", "bf16"):
            model = copy.deepcopy(base)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            transform = model.batch_transform()
            rates[amp] = measure_throughput(
                model, batch, opt, amp=amp, steps=steps, batch_transform=transform
            )
        rows.append(
            {
                "model": name,
                "preset": preset,
                "batch": batch_size,
                "fp32 img/s": rates["off"],
                "bf16 img/s": rates["bf16"],
                "bf16 / fp32": rates["bf16"] / rates["off"],
            }
        )
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(TASKS), help="comma-separated model names")
    parser.add_argument("--preset", default="default", help="smoke | default | paper")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def main(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"bench train --threads: expected an integer >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from geoloc_lib.reporting import markdown_table  # matplotlib: only for this command

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    table = bench_train(models, args.preset, args.batch_size, args.steps)
    print(f"training throughput on {torch.get_num_threads()} CPU thread(s), images per second:")
    print(markdown_table(table))
    return 0
