"""`geoloc run`: papermill execution into an output folder, failures name notebook and cell."""

from __future__ import annotations

import nbformat
import pytest

from geoloc_lib.pipeline.runner import NotebookFailed, run_pipeline


def _notebook(path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# test"),
        nbformat.v4.new_code_cell("x = 1\nname = 'a'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(
        folder / "00_first.ipynb",
        "import os\nprint(x * 2, name, os.getcwd().endswith('notebooks'))",
    )
    _notebook(folder / "01_second.ipynb", "assert x == 1, f'x is {x}'")
    return folder


def _profiles(**params):
    return {
        "p": {
            "notebooks": {
                "00_first": {"x": 1, "name": "a", **params},
                "01_second": {"x": 1, "name": "a"},
            }
        }
    }


def test_run_executes_in_order_into_out_dir(notebooks, tmp_path, monkeypatch, capfd):
    import geoloc_lib.pipeline.runner as pipeline

    monkeypatch.setattr(pipeline, "resolve_profile", _resolver(_profiles(x=21, name="b")))
    out = tmp_path / "executed"
    before = (notebooks / "00_first.ipynb").read_text()
    outputs = run_pipeline("p", notebooks_dir=notebooks, out_dir=out, progress=False)
    assert [p.name for p in outputs] == ["00_first.ipynb", "01_second.ipynb"]
    executed = nbformat.read(out / "00_first.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "42 b True" in text  # parameters injected, cwd = the notebooks folder
    assert (notebooks / "00_first.ipynb").read_text() == before  # notebooks/ untouched
    assert not executed.metadata["papermill"]["input_path"].startswith("/")  # no machine paths
    # Reruns write identical files: no timestamps, no random cell ids.
    first = (out / "01_second.ipynb").read_bytes()
    run_pipeline("p", only=["01"], notebooks_dir=notebooks, out_dir=out, progress=False)
    assert (out / "01_second.ipynb").read_bytes() == first
    # the kernel talks over local sockets: no "Kernel is running over TCP without encryption"
    assert "without encryption" not in capfd.readouterr().err


def test_failure_names_notebook_and_cell(notebooks, tmp_path, monkeypatch):
    import geoloc_lib.pipeline.runner as pipeline

    profiles = _profiles()
    profiles["p"]["notebooks"]["01_second"]["x"] = 5
    monkeypatch.setattr(pipeline, "resolve_profile", _resolver(profiles))
    with pytest.raises(NotebookFailed, match=r"01_second.ipynb failed in code cell 3.*x is 5"):
        run_pipeline("p", notebooks_dir=notebooks, out_dir=tmp_path / "o", progress=False)


def test_executed_notebooks_go_beside_the_profiles_reports(notebooks, tmp_path, monkeypatch):
    import geoloc_lib.pipeline.runner as pipeline
    from geoloc_lib.core.errors import ConfigError

    profiles = _profiles()
    for params in profiles["p"]["notebooks"].values():
        params["reports_dir"] = "../reports/p"
    (notebooks / "00_first.ipynb").unlink()
    _notebook(notebooks / "00_first.ipynb", "print(x)")
    for name in ("00_first", "01_second"):  # the notebooks take reports_dir as a parameter
        nb = nbformat.read(notebooks / f"{name}.ipynb", as_version=4)
        nb.cells[1].source += "\nreports_dir = ''"
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    monkeypatch.setattr(pipeline, "resolve_profile", _resolver(profiles))
    outputs = run_pipeline("p", notebooks_dir=notebooks, progress=False)
    executed = (tmp_path / "reports" / "p" / "executed").resolve()
    assert [p.parent for p in outputs] == [executed, executed]
    assert (tmp_path / "reports" / "p" / "README.md").exists()
    profiles["p"]["notebooks"]["01_second"]["reports_dir"] = "../reports/q"
    with pytest.raises(ConfigError, match="several reports_dir.*pass --out"):
        run_pipeline("p", notebooks_dir=notebooks, progress=False)


def test_set_paths_are_the_callers_not_the_notebooks_folder(notebooks, tmp_path, monkeypatch):
    import geoloc_lib.pipeline.runner as pipeline

    (notebooks / "00_first.ipynb").unlink()
    _notebook(notebooks / "00_first.ipynb", "import os\nassert os.path.isdir(data_root), data_root")
    nb = nbformat.read(notebooks / "00_first.ipynb", as_version=4)
    nb.cells[1].source += "\ndata_root = ''"
    nbformat.write(nb, notebooks / "00_first.ipynb")
    monkeypatch.setattr(pipeline, "resolve_profile", _resolver(_profiles(data_root="")))
    caller = tmp_path / "caller"
    (caller / "mydata").mkdir(parents=True)
    monkeypatch.chdir(caller)  # the notebook runs in notebooks/, where mydata/ is not
    run_pipeline(
        "p", only=["00"], overrides=["data_root=mydata"], notebooks_dir=notebooks,
        out_dir=tmp_path / "o", progress=False,
    )  # fmt: skip
    executed = nbformat.read(tmp_path / "o" / "00_first.ipynb", as_version=4)
    assert str(caller / "mydata") in executed.cells[2].source  # the injected parameters


def _resolver(profiles):
    from geoloc_lib.pipeline.profiles import resolve_profile

    def resolve(profile, only=None, overrides=None, notebooks_dir=None):
        return resolve_profile(
            profile, only, overrides, notebooks_dir=notebooks_dir, profiles=profiles
        )

    return resolve


def _geoloc(argv):
    """``geoloc ARGS`` in this process: the exit status, as the console script returns it."""
    from geoloc_lib.pipeline.cli import main

    try:
        return main(argv)
    except SystemExit as stop:  # argparse and the command table exit this way
        return stop.code


def test_exit_status_1_for_a_notebook_that_raised(tmp_path, monkeypatch, capsys):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    def raising(*args, **kwargs):
        raise PapermillExecutionError(0, 3, "boom", "RuntimeError", "boom", [])

    monkeypatch.setattr(pm, "execute_notebook", raising)
    status = _geoloc(
        ["run", "--profile", "smoke", "--only", "00", "--out", str(tmp_path), "--no-progress"]
    )
    assert status == 1
    assert "00_data_prep.ipynb failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--profile", "smoke", "--bogus"],  # bad flag
        ["run"],  # missing --profile
        ["run", "--profile", "nosuch", "--dry-run"],  # unknown profile
        ["run", "--profile", "smoke", "--dry-run", "--set", "seed"],  # --set without =
        ["run", "--profile", "smoke", "--dry-run", "--set", "nokey=1"],  # unknown parameter
        ["run", "--profile", "smoke", "--dry-run", "--set", "seed=-1"],  # invalid value
    ],
)
def test_exit_status_2_for_a_usage_error(argv, capsys):
    assert _geoloc(argv) == 2
    assert capsys.readouterr().err.strip()  # says what is wrong


