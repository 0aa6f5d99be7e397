"""The shared `tasks` and `weights` parameters: a run of one task needs only that task's data, and
pretrained files given once reach every run that 01, 04 and 05 train (run.json: weights_source)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from layouts import make_cvact, make_university1652
from safetensors.torch import save_file

from geoloc_lib.analysis import ablations as A
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.sources import counts_table, resolve_sources, select_tasks
from geoloc_lib.pipeline.dry_run import check_run
from geoloc_lib.pipeline.profiles import ResolvedRun, resolve_profile
from geoloc_lib.training import runs
from geoloc_lib.training.recipes import preset_for


def _geoloc(argv: list[str]) -> int:
    """``geoloc ARGS`` in this process: the exit status, as the console script returns it."""
    from geoloc_lib.pipeline.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _content_file(path: Path) -> tuple[Path, int]:
    """A weight file for the smoke-size EVA-02 of MCGF's matching branch; (path, tensors)."""
    cfg = preset_for("mcgf", "smoke").config
    torch.manual_seed(5)
    net = timm.create_model(cfg.content, num_classes=0, img_size=cfg.img_size, **cfg.content_arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path))
    return path, len(state)


def _swin_file(path: Path) -> Path:
    """A weight file for the smoke-size SwinV2 of GeoViewMatch."""
    cfg = preset_for("geoviewmatch", "smoke").config
    arch = dict(embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads,
                window_size=cfg.window_size, img_size=cfg.aerial_size, num_classes=0)  # fmt: skip
    torch.manual_seed(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(timm.create_model(cfg.backbone, **arch).state_dict(), path)
    return path


def _run_json(folder: Path) -> dict:
    return json.loads((folder / runs.RUN_FILE).read_text())


# --------------------------------------------------------------------------- weights


def test_weights_given_once_reach_the_runs_of_01_04_and_05(tmp_path, monkeypatch):
    # As the notebooks run: cwd = notebooks/, the profile's relative path, one `weights` dict
    # passed to train_runs (01) and to the ablation and seed runners (04, 05).
    monkeypatch.chdir(tmp_path)
    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    sources = resolve_sources("real", "", str(root), "", "cvact", ["drone"])
    _, n = _content_file(tmp_path / "w" / "eva.safetensors")
    weights = {"mcgf_matching_only": {"content_pretrained_file": "w/eva.safetensors"}}
    loaded = {"content": f"file:w/eva.safetensors [{n}/{n} tensors]"}
    model, kw = "mcgf_matching_only", dict(preset="smoke", device="cpu", progress=False)

    # 01: train_runs with the notebook's weights
    first = runs.train_runs([model], sources, "runs", epochs={model: 1}, weights=weights, **kw)
    info = _run_json(tmp_path / "runs" / model)
    assert info["weights_source"] == loaded == first[model].info["weights_source"]
    assert info["config"]["model"]["content_pretrained_file"] == "w/eva.safetensors"

    # 04: the grid's main variant (no overrides of its own) is 01's run, trained with the files
    plain = A.Variant("w/o restoration", model, {}, "matching")
    run, trained = A.ensure_seed_run(
        plain, sources, "runs", epochs=1, seed=0, weights=weights, **kw
    )
    assert not trained and run.out_dir == Path("runs", model)
    # a variant with a change of its own trains under ablations/ with the same files
    fast = A.Variant("fast", model, {"run": {"val_queries": 0, "max_steps_per_epoch": 1}}, "fast")
    _, trained = A.ensure_seed_run(fast, sources, "runs", epochs=1, seed=0, weights=weights, **kw)
    assert trained
    assert _run_json(tmp_path / "runs" / A.ABLATION_DIR / "fast")["weights_source"] == loaded

    # 05: another seed, its own folder, the same files
    _, trained = A.ensure_seed_run(fast, sources, "runs", epochs=1, seed=1, weights=weights, **kw)
    assert trained
    assert _run_json(tmp_path / "runs" / A.ABLATION_DIR / "fast_seed1")["weights_source"] == loaded
    _, trained = A.ensure_seed_run(fast, sources, "runs", epochs=1, seed=1, weights=weights, **kw)
    assert not trained  # finished with the same files: reused

    # a run trained with the files is not the run asked for without them (nor the reverse)
    run, trained = A.ensure_seed_run(fast, sources, "runs", epochs=1, seed=1, **kw)
    assert trained and run.info["weights_source"] == {"content": "random"}
    assert run.info["config"]["model"]["content_pretrained_file"] is None
    run, trained = A.ensure_seed_run(plain, sources, "runs", epochs=1, seed=0, **kw)
    assert trained and run.out_dir == Path("runs", A.ABLATION_DIR, "matching")


def test_every_variant_of_a_model_gets_its_weights(tmp_path, monkeypatch):
    # The runners hand `weights` to each (variant, seed) they train, with the variant's own
    # overrides; the other model's entries stay with that model.
    seen = []

    def fake(preset, sources, runs_dir, *, name, seed, **kw):
        seen.append((preset.model, name, seed, preset.overrides.get("model", {})))
        return None, True

    monkeypatch.setattr(runs, "ensure_run", fake)
    monkeypatch.setattr(runs, "finished_run", lambda *a, **k: None)
    monkeypatch.setattr(runs, "run_settings", lambda *a, **k: {})  # no files to read
    # runs side by side: the worker jobs, run here
    monkeypatch.setattr(A, "runs_at_once", lambda *a, **k: 2)
    monkeypatch.setattr(A, "map_side_by_side", lambda fn, jobs, n: [fn(*job) for job in jobs])
    weights = {"mcgf": {"encoder_pretrained_file": "e.pth", "content_pretrained_file": "c.pth"},
               "mcgf_matching_only": {"content_pretrained_file": "c.pth"}}  # fmt: skip
    kw = dict(preset="smoke", epochs=1, device="cpu", weights=weights)
    variants = A.mcgf_variants(preset="smoke")
    A.train_grid(variants, [0, 2], None, tmp_path, parallel_runs=2, **kw)
    side_by_side = list(seen)
    seen.clear()
    for v in variants:
        for seed in (0, 2):
            A.ensure_seed_run(v, None, tmp_path, seed=seed, **kw)
    assert {(m, n, s) for m, n, s, _ in side_by_side} == {(m, n, s) for m, n, s, _ in seen}
    seen += side_by_side
    assert {(m, s) for m, _, s, _ in seen} == {
        (m, s) for m in ("mcgf", "mcgf_matching_only") for s in (0, 2)
    }
    for model, name, _, overrides in seen:
        assert {k: overrides[k] for k in weights[model]} == weights[model], name
        assert "encoder_pretrained_file" not in overrides or model == "mcgf"
    street = A.geoviewmatch_variants(preset="smoke") + [A.INFONCE_BASELINE]
    seen.clear()
    gvm = {"geoviewmatch": {"pretrained_file": "s.pth"}}
    for v in street:
        A.ensure_seed_run(v, None, tmp_path, seed=0, **{**kw, "weights": gvm})
    assert all(
        (o.get("pretrained_file") == "s.pth") == (m == "geoviewmatch") for m, _, _, o in seen
    )


def test_weight_parts_are_the_models_config_keys():
    assert set(runs.WEIGHT_PARTS) == set(runs.TASKS)
    for model, parts in runs.WEIGHT_PARTS.items():
        cfg = runs.resolved_config(preset_for(model, "smoke"))["model"]
        files = {k for k in cfg if k.endswith("pretrained_file")}
        assert set(parts) <= files, model
        if cfg.get("restoration", True):
            assert set(parts) == files, model  # every pretrained part can be given
    assert runs.WEIGHT_PARTS["mcgf_matching_only"] == ("content_pretrained_file",)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([], "expected a mapping model"),
        ({"nosuch": {}}, "unknown model 'nosuch'"),
        ({"mcgf": "w.pth"}, "model mcgf: expected a mapping"),
        ({"mcgf": {"pretrained_file": "w.pth"}}, "unknown pretrained part 'pretrained_file'"),
        ({"mcgf_matching_only": {"encoder_pretrained_file": "w"}}, "unknown pretrained part"),
        ({"geoviewmatch": {"pretrained_file": ""}}, "expected a file path"),
    ],
)
def test_bad_weights_fail_naming_the_parameter(weights, message):
    with pytest.raises(ConfigError, match=f"^parameter weights.*{message}"):
        runs.check_weights(weights)


