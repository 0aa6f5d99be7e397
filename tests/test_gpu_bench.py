"""``geoloc bench gpu``: the tiny CPU run has every section with numbers; no CUDA -> exit 2."""

from __future__ import annotations

import json
import math

import pytest
import torch

from geoloc_lib.pipeline import cli

TINY = [
    "--allow-cpu", "--budget-s", "60", "--queries", "200", "--gallery", "1500", "--dim", "32",
    "--naive-queries", "10", "--steps", "1", "--repeats", "1",
]  # fmt: skip


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench")
    assert cli.main(["bench", "gpu", *TINY, "--out", str(out)]) == 0
    assert (out / "gpu_bench.md").read_text().count("|") > 20
    return json.loads((out / "gpu_bench.json").read_text(), parse_constant=_no_nan)


def _no_nan(constant: str) -> None:
    raise AssertionError(f"gpu_bench.json is not strict JSON: {constant}")


def test_every_section_has_numbers(result):
    assert result["environment"]["torch"] == torch.__version__
    inf = result["inference"]
    for amp in ("fp32", "bf16"):
        for key in ("gflops_per_pair", "latency_ms", "pairs_per_s"):
            assert _number(inf[amp][key]) and inf[amp][key] > 0, (amp, key, inf[amp])
    assert inf["paper_table4"]["gflops"] == 9.76
    gvm, mcgf = result["train_geoviewmatch"], result["train_mcgf"]
    for section, keys in ((gvm, ("fp32", "bf16", "bf16_compile")), (mcgf, ("fp32", "bf16"))):
        for key in keys:
            assert _number(section[key]["img_per_s"]) and section[key]["img_per_s"] > 0, section
            assert section[key]["loss_finite"]
    assert gvm["fp32"]["optimizer"] == "ASAM"  # the recipe's optimizer, second pass included
    assert _number(gvm["bf16_compile"]["compile_s"])
    ev = result["eval"]
    for key in ("eval_s", "matmul_before_s", "matmul_after_s", "ratio_eval_matmul"):
        assert _number(ev[key]), key
    assert (ev["queries"], ev["gallery"], ev["dim"]) == (200, 1500, 32)
    assert ev["metrics_equal_naive"] and _number(ev["metrics"]["R@1"])
    assert _number(result["wall_s"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_exits_2_with_one_line(capsys):
    assert cli.main(["bench", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device" in err and "--allow-cpu" in err


def test_a_failing_compile_is_reported_and_the_run_goes_on(tmp_path):
    args = [*TINY, "--sections", "compile", "--compile-backend", "no_such_backend"]
    args += ["--compile-in", "subprocess"]
    assert cli.main(["bench", "gpu", *args, "--out", str(tmp_path)]) == 0
    compiled = json.loads((tmp_path / "gpu_bench.json").read_text())["train_geoviewmatch"]
    assert "no_such_backend" in compiled["bf16_compile"]["error"]


def test_a_compile_past_the_budget_is_killed(tmp_path):
    args = [*TINY[:1], "--sections", "compile", "--compile-in", "subprocess", "--budget-s", "1"]
    assert cli.main(["bench", "gpu", *args, "--min-compile-s", "0", "--out", str(tmp_path)]) == 0
    compiled = json.loads((tmp_path / "gpu_bench.json").read_text())["train_geoviewmatch"]
    assert compiled["bf16_compile"]["error"].startswith("killed")
