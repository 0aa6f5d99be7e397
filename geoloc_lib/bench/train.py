"""``geoloc bench train``: training throughput (images/s) of every model, fp32 vs bf16 autocast.

Each model is built at a preset, given one random batch of its training inputs at the preset's
image sizes, and timed over a few full steps (forward, backward, optimizer step; the model's own
batch augmentation and the weather included) with
:func:`geoloc_lib.training.amp.measure_throughput`. ``FitConfig(amp="auto")`` measures the same
ratio on a CPU with native bf16 and uses autocast only where it is clearly faster
(:func:`geoloc_lib.training.amp.resolve_fit_amp`).
"""

from __future__ import annotations

import argparse
import copy

import pandas as pd
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.seeding import seed_everything
from geoloc_lib.training.amp import measure_throughput, random_batch
from geoloc_lib.training.recipes import preset_for, recipe_for
from geoloc_lib.training.runs import check_model


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
        base = preset_for(name, preset).build(**recipe_for(name).data_config)
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


def main(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"bench train --threads: expected an integer >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from geoloc_lib.reporting import markdown_table  # matplotlib: only for this command

    table = bench_train(list(args.models), args.preset, args.batch_size, args.steps)
    print(f"training throughput on {torch.get_num_threads()} CPU thread(s), images per second:")
    print(markdown_table(table))
    return 0
