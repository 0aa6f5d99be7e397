"""Checkpoint files (core): every layer that writes or rebuilds a model from a run goes here.

``engine.fit`` writes the files (model, optimizer, scheduler, scaler, RNG states, epoch,
history, ``model_name``, ``model_config``, ``run_settings``) with :func:`save_checkpoint`;
:func:`load_checkpoint` reads them.

A checkpoint holds tensors and plain Python values only (dict, list, tuple, str, int, float,
bool, None): :func:`save_checkpoint` converts NumPy values to them and refuses anything else,
and :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``, which never imports
or calls anything named in the file. A file that needs more (a pickled object, or a checkpoint
in the older format that keeps NumPy's RNG state as an array) is refused with one line;
:func:`upgrade_checkpoint` converts a trusted old file (``python -m geoloc_lib.core.checkpoints
upgrade PATH``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from geoloc_lib.core.errors import ConfigError, GeolocError, not_writable

# --------------------------------------------------------------------------- plain values


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` as tensors and plain Python values, which ``weights_only`` loading accepts.

    NumPy scalars become Python numbers, NumPy arrays tensors, paths strings and dataclasses
    dicts; anything else raises ``TypeError`` naming where it sits (``where``)."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    for plain in (bool, int, float, str):  # subclasses (IntEnum...) pickle by their class
        if isinstance(obj, plain):
            return plain(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, torch.dtype | torch.Size | torch.device):
        return obj
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(asdict(obj), where)
    if isinstance(obj, OrderedDict):
        plain = OrderedDict((k, to_plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a state_dict's module versions (load_state_dict reads)
            plain._metadata = to_plain(obj._metadata, f"{where}._metadata")  # type: ignore[attr-defined]
        return plain
    if isinstance(obj, Mapping):
        return {to_plain(k, where): to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, list):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}: a checkpoint keeps "
        "tensors and plain values only (dict, list, tuple, str, int, float, bool, None)"
    )


# --------------------------------------------------------------------------- writing


def save_checkpoint(obj: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``obj`` (converted by :func:`to_plain`) to ``path`` atomically.

    The file is written as ``<path>.tmp`` and renamed: a run killed while saving never leaves a
    truncated checkpoint. A failed write (disk full, read-only folder) removes the temporary
    file, keeps the previous checkpoint and raises :class:`NotWritableError` (one line naming
    the folder)."""
    path = Path(path)
    plain = to_plain(obj)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(plain, tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise not_writable(path.parent, err, f"{path.name} in") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_writable(folder: str | Path, what: str = "folder") -> None:
    """Fail now, with one line, when ``folder`` cannot be created or written to."""
    folder = Path(folder)
    probe = folder / f".geoloc-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise not_writable(folder, err, what) from None


# --------------------------------------------------------------------------- reading


def _refused_global(err: BaseException) -> str | None:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if match:
        return match.group(1)
    match = re.search(r"Unsupported operand (\d+)", str(err))
    return f"pickle operand {match.group(1)}" if match else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``fit`` (a dict: model, optimizer, ..., epoch, history).

    Loads with ``weights_only=True``: nothing named in the file is imported or run. A file
    holding other objects, a truncated or foreign file, raises :class:`ConfigError` in one
    line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _refused_global(err)
        what = f" ({found})" if found else ""
        raise ConfigError(
            f"checkpoint {path} holds Python objects{what} that are not loaded, because "
            "loading them could run code from the file: it was written by an older version of "
            "geoloc_lib or by other code. Retrain the run, or, only if you trust the file, "
            f"re-save it with `python -m geoloc_lib.core.checkpoints upgrade {path}`"
        ) from None
    except Exception as err:  # truncated or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot read checkpoint {path}: {first}") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def checkpoint_model(
    ckpt: Any, path: str | Path, expect: str | Iterable[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """The model name and config a geoloc checkpoint records, or one line saying what is wrong.

    ``expect``: the model names the caller can use; another one is refused naming both."""
    if not isinstance(ckpt, Mapping):
        raise ConfigError(
            f"checkpoint {path} holds a {type(ckpt).__name__}, not a geoloc checkpoint (a dict "
            "written by training or export_weights)"
        )
    if "model" not in ckpt:
        if _is_state_dict(ckpt) or _is_state_dict(ckpt.get("state_dict")):
            raise ConfigError(
                f"checkpoint {path} is a bare state dict (tensors only, no model name or "
                "configuration), not a geoloc checkpoint: build the model with create_model(...) "
                "and load_state_dict the file into it, or pass a run's checkpoint_last.pt or "
                "an export_weights file"
            )
        keys = ", ".join(sorted(map(str, ckpt))[:6]) or "none"
        raise ConfigError(
            f"checkpoint {path} has no 'model' entry (entries: {keys}); not a geoloc checkpoint"
        )
    cfg = dict(ckpt.get("model_config") or {})
    name = cfg.pop("name", None) or ckpt.get("model_name")
    if not name or not cfg:
        raise ConfigError(
            f"checkpoint {path} records no model name or configuration (not a run of "
            "geoloc_lib's fit?)"
        )
    if expect is not None:
        wanted = [expect] if isinstance(expect, str) else list(expect)
        if name not in wanted:
            raise ConfigError(
                f"checkpoint {path} holds a {name!r} model, but "
                f"{' or '.join(repr(w) for w in wanted)} is expected here; pass a checkpoint "
                f"of {'that model' if len(wanted) == 1 else 'one of those models'}"
            )
    return str(name), cfg


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _listed(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_model_state(
    model: nn.Module, state: Any, path: str | Path, strict: bool = True, hint: str = ""
) -> None:
    """``model.load_state_dict(state)``; a state that does not fit raises one line naming the
    file and the first differing tensors (shapes as saved vs as built)."""
    if not isinstance(state, Mapping):
        raise ConfigError(
            f"checkpoint {path}: its 'model' entry is a {type(state).__name__}, not a state dict"
        )
    try:
        model.load_state_dict(state, strict=strict)
        return
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        own = model.state_dict()
        parts = []
        wrong = [
            f"{k} {_shape(state[k])} vs {_shape(v)}"
            for k, v in own.items()
            if k in state and getattr(state[k], "shape", None) != v.shape
        ]
        if wrong:
            parts.append(f"{len(wrong)} of another shape (saved vs built): {_listed(wrong)}")
        if strict:
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            if missing:
                parts.append(f"{len(missing)} missing: {_listed(missing)}")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
        detail = "; ".join(parts) or first
    raise ConfigError(
        f"checkpoint {path} does not fit {type(model).__name__}{hint}: {detail}"
    ) from None


# --------------------------------------------------------------------------- old files


def upgrade_checkpoint(path: str | Path, out: str | Path | None = None) -> Path:
    """Re-save a checkpoint of an older format (NumPy RNG state as an array) in this format.

    This unpickles the file with ``weights_only=False``, which runs whatever code it names:
    use it only on files you trust (your own runs)."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    target = Path(out) if out is not None else path
    save_checkpoint(to_plain(ckpt), target)
    load_checkpoint(target)  # the result loads safely
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geoloc_lib.core.checkpoints",
        description="Re-save trusted checkpoints of an older format so that they load with "
        "weights_only=True. Unpickling an old file runs code it names: only for your own files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="re-save checkpoints in place (or to --out)")
    up.add_argument("paths", nargs="+", type=Path)
    up.add_argument("--out", type=Path, default=None, help="write here (one input only)")
    args = parser.parse_args(argv)
    if args.out is not None and len(args.paths) != 1:
        parser.error("--out takes one input checkpoint")
    try:
        for p in args.paths:
            print(f"upgraded {upgrade_checkpoint(p, args.out)}")
    except GeolocError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
