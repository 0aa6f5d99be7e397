"""One training recipe per model, and the one lookup of presets: :func:`preset_for`.

Each training module registers a :class:`Recipe` for every model it trains
(``training/mcgf.py``: MCGF and its matching-only baseline; ``training/geoviewmatch.py``:
GeoViewMatch and the InfoNCE baseline). ``train_run``, ``load_run``, ``resolved_config`` and the
benchmarks look the recipe up by model name; none of them branches on the model family.

A preset name (``paper``, ``default``, ``smoke``) is looked up and validated here only:
:func:`preset_for` turns ``(model, name)`` into a :class:`Preset`, the model's config object and
its training settings (their values stay beside their dataclasses, in the model and training
modules), and applies structured overrides::

    {"model": {MCGFConfig / GeoViewMatchConfig / InfoNCEBaselineConfig fields},
     "train": {TrainSettings / StreetTrainSettings fields},
     "run":   {options of the recipe's train function: val_queries, max_steps_per_epoch...}}

Everything below the entry points (the train functions, the model builders) receives the
resolved objects, never a name.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from geoloc_lib.core.config import field_names, with_fields
from geoloc_lib.core.errors import ConfigError, choices_message

# Modules that register recipes; imported on first use.
_RECIPE_MODULES = ("geoloc_lib.training.mcgf", "geoloc_lib.training.geoviewmatch")
_RECIPES: dict[str, Recipe] = {}

PRESET_NAMES = ("paper", "default", "smoke")
# The sections of an overrides mapping: what each one changes.
OVERRIDE_SECTIONS = {
    "model": "model-config fields",
    "train": "training-settings fields",
    "run": "options of the train function",
}
# Presets whose amp="auto" is fp32 on every CPU, without measuring: CI runs the notebooks at the
# smoke preset on whatever CPU it gets, and their results must not depend on it.
FP32_CPU_PRESETS = ("smoke",)
OVERRIDES_EXAMPLE = (
    '{"model": {"w_nce": 0.0}, "train": {"lr_head": 0.01}, "run": {"val_queries": 0}}'
)


@dataclass(frozen=True)
class Recipe:
    """How one registered model is trained.

    ``task``: ``drone->satellite`` or ``street->aerial``; ``settings``: the training-settings
    dataclass; ``presets``: its values by preset name; ``configs``: the model config's values by
    preset name; ``config_fields``: fields every config of this model has (the matching-only
    MCGF: ``restoration=False``); ``train``: the function ``train_run`` calls
    (``train(sources, preset, out_dir=, seed=, device=, progress=, resume=, run_settings=)``,
    which reads its options from ``preset.run``); ``run_options``: those options with their
    defaults; ``data_config``: the model config the training data sets (e.g. ``num_classes``),
    as stand-in values for building the model without data; ``val_split``: how the training
    data is split into the part training uses and the validation part its monitor reads
    (``run.json`` records it with the training settings, so a run trained on another split is
    not reused).
    """

    model: str
    task: str
    settings: type
    presets: Mapping[str, Any]
    configs: Mapping[str, Any]
    train: Callable[..., Any]
    run_options: Mapping[str, Any] = field(default_factory=dict)
    config_fields: Mapping[str, Any] = field(default_factory=dict)
    data_config: Mapping[str, Any] = field(default_factory=dict)
    val_split: str = ""


@dataclass(frozen=True)
class Preset:
    """One model at one preset, resolved: what a run of it trains.

    ``config``: the model's config object; ``train``: the training settings (``train.epochs``
    included); ``run``: the train function's options (every one, defaults filled in);
    ``overrides``: the overrides applied to the preset, by section (non-empty sections only),
    as ``run.json`` records them; ``fp32_cpu``: ``amp="auto"`` on a CPU trains in fp32 without
    measuring (:data:`FP32_CPU_PRESETS`). Obtained from :func:`preset_for` only.
    """

    model: str
    name: str
    config: Any
    train: Any
    run: Mapping[str, Any]
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fp32_cpu: bool = False

    @property
    def recipe(self) -> Recipe:
        return recipe_for(self.model)

    @property
    def epochs(self) -> int:
        return int(self.train.epochs)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Preset:
        """This preset with structured ``overrides`` applied (:func:`check_overrides`)."""
        sections = check_overrides(self.model, overrides)
        if not sections:
            return self
        what = f"overrides of {self.model}, section"
        config = with_fields(self.config, sections.get("model", {}), f"{what} 'model'")
        config = with_fields(config, self.recipe.config_fields, f"{self.model} config")
        train = with_fields(self.train, sections.get("train", {}), f"{what} 'train'")
        run_over = sections.get("run", {})
        bad = sorted(str(k) for k in set(run_over) - set(self.run))
        if bad:
            raise ConfigError(
                f"{what} 'run': unknown key(s) {bad}; valid keys: {', '.join(sorted(self.run))}"
            )
        merged = {
            s: {**self.overrides.get(s, {}), **sections.get(s, {})} for s in OVERRIDE_SECTIONS
        }
        return replace(
            self,
            config=config,
            train=train,
            run={**self.run, **run_over},
            overrides={s: v for s, v in merged.items() if v},
        )

    def with_epochs(self, epochs: int | None) -> Preset:
        """This preset trained for ``epochs`` (None: the preset's own count)."""
        if epochs is None:
            return self
        return replace(self, train=with_fields(self.train, {"epochs": epochs}, "parameter epochs"))

    def build(self, **fields: Any) -> Any:
        """The model of this preset (``create_model(model, config=...)``), with ``fields``
        changed in its config (``num_classes``, ``pretrained``...)."""
        from geoloc_lib.models import create_model

        config = with_fields(self.config, fields, f"{self.model} config")
        return create_model(self.model, config=config)


def check_overrides(model: str, overrides: object) -> dict[str, dict[str, Any]]:
    """``overrides`` of ``model`` checked for shape: a mapping of sections (``model``,
    ``train``, ``run``) to mappings; each key is checked against its section by
    :meth:`Preset.with_overrides`. An error names the model, the section and the fix."""
    if overrides is None:
        return {}
    what = f"overrides of {model}"
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{what}: expected a mapping of sections {', '.join(OVERRIDE_SECTIONS)}, e.g. "
            f"{OVERRIDES_EXAMPLE}; got {overrides!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for section, values in overrides.items():
        if section not in OVERRIDE_SECTIONS:
            raise ConfigError(
                f"{what}: {choices_message('section', section, OVERRIDE_SECTIONS)} (model: "
                f"config fields, train: training settings, run: train options), e.g. "
                f"{OVERRIDES_EXAMPLE}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{what}, section {section!r}: expected a mapping of "
                f"{OVERRIDE_SECTIONS[section]} to values, got {values!r}"
            )
        if values:
            out[str(section)] = dict(values)
    return out


def check_preset(preset: object, models: tuple[str, ...], owner: str) -> Preset:
    """``preset`` when it is a resolved :class:`Preset` of one of ``models``."""
    if not isinstance(preset, Preset):
        raise ConfigError(
            f"{owner}: preset must be resolved, e.g. "
            f"preset_for({models[0]!r}, {preset!r}); got {preset!r}"
        )
    if preset.model not in models:
        raise ConfigError(f"{owner}: {choices_message('model', preset.model, models)}")
    return preset


def override_keys(model: str) -> dict[str, list[str]]:
    """The keys each overrides section of ``model`` accepts."""
    recipe = recipe_for(model)
    return {
        "model": field_names(next(iter(recipe.configs.values()))),
        "train": field_names(recipe.settings),
        "run": sorted(recipe.run_options),
    }


def preset_for(model: str, name: str, overrides: Mapping[str, Any] | None = None) -> Preset:
    """The :class:`Preset` of ``model`` at preset ``name`` with structured ``overrides``.

    The one place that looks a preset name up: an unknown model or preset is a
    :class:`ConfigError` listing the valid choices. The config and settings are copies, so a
    caller may change them without touching the preset tables.
    """
    recipe = recipe_for(model)
    if not isinstance(name, str) or name not in PRESET_NAMES or name not in recipe.presets:
        raise ConfigError(f"parameter preset: {choices_message('preset', name, PRESET_NAMES)}")
    config = with_fields(
        copy.deepcopy(recipe.configs[name]), recipe.config_fields, f"{model} config"
    )
    preset = Preset(
        model=model,
        name=name,
        config=config,
        train=copy.deepcopy(recipe.presets[name]),
        run=dict(recipe.run_options),
        fp32_cpu=name in FP32_CPU_PRESETS,
    )
    return preset.with_overrides(overrides)


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
