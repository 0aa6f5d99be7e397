"""timm backbones with explicit pretrained-weight rules.

``create_backbone(name, pretrained=..., pretrained_file=..., **arch_kwargs)`` is the one place the
project builds a timm model. The rules:

- ``pretrained=False``: random initialisation, said so in ``model.weights_source == "random"``.
- ``pretrained=True`` with ``pretrained_file=PATH``: the file is read here (``.safetensors`` or a
  ``torch.save`` file, opened with ``weights_only=True``; a ``state_dict``/``model`` entry is
  unwrapped), the wrapper prefixes ``module.``, ``backbone.``, ``model.`` and ``_orig_mod.`` are
  stripped when the model's own names do not start with them, and timm's checkpoint filter of the
  architecture is applied (position embeddings are resized when the image size differs). The load is
  then checked: every tensor of the model must come from the file with its shape; a classifier head
  the model does not have is dropped. Anything else (another architecture, a different size, keys
  with an unknown prefix) raises a :class:`ConfigError` naming the file, the architecture and a few
  of the mismatched keys. ``weights_source == "file:PATH [n/n tensors]"``.
- ``pretrained=True`` without a file: the weights come from the local Hugging Face cache when they
  are there, else from the hub when it is reachable (``"hub:<repo id>"``). When the hub cannot be
  reached and nothing is cached, a :class:`ConfigError` names the weights and says how to pass a
  file. The model is never silently random when pretrained weights were asked for.

Reachability is probed with one short TCP connection (timm's own retry loop takes about a minute
to fail offline). ``HF_HUB_OFFLINE=1`` or ``GEOLOC_OFFLINE=1`` skip the probe.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from geoloc_lib.core.errors import ConfigError

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
# Wrapper prefixes removed on purpose (training wrappers, detection/retrieval "backbone" sub-modules).
STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.", "model.")
_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "GEOLOC_OFFLINE", "0"
    ) not in ("", "0"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_hub_file(hub_id: str) -> str | None:
    """Path of already-downloaded weights for ``hub_id`` in the HF cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a timm dependency
        return None
    for fname in _WEIGHT_FILES:
        hit = try_to_load_from_cache(hub_id, fname)
        if isinstance(hit, str) and Path(hit).is_file():
            return hit
    return None


def pretrained_tag(name: str) -> str:
    """The hub id of timm's default weights for ``name`` (e.g. ``timm/eva02_base_patch14_448...``)."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"timm has no pretrained weights registered for {name!r}")
    return cfg.hf_hub_id or cfg.url or name


def read_state_dict(path: Path, *, what: str = "pretrained_file") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, with a clear error for an unreadable or foreign file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors, pickle and zip errors all mean "unreadable"
        text = str(exc).strip()
        if "weights_only" in text:  # torch's advice to unpickle arbitrary objects is not taken
            detail = "not a plain tensor file; pickled objects are not loaded"
        else:
            detail = text.splitlines()[0][:160] if text else "unreadable"
        raise ConfigError(
            f"{what} {path} cannot be read as a weights file ({type(exc).__name__}: {detail}); "
            "pass a .safetensors or torch.save state_dict of the backbone"
        ) from None
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(
            f"{what} {path} holds no state_dict (found {type(obj).__name__}); pass a .safetensors "
            "or torch.save state_dict of the backbone"
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError(f"{what} {path} holds no tensors; pass a state_dict of the backbone")
    return tensors


def strip_prefixes(
    state: Mapping[str, torch.Tensor], model_keys: set[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove the wrapper prefixes of :data:`STRIP_PREFIXES` that the model's own names lack.

    A prefix is removed only when every key of the file carries it (after the previous removals)
    and no key of the model starts with it. Returns the new dict and the prefixes removed.
    """
    out = dict(state)
    removed: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if any(k.startswith(prefix) for k in model_keys):
                continue
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                removed.append(prefix)
                changed = True
    return out, removed


