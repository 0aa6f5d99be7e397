"""Training settings and model sizes are checked where they resolve: --dry-run refuses them."""

from __future__ import annotations

import math

import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.pipeline.cli import main as cli_main
from geoloc_lib.pipeline.runner import run_pipeline
from geoloc_lib.training.recipes import preset_for


@pytest.mark.parametrize(
    "override, words",
    [
        (
            "overrides={mcgf: {train: {lr_backbone: .nan}}}",
            r"lr_backbone: expected a finite number > 0",
        ),
        ("overrides={mcgf: {train: {lr_head: -0.1}}}", r"lr_head: expected a finite number > 0"),
        ("overrides={geoviewmatch: {train: {lr_backbone: '0.01'}}}", r"lr_backbone: .*got '0.01'"),
        ("overrides={mcgf: {train: {batch_size: 0}}}", r"batch_size: expected an integer >= 1"),
        (
            "overrides={infonce_baseline: {train: {batch_size: -2}}}",
            r"batch_size: expected an integer",
        ),
        ("overrides={mcgf: {model: {img_size: 0}}}", r"img_size: expected an integer >= 32"),
        (
            "overrides={geoviewmatch: {model: {aerial_size: [0, 0]}}}",
            r"aerial_size: expected 2 positive",
        ),
        ("overrides={mcgf: {train: {epochs: -3}}}", r"epochs: expected an integer >= 1, got -3"),
        ("epochs={mcgf: -3}", r"epochs: entry mcgf: expected an integer >= 1"),
        ("parallel_runs=0", r"parameter parallel_runs: expected an integer >= 1"),
    ],
)
def test_dry_run_refuses_bad_training_values(override, words):
    with pytest.raises(ConfigError, match=words):
        run_pipeline("smoke", only=["01"], overrides=[override], dry_run=True, progress=False)


def test_cli_dry_run_prints_one_line(capsys):
    code = cli_main(
        ["run", "--profile", "smoke", "--only", "01", "--dry-run",
         "--set", "overrides={mcgf: {train: {lr_backbone: -1}}}"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "notebook 01_train" in err and "lr_backbone" in err


def test_settings_dataclasses_check_their_fields():

    assert preset_for("mcgf", "smoke").train.batch_size == 4  # the presets pass
    with pytest.raises(ConfigError, match="lr_backbone"):
        preset_for("mcgf", "smoke", {"train": dict(lr_backbone=math.inf)})
    with pytest.raises(ConfigError, match="momentum"):
        preset_for("mcgf", "smoke", {"train": dict(momentum=1.5)})
    with pytest.raises(ConfigError, match="epochs"):
        preset_for("geoviewmatch", "smoke", {"train": dict(epochs=0)})
    with pytest.raises(ConfigError, match="grad_clip"):
        preset_for("geoviewmatch", "smoke", {"train": dict(grad_clip=-1.0)})
