"""University160k-WX challenge submission: ``answer.txt`` zipped as ``answer.zip``.

Format (the University-1652 challenge's): one line per query, in the order of ``query_drone_name.txt``; each
line holds the query's top-10 gallery names without extension, separated by tabs.

Feature file (``.pt`` via ``torch.save`` or ``.npz`` via ``numpy.savez``) holding four entries:

- ``query_features``: ``[Q, D]`` float features of the drone queries,
- ``query_names``: Q file names (``"abcdefghijklmno.jpeg"``; a directory part is ignored),
- ``gallery_features``: ``[G, D]`` float features of the satellite gallery,
- ``gallery_names``: G file names (``"xyz.webp"``), written without extension.

Queries are matched to the list by file name without extension, so ``abc.jpeg`` in the list
finds a feature row named ``abc``, ``abc.jpeg`` or ``query/abc.jpeg``.
"""

from __future__ import annotations

import argparse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import torch

from geoloc_lib.core.errors import ConfigError, DatasetError
from geoloc_lib.core.runtime import terminal_progress
from geoloc_lib.data.text import read_name_list
from geoloc_lib.eval.ranking import DEFAULT_CHUNK_MB, as_features, rank_gallery

CHALLENGE_TOPK = 10
FEATURE_KEYS = ("query_features", "query_names", "gallery_features", "gallery_names")
# Fixed zip timestamp so the same answer gives a byte-identical archive.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class FeatureFile:
    """Features and file names of a query set and a gallery."""

    query_features: torch.Tensor
    query_names: list[str]
    gallery_features: torch.Tensor
    gallery_names: list[str]


def stem(name: str) -> str:
    """File name without directory and extension: ``"a/b/x.jpeg"`` -> ``"x"``."""
    return PurePath(str(name)).stem


def load_feature_file(path: str | Path) -> FeatureFile:
    """Read a ``.pt`` or ``.npz`` feature file (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"feature file {path} does not exist; write it with torch.save or np.savez"
        )
    if path.suffix not in (".pt", ".npz"):
        raise ConfigError(
            f"feature file {path}: unknown extension {path.suffix!r}; use .pt or .npz"
        )
    how = (
        "torch.save a dict of tensors and lists of names"
        if path.suffix == ".pt"
        else "np.savez float arrays and string (not object) arrays of names"
    )
    try:
        if path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
    except Exception as err:  # noqa: BLE001 - pickle, zip and format errors all mean "unreadable"
        text = str(err).strip()
        if "weights_only" in text:  # torch's advice to unpickle arbitrary objects is not taken
            detail = "it holds objects other than tensors, names and numbers"
        elif "allow_pickle" in text:
            detail = "it holds object arrays, which are not loaded"
        else:
            detail = text.splitlines()[0][:160] if text else "unreadable"
        raise DatasetError(
            f"feature file {path} cannot be read ({type(err).__name__}: {detail}); {how}"
        ) from None
    if not isinstance(data, dict):
        raise DatasetError(f"feature file {path}: expected a dict of {', '.join(FEATURE_KEYS)}")
    missing = [key for key in FEATURE_KEYS if key not in data]
    if missing:
        raise DatasetError(
            f"feature file {path}: missing {', '.join(missing)} (found: {', '.join(sorted(data))})"
        )
    out = {}
    for kind in ("query", "gallery"):
        try:
            feats = torch.as_tensor(np.asarray(data[f"{kind}_features"]))
        except (TypeError, ValueError, RuntimeError) as err:
            raise DatasetError(
                f"feature file {path}: {kind}_features is not a numeric [N, D] array ({err})"
            ) from None
        if not (feats.is_floating_point() or feats.dtype in (torch.int32, torch.int64)):
            raise DatasetError(
                f"feature file {path}: {kind}_features has dtype {feats.dtype}; expected floats"
            )
        names = [str(n) for n in np.asarray(data[f"{kind}_names"]).reshape(-1).tolist()]
        if feats.dim() != 2 or feats.shape[0] != len(names):
            raise DatasetError(
                f"feature file {path}: {kind}_features has shape {tuple(feats.shape)} but there "
                f"are {len(names)} {kind}_names; expected one [N, D] row per name"
            )
        out[kind] = (feats, names)
    return FeatureFile(out["query"][0], out["query"][1], out["gallery"][0], out["gallery"][1])


def read_query_list(path: str | Path) -> list[str]:
    """The query order of the challenge (``query_drone_name.txt``): one file name per line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"query list {path} does not exist (query_drone_name.txt of the test set)"
        )
    names = read_name_list(
        path, "query list", "restore query_drone_name.txt from the challenge's test archive"
    )
    if not names:
        raise DatasetError(f"query list {path} is empty")
    return names


