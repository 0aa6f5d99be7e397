"""Runs: train_run -> run folder -> load_run rebuilds the same model; summaries, dry-run checks."""

from __future__ import annotations

import json

import pytest
import torch
from layouts import make_university1652

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.sources import DataSources
from geoloc_lib.models import load_model
from geoloc_lib.models.losses import SymmetricInfoNCE, first_occurrence
from geoloc_lib.training.recipes import preset_for
from geoloc_lib.training.runs import (
    check_config,
    export_weights,
    load_run,
    load_runs,
    train_run,
    train_runs,
    training_summary,
)
from geoloc_lib.viz.training import loss_columns, training_curves_figure, val_columns

# the run every resume test starts from: a model field and two train-function options
_OVERRIDES = {"model": {"w_nce": 0.5}, "run": {"val_queries": 2, "max_steps_per_epoch": 2}}


def _kw(**change):
    """train_run keywords of the trained run with ``change``: ``model`` / ``train`` sections
    merged into its overrides, anything else (epochs, seed) as a keyword."""
    over = {s: dict(v) for s, v in _OVERRIDES.items()}
    for section in ("model", "train"):
        over.setdefault(section, {}).update(change.pop(section, {}))
    return {"preset": "smoke", "progress": False, "overrides": over, **change}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    root = make_university1652(tmp / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    sources = DataSources("real", university_root=root, street_root=None, street_format="cvact")
    run = train_run(
        "mcgf_matching_only",
        sources,
        tmp / "runs",
        name="baseline",
        preset="smoke",
        epochs=2,
        progress=False,
        overrides=_OVERRIDES,
    )
    return tmp, run


def test_train_run_writes_a_loadable_run(trained):
    tmp, run = trained
    info = json.loads((tmp / "runs" / "baseline" / "run.json").read_text())
    assert info["model"] == "mcgf_matching_only" and info["epochs"] == 2
    assert info["overrides"] == _OVERRIDES and info["task"] == "drone->satellite"
    assert "nce" in run.history.columns  # the override reached the model config
    # the data it trained on: absolute outside the repository (relative to it inside)
    assert info["data"] == {
        "dataset": "real",
        "university_root": str((tmp / "u").resolve()),
        "street_root": None,
        "street_format": "cvact",
    }
    loaded = load_run(tmp / "runs" / "baseline")
    # train_run trains on a GPU when there is one; load_run rebuilds on the CPU.
    run.model.cpu()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        run.model.eval()
        assert torch.allclose(run.model.embed(x, "drone"), loaded.model.embed(x, "drone"))
    assert list(loaded.history["epoch"]) == [1, 2]
    # the weights-only export rebuilds the same network without optimizer state
    path = export_weights(run, tmp / "export" / "baseline.pt")
    assert "optimizer" not in torch.load(path, weights_only=True)
    with torch.no_grad():
        assert torch.allclose(
            load_model(path).eval().embed(x, "drone"), run.model.embed(x, "drone")
        )


def test_summary_and_curves(trained):
    _, run = trained
    table = training_summary({"baseline": run})
    assert table.loc[0, "epochs"] == 2 and "val R@1" in table.columns
    assert loss_columns(run.history)[0] == "loss" and "lr_backbone" not in loss_columns(run.history)
    assert val_columns(run.history) == ["val_r1"]
    fig = training_curves_figure({"a": run.history, "b": run.history})
    assert len(fig.axes) == 4


def test_missing_runs_name_the_folder(tmp_path):
    with pytest.raises(ConfigError, match="01_train"):
        load_runs(tmp_path, ["mcgf"])
    with pytest.raises(ConfigError, match="no trained run"):
        load_run(tmp_path / "nothing")


def test_check_config_builds_on_meta_and_rejects_bad_input():
    assert "M parameters" in check_config(
        "geoviewmatch", "paper", {"model": {"contrastive": False}}
    )
    over = {"train": {"lr_backbone": 0.1}, "model": {"w_nce": 1.0}}
    assert "M parameters" in check_config("mcgf", "default", over)
    with pytest.raises(ConfigError, match="section 'model': unknown key.*w_foo"):
        check_config("mcgf", "default", {"model": {"w_foo": 1}})
    with pytest.raises(ConfigError, match="unknown section 'w_nce'"):
        check_config("mcgf", "default", {"w_nce": 1.0})
    with pytest.raises(ConfigError, match="preset"):
        check_config("infonce_baseline", "huge")
    with pytest.raises(ConfigError, match="mcgf_matching_only"):
        check_config("mcfg", "default")


def test_infonce_drops_repeated_locations():
    labels = torch.tensor([3, 1, 3, 2, 1])
    assert first_occurrence(labels).tolist() == [True, True, False, True, False]
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    loss = SymmetricInfoNCE(0.1)
    keep = [0, 1, 3]
    assert torch.allclose(loss(a, b, labels), loss(a[keep], b[keep]))


def test_mcgf_nce_term_is_added_with_its_weight():
    torch.manual_seed(0)
    batch = {
        "drone": torch.rand(4, 3, 32, 32),
        "drone_weather": torch.rand(4, 3, 32, 32),
        "satellite": torch.rand(4, 3, 32, 32),
        "label": torch.tensor([0, 1, 2, 3]),
    }
    model = preset_for("mcgf", "smoke").build(num_classes=5, w_nce=2.0).eval()
    plain = preset_for("mcgf", "smoke").build(num_classes=5, w_nce=0.0).eval()
    plain.load_state_dict(model.state_dict(), strict=False)  # all but the InfoNCE scale
    torch.manual_seed(1)  # same noise levels and noise in both steps
    out = model.training_losses(batch)
    torch.manual_seed(1)
    base = plain.training_losses(batch)
    assert "nce" in out and "nce" not in base
    assert torch.allclose(out["loss"], base["loss"] + 2.0 * out["nce"], atol=1e-5)


def _copy_run(trained, name: str):
    import shutil

    tmp, _ = trained
    src = tmp / "runs" / "baseline"
    dst = tmp / "runs" / name
    shutil.copytree(src, dst)
    return tmp, dst


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 1}, "epochs: 2 -> 1"),
        (
            {"epochs": 2, "seed": 7, "train": {"lr_backbone": 0.1}},
            "seed: 0 -> 7.*lr_backbone: .* -> 0.1",
        ),
    ],
)
def test_resume_refuses_changed_settings(trained, change, message):
    tmp, out = _copy_run(trained, f"changed{len(change)}")
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    before = (out / "run.json").read_text()
    with pytest.raises(ConfigError, match=f"cannot resume run .*{message}"):
        train_run(
            "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
            **_kw(**change),
        )  # fmt: skip
    assert (out / "run.json").read_text() == before  # still describes what was trained


