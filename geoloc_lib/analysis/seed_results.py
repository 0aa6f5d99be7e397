"""Seeded results on disk, one folder per seed, so the claims can be recomputed without training.

A claims run trains and evaluates every variant once per seed; what the claims table needs of
it is small: per seed, the summary rows and the per-query values (ranks and per-query metrics).
:func:`save_seed_results` writes them as ``<folder>/seed<s>/<name>_summary.csv`` and
``<name>_per_query.csv.gz`` beside a ``<name>_settings.json`` that records what produced them
(preset, budgets, queries, dataset). :func:`load_seed_results` reads every seed folder whose
settings equal the current ones, so one seed can be run at a time (``--set seeds=[1]``, then
``[2]``) and the table built from all of them; a seed folder written with other settings is an
error naming it, never silently mixed in.

The files are deterministic (gzip without a timestamp, sorted rows), so a rerun with the same
results rewrites them byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from geoloc_lib.analysis.ablations import SeedResults
from geoloc_lib.core.errors import ConfigError

SEED_DIR = re.compile(r"seed(\d+)")
_GZIP = {"method": "gzip", "mtime": 0}


def _files(folder: Path, seed: int, name: str) -> tuple[Path, Path, Path]:
    base = folder / f"seed{int(seed)}"
    return (
        base / f"{name}_summary.csv",
        base / f"{name}_per_query.csv.gz",
        base / f"{name}_settings.json",
    )


def save_seed_results(
    results: SeedResults, folder: str | Path, name: str, settings: dict[str, Any]
) -> list[Path]:
    """Write each seed of ``results`` under ``folder/seed<s>/`` (module docstring); returns the
    files written. ``settings``: what produced them (JSON-serialisable), checked on load."""
    folder = Path(folder)
    written = []
    for seed in sorted(int(s) for s in results.summary["seed"].unique()):
        summary_file, per_query_file, settings_file = _files(folder, seed, name)
        summary_file.parent.mkdir(parents=True, exist_ok=True)
        summary = results.summary[results.summary["seed"] == seed]
        per_query = results.per_query[results.per_query["seed"] == seed]
        summary.to_csv(summary_file, index=False)
        per_query.to_csv(per_query_file, index=False, compression=_GZIP)
        settings_file.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
        written += [summary_file, per_query_file, settings_file]
    return written


def saved_seeds(folder: str | Path, name: str) -> list[int]:
    """The seeds with saved ``name`` results under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    seeds = []
    for child in folder.iterdir():
        match = SEED_DIR.fullmatch(child.name)
        if match and all(f.is_file() for f in _files(folder, int(match.group(1)), name)):
            seeds.append(int(match.group(1)))
    return sorted(seeds)


def load_seed_results(
    folder: str | Path, name: str, settings: dict[str, Any], seeds: Sequence[int] | None = None
) -> SeedResults | None:
    """Every saved seed of ``name`` (or those in ``seeds``) as one :class:`SeedResults`, None
    when there is none. A seed saved with other ``settings`` is a :class:`ConfigError` that
    names its folder: delete that folder or rerun the seed with these settings."""
    folder = Path(folder)
    wanted = saved_seeds(folder, name) if seeds is None else [int(s) for s in seeds]
    summaries, per_queries = [], []
    for seed in wanted:
        summary_file, per_query_file, settings_file = _files(folder, seed, name)
        if not settings_file.is_file():
            raise ConfigError(
                f"{settings_file.parent}: no saved {name} results for seed {seed}; run that seed "
                "(geoloc run --profile claims --set seeds=[...])"
            )
        try:
            saved = json.loads(settings_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{settings_file}: unreadable ({err}); rerun seed {seed}") from err
        if saved != json.loads(json.dumps(settings)):
            changed = sorted(k for k in {*saved, *settings} if saved.get(k) != settings.get(k))
            raise ConfigError(
                f"{settings_file.parent}: seed {seed}'s {name} results were made with other "
                f"settings ({', '.join(changed)}: {[saved.get(k) for k in changed]} there, "
                f"{[settings.get(k) for k in changed]} now); delete that folder or rerun the seed"
            )
        summaries.append(pd.read_csv(summary_file))
        per_queries.append(pd.read_csv(per_query_file))
    if not summaries:
        return None
    return SeedResults(
        pd.concat(summaries, ignore_index=True), pd.concat(per_queries, ignore_index=True)
    )
