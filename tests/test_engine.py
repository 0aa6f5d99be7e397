"""The training engine: resume equality, NaN guard, clipping, parameter groups, logs, closures."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geoloc_lib.core.errors import ConfigError, GeolocError
from geoloc_lib.core.seeding import make_generator, seed_everything
from geoloc_lib.training.engine import (
    CHECKPOINT_LAST,
    FitConfig,
    NonFiniteLossError,
    _loader_state,
    _set_loader_state,
    fit,
    load_checkpoint,
)
from geoloc_lib.training.optim import make_scheduler, sgd_from_groups


class ToyData(Dataset):
    def __init__(self, n: int = 24, dim: int = 6, classes: int = 3) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": self.y[i]}


class ToyModel(nn.Module):
    """Backbone + dropout + head: exercises RNG restoration and two parameter groups."""

    def __init__(self, dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim, 8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, classes)

    def training_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.head(self.backbone(batch["image"]))
        ce = nn.functional.cross_entropy(logits.float(), batch["label"])
        reg = 1e-3 * logits.float().pow(2).mean()
        return {"loss": ce + reg, "ce": ce, "reg": reg}

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        return nn.functional.normalize(self.backbone(images), dim=-1)

    def param_groups(self, lr: dict[str, float]) -> list[dict]:
        return [
            {"params": list(self.backbone.parameters()), "lr": lr["backbone"], "name": "backbone"},
            {"params": list(self.head.parameters()), "lr": lr["head"], "name": "head"},
        ]


def _setup(seed: int = 0, n: int = 24):
    seed_everything(seed)
    model = ToyModel()
    loader = DataLoader(ToyData(n), batch_size=4, shuffle=True, generator=make_generator(seed))
    opt = sgd_from_groups(model, {"backbone": 0.05, "head": 0.2})
    sched = make_scheduler(
        opt, "cosine", epochs=4, steps_per_epoch=len(loader), warmup_epochs=1, interval="step"
    )
    return model, loader, opt, sched


def _val(model: nn.Module, epoch: int) -> dict[str, float]:
    data = ToyData()
    with torch.no_grad():
        f = model.embed(data.x, "x")
    return {"val_mean": float(f.sum())}


class Killed(Exception):
    pass


def test_resume_after_kill_is_bit_identical(tmp_path):
    cfg = dict(epochs=4, seed=3, device="cpu", scheduler_interval="step", progress=False)
    model, loader, opt, sched = _setup()
    ref = fit(
        model, loader, opt, FitConfig(out_dir=tmp_path / "a", **cfg), scheduler=sched, validate=_val
    )

    # Same run killed in the middle of epoch 3 (after epoch 2's checkpoint).
    model_b, loader_b, opt_b, sched_b = _setup()
    steps = {"n": 0}

    def killer(batch):
        steps["n"] += 1
        if steps["n"] == 2 * len(loader_b) + 3:
            raise Killed
        return batch

    with pytest.raises(Killed):
        fit(
            model_b,
            loader_b,
            opt_b,
            FitConfig(out_dir=tmp_path / "b", **cfg),
            scheduler=sched_b,
            validate=_val,
            batch_transform=killer,
        )
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_LAST)["epoch"] == 2

    # A fresh process would rebuild everything from scratch (other init) and resume.
    model_c, loader_c, opt_c, sched_c = _setup(seed=99)
    res = fit(
        model_c,
        loader_c,
        opt_c,
        FitConfig(out_dir=tmp_path / "b", resume=True, **cfg),
        scheduler=sched_c,
        validate=_val,
    )
    assert res.resumed_from_epoch == 2
    for (k, a), b in zip(model.state_dict().items(), model_c.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    cols = ["epoch", "loss", "ce", "reg", "grad_norm", "lr_backbone", "lr_head", "val_mean"]
    pd.testing.assert_frame_equal(ref.df[cols], res.df[cols])
    assert opt.state_dict()["state"][0]["momentum_buffer"].equal(
        opt_c.state_dict()["state"][0]["momentum_buffer"]
    )


def test_validation_does_not_change_the_training():
    """Validating every epoch or only at the end gives the same weights, even when validation
    draws from the global RNG (as a DataLoader iterator's seed does)."""

    def val_drawing(model: nn.Module, epoch: int) -> dict[str, float]:
        loader = DataLoader(ToyData(), batch_size=8, shuffle=True)  # seeded by the global RNG
        return {**_val(model, epoch), "noise": float(torch.rand(()) + len(list(loader)))}

    cfg = dict(epochs=3, seed=5, device="cpu", scheduler_interval="step", progress=False)
    weights = []
    for every in (1, 3):
        model, loader, opt, sched = _setup()
        fit(
            model,
            loader,
            opt,
            FitConfig(val_every=every, **cfg),
            scheduler=sched,
            validate=val_drawing,
        )
        weights.append(model.state_dict())
    for k, a in weights[0].items():
        assert torch.equal(a, weights[1][k]), k


def test_logs_written(tmp_path):
    model, loader, opt, _ = _setup()
    hist = fit(model, loader, opt, FitConfig(epochs=2, out_dir=tmp_path, progress=False))
    df = pd.read_csv(tmp_path / "history.csv")
    assert list(df["epoch"]) == [1, 2]
    for col in ("loss", "ce", "reg", "grad_norm", "lr_backbone", "lr_head", "images_per_s"):
        assert col in df.columns
    assert df["images"].tolist() == [24, 24]
    records = json.loads((tmp_path / "history.json").read_text())
    assert records[-1]["epoch"] == 2 and records == hist.records
    assert hist.checkpoint == tmp_path / CHECKPOINT_LAST


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, loader, opt, _ = _setup()
    calls = {"n": 0}

    def poison(batch):
        calls["n"] += 1
        if calls["n"] == len(loader) + 2:  # epoch 2, step 2
            batch = dict(batch, image=batch["image"] * float("nan"))
        return batch

    with pytest.raises(NonFiniteLossError) as info:
        fit(
            model,
            loader,
            opt,
            FitConfig(epochs=3, out_dir=tmp_path, progress=False),
            batch_transform=poison,
        )
    msg = str(info.value)
    assert "epoch 2, step 2" in msg and "loss" in msg and "checkpoint_last.pt (epoch 1)" in msg
    assert load_checkpoint(tmp_path / CHECKPOINT_LAST)["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1
    # The weights were not updated by the poisoned batch.
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_grad_clipping_bounds_the_update():
    seed_everything(0)
    model = ToyModel()
    model.backbone[2].p = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    loader = DataLoader(ToyData(4), batch_size=4)
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    hist = fit(
        model, loader, opt, FitConfig(epochs=1, grad_clip=1e-3, device="cpu", progress=False)
    )
    with torch.no_grad():
        step = torch.sqrt(
            sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
        )
    assert hist.records[0]["grad_norm"] > 1e-3  # the logged norm is the one before clipping
    assert float(step) == pytest.approx(10.0 * 1e-3, rel=1e-4)


def test_param_groups_get_their_own_learning_rate():
    seed_everything(0)
    model = ToyModel()
    model.backbone[2].p = 0.0
    batch = {"image": ToyData(4).x, "label": ToyData(4).y}
    model.zero_grad()
    model.training_losses(batch)["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.param_groups({"backbone": 0.01, "head": 0.1}), lr=0.01)
    hist = fit(
        model,
        DataLoader(ToyData(4), batch_size=4),
        opt,
        FitConfig(epochs=1, device="cpu", progress=False),
    )
    for n, p in model.named_parameters():
        lr = 0.1 if n.startswith("head") else 0.01
        torch.testing.assert_close(p.detach(), before[n] - lr * grads[n])
    assert hist.records[0]["lr_backbone"] == 0.01 and hist.records[0]["lr_head"] == 0.1


class RecordingClosureOptimizer(torch.optim.SGD):
    """Checks the engine's closure protocol: grads filled first, closure refills them."""

    requires_closure = True

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.calls = 0

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is not None
        first = [p.grad.clone() for g in self.param_groups for p in g["params"]]
        for g in self.param_groups:  # perturb, as SAM does, so the second gradient differs
            for p in g["params"]:
                p.add_(0.5 * p.grad)
        with torch.enable_grad():
            loss = closure()
        second = [p.grad.clone() for g in self.param_groups for p in g["params"]]
        for g in self.param_groups:
            for p, g1 in zip(g["params"], first, strict=False):
                p.sub_(0.5 * g1)
        assert torch.isfinite(loss) and loss.ndim == 0
        assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))
        self.calls += 1
        return super().step()


def test_closure_optimizer_is_driven_with_a_closure():
    seed_everything(0)
    model = ToyModel()
    opt = RecordingClosureOptimizer(model.parameters(), lr=0.1)
    loader = DataLoader(ToyData(8), batch_size=4)
    fit(model, loader, opt, FitConfig(epochs=2, device="cpu", progress=False))
    assert opt.calls == 4


def test_bf16_autocast_on_cpu_trains():
    model, loader, opt, _ = _setup()
    hist = fit(model, loader, opt, FitConfig(epochs=1, amp="bf16", device="cpu", progress=False))
    assert torch.isfinite(torch.tensor(hist.records[0]["loss"]))


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="amp"):
        FitConfig(amp="fp8")
    with pytest.raises(ConfigError, match="scheduler_interval"):
        FitConfig(scheduler_interval="batch")
    with pytest.raises(ConfigError, match="fp16"):
        model, loader, opt, _ = _setup()
        fit(model, loader, opt, FitConfig(amp="fp16", device="cpu", progress=False))


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = dict(epochs=2, seed=3, device="cpu", scheduler_interval="step", progress=False)
    model, loader, opt, sched = _setup()
    fit(model, loader, opt, FitConfig(out_dir=tmp_path, **cfg), scheduler=sched)
    saved = (tmp_path / CHECKPOINT_LAST).read_bytes()
    for change, message in (
        ({"epochs": 4}, "epochs: 2 -> 4"),
        ({"seed": 7}, "seed: 3 -> 7"),
    ):
        model, loader, opt, sched = _setup()
        with pytest.raises(ConfigError, match=f"cannot resume from .*{message}"):
            fit(model, loader, opt, FitConfig(out_dir=tmp_path, resume=True, **{**cfg, **change}))
    model, loader, _, _ = _setup()
    opt = sgd_from_groups(model, {"backbone": 0.5, "head": 0.2})
    with pytest.raises(ConfigError, match="lr of group backbone: 0.05 -> 0.5"):
        fit(model, loader, opt, FitConfig(out_dir=tmp_path, resume=True, **cfg))
    assert (tmp_path / CHECKPOINT_LAST).read_bytes() == saved


