"""``amp="auto"`` on a CPU: native-bf16 detection, the decision rule, its cache, and the presets
and kernel sets that must stay fp32 without measuring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from geoloc_lib.core import device as D
from geoloc_lib.training import amp as A
from geoloc_lib.training.recipes import preset_for

CPUINFO_BF16 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: second processor, ignored
flags\t\t: fpu
"""
CPUINFO_AVX512_ONLY = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx2 avx512f\n"


def test_cpuinfo_fields():
    name, flags = D.cpuinfo_fields(CPUINFO_BF16)
    assert name == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx512_bf16", "amx_bf16", "avx512f"} <= flags and "fpu" in flags
    assert D.cpuinfo_fields("") == ("", set())


@pytest.mark.parametrize(
    "cpuinfo, capability, env, native",
    [
        (CPUINFO_BF16, "AVX512", {}, True),
        (CPUINFO_BF16, "AVX512", {"ATEN_CPU_CAPABILITY": "avx512"}, True),
        (CPUINFO_BF16, "AVX2", {}, False),  # PyTorch chose AVX2 kernels
        (CPUINFO_BF16, "AVX512", {"ATEN_CPU_CAPABILITY": "default"}, False),
        (CPUINFO_BF16, "AVX512", {"ATEN_CPU_CAPABILITY": "avx2"}, False),
        (CPUINFO_AVX512_ONLY, "AVX512", {}, False),  # AVX-512 without bf16
        ("", "AVX512", {}, False),  # no /proc/cpuinfo: unknown flags
    ],
)
def test_cpu_bf16_support(cpuinfo, capability, env, native):
    got = D.cpu_bf16_support(cpuinfo, capability, env)
    assert got.native is native, got.reason
    assert got.reason and got.capability == capability


def test_forced_kernels_are_not_native_in_a_real_process():
    code = "from geoloc_lib.core.device import cpu_bf16_support as f; print(f().native)"
    for caps in ("default", "avx2"):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": caps}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False", caps


def test_decision_rule():
    assert D.choose_cpu_amp(100.0, 115.0) == "bf16"
    assert D.choose_cpu_amp(100.0, 114.0) == "off"
    assert D.choose_cpu_amp(100.0, 10.0) == "off"
    assert D.choose_cpu_amp(100.0, 130.0, margin=1.5) == "off"