def _index_by_stem(names: Sequence[str], what: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for row, name in enumerate(names):
        key = stem(name)
        if key in index:
            raise DatasetError(
                f"{what}: {name!r} (row {row}) and row {index[key]} have the same name {key!r}; "
                "each image needs its own file name"
            )
        index[key] = row
    return index


def order_rows(
    names: Sequence[str], query_list: Sequence[str], what: str = "features"
) -> list[int]:
    """Row of ``names`` for each entry of ``query_list`` (matched by stem); errors name misses."""
    index = _index_by_stem(names, what)
    _index_by_stem(query_list, "query list")  # duplicates in the list are an error too
    missing = [name for name in query_list if stem(name) not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} of {len(query_list)} queries in the list have no row in the {what}: "
            f"{shown}; extract features for every image of query_drone_160k_wx_24/"
        )
    return [index[stem(name)] for name in query_list]


def write_submission(
    topk_gallery_names: Sequence[Sequence[str]],
    query_names: Sequence[str],
    out_zip: str | Path,
    *,
    query_list: Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Write ``answer.txt`` into ``out_zip``: the top-k names of each query, tab-separated.

    An existing ``out_zip`` is replaced only when it is an answer archive (a zip holding
    ``answer.txt`` alone) or ``force`` is set.

    ``topk_gallery_names[i]`` are the retrieved gallery names of ``query_names[i]``, best first.
    Lines follow ``query_list`` (the challenge's order; matched by stem) when given, else
    ``query_names``. Gallery names are written without directory and extension.
    """
    if len(topk_gallery_names) != len(query_names):
        raise ConfigError(
            f"write_submission: {len(topk_gallery_names)} top-k rows for {len(query_names)} queries"
        )
    rows = (
        order_rows(query_names, query_list) if query_list is not None else range(len(query_names))
    )
    lines = []
    widths = {len(topk_gallery_names[r]) for r in rows}
    if len(widths) != 1 or 0 in widths:
        raise ConfigError(
            f"write_submission: every query needs the same non-zero number of names, got {sorted(widths)}"
        )
    for r in rows:
        names = [stem(n) for n in topk_gallery_names[r]]
        bad = [n for n in names if "\t" in n or "\n" in n]
        if bad:
            raise ConfigError(
                f"write_submission: gallery name {bad[0]!r} contains a tab or newline"
            )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"write_submission: query {query_names[r]!r} lists gallery name {repeated[0]!r} "
                "more than once; every gallery image needs its own name"
            )
        lines.append("\t".join(names))
    out_zip = _check_out(out_zip, force)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    info = zipfile.ZipInfo("answer.txt", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out_zip, "w") as archive:
        archive.writestr(info, "\n".join(lines) + "\n")
    return out_zip


def _check_out(out_zip: str | Path, force: bool) -> Path:
    """``out_zip`` as a path geoloc may write: not a folder, not a file of someone else."""
    from geoloc_lib.core.outputs import is_answer_zip

    out_zip = Path(out_zip)
    if str(out_zip).strip() in ("", "."):
        raise ConfigError("--out is an empty path; name the zip file to write, e.g. answer.zip")
    if out_zip.is_dir():
        raise ConfigError(
            f"--out {out_zip} is a folder; pass the zip file to write, e.g. {out_zip / 'answer.zip'}"
        )
    if out_zip.exists() and not force and not is_answer_zip(out_zip):
        raise ConfigError(
            f"--out {out_zip} exists and is not an answer archive geoloc wrote (a zip holding "
            "answer.txt alone); name another file, or pass --force to replace it"
        )
    return out_zip


def _check_device(device: str | torch.device | None) -> str | torch.device | None:
    """``--device`` as torch reads it; an unknown type or CUDA without a GPU is a ConfigError."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"--device {device!r}: not a device torch knows; use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}: no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s); "
            "use cuda:0 or cpu"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device!r}: use cpu, cuda or cuda:N")
    return device


