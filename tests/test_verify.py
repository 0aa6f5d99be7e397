"""`geoloc data verify` against data_manifest.yaml, and clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from layouts import make_cvact, make_university1652
from PIL import Image

from geoloc_lib.core.errors import ConfigError, ImageReadError
from geoloc_lib.data.images import read_image
from geoloc_lib.data.verify import load_manifest, verify_dataset
from geoloc_lib.pipeline.cli import main as cli_main


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
            "geoloc_lib.pipeline.cli",
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
    with pytest.raises(SystemExit) as exit_:
        cli_main(["frobnicate"])
    assert exit_.value.code == 2
    valid = "valid commands: bench, data, evaluate, features, notebooks, readme, run, submit"
    assert valid in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["data", "check"])
    assert exit_.value.code == 2 and "valid: verify" in capsys.readouterr().err
    for argv in ([], ["data"]):
        with pytest.raises(SystemExit) as exit_:
            cli_main(argv)
        assert exit_.value.code == 2 and "usage: geoloc" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--help"])
    assert exit_.value.code == 0


def test_cli_user_errors_exit_2_in_a_subprocess():
    for argv in (["frobnicate"], ["data", "check"], ["run", "--profile", "smoke", "--only", ""]):
        proc = subprocess.run(
            [sys.executable, "-m", "geoloc_lib.pipeline.cli", *argv], capture_output=True, text=True
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _cvusa_manifest(root) -> dict:
    from pathlib import Path

    n_train = sum(1 for line in Path(root, "splits/train-19zl.csv").read_text().splitlines())
    n_val = sum(1 for line in Path(root, "splits/val-19zl.csv").read_text().splitlines())
    return {
        "mini_cvusa": {
            "loader": "geoloc_lib.data.street.load_cvusa",
            "layout": [
                {"path": "splits/train-19zl.csv", "kind": "file", "lines": n_train},
                {"path": "splits/val-19zl.csv", "kind": "file", "lines": n_val},
                {"path": "bingmap/19", "kind": "dir", "glob": "*.jpg", "files": 6},
                {"path": "streetview/panos", "kind": "dir", "glob": "*.jpg", "files": 6},
            ],
        }
    }


def test_verify_opens_every_image_and_names_each_bad_one(tmp_path):
    from layouts import make_cvusa

    root = make_cvusa(tmp_path / "cvusa")
    manifest = _cvusa_manifest(root)
    report = verify_dataset("mini_cvusa", root, manifest)
    assert report.ok and report.images == 12, report.problems
    assert "CVUSA train split parsed" in report.checked
    (root / "bingmap/19/0000001.jpg").write_bytes(b"")
    truncated = root / "bingmap/19/0000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    (root / "streetview/panos/0000003.jpg").write_text("this is text, not a JPEG")
    report = verify_dataset("mini_cvusa", root, manifest)
    text = "\n".join(report.problems)
    assert "0000001.jpg: empty file (0 bytes)" in text
    assert "0000002.jpg: truncated JPEG (no end-of-image marker)" in text
    assert "0000003.jpg: cannot be read as an image" in text
    assert report.bad_images == 3
    full = verify_dataset("mini_cvusa", root, manifest, full=True)
    assert full.bad_images == 3


def test_verify_parses_split_files(tmp_path):
    from layouts import make_cvusa

    root = make_cvusa(tmp_path / "cvusa")
    manifest = _cvusa_manifest(root)
    csv_path = root / "splits/train-19zl.csv"
    lines = csv_path.read_text().splitlines()
    a, g, ann = lines[0].split(",")
    lines[0] = f"{g},{a},{ann}"  # columns swapped: the line count still matches
    csv_path.write_text("\n".join(lines) + "\n")
    report = verify_dataset("mini_cvusa", root, manifest)
    assert any("train-19zl.csv:1: the aerial and panorama columns are swapped" in p for p in report.problems)  # fmt: skip

    croot = make_cvact(tmp_path / "c")
    (croot / "ACT_data.mat").write_bytes(bytes(range(256)) * 8)
    cmanifest = {
        "mini_cvact": {
            "loader": "geoloc_lib.data.street.load_cvact",
            "layout": [{"path": "ACT_data.mat", "kind": "file"}],
        }
    }
    report = verify_dataset("mini_cvact", croot, cmanifest)
    assert any("cannot read" in p and "ACT_data.mat" in p for p in report.problems)


def test_cli_verify_full_flag_and_rate(tmp_path, capsys):
    import yaml
    from layouts import make_cvusa

    root = make_cvusa(tmp_path / "cvusa")
    mpath = tmp_path / "manifest.yaml"
    mpath.write_text(yaml.safe_dump(_cvusa_manifest(root)))
    base = ["data", "verify", "mini_cvusa", "--root", str(root), "--manifest", str(mpath)]
    assert cli_main(base) == 0
    assert "12 images opened (header and end checked)" in capsys.readouterr().out
    assert cli_main([*base, "--full"]) == 0
    assert "12 images opened (decoded)" in capsys.readouterr().out
    (root / "streetview/panos/0000004.jpg").write_bytes(b"")
    assert cli_main(base) == 2
    assert "0000004.jpg: empty file" in capsys.readouterr().err


def test_cli_verify_malformed_manifest_is_one_line(tmp_path, capsys):
    bad = tmp_path / "manifest.yaml"
    bad.write_text("cvusa: [unclosed\n")
    assert (
        cli_main(["data", "verify", "cvusa", "--root", str(tmp_path), "--manifest", str(bad)]) == 2
    )
    err = capsys.readouterr().err
    assert f"manifest {bad} is not valid YAML" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "-1"], "--steps: expected an integer >= 1, got -1"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
        (["--models", ","], "--models: name at least one model"),
        (["--threads", "-2"], "--threads: expected an integer >= 1, got -2"),
    ],
)
def test_cli_bench_train_checks_its_numbers(argv, message, capsys):
    # Nothing is built or timed: the arguments are refused first.
    assert cli_main(["bench", "train", *argv]) == 2
    assert message in capsys.readouterr().err
