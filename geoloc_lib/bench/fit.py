"""``geoloc bench fit``: end-to-end training throughput of real ``fit`` runs, and what each lever buys.

``geoloc bench train`` times the model step alone on one random batch. This benchmark trains each
model for a few epochs on a real dataset through :func:`~geoloc_lib.training.runs.train_run`, so
data loading, the weather, the augmentations and validation are all counted, and splits each
epoch's wall time into what the engine records (``history.csv``):

- ``data_s``: waiting for the loader (decoding, resizing, the per-item pair augmentation);
- ``transform_s``: the engine's batch transform (MCGF's weather, GeoViewMatch's views);
- ``step_s``: forward, backward and the optimizer step (the rest of ``time_s``);
- ``validate_s``: the per-epoch validation pass.

End-to-end images/s = training images / (``time_s`` + ``validate_s``) over the epochs after the
first (the first also decodes every image once into the cache; it is reported apart). A lever
(``--lever val_every=5``, ``--lever amp='"bf16"'``, ``--lever batch_size=64``,
``--lever compile=inductor`` or ``compile=aot_eager``: any key of a run's overrides, the value
parsed as JSON; ``section.key=value`` names its section, e.g. ``run.val_queries=0``, and a bare
key goes to the one section of each model that has it, so ``amp=off`` is a ``run`` option of
MCGF and a ``train`` setting of GeoViewMatch) reruns the same epochs with that change; its ``speed-up`` is its end-to-end
images/s over the baseline's, on the same machine and data. ``--parallel-runs 2`` adds the lever
that changes no run: two baseline runs trained at once on a CPU, one thread each on 2 cores (as
the notebooks train their grids), their summed images/s against one run on every core.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.outputs import claim_output_file
from geoloc_lib.core.parallel import map_side_by_side, runs_at_once
from geoloc_lib.data.sources import resolve_sources
from geoloc_lib.training.recipes import override_keys, recipe_for
from geoloc_lib.training.runs import train_run

# The table's leading columns: an existing --csv file whose header begins with them is one this
# command wrote and may be replaced; any other file needs --force.
CSV_COLUMNS = ("model", "lever", "device", "amp", "images/s", "speed-up", "epoch_s")
DEFAULT_MODELS = ("mcgf", "mcgf_matching_only", "geoviewmatch", "infonce_baseline")


def parse_lever(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (bare words are taken as strings)."""
    if "=" not in text:
        raise ConfigError(f"--lever {text!r}: expected key=value, e.g. val_every=5")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        if not re.fullmatch(r"[A-Za-z_][\w.:-]*", raw.strip()):
            raise ConfigError(
                f"--lever {text!r}: value {raw!r} is not valid JSON ({err.msg}, column "
                f"{err.colno}); write numbers, lists and strings as JSON, e.g. batch_size=64, "
                "stages='[3, 4]', amp='\"bf16\"'"
            ) from None
        value = raw.strip()
    if not key.strip():
        raise ConfigError(f"--lever {text!r}: no setting name before '='; e.g. val_every=5")
    return key.strip(), value


def lever_overrides(model: str, key: str, value: Any) -> dict[str, dict[str, Any]]:
    """The structured overrides of one lever for ``model``: ``section.key`` as named, a bare
    key in the section of ``model``'s overrides that has it (:func:`override_keys`)."""
    sections = override_keys(model)
    section, _, name = key.rpartition(".")
    if section:
        if section not in sections:
            raise ConfigError(f"--lever {key}: {choices_message('section', section, sections)}")
        return {section: {name: value}}
    found = [s for s, keys in sections.items() if name in keys]
    if not found:
        valid = "; ".join(f"{s}: {', '.join(keys)}" for s, keys in sections.items())
        raise ConfigError(f"--lever {key}: not an override of {model}; valid keys: {valid}")
    return {found[0]: {name: value}}


def epoch_breakdown(history: pd.DataFrame, skip_first: bool = True) -> dict[str, float]:
    """Seconds per epoch in each part, and end-to-end images/s, from a run's history."""
    h = history.iloc[1:] if skip_first and len(history) > 1 else history
    validate = h["validate_s"].fillna(0.0) if "validate_s" in h else pd.Series(0.0, index=h.index)
    wall = float((h["time_s"] + validate).sum())
    parts = {
        "data_s": float(h["data_s"].sum()) if "data_s" in h else float("nan"),
        "transform_s": float(h["transform_s"].sum()) if "transform_s" in h else float("nan"),
        "validate_s": float(validate.sum()),
    }
    parts["step_s"] = float(h["time_s"].sum()) - parts["data_s"] - parts["transform_s"]
    n = max(len(h), 1)
    out = {f"{k} per epoch": v / n for k, v in parts.items()}
    out["epoch_s"] = wall / n
    out["images/s"] = float(h["images"].sum()) / max(wall, 1e-9)
    return out


