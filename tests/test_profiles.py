"""Profiles resolve against the notebooks; bad profiles, keys and values are rejected."""

from __future__ import annotations

import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.pipeline.profiles import (
    list_notebooks,
    load_profiles,
    notebook_parameters,
    parse_override,
    resolve_profile,
)


def test_every_profile_resolves_for_the_notebooks_it_runs():
    every = list_notebooks()
    assert [r.notebook for r in resolve_profile("smoke")] == every  # CI runs them all
    for profile in ("default", "paper"):  # the multi-seed claims are the `claims` profile
        runs = resolve_profile(profile)
        assert [r.notebook for r in runs] == [nb for nb in every if nb.stem != "05_claims"]


def test_claims_profile_runs_data_prep_and_claims_beside_the_default_reports():
    runs = {r.notebook.stem: r.parameters for r in resolve_profile("claims")}
    assert list(runs) == ["00_data_prep", "05_claims"]
    default = {r.notebook.stem: r.parameters for r in resolve_profile("default")}
    assert runs["00_data_prep"] == default["00_data_prep"]
    claims = runs["05_claims"]
    assert claims["seeds"] == [0, 1, 2]
    # seed 0 is the default profile's ablation runs (same folder, preset and budgets)
    assert claims["runs_dir"] == "../runs/default" and claims["reports_dir"] == "../reports"
    for key in ("epochs", "max_queries", "preset", "data_root"):
        assert claims[key] == default["04_ablations"][key], key
    smoke = {r.notebook.stem: r.parameters for r in resolve_profile("smoke")}
    for key in ("epochs", "max_queries"):
        assert smoke["05_claims"][key] == smoke["04_ablations"][key], key
    assert resolve_profile("claims", only=["05"])[0].notebook.stem == "05_claims"
    with pytest.raises(ConfigError, match="profile 'claims' does not run that notebook"):
        resolve_profile("claims", only=["02"])
    with pytest.raises(ConfigError, match=r"parameter seeds: expected a non-empty list"):
        resolve_profile("claims", overrides=["seeds=[1, 1]"])
    with pytest.raises(ConfigError, match=r"parameter seeds: expected a non-empty list"):
        resolve_profile("claims", overrides=["seeds=[]"])
    assert resolve_profile("claims", only=["05"], overrides=["seeds=[4]"])[0].parameters[
        "seeds"
    ] == [4]


def test_a_profile_run_list_is_checked():
    smoke = load_profiles()["smoke"]
    subset = {
        "shared": dict(smoke["shared"]),
        "run": ["00", "02_evaluate"],
        "notebooks": {k: smoke["notebooks"][k] for k in ("00_data_prep", "02_evaluate")},
    }
    runs = resolve_profile("s", profiles={"s": subset})
    assert [r.notebook.stem for r in runs] == ["00_data_prep", "02_evaluate"]
    extra = {**subset, "notebooks": dict(smoke["notebooks"])}
    with pytest.raises(ConfigError, match=r"has a section for \['01_train'.*but does not run it"):
        resolve_profile("s", profiles={"s": extra})
    with pytest.raises(ConfigError, match="`run`: unknown notebook '09'"):
        resolve_profile("s", profiles={"s": {**subset, "run": ["00", "09"]}})
    with pytest.raises(ConfigError, match="`run` must be a non-empty list"):
        resolve_profile("s", profiles={"s": {**subset, "run": "00"}})


def test_notebook_defaults_equal_smoke_profile():
    # nbval executes notebooks/ as committed: their defaults must be the smoke profile.
    for run in resolve_profile("smoke"):
        assert notebook_parameters(run.notebook) == run.parameters, run.notebook.name


def test_unknown_profile_lists_choices():
    with pytest.raises(ConfigError, match="valid choices: claims, default, paper, smoke"):
        resolve_profile("fast")


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown parameter 'sed'.*valid choices: .*seed"):
        resolve_profile("smoke", overrides=["sed=3"])


