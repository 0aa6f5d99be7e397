"""Presets: one lookup (``preset_for``) for every entry point, structured overrides, and 04/05
reusing 01's runs because their resolved settings are equal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import geoloc_lib
from geoloc_lib.analysis import ablations as A
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.pipeline.profiles import resolve_profile
from geoloc_lib.training import runs
from geoloc_lib.training.recipes import PRESET_NAMES, preset_for, recipes

PACKAGE = Path(geoloc_lib.__file__).parent
UNKNOWN = "parameter preset: unknown preset 'huge'; valid choices: default, paper, smoke"


def _entry_points(tmp_path):
    """Every public entry point that takes a preset name, called with ``huge``."""
    from geoloc_lib.analysis.cost import build_for_cost
    from geoloc_lib.bench.gpu import build_trainable
    from geoloc_lib.bench.train import bench_train

    full = A.mcgf_variants(deviations=False)[0]
    return {
        "preset_for": lambda: preset_for("mcgf", "huge"),
        "check_config": lambda: runs.check_config("geoviewmatch", "huge"),
        "train_run": lambda: runs.train_run("mcgf", None, tmp_path, preset="huge"),
        "train_runs": lambda: runs.train_runs(["infonce_baseline"], None, tmp_path, preset="huge"),
        "ablations.ensure_run": lambda: A.ensure_run(full, None, tmp_path, preset="huge", seed=0),
        "run_mcgf_seeds": lambda: A.run_mcgf_seeds(None, tmp_path, preset="huge"),
        "run_street_seeds": lambda: A.run_street_seeds(None, tmp_path, preset="huge"),
        "grid_epochs": lambda: A.grid_epochs("huge", {}, ["mcgf"]),
        "build_for_cost": lambda: build_for_cost("mcgf", "huge"),
        "bench gpu": lambda: build_trainable("geoviewmatch", "huge", 2),
        "bench train": lambda: bench_train(["mcgf"], preset="huge"),
    }


def test_an_unknown_preset_is_one_error_from_every_entry_point(tmp_path):
    for name, call in _entry_points(tmp_path).items():
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == UNKNOWN, name
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_an_unknown_model_lists_the_trainable_models():
    with pytest.raises(ConfigError, match="unknown model 'mcfg'; valid choices: geoviewmatch"):
        preset_for("mcfg", "smoke")


# What indexes or looks up a preset table: the tables' names subscripted, .get, `in`, and the
# per-config lookups (a `preset` classmethod) that preset_for replaced.
_LOOKUP = re.compile(
    r"PRESETS\s*\[|PRESETS\.get\(|\bin\s+\w*PRESETS\b(?!\.items)|\.presets\s*\[|\.configs\s*\[|"
    r"Config\.preset\(|preset_settings\(|resolve_preset\("
)


def test_no_module_but_recipes_looks_a_preset_up():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "training/recipes.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _LOOKUP.search(code):
                found.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert not found, "preset lookups outside training/recipes.py:\n" + "\n".join(found)
    # the pattern does catch a lookup (a test that can fail)
    assert _LOOKUP.search("cfg = PRESETS[name]") and _LOOKUP.search("if p in TRAIN_PRESETS:")


def test_models_take_a_config_not_a_preset_name():
    from geoloc_lib.models import create_model

    with pytest.raises(
        ConfigError, match=r"not a preset name; use .*preset_for\('mcgf', 'smoke'\)"
    ):
        create_model("mcgf", preset="smoke")
    smoke = preset_for("mcgf", "smoke")
    with pytest.raises(ConfigError, match="preset must be resolved"):
        smoke.recipe.train(None, "smoke")
    # the preset's objects are copies: changing one leaves the tables as they are
    smoke.config.w_nce = 9.0
    assert preset_for("mcgf", "smoke").config.w_nce == 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"w_nce": 0.0}, r"overrides of mcgf: unknown section 'w_nce'; valid choices: model, run"),
        ({"model": {"w_foo": 1}}, r"section 'model': unknown key\(s\) \['w_foo'\]; valid keys: "),
        ({"train": {"w_nce": 1}}, r"section 'train': unknown key\(s\) \['w_nce'\]; valid keys: "),
        ({"run": {"lr_head": 1}}, r"section 'run': unknown key\(s\) \['lr_head'\]; valid keys: "),
        ({"model": 0.5}, r"section 'model': expected a mapping of model-config fields"),
        ([("model", {})], r"overrides of mcgf: expected a mapping of sections"),
    ],
)
def test_structured_overrides_name_the_section_and_the_valid_keys(overrides, message):
    with pytest.raises(ConfigError, match=message):
        preset_for("mcgf", "smoke", overrides)


def test_each_section_reaches_its_object():
    p = preset_for(
        "mcgf_matching_only",
        "default",
        {"model": {"w_nce": 0.0}, "train": {"lr_head": 0.01}, "run": {"val_queries": 0}},
    )
    assert p.config.w_nce == 0.0 and not p.config.restoration
    assert p.train.lr_head == 0.01 and p.run["val_queries"] == 0 and p.run["amp"] == "auto"
    assert p.overrides == {
        "model": {"w_nce": 0.0},
        "train": {"lr_head": 0.01},
        "run": {"val_queries": 0},
    }
    assert p.with_epochs(3).epochs == 3 and p.epochs == 22
    with pytest.raises(ConfigError, match="epochs: expected an integer >= 1, got 0"):
        p.with_epochs(0)


def test_the_presets_train_the_budgets_04_and_05_used_to_name():
    # default: MCGF 22, GeoViewMatch and InfoNCE 40 (04/05's former per-grid parameters);
    # smoke: 1 everywhere; paper: GeoViewMatch 200, MCGF 120
    want = {
        "default": {
            "mcgf": 22,
            "mcgf_matching_only": 22,
            "geoviewmatch": 40,
            "infonce_baseline": 40,
        },
        "smoke": dict.fromkeys(recipes(), 1),
    }
    for name, epochs in want.items():
        assert A.grid_epochs(name, {}, list(epochs)) == epochs
    assert A.grid_epochs("paper", {}, ["mcgf", "geoviewmatch"]) == {
        "mcgf": 120,
        "geoviewmatch": 200,
    }
    assert A.grid_epochs("smoke", {"mcgf": 3}, ["mcgf", "geoviewmatch"]) == {
        "mcgf": 3,
        "geoviewmatch": 1,
    }
    with pytest.raises(ConfigError, match="unknown model 'mcfg'"):
        A.grid_epochs("smoke", {"mcfg": 3}, ["mcgf"])
    assert set(PRESET_NAMES) == {"paper", "default", "smoke"}


def _notebook_settings(profile: str, notebook: str) -> dict:
    return {r.notebook.stem: r.parameters for r in resolve_profile(profile)}[notebook]


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_04s_main_variants_are_01s_runs(profile):
    """04's variants of the main models resolve to exactly the run settings 01 trains with
    (``run.json``), so 04 (and 05's seed 0) reuse 01's runs of mcgf, mcgf_matching_only and
    geoviewmatch; 04's other variants differ from them."""
    first = _notebook_settings(profile, "01_train")
    grid = _notebook_settings(profile, "04_ablations")
    assert grid["epochs"] == {} and grid["preset"] == first["preset"]
    variants = A.mcgf_variants(preset=grid["preset"]) + A.geoviewmatch_variants(
        preset=grid["preset"]
    )
    main = [v for v in variants if not v.overrides]
    # the rows that are the main models themselves, each with the run name 04 trains it under
    labels = {A.FULL, A.WITHOUT_RESTORATION, "BS+CL+MF", "f4+f3"}
    assert labels <= {v.label for v in main}
    assert {v.model for v in main} == {"mcgf", "mcgf_matching_only", "geoviewmatch"}
    for v in main:
        of_01 = runs.run_preset(
            v.model, first["preset"], first["epochs"].get(v.model),
            first["overrides"].get(v.model), first["weights"],
        )  # fmt: skip
        want = runs.run_settings(of_01, first["seed"])
        assert (
            A.run_settings(v, grid["preset"], grid["epochs"], grid["seed"], grid["weights"]) == want
        )
        assert want["epochs"] == of_01.epochs == preset_for(v.model, grid["preset"]).epochs
    # another epoch count for one model: its variants are no longer 01's run, the others are
    full = next(v for v in main if v.model == "mcgf")
    changed = A.run_settings(full, grid["preset"], {"mcgf": 2}, 0)
    assert changed != runs.run_settings(preset_for("mcgf", grid["preset"]), 0)
    trained = [v for v in variants if v.overrides and v.model == "mcgf"][0]
    assert A.run_settings(trained, grid["preset"], {}, 0)["config"] != want["config"]
