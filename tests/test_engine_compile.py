"""``FitConfig.compile``: torch.compile of ``training_losses`` trains, keeps plain checkpoints and
is recorded; bad values and a missing C++ compiler are clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from layouts import make_university1652
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.seeding import seed_everything
from geoloc_lib.data.sources import DataSources
from geoloc_lib.training.engine import CHECKPOINT_LAST, FitConfig, fit, load_checkpoint
from geoloc_lib.training.runs import train_run


class Tiny(nn.Module):
    """Deterministic (no dropout), so the compiled and the plain first step see the same loss."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def training_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = nn.functional.cross_entropy(self.head(self.body(batch["x"])), batch["y"])
        return {"loss": loss}


class _Dicts(TensorDataset):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = super().__getitem__(i)
        return {"x": x, "y": y}


def _fit(out_dir, compile_value):
    seed_everything(0)
    model = Tiny()
    g = torch.Generator().manual_seed(1)
    data = _Dicts(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g))
    loader = DataLoader(data, batch_size=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = FitConfig(
        epochs=1, out_dir=out_dir, device="cpu", amp="off", progress=False, compile=compile_value
    )
    return model, fit(model, loader, opt, cfg)


def test_aot_eager_trains_and_keeps_plain_checkpoints(tmp_path, monkeypatch):
    plain_model, plain = _fit(tmp_path / "plain", False)
    backends = []
    real_compile = torch.compile

    def spy(fn, **kwargs):
        backends.append(kwargs.get("backend"))
        return real_compile(fn, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    model, hist = _fit(tmp_path / "compiled", "aot_eager")
    assert backends == ["aot_eager"]
    loss = hist.records[0]["loss"]
    assert torch.isfinite(torch.tensor(loss))
    assert loss == pytest.approx(plain.records[0]["loss"], rel=1e-5)
    # recorded like amp: in the history and the checkpoint (fit_config keeps the asked value)
    assert hist.compile == "aot_eager" and plain.compile == "off"
    ckpt = load_checkpoint(tmp_path / "compiled" / CHECKPOINT_LAST)
    assert ckpt["compile"] == "aot_eager" and ckpt["fit_config"]["compile"] == "aot_eager"
    # the module was never replaced: same state_dict keys, and the caller's method stays plain
    plain_keys = load_checkpoint(tmp_path / "plain" / CHECKPOINT_LAST)["model"].keys()
    assert list(ckpt["model"]) == list(plain_keys) == list(plain_model.state_dict())
    assert "training_losses" not in vars(model)


def test_compile_values_are_checked():
    for ok in (False, True, "off", "inductor", "aot_eager"):
        FitConfig(compile=ok)
    for bad in ("fast", "True", 1, None):
        with pytest.raises(ConfigError, match="FitConfig.compile: .*aot_eager, inductor"):
            FitConfig(compile=bad)


def test_inductor_without_a_cpp_compiler_names_the_alternatives(tmp_path):
    from torch._inductor import config as inductor_config

    with inductor_config.patch({"cpp.cxx": ("geoloc-no-such-c++",)}):
        with pytest.raises(ConfigError, match="C\\+\\+ compiler.*compile='aot_eager'"):
            _fit(None, "inductor")


def test_train_run_passes_compile_and_records_it(tmp_path):
    # 8 training locations: 3 held out for validation, 5 for a batch of 4
    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10,), views=2)
    sources = DataSources("real", university_root=root, street_root=None, street_format="cvact")
    run = train_run(
        "mcgf_matching_only",
        sources,
        tmp_path / "runs",
        preset="smoke",
        epochs=1,
        progress=False,
        overrides={
            "run": {
                "val_queries": 0,
                "max_steps_per_epoch": 1,
                "num_threads": 1,
                "compile": "aot_eager",
            }
        },
    )
    info = json.loads((run.out_dir / "run.json").read_text())
    assert info["compile"] == "aot_eager" and info["overrides"]["run"]["compile"] == "aot_eager"
    assert torch.isfinite(torch.tensor(float(run.history["loss"].iloc[0])))
    assert "compile" not in info["config"]["model"]  # a run option, not a model setting
    assert info["machine"]["cpu_threads"] == 1  # num_threads=1: what the numbers were trained with
    assert info["machine"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
