"""``geoloc features``: a drone->satellite run's features of a University160k-WX test set.

Writes the feature file ``geoloc submit`` reads (:mod:`geoloc_lib.eval.submit`'s format):
``geoloc features RUN --root DIR --out features.pt``, then
``geoloc submit --features features.pt --query-list DIR/query_drone_name.txt --out answer.zip``.

An existing ``--out`` file is replaced only when it is a feature file (``geoloc submit`` reads
it) or with ``--force``: a file of someone else is never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geoloc_lib.core.errors import ConfigError, DatasetError


def _check_out(out: Path, force: bool) -> None:
    """A ConfigError when ``out`` is a folder, or a file other than a feature file (unless
    ``force``); checked before any work."""
    from geoloc_lib.eval.submit import load_feature_file

    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; pass the file to write, e.g. {out / 'features.pt'}"
        )
    if out.exists() and not force:
        try:
            load_feature_file(out)
        except (ConfigError, DatasetError):
            raise ConfigError(
                f"--out {out} exists and is not a feature file geoloc wrote (query and gallery "
                "features and names); name another file, or pass --force to replace it"
            ) from None


def main(args: argparse.Namespace) -> int:
    from geoloc_lib.core.runtime import terminal_progress
    from geoloc_lib.data.university import load_university160k_wx
    from geoloc_lib.eval.challenge_features import challenge_features, save_feature_file
    from geoloc_lib.pipeline.evaluate import load_trained

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if args.out.suffix not in (".pt", ".npz"):
        raise ConfigError(f"--out {args.out}: name a .pt or .npz file")
    _check_out(args.out, args.force)
    trained = load_trained(args.run)
    if not trained.task.startswith("drone"):
        raise ConfigError(
            f"{trained.name} is a {trained.model_name} model ({trained.task}); University160k-WX "
            "needs a drone->satellite model (mcgf, mcgf_matching_only)"
        )
    test = load_university160k_wx(args.root)
    features = challenge_features(
        trained.model,
        test,
        batch_size=args.batch_size,
        device=args.device,
        progress=terminal_progress(args.quiet),
    )
    out = save_feature_file(features, args.out)
    print(
        f"wrote {out}: {len(features.query_names)} queries, {len(features.gallery_names)} "
        f"gallery images, {features.query_features.shape[1]}-d ({trained.name})"
    )
    print(
        f"next: geoloc submit --features {out} --query-list "
        f"{Path(args.root) / 'query_drone_name.txt'} --out answer.zip"
    )
    return 0
