"""geoloc writes only into its own, new or empty folders and never replaces a user's file."""

from __future__ import annotations

import json
import zipfile

import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.outputs import MARKER, claim_output_dir, output_dir_problem
from geoloc_lib.core.paths import NOTEBOOKS_DIR, REPO_ROOT
from geoloc_lib.pipeline.cli import main as cli_main
from geoloc_lib.pipeline.reports_index import write_reports_index
from geoloc_lib.pipeline.runner import run_pipeline
from geoloc_lib.reporting import ReportDir
from geoloc_lib.training.recipes import preset_for


def _user_folder(tmp_path, name="mine"):
    folder = tmp_path / name
    (folder / "tables").mkdir(parents=True)
    (folder / "README.md").write_text("my notes\n")
    (folder / "tables" / "00_counts.md").write_text("my table\n")
    return folder


def test_new_and_empty_folders_are_marked_and_reused(tmp_path):
    new = claim_output_dir(tmp_path / "a" / "b", "reports folder", kind="reports")
    marker = json.loads((new / MARKER).read_text())
    assert marker["written_by"] == "geoloc" and marker["kind"] == "reports"
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output_dir(empty, "x")
    assert (empty / MARKER).is_file()
    (new / "file.txt").write_text("x")
    assert claim_output_dir(new, "x") == new.resolve()  # marked: still geoloc's
    assert output_dir_problem(new / "sub", "x") is None  # inside a marked folder


def test_the_repositorys_own_output_folders_are_geolocs():
    for folder in (REPO_ROOT / "reports", REPO_ROOT / "reports" / "smoke", REPO_ROOT / "runs"):
        assert output_dir_problem(folder, "x") is None, folder


@pytest.mark.parametrize(
    "path, words",
    [
        ("", "empty path"),
        (str(REPO_ROOT), "repository root"),
        (str(REPO_ROOT.parent), "repository root"),
        (str(NOTEBOOKS_DIR), "notebooks folder"),
    ],
)
def test_refused_even_with_force(path, words):
    with pytest.raises(ConfigError, match=words):
        claim_output_dir(path, "reports folder", force=True)


def test_a_users_folder_is_refused_unless_forced(tmp_path):
    folder = _user_folder(tmp_path)
    with pytest.raises(ConfigError, match=rf"{folder}.*no \.geoloc marker.*--force"):
        claim_output_dir(folder, "reports folder")
    assert not (folder / MARKER).exists()
    claim_output_dir(folder, "reports folder", force=True)
    assert (folder / MARKER).is_file()


def test_report_dir_and_index_never_replace_a_users_files(tmp_path):
    folder = _user_folder(tmp_path)
    with pytest.raises(ConfigError, match="no .geoloc marker"):
        ReportDir(folder)
    with pytest.raises(ConfigError, match="no .geoloc marker"):
        write_reports_index(folder, "smoke", commit="abc")
    assert (folder / "README.md").read_text() == "my notes\n"
    assert (folder / "tables" / "00_counts.md").read_text() == "my table\n"


@pytest.mark.parametrize(
    "only, override, words",
    [
        ("00", "reports_dir=..", "parameter reports_dir.*repository root"),
        ("00", "reports_dir=.", "parameter reports_dir.*repository root"),  # caller's folder
        ("00", "reports_dir=notebooks", "parameter reports_dir.*notebooks folder"),
        ("01", "runs_dir=", "parameter runs_dir.*is an empty path"),
        ("01", "runs_dir=notebooks/x", "parameter runs_dir.*notebooks folder"),
        ("00", "data_root=..", "parameter data_root.*repository root"),
    ],
)
def test_run_refuses_the_repository_root_notebooks_and_empty_paths(only, override, words):
    readme = (REPO_ROOT / "README.md").read_text()
    with pytest.raises(ConfigError, match=words):
        run_pipeline("smoke", only=[only], overrides=[override], dry_run=True, progress=False)
    with pytest.raises(ConfigError, match=words):
        run_pipeline("smoke", only=[only], overrides=[override], progress=False)
    assert (REPO_ROOT / "README.md").read_text() == readme
    assert not (REPO_ROOT / "tables").exists() and not (REPO_ROOT / "provenance.json").exists()


