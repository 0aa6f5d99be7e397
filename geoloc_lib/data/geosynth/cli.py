"""``geoloc data generate geosynth --profile smoke|default [--seed N] --out DIR``."""

from __future__ import annotations

import argparse

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.core.runtime import terminal_progress

DATASETS = ("geosynth",)


def main(args: argparse.Namespace) -> int:
    if args.dataset not in DATASETS:
        raise ConfigError(f"argument dataset: {choices_message('dataset', args.dataset, DATASETS)}")
    from geoloc_lib.data.geosynth import generate_geosynth
    from geoloc_lib.data.geosynth.profiles import PROFILES

    valid = [p for p in PROFILES if p != "tiny"]  # tiny is the unit tests' own
    if args.profile not in valid:
        raise ConfigError(f"argument --profile: {choices_message('profile', args.profile, valid)}")
    meta = generate_geosynth(
        args.out,
        profile=args.profile,
        seed=args.seed,
        progress=terminal_progress(args.quiet),
        workers=args.workers,
    )
    counts = ", ".join(f"{k}={v}" for k, v in meta["counts"].items())
    print(
        f"GeoSynth {meta['profile']} (seed {meta['seed']}) -> {args.out}: {meta['files']} files, "
        f"{counts}; content_sha256 {meta['content_sha256'][:16]}...; {meta['generation_seconds']:.1f} s"
    )
    return 0
