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


def _resolver(profiles):
    from geoloc_lib.pipeline.profiles import resolve_profile

    def resolve(profile, only=None, overrides=None, notebooks_dir=None):
        return resolve_profile(
            profile, only, overrides, notebooks_dir=notebooks_dir, profiles=profiles
        )

    return resolve
