"""timm backbones with explicit pretrained-weight rules.

``create_backbone(name, pretrained=..., pretrained_file=..., **arch_kwargs)`` is the one place the
project builds a timm model. The rules (issue 6, item 5):

- ``pretrained=False``: random initialisation, said so in ``model.weights_source == "random"``.
- ``pretrained=True`` with ``pretrained_file=PATH``: timm loads the file through its own checkpoint
  filter (``pretrained_cfg_overlay=dict(file=PATH)``; position embeddings are resized when the
  image size differs). ``weights_source == "file:PATH"``.
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
from pathlib import Path
from typing import Any

import timm
from torch import nn

from geoloc_lib.errors import ConfigError

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


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


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """Build the timm model ``name`` with the pretrained rules of this module's docstring.

    Args:
        name: a timm model name (``swin_tiny_patch4_window7_224``, ``eva02_base_patch14_448``...).
        pretrained: load pretrained weights (hub, HF cache or ``pretrained_file``).
        pretrained_file: a local ``.safetensors``/``.pth``/``.bin`` with timm's parameter names.
            Passing a file implies ``pretrained=True``.
        **arch_kwargs: passed to ``timm.create_model`` unchanged (``num_classes``, ``img_size``,
            ``embed_dim``, ``depth``/``depths``, ``num_heads``, ``window_size``, ``patch_size``...).

    Returns:
        The model, with ``model.weights_source`` set to ``"random"``, ``"file:<path>"`` or
        ``"hub:<repo id>"``.

    Raises:
        ConfigError: unknown model name, missing file, or pretrained weights unavailable offline.
    """
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(
            f"unknown timm model {name!r}; see timm.list_models() for valid names "
            "(the project uses swin_tiny_patch4_window7_224 and eva02_base_patch14_448)"
        )
    if pretrained_file is not None and str(pretrained_file) != "":
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"pretrained_file {path} for backbone {name!r} does not exist")
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **arch_kwargs
        )
        source = f"file:{path}"
    elif pretrained:
        hub_id = pretrained_tag(name).removeprefix("hf-hub:")
        cached = _cached_hub_file(hub_id)
        if cached is not None:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=dict(file=cached), **arch_kwargs
            )
        elif hub_reachable():
            model = timm.create_model(name, pretrained=True, **arch_kwargs)
        else:
            raise ConfigError(
                f"pretrained weights for backbone {name!r} ({hub_id}) were requested but the "
                f"Hugging Face hub ({HUB_HOST}) cannot be reached and the weights are not in the "
                "local cache. Download them on a machine with internet (e.g. "
                f"`timm.create_model('{name}', pretrained=True)` there, then copy "
                f"'{hub_id.split('/')[-1]}/model.safetensors'), and pass its path as "
                "pretrained_file=..., or pass pretrained=False to train from random weights."
            )
        source = f"hub:{hub_id}"
    else:
        model = timm.create_model(name, pretrained=False, **arch_kwargs)
        source = "random"
    model.weights_source = source  # type: ignore[assignment]
    log.info("backbone %s: weights %s", name, source)
    return model