def test_rng_state_is_restored_from_tensors_on_another_device():
    """Resuming on a GPU loads the checkpoint with map_location="cuda": the saved generator
    states arrive on the GPU, and torch only takes CPU byte tensors. set_rng_state moves them."""
    from geoloc_lib.core.seeding import rng_state, set_rng_state

    class OnAnotherDevice:  # what a GPU tensor offers here: .cpu() gives the CPU tensor
        def __init__(self, cpu_tensor: torch.Tensor) -> None:
            self.cpu_tensor = cpu_tensor

        def cpu(self) -> torch.Tensor:
            return self.cpu_tensor

    saved = rng_state()
    expected = torch.rand(3)
    torch.rand(5)  # move on
    set_rng_state({**saved, "torch": OnAnotherDevice(saved["torch"])})
    assert torch.equal(torch.rand(3), expected)
    # the loader's own generator likewise
    loader = DataLoader(list(range(8)), batch_size=2, shuffle=True, generator=make_generator(0))
    state = _loader_state(loader)
    order = [b.tolist() for b in loader]
    _set_loader_state(loader, {**state, "generator": OnAnotherDevice(state["generator"])})
    assert [b.tolist() for b in loader] == order


@pytest.mark.parametrize(
    "change, message",
    [
        ({"momentum": 0.5}, "momentum of group backbone: 0.9 -> 0.5"),
        ({"weight_decay": 0.01}, "weight_decay of group backbone: 0.0005 -> 0.01"),
        ({"grad_clip": 1.0}, "grad_clip: None -> 1.0"),
        ({"run_settings": {"config": {"training": {"repeats": 2}}}}, "repeats: 1 -> 2"),
        ({"run_settings": {"config": {"model": {"dim": 8}}}}, "model dim: 6 -> 8"),
    ],
)
def test_resume_refuses_other_optimizer_clipping_and_run_settings(tmp_path, change, message):
    cfg = dict(epochs=2, seed=3, device="cpu", progress=False)
    record = {"config": {"training": {"repeats": 1}, "model": {"dim": 6}}}
    model, loader, opt, _ = _setup()
    fit(model, loader, opt, FitConfig(out_dir=tmp_path, run_settings=record, **cfg))
    saved = (tmp_path / CHECKPOINT_LAST).read_bytes()
    model, loader, _, _ = _setup()
    opt_kw = {k: change[k] for k in ("momentum", "weight_decay") if k in change}
    opt = sgd_from_groups(model, {"backbone": 0.05, "head": 0.2}, **opt_kw)
    fit_kw = {**cfg, "run_settings": record, **{k: v for k, v in change.items() if k not in opt_kw}}
    with pytest.raises(ConfigError, match=f"cannot resume from .*{message}"):
        fit(model, loader, opt, FitConfig(out_dir=tmp_path, resume=True, **fit_kw))
    assert (tmp_path / CHECKPOINT_LAST).read_bytes() == saved
    # a checkpoint without a record is refused by a caller that records its settings
    model, loader, opt, _ = _setup()
    fit(model, loader, opt, FitConfig(out_dir=tmp_path / "plain", **cfg))
    model, loader, opt, _ = _setup()
    with pytest.raises(ConfigError, match="run settings: not recorded in the checkpoint"):
        fit(
            model, loader, opt,
            FitConfig(out_dir=tmp_path / "plain", resume=True, run_settings=record, **cfg),
        )  # fmt: skip


_HOLD_LOCK = """
import sys, time
from geoloc_lib.core.locks import folder_lock
with folder_lock(sys.argv[1], "training"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_one_training_per_run_folder(tmp_path):
    """A second training into a folder that another process trains into fails at once, naming
    that process; the lock of a killed process (kill -9) does not block the next training."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        model, loader, opt, _ = _setup()
        with pytest.raises(GeolocError, match=f"{out} is in use by process {holder.pid}") as e:
            fit(model, loader, opt, FitConfig(epochs=1, out_dir=out, progress=False))
        assert socket.gethostname() in str(e.value) and "training" in str(e.value)
        assert not (out / CHECKPOINT_LAST).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / ".geoloc.lock").exists()  # left behind by the killed process
    model, loader, opt, _ = _setup()
    fit(model, loader, opt, FitConfig(epochs=1, out_dir=out, progress=False))
    assert (out / CHECKPOINT_LAST).is_file()
    assert not (out / ".geoloc.lock").exists()  # removed by a training that ends