def measure_fit(
    model: str,
    sources: Any,
    *,
    epochs: int,
    preset: str,
    overrides: Mapping[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` in a scratch folder; its timing breakdown."""
    recipe_for(model)  # a clear error for an unknown model before any work
    with tempfile.TemporaryDirectory(prefix="geoloc_bench_fit_") as runs_dir:
        start = time.perf_counter()
        run = train_run(
            model, sources, runs_dir, preset=preset, epochs=epochs, seed=seed, progress=False,
            overrides=overrides,
        )  # fmt: skip
        wall = time.perf_counter() - start
    history = run.history
    row: dict[str, Any] = {"model": model, "epochs": epochs, "wall_s": wall}
    # Where it trained and in what precision: `amp="auto"` decides per model and machine.
    row["device"] = next(run.model.parameters()).device.type
    row["amp"] = (run.info.get("amp") or {}).get("mode", "off")
    row["first epoch_s"] = float(history["time_s"].iloc[0]) + float(
        history.get("validate_s", pd.Series([0.0])).fillna(0.0).iloc[0]
    )
    row.update(epoch_breakdown(history))
    return row


def _measure_fit_job(
    model: str, sources: Any, epochs: int, preset: str, seed: int
) -> dict[str, Any]:
    return measure_fit(model, sources, epochs=epochs, preset=preset, overrides={}, seed=seed)


def measure_side_by_side(
    model: str, sources: Any, *, epochs: int, preset: str, parallel_runs: int, seed: int = 0
) -> dict[str, Any]:
    """``parallel_runs`` runs of ``model`` at once (seeds ``seed``, ``seed + 1``, ...), each in a
    worker with cores // ``parallel_runs`` threads (as notebooks 01, 04 and 05 train them).

    They train the same epochs side by side, so their throughput is the sum of their end-to-end
    images/s; the per-epoch parts are their means; ``wall_s`` is the whole group's."""
    jobs = [(model, sources, epochs, preset, seed + i) for i in range(parallel_runs)]
    start = time.perf_counter()
    rows = map_side_by_side(_measure_fit_job, jobs, parallel_runs)
    wall = time.perf_counter() - start
    numeric = [k for k, v in rows[0].items() if isinstance(v, float) and k != "wall_s"]
    row: dict[str, Any] = {"model": model, "epochs": epochs, "wall_s": wall}
    row["device"] = rows[0]["device"]
    row["amp"] = "/".join(sorted({r["amp"] for r in rows}))
    row.update({k: sum(r[k] for r in rows) / len(rows) for k in numeric})
    row["images/s"] = sum(r["images/s"] for r in rows)
    return row


def run_benchmark(
    sources: Any,
    models: Sequence[str],
    levers: Sequence[tuple[str, Any]],
    *,
    epochs: int = 3,
    preset: str = "default",
    seed: int = 0,
    parallel_runs: int = 1,
) -> pd.DataFrame:
    """One baseline row per model, then one row per lever with its speed-up over the baseline;
    ``parallel_runs`` > 1 adds a row of that many baseline runs trained at once on a CPU
    (:func:`measure_side_by_side`; skipped on a GPU, where runs train one at a time)."""
    if epochs < 2:
        raise ConfigError("parameter epochs: at least 2 (the first epoch decodes the images)")
    side_by_side = runs_at_once(parallel_runs)
    # every lever of every model resolved before any training: a bad key fails at once
    plans = {m: [lever_overrides(m, key, value) for key, value in levers] for m in models}
    rows = []
    for model in models:
        base = measure_fit(model, sources, epochs=epochs, preset=preset, overrides={}, seed=seed)
        base.update(lever="baseline", **{"speed-up": 1.0})
        rows.append(base)
        for (key, value), overrides in zip(levers, plans[model], strict=True):
            row = measure_fit(
                model, sources, epochs=epochs, preset=preset, overrides=overrides, seed=seed
            )
            row.update(lever=f"{key}={json.dumps(value)}")
            row["speed-up"] = row["images/s"] / base["images/s"]
            rows.append(row)
        if side_by_side > 1:
            row = measure_side_by_side(
                model, sources, epochs=epochs, preset=preset, parallel_runs=side_by_side,
                seed=seed,
            )  # fmt: skip
            row.update(lever=f"parallel_runs={side_by_side}")
            row["speed-up"] = row["images/s"] / base["images/s"]
            rows.append(row)
    table = pd.DataFrame(rows)
    first = list(CSV_COLUMNS)
    return table[first + [c for c in table.columns if c not in first]]


def main(args: argparse.Namespace) -> int:
    csv = (
        claim_output_file(args.csv, "--csv", columns=CSV_COLUMNS, force=args.force)
        if args.csv
        else None
    )
    levers = [parse_lever(text) for text in args.lever]
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(
            f"--root {root}: no such folder; generate it with "
            f"`geoloc data generate geosynth --profile default --out {root}`"
        )
    sources = resolve_sources("geosynth", str(root), "", "", "cvact")
    table = run_benchmark(
        sources, args.models, levers, epochs=args.epochs, preset=args.preset, seed=args.seed,
        parallel_runs=args.parallel_runs,
    )  # fmt: skip
    print(
        f"end-to-end training on {root} ({args.preset} preset, {args.epochs} epochs per run, "
        f"{torch.get_num_threads()} CPU threads; per-epoch figures exclude the first epoch)"
    )
    print(table.round(3).to_string(index=False))
    if csv is not None:
        table.to_csv(csv, index=False)
        print(f"table written to {csv}")
    return 0