def _filter_fn(name: str) -> Any:
    """timm's checkpoint filter for the architecture ``name`` (None when it has none)."""
    entry = timm.models.model_entrypoint(name.split(".")[0])
    return getattr(sys.modules.get(entry.__module__), "checkpoint_filter_fn", None)


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _check_values(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], path: Path, what: str
) -> None:
    """Every tensor the model holds as floating point must be floating point in the file, and
    finite: integer weights or NaN/Inf would load without error and train nothing useful."""
    not_float = [
        f"{k} ({state[k].dtype})"
        for k in target
        if target[k].is_floating_point() and not state[k].is_floating_point()
    ]
    if not_float:
        raise ConfigError(
            f"{what} {path}: {len(not_float)} tensor(s) are not floating point where the model "
            f"holds weights (e.g. {_few(not_float, 2)}); pass the original float weights file"
        )
    bad = [k for k in target if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        raise ConfigError(
            f"{what} {path}: {len(bad)} tensor(s) hold NaN or Inf (e.g. {_few(bad)}); the file is "
            "damaged or from a diverged training run: pass intact weights, or pretrained=False"
        )


def load_checked(
    model: nn.Module, name: str, path: Path, *, what: str = "pretrained_file"
) -> tuple[int, int]:
    """Load ``path`` into ``model`` and check that every tensor of the model came from it.

    Returns ``(loaded, total)``: tensors taken from the file, tensors in the model's state_dict.
    Raises :class:`ConfigError` when any model tensor is missing from the file or has another shape.
    """
    target = model.state_dict()
    state, removed = strip_prefixes(read_state_dict(path, what=what), set(target))
    filt = _filter_fn(name)
    if filt is not None:
        try:
            state = filt(state, model)
        except Exception:  # noqa: BLE001 - a foreign file can break the filter; checked below
            pass
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    missing = [k for k in target if k not in state]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in target
        if k in state and tuple(state[k].shape) != tuple(target[k].shape)
    ]
    unexpected = [
        k for k in state if k not in target and not any(k.startswith(h + ".") for h in heads)
    ]
    log.info(
        "backbone %s from %s: %d/%d tensors loaded, %d missing, %d with another shape, "
        "%d unexpected%s",
        name,
        path,
        len(target) - len(missing) - len(mismatched),
        len(target),
        len(missing),
        len(mismatched),
        len(unexpected),
        f" (prefix {''.join(removed)!r} stripped)" if removed else "",
    )
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {_few(missing)})")
        if mismatched:
            parts.append(f"{len(mismatched)} with another shape (e.g. {_few(mismatched, 2)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected in the file (e.g. {_few(unexpected)})")
        raise ConfigError(
            f"{what} {path} does not fit backbone {name!r} with this size: of its "
            f"{len(target)} tensors, {'; '.join(parts)}. Pass weights of this architecture and "
            "size, or pretrained=False for random weights"
        )
    _check_values(state, target, path, what)
    if unexpected:
        log.warning(
            "backbone %s: %d tensors of %s are not used (e.g. %s)",
            name,
            len(unexpected),
            path,
            _few(unexpected),
        )
    model.load_state_dict({k: state[k] for k in target}, strict=True)
    return len(target), len(target)


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    file_param: str = "pretrained_file",
    **arch_kwargs: Any,
) -> nn.Module:
    """Build the timm model ``name`` with the pretrained rules of this module's docstring.

    Args:
        name: a timm model name (``swin_tiny_patch4_window7_224``, ``eva02_base_patch14_448``...).
        pretrained: load pretrained weights (hub, HF cache or ``pretrained_file``).
        pretrained_file: a local ``.safetensors``/``.pth``/``.bin`` with timm's parameter names.
            Passing a file implies ``pretrained=True``.
        file_param: the caller's name of the file argument, used in messages
            (``content_pretrained_file`` for MCGF's content encoder...).
        **arch_kwargs: passed to ``timm.create_model`` unchanged (``num_classes``, ``img_size``,
            ``embed_dim``, ``depth``/``depths``, ``num_heads``, ``window_size``, ``patch_size``...).

    Returns:
        The model, with ``model.weights_source`` set to ``"random"``, ``"file:<path>"`` or
        ``"hub:<repo id>"``.

    Raises:
        ConfigError: unknown model name, missing, unreadable or unfitting file, or pretrained
            weights unavailable offline.
    """
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(
            f"unknown timm model {name!r}; see timm.list_models() for valid names "
            "(the project uses swin_tiny_patch4_window7_224 and eva02_base_patch14_448)"
        )
    if pretrained_file is not None and str(pretrained_file) != "":
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"{file_param} {path} for backbone {name!r} does not exist")
        model = timm.create_model(name, pretrained=False, **arch_kwargs)
        loaded, total = load_checked(model, name, path, what=file_param)
        source = f"file:{path} [{loaded}/{total} tensors]"
    elif pretrained:
        hub_id = pretrained_tag(name).removeprefix("hf-hub:")
        cached = _cached_hub_file(hub_id)
        if cached is not None:
            model = timm.create_model(name, pretrained=False, **arch_kwargs)
            load_checked(model, name, Path(cached), what="cached hub weights")
        elif hub_reachable():
            try:
                model = timm.create_model(name, pretrained=True, **arch_kwargs)
            except RuntimeError as err:  # load_state_dict's size mismatches: one line
                first = str(err).strip().splitlines()[0][:200]
                raise ConfigError(
                    f"pretrained weights {hub_id} do not fit backbone {name!r} with these sizes "
                    f"({first}); use the architecture's own sizes (the paper preset) or "
                    "pretrained=False"
                ) from None
        else:
            raise ConfigError(
                f"pretrained weights for backbone {name!r} ({hub_id}) were requested but the "
                f"Hugging Face hub ({HUB_HOST}) cannot be reached and the weights are not in the "
                "local cache. Download them on a machine with internet (e.g. "
                f"`timm.create_model('{name}', pretrained=True)` there, then copy "
                f"'{hub_id.split('/')[-1]}/model.safetensors'), and pass its path as "
                f"{file_param}=..., or pass pretrained=False to train from random weights."
            )
        source = f"hub:{hub_id}"
    else:
        model = timm.create_model(name, pretrained=False, **arch_kwargs)
        source = "random"
    model.weights_source = source  # type: ignore[assignment]
    log.info("backbone %s: weights %s", name, source)
    return model
