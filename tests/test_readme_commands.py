"""The README's real-data and pretrained-weights quick starts are the commands run here: every
``geoloc`` line of their shell blocks (each ``geoloc run`` as a dry run) and the Python block, in a
folder outside the repository holding tiny datasets in the real layouts and weight files of the
paper architectures (zeros of the right names and shapes: the dry run and the meta-device build
read nothing else)."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
import torch
from layouts import make_cvact, make_university1652
from safetensors.torch import save_file

from geoloc_lib.pipeline.cli import main as geoloc
from geoloc_lib.training.recipes import preset_for

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = ("## Using the real datasets", "## Pretrained weights")


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end > 0 else None]


def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [
        block
        for title in SECTIONS
        for block in re.findall(rf"```{language}\n(.*?)```", _section(text, title), re.S)
    ]


def _commands() -> list[list[str]]:
    """The ``geoloc`` command lines of the sections' shell blocks (continuations joined, comments
    dropped), as argument lists."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "geoloc":
                commands.append(words[1:])
    return commands


def _geoloc(argv: list[str]) -> int:
    try:
        return geoloc(argv)
    except SystemExit as stop:
        return int(stop.code)


# The module of the paper-size model each weight-file key loads.
PARTS = {
    "encoder_pretrained_file": ("mcgf", "encoder"),
    "content_pretrained_file": ("mcgf", "content"),
    "pretrained_file": ("geoviewmatch", "backbone.aerial"),
}


def _weight_file(path: Path, key: str) -> None:
    """A safetensors file with the tensor names and shapes of the paper-size module that ``key``
    loads (zeros: the checks here read names, shapes and finiteness)."""
    model, module = PARTS[key]
    with torch.device("meta"):
        net = preset_for(model, "paper").build(pretrained=False)
    state = net.get_submodule(module).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in state.items()}, str(path))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The reader's working folder: tiny University-1652 and CVACT, and every weight file the
    sections name, at the paths they name."""
    root = tmp_path_factory.mktemp("reader")
    make_university1652(root / "data/University-1652", train_ids=range(1, 5), test_ids=(10, 11),
                        distractors=(20,), views=2)  # fmt: skip
    make_cvact(root / "data/CVACT")
    text = "".join(_blocks("bash") + _blocks("python"))
    named = set(
        re.findall(r"(\w+_pretrained_file|pretrained_file)[=:] *\"?(weights/[\w./-]+)", text)
    )
    assert named, "the sections name no weight files"
    for key, rel in named:
        _weight_file(root / rel, key)
    return root


def test_the_sections_hold_the_commands_tested():
    commands = _commands()
    assert [c[:2] for c in commands if c[0] == "data"] == [["data", "verify"]] * 2
    runs = [c for c in commands if c[0] == "run"]
    assert len(runs) >= 3 and any("--dry-run" in c for c in runs)
    assert any(any(a.startswith("weights=") for a in c) for c in runs)
    assert len(_blocks("python")) == 1


def test_every_geoloc_command_of_the_sections(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    for argv in _commands():
        if argv[0] == "run":
            argv = [*argv, "--dry-run"] if "--dry-run" not in argv else argv
            status = _geoloc(argv)
            assert status == 0, (argv, capsys.readouterr().err)
        else:  # data verify: the tiny University-1652 has the layout, not the real counts
            status = _geoloc(argv)
            out, err = capsys.readouterr()
            if argv[2] == "university1652":
                assert status != 0 and "files matching" in err and "expected" in err, (argv, err)
            else:
                assert status == 0 and ": OK (" in out, (argv, err)


def test_the_python_block_builds_the_models_with_the_files(folder, monkeypatch):
    monkeypatch.chdir(folder)
    (code,) = _blocks("python")
    scope: dict = {}
    with torch.device("meta"), warnings.catch_warnings():  # names and shapes checked only
        warnings.filterwarnings("ignore", "for .*copying from a non-meta parameter", UserWarning)
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["gvm"].cfg.pretrained_file.endswith("model.safetensors")
    assert scope["mcgf"].cfg.content_pretrained_file.endswith("model.safetensors")
