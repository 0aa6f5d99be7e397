"""The ``geoloc`` command's conventions: help without torch, defaults and names in every help,
one spelling for lists, ``--version``."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

import geoloc_lib
from geoloc_lib.pipeline import arguments as A
from geoloc_lib.pipeline.cli import COMMANDS, main
from geoloc_lib.pipeline.profiles import load_profiles

ALL_HELP = [["--help"], *([*words, "--help"] for words in COMMANDS)]


def _parser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoloc " + " ".join(words), formatter_class=A.HelpFormatter
    )
    COMMANDS[words].arguments(parser)
    return parser


def _help(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_every_help_answers_without_importing_torch():
    # A fresh interpreter: this test process has torch loaded already.
    script = (
        "import json, sys\n"
        "from geoloc_lib.pipeline.cli import main\n"
        "seen = {}\n"
        f"for argv in {ALL_HELP!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        code = exit_.code\n"
        "    seen[' '.join(argv)] = [code, 'torch' in sys.modules]\n"
        "print(json.dumps(seen))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen) == len(ALL_HELP)
    for argv, (code, torch_loaded) in seen.items():
        assert code == 0, argv
        assert not torch_loaded, f"geoloc {argv} imported torch"


def test_version(capsys):
    assert _help(capsys, ["--version"]).strip() == f"geoloc {geoloc_lib.__version__}"
    assert "--version" in _help(capsys, ["--help"])


def test_run_help_lists_every_profile_with_its_description(capsys):
    text = _help(capsys, ["run", "--help"])
    for name, entry in load_profiles().items():
        description = " ".join(entry["description"].split())
        assert f"  {name} " in text and description[:40] in " ".join(text.split()), name


def test_data_verify_help_lists_every_manifest_entry(capsys):
    import yaml

    from geoloc_lib.core.paths import MANIFEST_FILE

    text = _help(capsys, ["data", "verify", "--help"])
    manifest = yaml.safe_load(MANIFEST_FILE.read_text(encoding="utf-8"))
    assert "university160k_wx" in manifest
    for name in manifest:
        assert f"  {name} " in text, name


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_every_option_help_states_its_default(words):
    parser = _parser(words)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.required or isinstance(action, argparse._HelpAction):
            continue
        if action.default is False:  # an on/off flag: off unless given
            continue
        text = formatter._get_help_string(action)
        assert "default" in text, f"geoloc {' '.join(words)} {action.option_strings[0]}: {text!r}"


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_list_options_take_words_and_commas_alike(words):
    parser = _parser(words)
    lists = [a for a in parser._actions if isinstance(a, A.ListAction)]
    for action in parser._actions:
        # Every list is a ListAction, none a comma-separated string option.
        assert "comma-separated" not in (action.help or ""), action.option_strings
    for action in lists:
        flag = action.option_strings[0]
        values = list(action.valid or ["1", "2"])[:2]
        required = _required_argv(parser)
        spaced = parser.parse_args([*required, flag, *values])
        commas = parser.parse_args([*required, flag, ",".join(values)])
        expected = [action.item(v) for v in values]
        assert getattr(spaced, action.dest) == getattr(commas, action.dest) == expected, flag


def _required_argv(parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings:
            argv.append(action.choices[0] if action.choices else "x")
        elif action.required:
            argv += [action.option_strings[0], action.choices[0] if action.choices else "x"]
    return argv  # the list option goes after these, so it cannot swallow a positional


def test_list_flags_of_the_commands_that_took_commas():
    cases = {
        ("run",): ["--profile", "smoke", "--only"],
        ("notebooks", "record"): ["--only"],
        ("bench", "train"): ["--models"],
        ("bench", "gpu"): ["--sections"],
    }
    for words, argv in cases.items():
        parser = _parser(words)
        values = ["eval", "train"] if words == ("bench", "gpu") else ["00", "02"]
        assert parser.parse_args([*argv, *values]) == parser.parse_args([*argv, ",".join(values)])
    parser = _parser(("bench", "eval"))
    assert parser.parse_args(["--nprobe", "8", "32"]).nprobe == [8, 32]
    assert parser.parse_args(["--nprobe", "8,32"]).nprobe == [8, 32]
    assert parser.parse_args([]).nprobe == [8, 32, 128]
    parser = _parser(("bench", "data"))
    assert parser.parse_args(["--out", "x", "--loader-workers", "0", "2"]).loader_workers == [0, 2]


def test_a_bad_list_value_is_a_usage_error(capsys):
    for argv in (
        ["bench", "gpu", "--sections", "inference,nope"],
        ["bench", "eval", "--nprobe", "8", "x"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "nope" in err or "int" in err


@pytest.mark.parametrize("name", sorted(A.MIRRORED))
def test_mirrored_values_equal_their_source(name):
    module, attribute = A.MIRRORED[name].split(":")
    source = getattr(importlib.import_module(module), attribute)
    copy = getattr(A, name)
    assert (tuple(copy) if isinstance(copy, (list, tuple)) else copy) == (
        tuple(source) if isinstance(source, (list, tuple)) else source
    )


def test_mirrored_names_equal_their_registries():
    from geoloc_lib.data.geosynth.profiles import PROFILES
    from geoloc_lib.training.runs import TASKS

    assert A.TRAINABLE_MODELS == tuple(TASKS)
    assert A.GEOSYNTH_PROFILES == tuple(p for p in PROFILES if p != "tiny")
