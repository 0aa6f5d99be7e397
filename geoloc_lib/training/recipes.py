"""One training recipe per model: its task, settings class, presets and train function.

Each training module registers a :class:`Recipe` for every model it trains
(``training/mcgf.py``: MCGF and its matching-only baseline; ``training/geoviewmatch.py``:
GeoViewMatch and the InfoNCE baseline). ``train_run``, ``load_run``, ``resolved_config`` and the
benchmarks look the recipe up by model name; none of them branches on the model family.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from geoloc_lib.core.errors import ConfigError, choices_message

# Modules that register recipes; imported on first use.
_RECIPE_MODULES = ("geoloc_lib.training.mcgf", "geoloc_lib.training.geoviewmatch")
_RECIPES: dict[str, Recipe] = {}


def split_overrides(
    settings_class: type, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route overrides by field name: ``settings_class`` fields, and the rest (the model's)."""
    keys = {f.name for f in fields(settings_class)}
    return (
        {k: v for k, v in overrides.items() if k in keys},
        {k: v for k, v in overrides.items() if k not in keys},
    )


@dataclass(frozen=True)
class Recipe:
    """How one registered model is trained.

    ``task``: ``drone->satellite`` or ``street->aerial``; ``settings``: the training-settings
    dataclass; ``presets``: its preset values by preset name; ``train``: the function
    ``train_run`` calls (``train(sources, preset=, model=, epochs=, out_dir=, seed=, device=,
    progress=, resume=, **overrides)``); ``data_config``: the model config the training data
    sets (e.g. ``num_classes``), as stand-in values for building the model without data;
    ``val_split``: how the training data is split into the part training uses and the
    validation part its monitor reads (``run.json`` records it with the training settings, so
    a run trained on another split is not reused).
    """

    model: str
    task: str
    settings: type
    presets: Mapping[str, Any]
    train: Callable[..., Any]
    data_config: Mapping[str, Any] = field(default_factory=dict)
    val_split: str = ""

    def split_overrides(self, overrides: Mapping[str, Any]) -> tuple[dict, dict]:
        return split_overrides(self.settings, overrides)

    def preset_settings(self, preset: str, **train_over: Any) -> Any:
        """The preset's settings with ``train_over`` applied; an unknown preset lists the valid."""
        if preset not in self.presets:
            raise ConfigError(
                f"parameter preset: {choices_message('preset', preset, self.presets)}"
            )
        return replace(self.presets[preset], **train_over)


def register_recipe(recipe: Recipe) -> Recipe:
    if recipe.model in _RECIPES and _RECIPES[recipe.model] != recipe:
        raise ConfigError(f"training recipe for model {recipe.model!r} registered twice")
    _RECIPES[recipe.model] = recipe
    return recipe


def recipes() -> dict[str, Recipe]:
    """Every registered recipe by model name."""
    for module in _RECIPE_MODULES:
        importlib.import_module(module)
    return dict(_RECIPES)


def recipe_for(model: str) -> Recipe:
    """The recipe of ``model``; an unknown name lists the trainable models."""
    known = recipes()
    if model not in known:
        raise ConfigError(f"parameter models: {choices_message('model', model, known)}")
    return known[model]
