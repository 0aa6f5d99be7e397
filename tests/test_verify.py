"""`geoloc data verify` against data_manifest.yaml, and clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from layouts import make_cvact, make_university1652
from PIL import Image

from geoloc_lib.cli import main as cli_main
from geoloc_lib.data.images import read_image
from geoloc_lib.data.verify import load_manifest, verify_dataset
from geoloc_lib.errors import ConfigError, ImageReadError


def test_manifest_entries_are_complete():
    manifest = load_manifest()
    for name in ("university1652", "university160k_wx", "cvusa", "cvact"):
        entry = manifest[name]
        for key in ("title", "citation", "terms", "obtain", "loader", "layout", "archives"):
            assert key in entry, f"{name} lacks {key}"
        assert "no redistribution" in entry["terms"].lower()
        module, func = entry["loader"].rsplit(".", 1)
        assert callable(getattr(__import__(module, fromlist=[func]), func))


def test_nonexistent_root_exits_nonzero_with_obtain_message():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoloc_lib.cli",
            "data",
            "verify",
            "university1652",
            "--root",
            "/nonexistent",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "How to obtain" in proc.stderr and "Request the dataset" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_counts_are_checked(tmp_path):
    root = make_university1652(tmp_path / "u")
    report = verify_dataset("university1652", root)
    assert not report.ok
    assert any("train/drone: 3 location folders, expected 701" in p for p in report.problems)
    assert any("missing folder" in p and "train/street" in p for p in report.problems)


def test_layout_passes_with_matching_manifest(tmp_path):
    root = make_cvact(tmp_path / "c")
    manifest = {
        "mini": {
            "layout": [
                {"path": "ACT_data.mat", "kind": "file"},
                {
                    "path": "ANU_data_small/streetview",
                    "kind": "dir",
                    "glob": "*_grdView.jpg",
                    "files": 5,
                },
            ]
        }
    }
    assert verify_dataset("mini", root, manifest).ok


def test_unknown_dataset_lists_choices(capsys):
    with pytest.raises(ConfigError, match="valid choices: .*cvact"):
        verify_dataset("cvusaa", "/tmp")
    assert cli_main(["data", "verify", "cvusaa", "--root", "/tmp"]) == 2
    assert "valid choices" in capsys.readouterr().err


def test_corrupt_image_names_the_file(tmp_path):
    bad = tmp_path / "0001.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageReadError, match="0001.jpg"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="not found: .*missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    good = tmp_path / "ok.png"
    Image.new("L", (4, 3)).save(good)
    assert read_image(good, size=(8, 6)).size == (8, 6)
    assert read_image(good).mode == "RGB"


def test_cli_unknown_command_lists_valid(capsys):
    with pytest.raises(SystemExit, match="valid commands: .*bench.*data.*run"):
        cli_main(["frobnicate"])
    with pytest.raises(SystemExit, match="valid: verify"):
        cli_main(["data", "check"])
