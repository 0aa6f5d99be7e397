"""Models and the one factory, ``create_model(name, **cfg)``.

Each model module registers a builder with :func:`register_model`. A builder
takes keyword configuration (the fields of the model's config dataclass) and
returns an ``nn.Module``; the same code builds the paper-size model and a tiny
CPU model, only the configuration differs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from geoloc_lib.core.errors import ConfigError, choices_message

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Modules that register models; imported on first use so `import geoloc_lib`
# stays light and a model module that fails to import names itself.
_MODEL_MODULES = (
    "geoloc_lib.models.mcgf",
    "geoloc_lib.models.geoviewmatch",
    "geoloc_lib.models.baseline",
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
    return _REGISTRY[name](**cfg)
