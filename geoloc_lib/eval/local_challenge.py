"""A University160k-WX-style challenge built from a University-1652-layout test split.

The real challenge's test set is name-masked: queries carry random
15-character names, their order is given by ``query_drone_name.txt`` and the answer is
``answer.zip`` holding ``answer.txt`` (each query's top-10 gallery names). This module builds
the same thing from any test split (GeoSynth or University-1652) so the whole submission path
can be run and scored locally:

- :func:`masked_names`: deterministic masked query names (a hash of seed and relative path);
- :func:`write_local_challenge`: embeds the weathered queries and the gallery, writes
  ``answer.zip`` (via :func:`geoloc_lib.eval.submit.make_submission`), ``query_drone_name.txt``
  and ``truth.csv`` (masked name -> location id, the key a challenge server would hold);
- :func:`read_answer` / :func:`score_answer` / :func:`score_local_challenge`: R@k of an answer
  against the truth, from the names in the file alone.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import pandas as pd
from torch import nn

from geoloc_lib.core.errors import ConfigError, DatasetError
from geoloc_lib.core.outputs import claim_output_dir
from geoloc_lib.data.images import IMAGE_SUFFIXES
from geoloc_lib.data.types import ImageSet
from geoloc_lib.eval.submit import (
    CHALLENGE_TOPK,
    FeatureFile,
    make_submission,
    read_query_list,
    stem,
)

MASK_LENGTH = 15  # University160k-WX query names are 15 characters


def masked_names(paths: Sequence[str | Path], seed: int, suffix: str = ".jpeg") -> list[str]:
    """One masked file name per query: 15 hex characters of sha256(seed, <id>/<file>)."""
    keys = [f"{seed}/{Path(p).parent.name}/{Path(p).name}" for p in paths]
    names = [hashlib.sha256(k.encode()).hexdigest()[:MASK_LENGTH] + suffix for k in keys]
    if len(set(names)) != len(names):
        raise ConfigError("masked_names: two queries got the same masked name; change the seed")
    return names


@dataclass(frozen=True)
class LocalChallenge:
    """Files of a locally built challenge and its size."""

    answer_zip: Path
    query_list: Path
    truth: Path
    n_queries: int
    n_gallery: int


def write_local_challenge(
    model: nn.Module,
    queries: ImageSet,
    gallery: ImageSet,
    out_dir: str | Path,
    *,
    condition: str = "mixed",
    seed: int = 0,
    weather_seed: int | None = None,
    img_size: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> LocalChallenge:
    """Write ``answer.zip``, ``query_drone_name.txt`` and ``truth.csv`` under ``out_dir``
    (geoloc's folder, a new or an empty one: :mod:`geoloc_lib.core.outputs`).

    Queries are drone images under ``condition`` (``"mixed"``: a random condition per image,
    as in University160k-WX), weathered exactly as
    :func:`geoloc_lib.eval.university.evaluate_mcgf` weathers the same query set, so the answer's
    R@1 equals that evaluation's. Names are masked with ``seed``; the list is in sorted order
    (not the folder order, as in the challenge). Gallery names are the file stems (location ids).
    """
    from geoloc_lib.data.university_torch import eval_loader
    from geoloc_lib.eval.features import extract_features
    from geoloc_lib.weather.sets import EVAL_WEATHER_SEED, eval_weather

    out_dir = claim_output_dir(out_dir, "local challenge folder", kind="local challenge")
    size = img_size or model.input_size("drone")[0]
    wseed = EVAL_WEATHER_SEED if weather_seed is None else weather_seed
    qf, _ = extract_features(
        model,
        eval_loader(queries, size, batch_size),
        "drone",
        device=device,
        batch_transform=eval_weather(condition, seed=wseed),
        progress=False,
    )
    gf, _ = extract_features(
        model, eval_loader(gallery, size, batch_size), "satellite", device=device, progress=False
    )
    names = masked_names(queries.paths, seed)
    gallery_names = [p.name for p in gallery.paths]
    query_list = sorted(names)
    answer = make_submission(
        FeatureFile(qf, names, gf, gallery_names),
        query_list,
        out_dir / "answer.zip",
        topk=min(CHALLENGE_TOPK, len(gallery_names)),  # a small local gallery: all of it
        device=device,
        progress=False,
    )
    list_file = out_dir / "query_drone_name.txt"
    list_file.write_text("\n".join(query_list) + "\n")
    truth_file = out_dir / "truth.csv"
    truth = pd.DataFrame({"query": names, "location": queries.names}).sort_values("query")
    truth.to_csv(truth_file, index=False)
    return LocalChallenge(answer, list_file, truth_file, len(queries), len(gallery))


def read_answer(path: str | Path) -> list[list[str]]:
    """The rows of ``answer.txt`` inside an ``answer.zip``: each query's names, best first."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"answer file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            if "answer.txt" not in archive.namelist():
                raise DatasetError(f"{path} holds no answer.txt (found {archive.namelist()})")
            data = archive.read("answer.txt")
    except zipfile.BadZipFile as err:
        raise DatasetError(
            f"answer file {path} is not a zip archive ({err}); zip answer.txt into it, e.g. "
            "with 'geoloc submit'"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"answer file {path}: answer.txt is not UTF-8 text (byte offset {err.start}); "
            "write it again with 'geoloc submit'"
        ) from None
    return [line.split("\t") for line in text.splitlines()]


def _no_ext(name: str) -> str:
    path = PurePath(name)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else name


def score_answer(
    rows: Sequence[Sequence[str]],
    query_list: Sequence[str],
    truth: Mapping[str, str],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """R@k in percent of an answer: line i (query ``query_list[i]``) hits at k when the true
    location's name is among its first k names. ``truth`` maps query stems to location names."""
    if len(rows) != len(query_list):
        raise DatasetError(f"the answer has {len(rows)} lines for {len(query_list)} queries")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DatasetError(f"answer lines hold different numbers of names: {sorted(widths)}")
    width = widths.pop()
    if max(ks) > width:
        raise ConfigError(f"score_answer: ks {tuple(ks)} need up to {max(ks)} of {width} names")
    missing = [q for q in query_list if stem(q) not in truth]
    if missing:
        raise DatasetError(f"no truth for {len(missing)} queries, e.g. {missing[:3]}")
    with_ext = [n for row in rows for n in row if PurePath(n).suffix.lower() in IMAGE_SUFFIXES]
    if with_ext:
        warnings.warn(
            f"{len(with_ext)} answer name(s) keep an image extension, e.g. {with_ext[0]!r}; they "
            "are scored without it here, but the challenge's answer.txt holds names without "
            "extension (write it with 'geoloc submit')",
            stacklevel=2,
        )
        rows = [[_no_ext(n) for n in row] for row in rows]
    names = np.asarray(rows, dtype=object)
    true = np.asarray([truth[stem(q)] for q in query_list], dtype=object)[:, None]
    first_hit = np.where((names == true).any(1), (names == true).argmax(1), width)
    return {f"R@{k}": float((first_hit < k).mean() * 100.0) for k in ks}


def score_local_challenge(
    challenge: LocalChallenge, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Score the challenge's ``answer.zip`` from its files (list, truth) alone."""
    truth = pd.read_csv(challenge.truth, dtype=str)
    key = dict(zip(truth["query"].map(stem), truth["location"], strict=True))
    rows = read_answer(challenge.answer_zip)
    return score_answer(rows, read_query_list(challenge.query_list), key, ks)