def test_dry_run_with_real_data_fails_on_missing_roots_naming_the_set(
    tmp_path, monkeypatch, capsys
):
    from layouts import make_cvact, make_university1652

    monkeypatch.chdir(tmp_path)
    status = _geoloc(["run", "--profile", "paper", "--only", "02", "--dry-run",
                      "--set", "university_root=nowhere/U", "--set", "street_root=nowhere/S"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert f"--set university_root=PATH: folder {tmp_path / 'nowhere/U'} not found" in err
    assert f"--set street_root=PATH: folder {tmp_path / 'nowhere/S'} not found" in err
    # a folder without the layout: named, with what it lacks
    (tmp_path / "half" / "train" / "drone").mkdir(parents=True)
    status = _geoloc(["run", "--profile", "paper", "--only", "02", "--dry-run",
                      "--set", "university_root=half", "--set", "street_runs=[]"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "--set university_root=PATH:" in err and "lacks train/satellite" in err
    assert "street_root" not in err  # no street run evaluated: its root is not needed
    # both datasets in their layouts (relative paths, from this folder): the dry run passes
    make_university1652(tmp_path / "data" / "U")
    make_cvact(tmp_path / "data" / "S")
    status = _geoloc(["run", "--profile", "paper", "--only", "02", "--dry-run",
                      "--set", "university_root=data/U", "--set", "street_root=data/S"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"university_root {tmp_path / 'data/U'}: layout OK" in out
    assert f"street_root {tmp_path / 'data/S'}: layout OK" in out


def test_dry_run_needs_the_root_of_the_models_it_trains(tmp_path, monkeypatch, capsys):
    from layouts import make_university1652

    monkeypatch.chdir(tmp_path)
    make_university1652(tmp_path / "U")
    ok = ["run", "--profile", "paper", "--only", "01", "--dry-run", "--set", "university_root=U",
          "--set", "street_root=", "--set", "models=[mcgf]"]  # fmt: skip
    assert _geoloc(ok) == 0, capsys.readouterr()
    street = [*ok[:-1], "models=[mcgf, geoviewmatch]"]
    assert _geoloc(street) == 2
    assert "--set street_root=PATH: not given" in capsys.readouterr().err


def test_dry_run_reads_weight_files_where_the_notebook_reads_them(tmp_path, monkeypatch):
    # A weight file named in a profile is relative to notebooks/, not to the caller's folder.
    from geoloc_lib.core.errors import ConfigError
    from geoloc_lib.pipeline.dry_run import check_run
    from geoloc_lib.pipeline.profiles import ResolvedRun

    monkeypatch.chdir(tmp_path)
    params = {"models": ["geoviewmatch"], "preset": "smoke",
              "overrides": {"geoviewmatch": {"model": {"pretrained_file": "w/x.pth"}}}}  # fmt: skip
    run = ResolvedRun(tmp_path / "notebooks" / "01_train.ipynb", params)
    with pytest.raises(ConfigError, match=str(tmp_path / "notebooks" / "w" / "x.pth")):
        check_run(run, "p")