def _refuse_zero_rows(features: torch.Tensor, names: Sequence[str], what: str) -> None:
    """Rows that cannot be normalised (all zeros, or not finite) would rank the gallery in an
    arbitrary tie order: a DatasetError naming the first of them."""
    feats = torch.as_tensor(features).float()
    norms = feats.norm(dim=1)
    bad = torch.nonzero(~torch.isfinite(norms) | (norms == 0)).reshape(-1)
    if len(bad):
        i = int(bad[0])
        raise DatasetError(
            f"{what}: {len(bad)} row(s) are all zeros or not finite, e.g. row {i} "
            f"({names[i]!r}); they cannot be normalised and would rank the gallery in arbitrary "
            "order: extract their features again"
        )


def make_submission(
    features: FeatureFile,
    query_list: Sequence[str],
    out_zip: str | Path,
    *,
    topk: int = CHALLENGE_TOPK,
    chunk_size: int | None = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
    device: str | torch.device | None = None,
    normalize: bool = False,
    progress: bool | None = None,
    force: bool = False,
) -> Path:
    """Rank the gallery for the listed queries and write the challenge's ``answer.zip``.

    The gallery must hold at least ``topk`` images, each under its own name (by stem)."""
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ConfigError(f"--topk: expected a positive integer, got {topk!r}")
    out_zip = _check_out(out_zip, force)
    n_gallery = len(features.gallery_names)
    if n_gallery < topk:
        raise ConfigError(
            f"the gallery has {n_gallery} images, fewer than --topk {topk}: each line must hold "
            f"{topk} names; pass features of the whole gallery (or a smaller --topk for a local "
            "check)"
        )
    device = _check_device(device)
    _index_by_stem(features.gallery_names, "gallery names of the feature file")
    rows = order_rows(features.query_names, query_list, "query features")
    query = as_features(features.query_features, "query features")[torch.tensor(rows)]
    if normalize:
        _refuse_zero_rows(query, [features.query_names[r] for r in rows], "query_features")
        _refuse_zero_rows(features.gallery_features, features.gallery_names, "gallery_features")
    result = rank_gallery(
        query,
        features.gallery_features,
        topk=topk,
        chunk_size=chunk_size,
        max_chunk_mb=max_chunk_mb,
        device=device,
        normalize=normalize,
        progress=progress,
    )
    gallery_names = features.gallery_names
    top_names = [[gallery_names[j] for j in row] for row in result.topk_indices.tolist()]
    return write_submission(top_names, list(query_list), out_zip, force=force)


def main(args: argparse.Namespace) -> int:
    features = load_feature_file(args.features)
    query_list = read_query_list(args.query_list)
    out = make_submission(
        features,
        query_list,
        args.out,
        topk=args.topk,
        chunk_size=args.chunk_size,
        max_chunk_mb=args.max_chunk_mb,
        device=args.device,
        normalize=args.normalize,
        progress=terminal_progress(args.quiet),
        force=args.force,
    )
    print(f"wrote {out} ({len(query_list)} queries, top-{args.topk} each)")
    return 0