def test_run_refuses_a_users_reports_folder_and_out_folder(tmp_path, capsys):
    folder = _user_folder(tmp_path)
    code = cli_main(
        ["run", "--profile", "smoke", "--only", "00", "--dry-run",
         "--set", f"reports_dir={folder}"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"parameter reports_dir ({str(folder)!r}" in err and "--force" in err
    out = tmp_path / "out"
    out.mkdir()
    (out / "00_data_prep.ipynb").write_text("my own notebook")
    code = cli_main(["run", "--profile", "smoke", "--only", "00", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"--out folder {out}" in err and "--force" in err
    assert (out / "00_data_prep.ipynb").read_text() == "my own notebook"
    # --force accepts the folder (checked by a dry run: nothing executes)
    code = cli_main(
        ["run", "--profile", "smoke", "--only", "00", "--dry-run", "--force",
         "--set", f"reports_dir={folder}", "--out", str(out)]
    )  # fmt: skip
    assert code == 0


def _features(tmp_path):
    import torch

    path = tmp_path / "f.pt"
    torch.save(
        {"query_features": torch.eye(4, 12), "query_names": [f"q{i}.jpeg" for i in range(4)],
         "gallery_features": torch.eye(12, 12), "gallery_names": [f"g{i}.webp" for i in range(12)]},
        path,
    )  # fmt: skip
    listing = tmp_path / "list.txt"
    listing.write_text("q0.jpeg\nq1.jpeg\n")
    return ["submit", "--features", str(path), "--query-list", str(listing), "--quiet"]


def test_submit_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    args = _features(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert cli_main([*args, "--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert f"--out {notes} exists and is not an answer archive" in err and "--force" in err
    assert notes.read_text() == "my notes"
    answer = tmp_path / "answer.zip"
    assert cli_main([*args, "--out", str(answer)]) == 0
    assert cli_main([*args, "--out", str(answer)]) == 0  # its own answer: replaced
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("photos.txt", "x")
    assert cli_main([*args, "--out", str(other)]) == 2
    assert cli_main([*args, "--out", str(notes), "--force"]) == 0
    assert zipfile.is_zipfile(notes)


def test_local_challenge_never_writes_into_a_users_folder(tmp_path):
    from geoloc_lib.eval.local_challenge import write_local_challenge

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "query_drone_name.txt").write_text("my list\n")
    with pytest.raises(ConfigError, match="local challenge folder .* no .geoloc marker"):
        write_local_challenge(None, None, None, folder)  # refused before any work
    assert (folder / "query_drone_name.txt").read_text() == "my list\n"


# --------------------------------------------------------------------------- geoloc data weather


def _weather(root, out, *extra):
    return ["data", "weather", "--root", str(root), "--out", str(out), "--no-progress", *extra]


def test_data_weather_refuses_a_users_folder_unless_forced(tmp_path, capsys):
    from layouts import make_university1652

    root = make_university1652(tmp_path / "u", train_ids=(1,), test_ids=(10,), views=1)
    folder = _user_folder(tmp_path)
    assert cli_main(_weather(root, folder, "--condition", "fog")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(folder) in err and "--force" in err
    assert not (folder / MARKER).exists() and not (folder / "weather.csv").exists()
    # --force: written beside the user's files, which are kept
    assert cli_main(_weather(root, folder, "--condition", "fog", "--force")) == 0
    assert (folder / "weather.csv").is_file() and (folder / MARKER).is_file()
    assert (folder / "README.md").read_text() == "my notes\n"
    # a weather set there already: never replaced, even with --force
    before = (folder / "weather.csv").read_text()
    assert cli_main(_weather(root, folder, "--condition", "rain", "--force")) == 2
    assert "weather.csv" in capsys.readouterr().err
    assert (folder / "weather.csv").read_text() == before


def test_data_weather_never_replaces_a_users_file_even_forced(tmp_path, capsys):
    from layouts import make_university1652

    root = make_university1652(tmp_path / "u", train_ids=(1,), test_ids=(10,), views=1)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "weather.csv").write_text("my table\n")
    assert cli_main(_weather(root, folder, "--condition", "fog", "--force")) == 2
    assert "weather.csv" in capsys.readouterr().err
    assert (folder / "weather.csv").read_text() == "my table\n"
    assert not (folder / "test").exists()
    # a new folder is marked as geoloc's
    new = tmp_path / "new" / "fog"
    assert cli_main(_weather(root, new, "--condition", "fog")) == 0
    assert (new / MARKER).is_file() and (new / "weather.csv").is_file()


@pytest.mark.parametrize(
    "path, words",
    [("", "empty path"), (str(REPO_ROOT), "repository root"), (str(NOTEBOOKS_DIR), "notebooks")],
)
def test_data_weather_refuses_the_repository_root_notebooks_and_empty_paths(
    tmp_path, capsys, path, words
):
    assert cli_main(_weather(tmp_path / "no_dataset", path, "--force")) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- bench --csv / --out


@pytest.mark.parametrize(
    "command",
    [
        ["bench", "fit", "--root", "no_such_root"],
        ["bench", "data", "--out", "SLICE"],
    ],
)
def test_bench_csv_never_replaces_a_file_it_did_not_write(tmp_path, capsys, command):
    command = [str(tmp_path / "slice") if a == "SLICE" else a for a in command]
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n1,2\n")
    assert cli_main([*command, "--csv", str(notes)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"--csv {notes}" in err and "--force" in err
    assert notes.read_text() == "a,b\n1,2\n"
    assert not (tmp_path / "slice").exists()  # refused before any work


def test_a_bench_csv_is_recognised_by_its_header_and_its_folder_created(tmp_path):
    from geoloc_lib.bench.data import CSV_COLUMNS as DATA_COLUMNS
    from geoloc_lib.bench.fit import CSV_COLUMNS as FIT_COLUMNS
    from geoloc_lib.core.outputs import claim_output_file, is_table_csv

    for columns in (FIT_COLUMNS, DATA_COLUMNS):
        own = tmp_path / "own.csv"
        own.write_text(",".join((*columns, "extra")) + "\n1\n")
        assert is_table_csv(own, columns)
        assert claim_output_file(own, "--csv", columns=columns) == own.resolve()
        other = tmp_path / "other.csv"
        other.write_text(",".join(reversed(columns)) + "\n")
        assert not is_table_csv(other, columns)
        with pytest.raises(ConfigError, match="--force"):
            claim_output_file(other, "--csv", columns=columns)
        assert claim_output_file(other, "--csv", columns=columns, force=True) == other.resolve()
    nested = claim_output_file(tmp_path / "a" / "b" / "t.csv", "--csv", columns=FIT_COLUMNS)
    assert nested.parent.is_dir() and not nested.exists()
    with pytest.raises(ConfigError, match="is a folder"):
        claim_output_file(tmp_path, "--csv", columns=FIT_COLUMNS, force=True)
    with pytest.raises(ConfigError, match="empty path"):
        claim_output_file("", "--csv", columns=FIT_COLUMNS, force=True)
    with pytest.raises(ConfigError, match="notebooks folder"):
        claim_output_file(NOTEBOOKS_DIR / "t.csv", "--csv", columns=FIT_COLUMNS, force=True)


def test_bench_gpu_out_refuses_a_users_folder(tmp_path, capsys):
    folder = _user_folder(tmp_path)
    assert cli_main(["bench", "gpu", "--allow-cpu", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert not (folder / "gpu_bench.json").exists()


# --------------------------------------------------------------------------- run folders


def test_run_folders_refuse_a_users_runs_dir(tmp_path):
    from geoloc_lib.analysis import ablations as A
    from geoloc_lib.training import runs

    folder = _user_folder(tmp_path)
    variant = A.Variant("fast", "mcgf_matching_only", {"run": {"val_queries": 0}}, "fast")
    calls = [
        lambda: runs.train_run("mcgf_matching_only", None, folder, preset="smoke"),
        lambda: runs.train_runs(["mcgf_matching_only"], None, folder, preset="smoke"),
        lambda: runs.ensure_run(
            preset_for("mcgf_matching_only", "smoke"), None, folder, name="x", seed=0
        ),
        lambda: A.ensure_run(variant, None, folder, preset="smoke", epochs=1, seed=0),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=rf"runs_dir {folder} .*no \.geoloc marker") as err:
            call()
        assert len(str(err.value).splitlines()) == 1 and ".geoloc file" in str(err.value)
    assert sorted(p.name for p in folder.rglob("*")) == ["00_counts.md", "README.md", "tables"]


def test_a_new_runs_dir_is_marked(tmp_path):
    from geoloc_lib.training.runs import claim_runs_dir

    new = claim_runs_dir(tmp_path / "runs" / "smoke")
    assert json.loads((new / MARKER).read_text())["kind"] == "runs"
    assert claim_runs_dir(new) == new.resolve()
    for bad, words in (("", "empty path"), (NOTEBOOKS_DIR, "notebooks folder")):
        with pytest.raises(ConfigError, match=words):
            claim_runs_dir(bad)


def test_features_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes")
    args = ["features", str(tmp_path / "no_run"), "--root", str(tmp_path), "--out", str(notes)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {notes} exists and is not a feature file" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and notes.read_text() == "my notes"
    own = tmp_path / "own.pt"  # a feature file as geoloc writes it: accepted (the run is missing)
    _features(tmp_path)
    (tmp_path / "f.pt").rename(own)
    assert cli_main([*args[:-1], str(own)]) == 2
    assert "exists and is not a feature file" not in capsys.readouterr().err