def test_cache_read_write(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = D.amp_cache_path()
    assert path == tmp_path / "geoloc" / D.AMP_CACHE_FILE
    assert D.read_amp_cache("k") is None  # no file
    entry = {"mode": "bf16", "fp32_img_s": 100.0, "bf16_img_s": 140.0}
    D.write_amp_cache("k", entry)
    D.write_amp_cache("other", {**entry, "mode": "off"})
    assert D.read_amp_cache("k") == entry  # other entries kept
    assert D.read_amp_cache("other")["mode"] == "off"
    assert sorted(json.loads(path.read_text())) == ["k", "other"]
    assert not list(path.parent.glob("*.tmp"))
    path.write_text("{not json")  # damaged: read as absent, replaced on write
    assert D.read_amp_cache("k") is None
    D.write_amp_cache("k", entry)
    assert D.read_amp_cache("k") == entry
    D.write_amp_cache("bad", {"mode": "fp16", "fp32_img_s": 1.0, "bf16_img_s": 1.0})
    assert D.read_amp_cache("bad") is None


def test_cache_key_names_what_the_measurement_depends_on():
    cpu = D.CpuBf16(True, "x", "Some CPU", "AVX512")
    key = D.amp_cache_key(cpu, "mcgf", "default", 16, 2)
    for part in ("Some CPU", "AVX512", torch.__version__, "mcgf", "default", "batch 16", "2 th"):
        assert part in key
    assert key != D.amp_cache_key(cpu, "mcgf", "paper", 16, 2)


class _Toy(nn.Module):
    registry_name = "toy"

    def __init__(self) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(img_size=8, num_classes=4)
        self.lin = nn.Linear(3 * 8 * 8, 4)

    def training_losses(self, batch):
        out = self.lin(batch["drone"].flatten(1))
        return {"loss": nn.functional.cross_entropy(out.float(), batch["label"])}


def _never(*args, **kwargs):
    raise AssertionError("measured, but this case must not measure")


NATIVE = D.CpuBf16(True, "avx512_bf16 with AVX512 kernels", "Fake CPU", "AVX512")
NOT_NATIVE = D.CpuBf16(False, "no AVX512-BF16/AMX in the CPU flags", "Fake CPU", "AVX512")
CPU = torch.device("cpu")


@pytest.mark.parametrize("preset", ["smoke", None])
def test_smoke_and_unknown_preset_are_fp32_without_measuring(preset, monkeypatch, tmp_path):
    monkeypatch.setattr(A, "cpu_bf16_support", lambda: NATIVE)
    fp32 = preset is not None and preset_for("mcgf", preset).fp32_cpu
    choice = A.resolve_fit_amp(
        "auto", CPU, _Toy(), preset=preset, fp32_cpu=fp32, batch=4,
        cache_path=tmp_path / "c.json", measure=_never,
    )  # fmt: skip
    assert choice.mode == "off" and choice.fp32_img_s is None
    assert not (tmp_path / "c.json").exists()


def test_no_native_bf16_is_fp32_without_measuring(monkeypatch, tmp_path):
    monkeypatch.setattr(A, "cpu_bf16_support", lambda: NOT_NATIVE)
    choice = A.resolve_fit_amp(
        "auto", CPU, _Toy(), preset="default", batch=4, cache_path=tmp_path / "c.json",
        measure=_never,
    )  # fmt: skip
    assert choice.mode == "off" and "no native bf16" in choice.reason


def test_explicit_modes_pass_through(monkeypatch):
    monkeypatch.setattr(A, "cpu_bf16_support", _never)
    for asked, mode in (("off", "off"), ("bf16", "bf16")):
        got = A.resolve_fit_amp(asked, CPU, _Toy(), preset="default", batch=4, measure=_never)
        assert (got.mode, got.reason) == (mode, "asked")


@pytest.mark.parametrize("ratio, mode", [(1.3, "bf16"), (1.05, "off"), (0.1, "off")])
def test_native_bf16_measures_once_then_reads_the_cache(ratio, mode, monkeypatch, tmp_path):
    monkeypatch.setattr(A, "cpu_bf16_support", lambda: NATIVE)
    calls = []

    def fake(model, batch, transform):
        calls.append(batch)
        return 100.0, 100.0 * ratio

    cache = tmp_path / "c.json"
    kw = dict(preset="default", batch=4, cache_path=cache, measure=fake)
    first = A.resolve_fit_amp("auto", CPU, _Toy(), **kw)
    second = A.resolve_fit_amp("auto", CPU, _Toy(), **kw)
    assert calls == [4]
    assert first.mode == second.mode == mode
    assert first.reason.startswith("measured") and second.reason.startswith("cached")
    assert f"{ratio:.2f}" in first.reason and "training precision:" in first.line()
    # another batch size is another entry
    A.resolve_fit_amp("auto", CPU, _Toy(), **{**kw, "batch": 8})
    assert calls == [4, 8] and len(json.loads(cache.read_text())) == 2


def test_real_measurement_keeps_the_rng():
    model = _Toy()
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    fp32, bf16 = A.measure_cpu_amp(model, 4, steps=1, warmup=0)
    assert fp32 > 0 and bf16 > 0
    assert torch.equal(before, torch.random.get_rng_state())


def test_fit_records_the_choice(tmp_path, monkeypatch):
    from geoloc_lib.core.checkpoints import load_checkpoint
    from geoloc_lib.training.engine import FitConfig, fit

    monkeypatch.setattr(A, "cpu_bf16_support", lambda: NATIVE)
    monkeypatch.setattr(A, "measure_cpu_amp", _never)
    model = _Toy()
    data = [{"drone": torch.rand(4, 3, 8, 8), "label": torch.arange(4)}]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    smoke = preset_for("mcgf", "smoke")
    cfg = FitConfig(
        epochs=1, device="cpu", out_dir=tmp_path, preset=smoke.name, fp32_cpu=smoke.fp32_cpu,
        progress=False,
    )  # fmt: skip
    hist = fit(model, data, opt, cfg)
    assert hist.amp["mode"] == "off" and hist.amp["asked"] == "auto"
    assert "smoke" in hist.amp["reason"]
    assert load_checkpoint(tmp_path / "checkpoint_last.pt")["amp"] == hist.amp


class _Batches(list):
    batch_size = 4  # what fit reads the measurement's batch size from


def test_resume_keeps_the_precision_the_run_began_with(tmp_path, monkeypatch):
    from geoloc_lib.training.engine import FitConfig, fit

    monkeypatch.setattr(A, "cpu_bf16_support", lambda: NATIVE)
    data = _Batches([{"drone": torch.rand(4, 3, 8, 8), "label": torch.arange(4)}])

    def run(epochs, ratio, cache, resume):
        monkeypatch.setattr(A, "measure_cpu_amp", lambda m, b, t: (100.0, 100.0 * ratio))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))
        model = _Toy()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        cfg = FitConfig(
            epochs=epochs, device="cpu", out_dir=tmp_path / "run", preset="default",
            progress=False, resume=resume,
        )  # fmt: skip
        return fit(model, data, opt, cfg)

    first = run(1, 2.0, "a", False)
    assert first.amp["mode"] == "bf16" and first.amp["reason"].startswith("measured")
    assert (tmp_path / "a" / "geoloc" / D.AMP_CACHE_FILE).is_file()
    again = run(1, 0.5, "b", True)  # another machine would choose fp32
    assert again.amp["mode"] == "bf16" and "began with" in again.amp["reason"]
    fresh = run(1, 0.5, "b", False)
    assert fresh.amp["mode"] == "off"
