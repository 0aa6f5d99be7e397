"""geoloc bench fit: lever parsing, the epoch breakdown, a real tiny run and its CLI errors."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import torch
from layouts import make_university1652

from geoloc_lib.bench import fit as B
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.sources import DataSources
from geoloc_lib.pipeline.arguments import bench_fit as bench_fit_arguments


def test_parse_lever_reads_json_values_and_bare_words():
    assert B.parse_lever("val_every=5") == ("val_every", 5)
    assert B.parse_lever('amp="bf16"') == ("amp", "bf16")
    assert B.parse_lever("amp=bf16") == ("amp", "bf16")
    assert B.parse_lever("ground_size=[64, 320]") == ("ground_size", [64, 320])
    assert B.parse_lever("compile=aot_eager") == ("compile", "aot_eager")
    assert B.parse_lever("compile=true") == ("compile", True)
    with pytest.raises(ConfigError, match="key=value"):
        B.parse_lever("val_every")


def test_a_lever_goes_to_the_section_that_has_it():
    assert B.lever_overrides("mcgf", "val_every", 5) == {"train": {"val_every": 5}}
    # amp is a train-function option of MCGF and a training setting of GeoViewMatch
    assert B.lever_overrides("mcgf", "amp", "off") == {"run": {"amp": "off"}}
    assert B.lever_overrides("geoviewmatch", "amp", "off") == {"train": {"amp": "off"}}
    assert B.lever_overrides("mcgf", "model.w_nce", 0.0) == {"model": {"w_nce": 0.0}}
    with pytest.raises(ConfigError, match="not an override of mcgf; valid keys: model: "):
        B.lever_overrides("mcgf", "w_foo", 1)
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        B.lever_overrides("mcgf", "optim.lr", 1)


def test_epoch_breakdown_skips_the_first_epoch_and_counts_validation():
    history = pd.DataFrame(
        {
            "time_s": [10.0, 4.0, 6.0],
            "images": [100, 100, 100],
            "data_s": [8.0, 1.0, 1.0],
            "transform_s": [0.5, 0.5, 0.5],
            "validate_s": [1.0, None, 2.0],
        }
    )
    got = B.epoch_breakdown(history)
    assert got["epoch_s"] == pytest.approx((4 + 6 + 2) / 2)
    assert got["images/s"] == pytest.approx(200 / 12)
    assert got["data_s per epoch"] == pytest.approx(1.0)
    assert got["step_s per epoch"] == pytest.approx((10 - 2 - 1) / 2)
    assert got["validate_s per epoch"] == pytest.approx(1.0)


def test_run_benchmark_trains_real_runs_and_compares_a_lever(tmp_path):
    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    sources = DataSources("geosynth", root, None, "cvact")
    table = B.run_benchmark(
        sources, ["mcgf_matching_only"], [("run.val_queries", 0)], epochs=2, preset="smoke"
    )
    assert list(table["lever"]) == ["baseline", "run.val_queries=0"]
    assert table["images/s"].gt(0).all() and table["speed-up"].iloc[0] == 1.0
    assert table["validate_s per epoch"].iloc[0] > 0 and table["validate_s per epoch"].iloc[1] == 0
    with pytest.raises(ConfigError, match="at least 2"):
        B.run_benchmark(sources, ["mcgf_matching_only"], [], epochs=1, preset="smoke")


def test_main_names_a_missing_root(tmp_path):
    parser = argparse.ArgumentParser()
    bench_fit_arguments(parser)
    args = parser.parse_args(["--root", str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match="--root .*nowhere.*geoloc data generate"):
        B.main(args)


def test_side_by_side_runs_add_their_throughputs(monkeypatch):
    """Runs trained at once: images/s summed, the per-epoch parts averaged, one job per seed."""
    calls = []

    def fake_map(fn, jobs, parallel_runs):
        calls.append((fn, jobs, parallel_runs))
        return [
            {"model": "m", "device": "cpu", "amp": "off", "wall_s": 9.0, "images/s": 40.0,
             "epoch_s": 2.0, "data_s per epoch": 0.2},
            {"model": "m", "device": "cpu", "amp": "bf16", "wall_s": 9.5, "images/s": 44.0,
             "epoch_s": 4.0, "data_s per epoch": 0.4},
        ]  # fmt: skip

    monkeypatch.setattr(B, "map_side_by_side", fake_map)
    row = B.measure_side_by_side("m", None, epochs=3, preset="smoke", parallel_runs=2, seed=5)
    ((fn, jobs, n),) = calls
    assert fn is B._measure_fit_job and n == 2
    assert [job[-1] for job in jobs] == [5, 6]  # seeds
    assert row["images/s"] == pytest.approx(84.0)
    assert row["epoch_s"] == pytest.approx(3.0) and row["data_s per epoch"] == pytest.approx(0.3)
    assert row["amp"] == "bf16/off" and row["device"] == "cpu" and row["epochs"] == 3


def test_run_benchmark_adds_runs_side_by_side(tmp_path):
    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    sources = DataSources("geosynth", root, None, "cvact")
    if torch.cuda.is_available():  # runs train one at a time on a GPU: no side-by-side row
        with pytest.warns(UserWarning, match="one at a time"):
            table = B.run_benchmark(
                sources, ["mcgf_matching_only"], [], epochs=2, preset="smoke", parallel_runs=2
            )
        assert list(table["lever"]) == ["baseline"] and set(table["device"]) == {"cuda"}
        return
    table = B.run_benchmark(
        sources, ["mcgf_matching_only"], [], epochs=2, preset="smoke", parallel_runs=2
    )
    assert list(table["lever"]) == ["baseline", "parallel_runs=2"]
    assert table["images/s"].gt(0).all() and set(table["device"]) == {"cpu"}
    assert table["speed-up"].iloc[1] == pytest.approx(
        table["images/s"].iloc[1] / table["images/s"].iloc[0]
    )
