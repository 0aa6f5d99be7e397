"""Features of a University160k-WX test set, in the feature-file format ``geoloc submit`` reads.

The test set is name-masked (:func:`geoloc_lib.data.university.load_university160k_wx`): drone
queries listed in ``query_drone_name.txt`` (already weathered: no synthetic weather is added
here) and a ``.webp`` satellite gallery. :func:`challenge_features` embeds the queries with the
``drone`` view and the gallery with the ``satellite`` view, at the model's input size, and
:func:`save_feature_file` writes the four entries of :mod:`geoloc_lib.eval.submit`'s format
(``query_features``, ``query_names``, ``gallery_features``, ``gallery_names``) as ``.pt``
(``torch.save``) or ``.npz`` (``numpy.savez``). Names are the image file names; ``submit``
matches queries to the list by stem and writes gallery names without extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.university import University160kWXTest
from geoloc_lib.data.university_torch import eval_loader
from geoloc_lib.eval.features import extract_features
from geoloc_lib.eval.submit import FeatureFile


def challenge_features(
    model: nn.Module,
    test: University160kWXTest,
    *,
    img_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool | None = None,
) -> FeatureFile:
    """Features of the test set's queries (list order) and gallery (file order), as
    ``model.embed`` returns them (L2-normalised, as the evaluation ranks them)."""
    size = img_size or model.input_size("drone")[0]
    out = {}
    for kind, images, view in (
        ("query", test.queries, "drone"),
        ("gallery", test.gallery, "satellite"),
    ):
        feats, _ = extract_features(
            model,
            eval_loader(images, size, batch_size),
            view,
            device=device,
            progress=progress,
            desc=f"embed {kind} ({view})",
        )
        out[kind] = (feats, [p.name for p in images.paths])
    return FeatureFile(out["query"][0], out["query"][1], out["gallery"][0], out["gallery"][1])


def save_feature_file(features: FeatureFile, path: str | Path) -> Path:
    """Write ``features`` to ``path`` (``.pt`` or ``.npz``, by its suffix); the folder is made."""
    path = Path(path)
    if path.suffix not in (".pt", ".npz"):
        raise ConfigError(f"feature file {path}: use a .pt or .npz name (got {path.suffix!r})")
    if path.is_dir():
        raise ConfigError(
            f"--out {path} is a folder; pass the file to write, e.g. {path / 'features.pt'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {
        "query_features": features.query_features.float().cpu(),
        "query_names": list(features.query_names),
        "gallery_features": features.gallery_features.float().cpu(),
        "gallery_names": list(features.gallery_names),
    }
    if path.suffix == ".pt":
        torch.save(entries, path)
    else:
        np.savez(
            path,
            **{k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=str)
               for k, v in entries.items()},
        )  # fmt: skip
    return path


@dataclass(frozen=True)
class ChallengeAnswer:
    """What :func:`write_challenge_answer` wrote: the feature file and the answer archive."""

    features: Path
    answer: Path
    n_queries: int
    n_gallery: int


def write_challenge_answer(
    model: nn.Module,
    root: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool | None = None,
) -> ChallengeAnswer:
    """The University160k-WX answer of ``model``: ``out_dir/features.pt`` (as ``geoloc
    features`` writes it) and ``out_dir/answer.zip`` (as ``geoloc submit`` writes it from that
    file: each listed query's top-10 gallery names). The test set's truth is held by the
    challenge server, so nothing is scored here.

    ``out_dir`` is geoloc's own output folder (a report folder): a feature file or answer
    archive there is replaced, any other file of those names is refused."""
    from geoloc_lib.core.device import resolve_device
    from geoloc_lib.data.university import load_university160k_wx
    from geoloc_lib.eval.submit import load_feature_file, make_submission

    device = str(resolve_device(device))

    out_dir = Path(out_dir)
    features_path = out_dir / "features.pt"
    if features_path.exists():
        load_feature_file(features_path)  # a file geoloc did not write fails here, naming it
    test = load_university160k_wx(root)
    features = challenge_features(
        model, test, batch_size=batch_size, device=device, progress=progress
    )
    save_feature_file(features, features_path)
    answer = make_submission(features, test.query_order, out_dir / "answer.zip", device=device)
    return ChallengeAnswer(
        features_path, answer, len(features.query_names), len(features.gallery_names)
    )