def test_override_applies_and_parses_yaml():
    runs = resolve_profile("smoke", only=["00"], overrides=["seed=7", "00.street_format=cvusa"])
    assert runs[0].parameters["seed"] == 7
    assert runs[0].parameters["street_format"] == "cvusa"
    assert parse_override("a=[1, 2]") == (None, "a", [1, 2])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("seed")


def test_unknown_notebook_selection():
    with pytest.raises(ConfigError, match="unknown notebook '99'"):
        resolve_profile("smoke", only=["99"])


def _resolved(profile: str) -> dict[str, dict]:
    return {r.notebook.stem: dict(r.parameters) for r in resolve_profile(profile)}


def test_profile_with_unknown_or_missing_key_is_rejected():
    smoke = _resolved("smoke")
    bad = {"x": {"notebooks": {"00_data_prep": {**smoke["00_data_prep"], "oops": 1}}}}
    with pytest.raises(ConfigError, match="unknown parameter 'oops'"):
        resolve_profile("x", only=["00"], profiles=bad)
    params = dict(smoke["00_data_prep"])
    params.pop("seed")
    with pytest.raises(ConfigError, match=r"missing parameters \['seed'\]"):
        resolve_profile("x", only=["00"], profiles={"x": {"notebooks": {"00_data_prep": params}}})