def test_a_part_given_in_overrides_and_weights_must_agree():
    w = {"geoviewmatch": {"pretrained_file": "a.pth"}}
    # the files join the model section; the other sections are kept as they are
    over = {"model": {"w_con": 0.1}, "train": {"lr_head": 0.01}}
    assert runs.with_weights("geoviewmatch", over, w) == {
        "model": {"w_con": 0.1, "pretrained_file": "a.pth"},
        "train": {"lr_head": 0.01},
    }
    assert over == {"model": {"w_con": 0.1}, "train": {"lr_head": 0.01}}  # not changed
    assert runs.with_weights("infonce_baseline", {}, w) == {}
    with pytest.raises(ConfigError, match="pretrained_file is given twice"):
        runs.with_weights("geoviewmatch", {"model": {"pretrained_file": "b.pth"}}, w)


def test_weights_paths_resolve_like_other_paths_and_reach_01_04_05(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = resolve_profile(
        "smoke", overrides=["weights={geoviewmatch: {pretrained_file: w/swin.pth}}"]
    )
    takes = {
        r.notebook.stem: r.parameters["weights"] for r in resolved if "weights" in r.parameters
    }
    assert set(takes) == {"01_train", "04_ablations", "05_claims"}
    for value in takes.values():
        assert value == {"geoviewmatch": {"pretrained_file": str(tmp_path / "w/swin.pth")}}
    with pytest.raises(ConfigError, match="parameter weights: .*unknown model 'swin'"):
        resolve_profile("smoke", overrides=["weights={swin: {pretrained_file: w.pth}}"])


def test_dry_run_checks_the_weight_files_and_builds_the_models_with_them(tmp_path):
    notebooks = tmp_path / "notebooks"
    _swin_file(tmp_path / "w" / "swin.pth")
    # a grid notebook (no model list): each model of its tasks that `weights` names is built
    params = {"preset": "smoke", "tasks": ["drone", "street"],
              "weights": {"geoviewmatch": {"pretrained_file": "../w/swin.pth"}}}  # fmt: skip
    notes = check_run(ResolvedRun(notebooks / "04_ablations.ipynb", params), "p")
    assert f"weights geoviewmatch.pretrained_file {tmp_path / 'w/swin.pth'}: found" in notes
    assert any(n.startswith("geoviewmatch (smoke preset)") for n in notes)
    drone_only = check_run(ResolvedRun(notebooks / "04.ipynb", {**params, "tasks": ["drone"]}), "p")
    assert "street task skipped: tasks=['drone']" in drone_only
    assert not any(n.startswith("geoviewmatch (smoke") for n in drone_only)
    # 01: the models it trains are built with the files
    train = {**params, "models": ["geoviewmatch", "mcgf"], "overrides": {}}
    notes = check_run(ResolvedRun(notebooks / "01_train.ipynb", train), "p")
    assert any(n.startswith("geoviewmatch (smoke preset)") for n in notes)
    missing = {**params, "weights": {"mcgf": {"content_pretrained_file": "../w/none.pth"}}}
    with pytest.raises(ConfigError, match=r"mcgf\.content_pretrained_file: file .*none\.pth"):
        check_run(ResolvedRun(notebooks / "05_claims.ipynb", missing), "p")
    # a file that does not fit the model's backbone fails the dry run too
    wrong = {**params, "weights": {"infonce_baseline": {"pretrained_file": "../w/swin.pth"}}}
    with pytest.raises(ConfigError, match="does not fit backbone"):
        check_run(ResolvedRun(notebooks / "05_claims.ipynb", wrong), "p")


# --------------------------------------------------------------------------- tasks


def test_tasks_are_checked_naming_the_parameter(capsys):
    assert select_tasks(["drone"]) == ["drone"]
    assert capsys.readouterr().out == "street task skipped: tasks=['drone']\n"
    for bad, message in ((["boat"], "unknown task 'boat'"), ([], "non-empty list"),
                         ("drone", "non-empty list"), (["drone", "drone"], "each task once")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"^parameter tasks: .*{message}"):
            select_tasks(bad)


def test_sources_of_one_task_leave_the_other_out(tmp_path):
    uni = make_university1652(tmp_path / "U", views=2)
    street = make_cvact(tmp_path / "S")
    both = resolve_sources("real", "", uni, street, "cvact", ["drone", "street"])
    drone = resolve_sources("real", "", uni, street, "cvact", ["drone"])
    assert both.street_root == street and drone.street_root is None and drone.tasks == ("drone",)
    assert set(counts_table(drone)["dataset"]) == {"University-1652 layout"}
    with pytest.raises(ConfigError, match=r"street task is not run .*tasks=\['drone'\]"):
        drone.street("val")
    with pytest.raises(ConfigError, match="parameter street_root: not given, and tasks="):
        resolve_sources("real", "", uni, "", "cvact", ["drone", "street"])
    only_street = resolve_sources("real", "", "", street, "cvact", ["street"])
    assert only_street.university_root is None
    geosynth = resolve_sources("geosynth", tmp_path / "g", "", "", "cvact", ["street"])
    assert geosynth.university_root is None and geosynth.street_root == tmp_path / "g" / "CVACT"
    with pytest.raises(ConfigError, match="unknown task 'boat'"):
        resolve_sources("real", "", uni, street, "cvact", ["boat"])


def test_trivial_matchers_of_one_task(tmp_path):
    from geoloc_lib.eval.baselines import trivial_matchers

    uni = make_university1652(tmp_path / "U", views=2)
    table = trivial_matchers(resolve_sources("real", "", uni, "", "cvact", ["drone"]))
    assert set(table["task"]) == {"drone->satellite", "satellite->drone"}


def test_task_models_keep_the_models_of_the_tasks():
    models = ["mcgf", "mcgf_matching_only", "geoviewmatch", "infonce_baseline"]
    assert runs.task_models(models, ["street"]) == ["geoviewmatch", "infonce_baseline"]
    assert runs.task_models(models, ["drone", "street"]) == models
    with pytest.raises(ConfigError, match=r"parameter models \['geoviewmatch'\] holds no model"):
        runs.task_models(["geoviewmatch"], ["drone"])


def test_a_one_dataset_paper_run_passes_the_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_university1652(tmp_path / "U")
    make_cvact(tmp_path / "S")
    drone = ["run", "--profile", "paper", "--dry-run", "--set", "tasks=[drone]",
             "--set", "street_root=", "--set", "university_root=U"]  # fmt: skip
    assert _geoloc(drone) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("check: street task skipped: tasks=['drone']") == 5  # 00 to 04
    assert "street_root" not in out.replace("street_root = ''", "")
    assert "check: geoviewmatch" not in out and "check: mcgf (paper preset)" in out
    street = ["run", "--profile", "paper", "--dry-run", "--set", "tasks=[street]",
              "--set", "university_root=", "--set", "street_root=S"]  # fmt: skip
    assert _geoloc(street) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("check: drone task skipped: tasks=['street']") == 5
    assert f"street_root {tmp_path / 'S'}: layout OK" in out and "check: mcgf" not in out
    # the claims (05) of one dataset, from one command
    claims = ["run", "--profile", "claims", "--dry-run", "--set", "dataset=real", "--set",
              "data_root=", "--set", "tasks=[street]", "--set", "street_root=S"]  # fmt: skip
    assert _geoloc(claims) == 0, capsys.readouterr().err
    # without `tasks`, the missing root fails, saying how to leave its task out
    assert _geoloc(drone[:4] + drone[6:]) == 2
    assert "or leave its task out (--set tasks=[drone])" in capsys.readouterr().err


def test_an_unknown_task_fails_naming_the_parameter(capsys):
    assert _geoloc(["run", "--profile", "smoke", "--dry-run", "--set", "tasks=[drone, boat]"]) == 2
    err = capsys.readouterr().err
    assert "parameter tasks: unknown task 'boat'; valid choices: drone, street" in err


# --------------------------------------------------------------------------- the notebooks

TRAINING_CALLS = {"train_runs", "run_street_ablations", "run_mcgf_ablations",
                  "run_restoration_seeds", "run_street_seeds", "run_mcgf_seeds"}  # fmt: skip


def _calls(stem: str) -> list:
    import ast

    from geoloc_lib.core.paths import NOTEBOOKS_DIR

    nb = json.loads((NOTEBOOKS_DIR / f"{stem}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]
    return [(getattr(c.func, "attr", getattr(c.func, "id", None)), c) for c in calls]


@pytest.mark.parametrize(
    "stem",
    ["00_data_prep", "01_train", "02_evaluate", "03_heatmaps", "04_ablations", "05_claims"],
)
def test_every_notebook_reads_the_data_of_its_tasks_and_trains_with_the_weights(stem):
    calls = _calls(stem)
    names = [name for name, _ in calls]
    assert "select_tasks" in names  # checks `tasks` and prints the task skipped
    for name, call in calls:
        if name == "resolve_sources":
            assert [getattr(a, "id", None) for a in call.args][-1] == "tasks", stem
        if name in TRAINING_CALLS:  # every run the notebook trains gets the pretrained files
            given = {k.arg: getattr(k.value, "id", None) for k in call.keywords}
            assert given.get("weights") == "weights", f"{stem}: {name} without weights="
    trains = [name for name in names if name in TRAINING_CALLS]
    assert bool(trains) == (stem in ("01_train", "04_ablations", "05_claims")), stem
