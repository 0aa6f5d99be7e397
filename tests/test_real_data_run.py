"""One dataset at a time, from a folder outside the repository with relative paths: GeoSynth
written in the real layouts, run by ``geoloc run --profile smoke`` as ``dataset=real`` with the
drone task only (University-1652, and a University160k-WX test set answered by notebook 02), then
the street task only (CVACT); ``geoloc evaluate``, ``features`` and ``submit`` on the trained runs
give the notebooks' numbers (docs/real-data.md runs the same commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from layouts import make_university160k_wx_from

from geoloc_lib.pipeline.cli import main as geoloc

DRONE_ONLY = ("--set", "dataset=real", "--set", "university_root=data/gs/University-1652",
              "--set", "street_root=", "--set", "tasks=[drone]", "--set", "runs_dir=runs/drone",
              "--set", "reports_dir=reports/drone")  # fmt: skip
STREET_ONLY = ("--set", "dataset=real", "--set", "street_root=data/gs/CVACT",
               "--set", "university_root=", "--set", "tasks=[street]",
               "--set", "runs_dir=runs/street", "--set", "reports_dir=reports/street")  # fmt: skip


def _geoloc(*argv: str) -> int:
    try:
        return geoloc(list(argv))
    except SystemExit as stop:
        return int(stop.code)


def _stream_text(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join(
        "".join(out.get("text", ""))
        for cell in cells
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def researcher(tmp_path_factory):
    """A working folder outside the repository holding GeoSynth (smoke) in the real layouts and
    a University160k-WX-layout test set made from its University-1652 test split."""
    folder = tmp_path_factory.mktemp("researcher")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert _geoloc("data", "generate", "geosynth", "--profile", "smoke", "--out", "data/gs",
                       "--quiet") == 0  # fmt: skip
        truth = make_university160k_wx_from(Path("data/gs/University-1652"), Path("data/WX"))
    return folder, truth


def test_the_dry_run_names_the_setting_of_a_bad_challenge_root(researcher, monkeypatch, capsys):
    monkeypatch.chdir(researcher[0])
    bad = _geoloc("run", "--profile", "smoke", "--only", "02", *DRONE_ONLY,
                  "--set", "02.wx_root=data/University160k-WX", "--dry-run")  # fmt: skip
    err = capsys.readouterr().err
    assert bad == 2 and "--set wx_root=PATH: folder" in err and "University160k-WX" in err
    wrong = _geoloc("run", "--profile", "smoke", "--only", "02", *DRONE_ONLY,
                    "--set", "02.wx_root=data/gs/University-1652", "--dry-run")  # fmt: skip
    err = capsys.readouterr().err
    assert wrong == 2 and "lacks query_drone_160k_wx_24" in err
    good = _geoloc("run", "--profile", "smoke", "--only", "02", *DRONE_ONLY,
                   "--set", "02.wx_root=data/WX", "--dry-run")  # fmt: skip
    assert good == 0, capsys.readouterr().err
    assert "wx_root" in capsys.readouterr().out


def test_drone_only_run_evaluate_and_challenge_answer(researcher, monkeypatch, capsys):
    import torch

    from geoloc_lib.eval import evaluate_university1652, load_feature_file
    from geoloc_lib.eval.local_challenge import read_answer, score_answer
    from geoloc_lib.eval.submit import read_query_list, stem

    folder, truth = researcher
    monkeypatch.chdir(folder)
    status = _geoloc("run", "--profile", "smoke", "--only", "01", "02", "03", *DRONE_ONLY,
                     "--set", "02.wx_root=data/WX", "--no-progress")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    reports = Path("reports/drone")
    tables = {p.stem for p in (reports / "tables").glob("*.csv")}
    assert {"01_training", "02_mcgf_table1_mixed", "03_mcgf_weather_matches"} <= tables
    assert not [t for t in tables if "street" in t or "geoviewmatch" in t]
    assert sorted(p.name for p in Path("runs/drone").iterdir() if p.is_dir()) == [
        "mcgf", "mcgf_matching_only"
    ]  # fmt: skip
    for nb in ("01_train", "02_evaluate", "03_heatmaps"):
        assert "street task skipped: tasks=['drone']" in _stream_text(
            reports / "executed" / f"{nb}.ipynb"
        ), nb
    run_info = json.loads(Path("runs/drone/mcgf/run.json").read_text())
    assert str(folder / "data/gs/University-1652") in json.dumps(run_info["data"])

    # geoloc evaluate on the trained run: 02's mixed-weather table, the same numbers
    status = _geoloc("evaluate", "runs/drone/mcgf", "--dataset", "university1652",
                     "--root", "data/gs/University-1652", "--conditions", "mixed",
                     "--device", "cpu", "--out", "eval/mcgf", "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    ours = pd.read_csv("eval/mcgf/mcgf_table1_mixed.csv").set_index("method").loc["mcgf"]
    notebook = pd.read_csv(reports / "tables/02_mcgf_table1_mixed.csv").set_index("method")
    for metric in ("R@1", "R@5", "R@10", "AP"):
        assert ours[metric] == pytest.approx(notebook.loc["mcgf", metric], abs=1e-6), metric

    # the challenge answer: geoloc features -> geoloc submit, as notebook 02 wrote it
    status = _geoloc("features", "runs/drone/mcgf", "--root", "data/WX", "--out", "features.pt",
                     "--device", "cpu", "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    status = _geoloc("submit", "--features", "features.pt",
                     "--query-list", "data/WX/query_drone_name.txt", "--out", "answer.zip",
                     "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    cli = load_feature_file("features.pt")
    by_notebook = load_feature_file(reports / "submission/university160k_wx/features.pt")
    assert (
        by_notebook.query_names
        == cli.query_names
        == read_query_list("data/WX/query_drone_name.txt")
    )
    assert torch.allclose(by_notebook.query_features, cli.query_features, atol=1e-5)
    assert torch.allclose(by_notebook.gallery_features, cli.gallery_features, atol=1e-5)
    query_list = read_query_list("data/WX/query_drone_name.txt")
    metrics = evaluate_university1652(
        cli.query_features,
        cli.gallery_features,
        [int(truth[stem(n)]) for n in cli.query_names],
        [int(stem(n)) for n in cli.gallery_names],
        progress=False,
    )
    scored = score_answer(read_answer("answer.zip"), query_list, truth)
    for k in ("R@1", "R@5", "R@10"):
        assert scored[k] == pytest.approx(metrics[k], abs=1e-9), k
    answered = read_answer(reports / "submission/university160k_wx/answer.zip")
    assert len(answered) == len(query_list) and all(len(row) == 10 for row in answered)


def test_street_only_run_and_evaluate(researcher, monkeypatch, capsys):
    folder, _ = researcher
    monkeypatch.chdir(folder)
    status = _geoloc("run", "--profile", "smoke", "--only", "01", "02", "03", *STREET_ONLY,
                     "--no-progress")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    reports = Path("reports/street")
    tables = {p.stem for p in (reports / "tables").glob("*.csv")}
    assert {"01_training", "02_street_recall", "03_geoviewmatch_heatmap_stats"} <= tables
    assert not [t for t in tables if "mcgf" in t or "weather" in t]
    assert sorted(p.name for p in Path("runs/street").iterdir() if p.is_dir()) == [
        "geoviewmatch", "infonce_baseline"
    ]  # fmt: skip
    for nb in ("01_train", "02_evaluate", "03_heatmaps"):
        assert "drone task skipped: tasks=['street']" in _stream_text(
            reports / "executed" / f"{nb}.ipynb"
        ), nb
    status = _geoloc("evaluate", "runs/street/geoviewmatch", "--dataset", "cvact",
                     "--root", "data/gs/CVACT", "--device", "cpu", "--out", "eval/gvm",
                     "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    ours = pd.read_csv("eval/gvm/street_recall.csv").set_index("method").loc["geoviewmatch"]
    notebook = pd.read_csv(reports / "tables/02_street_recall.csv").set_index("method")
    for metric in ("R@1", "R@5", "R@10", "R@1%"):
        assert ours[metric] == pytest.approx(notebook.loc["geoviewmatch", metric], abs=1e-6)
