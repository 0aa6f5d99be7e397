"""Models, the one factory ``create_model(name, **cfg)`` and the one loader ``load_model``.

Each model module registers a builder with :func:`register_model`. A builder
takes a config object (``config=``) and/or keyword field changes (the fields of the
model's config dataclass) and returns an ``nn.Module``; the same code builds the
paper-size model and a tiny CPU model, only the configuration differs. Presets are
looked up one layer up: ``geoloc_lib.training.recipes.preset_for(model, name).build()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from geoloc_lib.core.checkpoints import checkpoint_model, load_checkpoint, load_model_state
from geoloc_lib.core.errors import ConfigError, choices_message

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Modules that register models; imported on first use so `import geoloc_lib`
# stays light and a model module that fails to import names itself.
_MODEL_MODULES = (
    "geoloc_lib.models.mcgf",
    "geoloc_lib.models.geoviewmatch",
    "geoloc_lib.models.baseline",
    "geoloc_lib.models.raw_pixel",
)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ConfigError(f"model name {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def _load_modules() -> None:
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real import error inside the module
                raise


def list_models() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build a registered model; unknown names or config keys list the valid ones."""
    _load_modules()
    if name not in _REGISTRY:
        raise ConfigError(choices_message("model", name, _REGISTRY))
    if "preset" in cfg:
        raise ConfigError(
            f"create_model({name!r}, preset=...): models take a config, not a preset name; use "
            f"geoloc_lib.training.recipes.preset_for({name!r}, {cfg['preset']!r}).build(...)"
        )
    return _REGISTRY[name](**cfg)


def load_model(
    checkpoint: str | Path, *, expect: str | Iterable[str] | None = None, **overrides: Any
) -> nn.Module:
    """Rebuild the model a checkpoint (or exported weights) records, with its trained weights.

    The model is the recorded ``model_name`` built from the recorded ``model_config``; nothing
    is downloaded (``pretrained`` and every ``*pretrained_file`` are switched off: the weights
    come from the checkpoint). ``expect``: the model name(s) the caller can use; a checkpoint of
    another model is refused naming both. ``overrides`` change config fields (e.g.
    ``img_size``). A file that is not a geoloc checkpoint (a bare state dict, a pickled object)
    or whose tensors do not fit the recorded model raises :class:`ConfigError` in one line.
    """
    ckpt = load_checkpoint(checkpoint)
    name, cfg = checkpoint_model(ckpt, checkpoint, expect)
    if "pretrained" in cfg:
        cfg["pretrained"] = False
    cfg.update({k: None for k in cfg if k.endswith("pretrained_file")})
    cfg.update(overrides)
    model = create_model(name, **cfg)
    load_model_state(model, ckpt["model"], checkpoint, hint=f" ({name!r} as recorded)")
    return model