def test_papermill_parses_every_parameter():
    # papermill's own parser (used for injection warnings and `papermill --help-notebook`)
    # chokes on some comments, e.g. an '=' after '#'; keep the parameters cells parseable.
    import nbformat
    from papermill.translators import PythonTranslator

    for notebook in list_notebooks():
        nb = nbformat.read(notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        assert parsed == set(notebook_parameters(notebook)), notebook.name


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=abc", r"--set 'epochs=abc', notebook 01_train: parameter epochs: expected a "
         r"mapping from model names"),
        ("epochs=5", r"parameter epochs: expected a mapping from model names.*got 5"),
        ("epochs={geoviewmatch: 0}", r"parameter epochs: entry geoviewmatch: expected an integer >= 1"),
        ("epochs={geoviewmach: 3}", r"parameter epochs: unknown model 'geoviewmach'"),
        ("seed=-1", r"notebook 00_data_prep: parameter seed: expected an integer >= 0, got -1"),
        ("seed=1.5", r"parameter seed: expected an integer >= 0, got 1.5"),
        ("figure_condition=hail", r"parameter figure_condition: expected one of normal, .*mixed"),
        ("device=tpu", r"parameter device: expected auto, cpu, mps, cuda or cuda:N, got 'tpu'"),
        ("resume=maybe", r"parameter resume: expected true or false, got 'maybe'"),
        ("models=[mcgf, resnet]", r"parameter models: unknown name 'resnet'"),
        ("max_queries=0", r"parameter max_queries: expected an integer >= 1 or null"),
        ("data_root=5", r"parameter data_root: expected a string, got 5"),
    ],
)  # fmt: skip
def test_override_values_are_checked_at_resolution(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_profile("default", overrides=[override])


def test_valid_value_overrides_resolve():
    runs = resolve_profile(
        "default",
        overrides=["epochs={geoviewmatch: 3}", "device=cuda:1", "max_queries=null", "seed=3"],
    )
    params = {r.notebook.stem: r.parameters for r in runs}
    assert params["01_train"]["epochs"] == {"geoviewmatch": 3}
    assert params["02_evaluate"]["max_queries"] is None


def test_bad_profile_values_name_the_profile_file():
    bad = {"x": {"notebooks": _resolved("smoke")}}
    bad["x"]["notebooks"]["02_evaluate"]["figure_condition"] = "hail"
    with pytest.raises(ConfigError, match=r"profile 'x' in profiles.yaml, notebook 02_evaluate"):
        resolve_profile("x", profiles=bad)


def test_set_for_a_notebook_that_does_not_exist_says_so():
    with pytest.raises(ConfigError, match=r"--set '07.seed=1': no notebook 07; notebooks: 00, 01"):
        resolve_profile("smoke", overrides=["07.seed=1"])
    with pytest.raises(ConfigError, match="notebook 02 is not among the selected notebooks"):
        resolve_profile("smoke", only=["00"], overrides=["02.seed=1"])


@pytest.mark.parametrize("only", ["", ",", " , "])
def test_empty_only_is_refused(only, capsys):
    from geoloc_lib.pipeline.cli import main as cli_main

    assert cli_main(["run", "--profile", "default", "--only", only, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--only names no notebook" in err


def test_shared_parameters_are_stated_once_and_reach_every_notebook_that_takes_them():
    for name, profile in load_profiles().items():
        shared = profile.get("shared") or {}
        assert {"dataset", "street_format", "reports_dir"} <= set(shared), name
        resolved = _resolved(name)
        for stem, own in profile["notebooks"].items():
            assert not set(own) & set(shared), f"{name}/{stem} repeats a shared parameter"
            for key, value in shared.items():
                if key in resolved[stem]:
                    assert resolved[stem][key] == value, (name, stem, key)


def test_a_notebook_value_wins_over_a_shared_one_and_unknown_shared_keys_fail():
    smoke = load_profiles()["smoke"]
    mine = {
        "shared": dict(smoke["shared"]),
        "notebooks": {k: dict(v) for k, v in smoke["notebooks"].items()},
    }
    mine["notebooks"]["01_train"]["seed"] = 7
    params = {r.notebook.stem: r.parameters for r in resolve_profile("m", profiles={"m": mine})}
    assert params["01_train"]["seed"] == 7 and params["02_evaluate"]["seed"] == 0
    mine["shared"]["no_such_parameter"] = 1
    with pytest.raises(ConfigError, match="shared parameter 'no_such_parameter'"):
        resolve_profile("m", profiles={"m": mine})


def test_set_paths_resolve_from_the_callers_folder(tmp_path, monkeypatch):
    # A relative path on the command line is the caller's, not notebooks/'s (papermill's cwd):
    # the notebooks receive it absolute; the profiles file's own paths stay as written.
    monkeypatch.chdir(tmp_path)
    runs = resolve_profile(
        "paper",
        only=["01", "02"],
        overrides=[
            "university_root=data/University-1652",
            "02.runs_dir=../elsewhere/runs",
            "street_root=",  # not given: stays empty
            "overrides={mcgf: {model: {encoder_pretrained_file: weights/enc.pth, w_nce: 0.5}}}",
        ],
    )
    params = {r.notebook.stem: r.parameters for r in runs}
    for stem in ("01_train", "02_evaluate"):
        assert params[stem]["university_root"] == str(tmp_path / "data" / "University-1652")
        assert params[stem]["street_root"] == ""
    assert params["02_evaluate"]["runs_dir"] == str(tmp_path.parent / "elsewhere" / "runs")
    assert params["01_train"]["runs_dir"] == "../runs/paper"  # from profiles.yaml, unchanged
    mcgf = params["01_train"]["overrides"]["mcgf"]["model"]
    assert mcgf == {"encoder_pretrained_file": str(tmp_path / "weights/enc.pth"), "w_nce": 0.5}
    absolute = resolve_profile("paper", only=["02"], overrides=["university_root=/d/U"])
    assert absolute[0].parameters["university_root"] == "/d/U"


def test_path_parameters_are_named_in_one_place(tmp_path):
    from geoloc_lib.core.paths import REPO_ROOT, absolute_paths, is_path_parameter, repo_relative

    assert all(map(is_path_parameter, ("data_root", "runs_dir", "pretrained_file", "x_root")))
    assert not any(map(is_path_parameter, ("dataset", "street_format", "seed", "models")))
    assert absolute_paths("seed", "3", tmp_path) == "3"
    assert absolute_paths("data_root", 5, tmp_path) == 5  # the value check reports it
    assert repo_relative(REPO_ROOT / "data" / "x") == "data/x"
    assert repo_relative(tmp_path / "x") == str((tmp_path / "x").resolve())