def test_resume_of_an_interrupted_run_checks_the_checkpoint(trained):
    tmp, out = _copy_run(trained, "interrupted")
    (out / "run.json").unlink()  # killed before the end: only the checkpoint says what it is
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    with pytest.raises(ConfigError, match=r"cannot resume run .*checkpoint_last.pt .*seed: 0 -> 7"):
        train_run(
            "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
            **_kw(epochs=2, seed=7),
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"lr_backbone: 0.001 -> 0.1"):
        train_run(
            "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
            **_kw(epochs=2, train={"lr_backbone": 0.1}),
        )  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"repeats": 2}}, "repeats: 1 -> 2"),
        ({"train": {"batch_size": 2}}, "batch_size: 4 -> 2"),
        ({"train": {"augment": "none"}}, 'augment: "flip_rotate" -> "none"'),
        ({"train": {"momentum": 0.5}}, "momentum: 0.9 -> 0.5"),
        ({"train": {"weight_decay": 0.01}}, "weight_decay: 0.05 -> 0.01"),
        ({"train": {"grad_clip": 1.0}}, "grad_clip: 5.0 -> 1.0"),
        ({"model": {"w_nce": 0.25}}, "model w_nce: 0.5 -> 0.25"),
    ],
)
def test_an_interrupted_run_refuses_every_changed_setting(trained, change, message):
    """Killed before run.json was written: the checkpoint's record of the run's settings (every
    training setting and the model config) is what a resume must match."""
    tmp, out = _copy_run(trained, "killed_" + next(iter(next(iter(change.values())))))
    (out / "run.json").unlink()
    saved = (out / "checkpoint_last.pt").read_bytes()
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    with pytest.raises(ConfigError, match=f"cannot resume run .*{message}"):
        train_run(
            "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
            **_kw(epochs=2, **change),
        )  # fmt: skip
    assert not (out / "run.json").exists()  # the new value is recorded nowhere
    assert (out / "checkpoint_last.pt").read_bytes() == saved


