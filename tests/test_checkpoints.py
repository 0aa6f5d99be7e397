"""Checkpoint files: safe loading (weights_only), one-line errors, plain values, failed saves."""

# ruff: noqa: NPY002 - the legacy global NumPy RNG is what checkpoints save and restore

from __future__ import annotations

import builtins
import errno
import random

import numpy as np
import pytest
import torch
from test_engine import _setup

from geoloc_lib.core import checkpoints as C
from geoloc_lib.core.errors import ConfigError, NotWritableError
from geoloc_lib.core.seeding import rng_state, set_rng_state
from geoloc_lib.models import load_model
from geoloc_lib.training.engine import CHECKPOINT_LAST, FitConfig, fit
from geoloc_lib.training.recipes import preset_for
from geoloc_lib.training.runs import load_run


class _Payload:
    """Unpickling calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _one_line(err: BaseException, path) -> str:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg, msg
    chained = err.__cause__ is not None or (
        err.__context__ is not None and not err.__suppress_context__
    )
    assert not chained, "another error's traceback is chained to it"
    return msg


def _train(tmp_path, batch_transform=None, **kw):
    model, loader, opt, sched = _setup()
    cfg = dict(epochs=2, seed=3, device="cpu", progress=False, out_dir=tmp_path)
    config = FitConfig(**{**cfg, **kw})
    return fit(model, loader, opt, config, scheduler=sched, batch_transform=batch_transform)


def _interrupted(tmp_path):
    """A 2-epoch run stopped in its second epoch: checkpoint_last.pt holds epoch 1."""
    steps = {"n": 0}

    def stop(batch):
        steps["n"] += 1
        if steps["n"] == 8:
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, batch_transform=stop)
    assert C.load_checkpoint(tmp_path / CHECKPOINT_LAST)["epoch"] == 1


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    # The payload works: an unsafe load creates the marker.
    probe = tmp_path / "probe"
    torch.save({"model": {}, "x": _Payload(tmp_path / "ran")}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "ran").exists()

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "marker"
    ckpt = run / CHECKPOINT_LAST
    torch.save({"model": {}, "model_name": "mcgf", "payload": _Payload(marker)}, ckpt)
    for read in (
        lambda: C.load_checkpoint(ckpt),
        lambda: load_model(ckpt),
        lambda: load_run(run),
        lambda: _train(run, resume=True),
    ):
        with pytest.raises(ConfigError, match=r"holds Python objects \(io.open\)") as e:
            read()
        msg = _one_line(e.value, ckpt)
        assert "retrain" in msg.lower() and "upgrade" in msg
        assert not marker.exists()


def test_checkpoints_hold_plain_values_and_resume_restores_every_rng(tmp_path):
    _train(tmp_path, epochs=1)
    path = tmp_path / CHECKPOINT_LAST
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ckpt = torch.load(path, weights_only=True)
    # NumPy's RNG state round-trips through the file exactly
    np.random.seed(11)
    random.seed(12)
    torch.manual_seed(13)
    state = rng_state()
    C.save_checkpoint({"rng": [state]}, tmp_path / "rng.pt")
    expected = (np.random.rand(4), random.random(), torch.rand(3))
    np.random.seed(0)
    random.seed(0)
    torch.manual_seed(0)
    set_rng_state(C.load_checkpoint(tmp_path / "rng.pt")["rng"][0])
    again = (np.random.rand(4), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1]
    assert torch.equal(expected[2], again[2])
    assert ckpt["epoch"] == 1


def test_numpy_values_are_stored_as_plain_values(tmp_path):
    """A validation metric returned as a NumPy float (np.float64 pickles as a NumPy global)."""
    model, loader, opt, _ = _setup()

    def val(model, epoch):
        return {"val_r1": np.float64(0.25), "val_n": np.int64(3)}

    fit(model, loader, opt, FitConfig(epochs=1, out_dir=tmp_path, progress=False), validate=val)
    rec = C.load_checkpoint(tmp_path / CHECKPOINT_LAST)["history"][0]
    assert type(rec["val_r1"]) is float and type(rec["val_n"]) is int
    assert C.to_plain({"a": (np.arange(3), tmp_path)})["a"][1] == str(tmp_path)
    with pytest.raises(TypeError, match=r"checkpoint\['x'\] holds a builtins.object"):
        C.to_plain({"x": object()})


def test_an_old_checkpoint_is_refused_in_one_line_and_can_be_upgraded(tmp_path):
    _interrupted(tmp_path)
    path = tmp_path / CHECKPOINT_LAST
    old = torch.load(path, weights_only=True)
    old["rng"][0]["numpy"] = np.random.get_state()  # as checkpoints kept it before: an array
    torch.save(old, path)
    with pytest.raises(ConfigError, match="older version") as e:
        C.load_checkpoint(path)
    assert "numpy" in _one_line(e.value, path)
    assert C.main(["upgrade", str(path)]) == 0
    hist = _train(tmp_path, resume=True)
    assert hist.resumed_from_epoch == 1 and len(hist.records) == 2


def _mcgf_checkpoint(path, name="mcgf_matching_only"):
    model = preset_for(name, "smoke").build(num_classes=4, pretrained=False)
    ckpt = {
        "model": model.state_dict(),
        "model_name": name,
        "model_config": model.config_dict(),
        "epoch": 1,
    }
    C.save_checkpoint(ckpt, path)
    return ckpt


def test_checkpoints_that_do_not_fit_give_one_line(tmp_path):
    path = tmp_path / "m.pt"
    ckpt = _mcgf_checkpoint(path)
    assert load_model(path, expect=("mcgf", "mcgf_matching_only")) is not None
    # a tensor of another shape
    key = next(k for k, v in ckpt["model"].items() if v.ndim == 2)
    bad = {**ckpt, "model": {**ckpt["model"], key: torch.zeros(3, 5)}}
    C.save_checkpoint(bad, tmp_path / "shape.pt")
    with pytest.raises(ConfigError, match=f"does not fit .*{key} 3x5 vs") as e:
        load_model(tmp_path / "shape.pt")
    _one_line(e.value, tmp_path / "shape.pt")
    # no model entry
    C.save_checkpoint({k: v for k, v in ckpt.items() if k != "model"}, tmp_path / "nomodel.pt")
    with pytest.raises(ConfigError, match="no 'model' entry") as e:
        load_model(tmp_path / "nomodel.pt")
    _one_line(e.value, tmp_path / "nomodel.pt")
    # a bare state dict, read as a run
    run = tmp_path / "run"
    run.mkdir()
    torch.save(ckpt["model"], run / CHECKPOINT_LAST)
    for read in (lambda: load_run(run), lambda: load_model(run / CHECKPOINT_LAST)):
        with pytest.raises(ConfigError, match="is a bare state dict") as e:
            read()
        assert "None" not in _one_line(e.value, run / CHECKPOINT_LAST)


def test_a_checkpoint_of_another_model_names_both(tmp_path):
    from geoloc_lib.eval.university import evaluate_mcgf

    path = tmp_path / "street.pt"
    model = preset_for("infonce_baseline", "smoke").build(pretrained=False)
    C.save_checkpoint(
        {
            "model": model.state_dict(),
            "model_name": "infonce_baseline",
            "model_config": model.config_dict(),
        },
        path,
    )
    with pytest.raises(
        ConfigError, match="holds a 'infonce_baseline' model, but 'mcgf' or 'mcgf_matching_only'"
    ) as e:
        evaluate_mcgf(path, tmp_path / "no-data")
    _one_line(e.value, path)


def test_a_failed_save_keeps_the_last_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    _interrupted(tmp_path)
    before = (tmp_path / CHECKPOINT_LAST).read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        with open(f, "wb") as fh:  # part of the file, then the disk is full
            fh.write(b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.torch, "save", full_disk)
    with pytest.raises(NotWritableError, match="No space left on device") as e:
        _train(tmp_path, resume=True)
    msg = _one_line(e.value, tmp_path)
    assert "epoch 2 trained but not saved" in msg and "keeps epoch 1" in msg
    assert "free disk space" in msg
    assert not (tmp_path / (CHECKPOINT_LAST + ".tmp")).exists()
    assert (tmp_path / CHECKPOINT_LAST).read_bytes() == before
    monkeypatch.setattr(C.torch, "save", real_save)
    assert _train(tmp_path, resume=True).resumed_from_epoch == 1


def test_an_unwritable_run_folder_fails_at_start_in_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotWritableError, match="cannot write") as e:
        _train(blocker / "run")
    _one_line(e.value, blocker / "run")
    # a read-only folder (root ignores permission bits: the write itself fails)
    (tmp_path / "ro").mkdir()
    real_open = C.Path.write_bytes

    def read_only(self, data):
        if self.parent == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(self, data)

    monkeypatch.setattr(C.Path, "write_bytes", read_only)
    with pytest.raises(NotWritableError, match="Read-only file system.*make it writable") as e:
        _train(tmp_path / "ro")
    _one_line(e.value, tmp_path / "ro")


def test_a_state_dict_keeps_its_module_versions(tmp_path):
    """load_state_dict reads each module's version from the state dict's ``_metadata``."""
    state = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)).state_dict()
    C.save_checkpoint({"model": state}, tmp_path / "m.pt")
    loaded = C.load_checkpoint(tmp_path / "m.pt")["model"]
    assert loaded._metadata == state._metadata and loaded._metadata["0"]["version"] == 2
