"""environment.yml (conda users) installs the same pins as constraints.txt (make)."""

from __future__ import annotations

import re

import tomllib
import yaml

from geoloc_lib.core.paths import REPO_ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def test_environment_yml_pins_match_constraints():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    constraints = _constraints()
    assert pip_section, "environment.yml has no pip pins"
    for spec in pip_section:
        name, version = spec.split("==")
        assert _norm(name) in constraints, (
            f"{name} pinned in environment.yml, not in constraints.txt"
        )
        assert constraints[_norm(name)] == version, (
            f"{name}: {version} vs {constraints[_norm(name)]}"
        )


def test_every_direct_dependency_is_pinned_in_both():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {_norm(re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0]) for d in deps}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_names = {_norm(s.split("==")[0]) for s in pip_section}
    constraints = _constraints()
    assert names <= set(constraints), f"not in constraints.txt: {names - set(constraints)}"
    assert names <= env_names, f"not in environment.yml: {names - env_names}"


def test_torch_and_torchvision_are_a_matching_pair():
    # torchvision 0.N pairs with torch 2.(N-15): e.g. 0.28 <-> 2.13
    pins = _constraints()
    torch_minor = int(pins["torch"].split(".")[1])
    tv_minor = int(pins["torchvision"].split(".")[1])
    assert tv_minor - torch_minor == 15


def test_make_install_creates_the_venv_alone_and_is_listed_in_help():
    import shutil
    import subprocess

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = REPO_ROOT
    helped = subprocess.run(["make", "-s", "help"], cwd=root, capture_output=True, text=True)
    assert "make install" in helped.stdout
    # -n: print what it would run; -B: as if nothing were installed yet
    planned = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert "-m venv .venv" in planned and "touch .venv/.installed" in planned
    assert "pytest" not in planned and "geoloc run" not in planned  # nothing but the install


def test_make_lab_copies_each_notebook_once_and_keeps_edited_copies(tmp_path):
    """``make lab`` on a scratch copy, with a stand-in ``jupyter-lab`` that only prints."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "notebooks", tmp_path / "notebooks")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    lab = venv / "bin" / "jupyter-lab"
    lab.write_text('#!/bin/sh\necho "jupyter-lab $@"\n')
    lab.chmod(0o755)
    (venv / ".installed").touch()  # newer than the dependency files: no install

    def make_lab() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "-s", "lab", f"VENV={venv}"], cwd=tmp_path, capture_output=True, text=True
        )

    first = make_lab()
    assert first.returncode == 0, first.stderr
    notebooks = sorted(p.name for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (tmp_path / "lab").glob("*.ipynb")) == notebooks
    assert "--ServerApp.root_dir=lab" in first.stdout
    edited = tmp_path / "lab" / notebooks[0]
    edited.write_text("my edits")
    again = make_lab()
    assert again.returncode == 0 and "copied" not in again.stdout
    assert edited.read_text() == "my edits"  # a user's copy is never replaced
    lab.unlink()
    missing = make_lab()
    assert missing.returncode != 0 and "pip install -c constraints.txt jupyterlab" in missing.stdout
    assert "/lab/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    helped = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert "make lab" in helped.stdout