def test_resume_with_the_same_settings_keeps_the_training_time(trained):
    tmp, out = _copy_run(trained, "same")
    info = json.loads((out / "run.json").read_text())
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    run = train_run(
        "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
        **_kw(epochs=2),
    )  # fmt: skip
    assert run.info["train_time_s"] == info["train_time_s"]  # nothing more was trained
    assert run.info["resumed_from_epoch"] == 2 and run.info["epochs"] == 2
    assert run.info["config"] == info["config"]
    # Interrupted after epoch 1 of 2: the time covers both parts.
    (out / "run.json").unlink()
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=False)
    assert ckpt["elapsed_s"] > 0
    ckpt["epoch"], ckpt["history"] = 1, ckpt["history"][:1]
    ckpt["elapsed_s"] = 1000.0
    torch.save(ckpt, out / "checkpoint_last.pt")
    run = train_run(
        "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
        **_kw(epochs=2),
    )  # fmt: skip
    assert run.info["train_time_s"] > 1000.0 and run.info["resumed_from_epoch"] == 1


def test_train_runs_side_by_side_gives_the_models_of_one_at_a_time(trained, tmp_path):
    """train_runs with parallel_runs=2 trains each model in a spawned worker with cores // 2
    threads (run.json records it) and loads it from its folder: the same weights as train_run
    with that thread count here; parallel_runs=1 is train_run in this process."""
    tmp, _ = trained
    root = tmp / "u"
    sources = DataSources("real", university_root=root, street_root=None, street_format="cvact")
    models = ["mcgf_matching_only", "mcgf"]
    epochs = dict.fromkeys(models, 1)
    fast = {"run": {"val_queries": 2, "max_steps_per_epoch": 2}}
    spec = dict(epochs=epochs, overrides=dict.fromkeys(models, fast))
    side = train_runs(
        models, sources, tmp_path / "side", preset="smoke", seed=3, device="cpu",
        parallel_runs=2, **spec,
    )  # fmt: skip
    assert side["mcgf"].info["machine"]["cpu_threads"] == max(1, torch.get_num_threads() // 2)
    threads = max(1, torch.get_num_threads() // 2)
    run = side["mcgf_matching_only"]
    assert run.info["machine"]["cpu_threads"] == threads and run.info["seed"] == 3
    assert list(run.history["epoch"]) == [1]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = train_runs(
            ["mcgf_matching_only"], sources, tmp_path / "alone", preset="smoke", seed=3,
            device="cpu", parallel_runs=1, progress=False, **spec,
        )["mcgf_matching_only"]  # fmt: skip
    finally:
        torch.set_num_threads(before)
    for a, b in zip(
        alone.model.state_dict().values(), run.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="parallel_runs: expected an integer >= 1"):
        train_runs(["mcgf"], sources, tmp_path / "bad", preset="smoke", parallel_runs=0)


def test_a_run_from_before_the_validation_hold_out_is_not_reused(trained):
    from geoloc_lib.data.street import STREET_VAL_SPLIT
    from geoloc_lib.data.university import VAL_SPLIT
    from geoloc_lib.training.runs import finished_run, resolved_config, run_settings

    tmp, out = _copy_run(trained, "before_holdout")
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["training"]["val_split"] == VAL_SPLIT
    street = resolved_config(preset_for("geoviewmatch", "smoke"))
    assert street["training"]["val_split"] == STREET_VAL_SPLIT
    want = run_settings(preset_for("mcgf_matching_only", "smoke", _OVERRIDES).with_epochs(2), 0)
    assert finished_run(out, want) is not None
    # The same run as recorded before training held validation locations out of the training
    # split: it trained on other data, so it is neither reused nor resumed.
    del info["config"]["training"]["val_split"]
    (out / "run.json").write_text(json.dumps(info))
    assert finished_run(out, want) is None
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    with pytest.raises(ConfigError, match="cannot resume run .*val_split: None -> University"):
        train_run(
            "mcgf_matching_only", sources, tmp / "runs", name=out.name, resume=True,
            **_kw(epochs=2),
        )  # fmt: skip


def test_ensure_run_resumes_only_a_checkpoint_recorded_with_the_same_settings(trained):
    """The settings file written before the first epoch says seed 7, the checkpoint (of an
    earlier run, killed before a new first epoch ended) seed 0: it is retrained, not resumed."""
    from geoloc_lib.training.runs import PENDING_FILE, ensure_run, run_settings

    tmp, out = _copy_run(trained, "stale")
    (out / "run.json").unlink()
    preset = preset_for("mcgf_matching_only", "smoke", _OVERRIDES).with_epochs(2)
    want = run_settings(preset, 7)
    (out / PENDING_FILE).write_text(json.dumps(want))
    sources = DataSources(
        "real", university_root=tmp / "u", street_root=None, street_format="cvact"
    )
    run, trained_now = ensure_run(
        preset, sources, tmp / "runs", name=out.name, seed=7, progress=False
    )
    assert trained_now and "resumed_from_epoch" not in run.info and run.info["seed"] == 7
    assert not (out / PENDING_FILE).exists()
