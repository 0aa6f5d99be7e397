"""The real-data path from a folder outside the repository, with relative paths: train a run,
``geoloc evaluate`` it, ``geoloc features`` -> ``geoloc submit`` -> ``answer.zip``, scored locally
exactly as the evaluation of the same features (docs/real-data.md runs the same commands)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from layouts import make_cvact, make_university160k_wx_from, make_university1652

from geoloc_lib.data.sources import DataSources
from geoloc_lib.pipeline.cli import main as geoloc
from geoloc_lib.training.recipes import preset_for
from geoloc_lib.training.runs import train_run


def _geoloc(*argv: str) -> int:
    try:
        return geoloc(list(argv))
    except SystemExit as stop:
        return int(stop.code)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working folder outside the repository with a tiny dataset and a 1-epoch MCGF run."""
    folder = tmp_path_factory.mktemp("researcher")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        uni = make_university1652(
            Path("data/University-1652"), train_ids=range(1, 9), test_ids=(10, 11, 12, 13),
            distractors=(20, 21, 22, 23, 24, 25), views=2,
        )  # fmt: skip
        sources = DataSources("real", uni, None, "cvact")
        train_run("mcgf", sources, Path("runs"), preset="smoke", epochs=1, progress=False,
                  overrides={"run": {"val_queries": 2, "max_steps_per_epoch": 2}})  # fmt: skip
    return folder


def test_evaluate_writes_notebook_02s_tables(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    status = _geoloc("evaluate", "runs/mcgf", "--dataset", "university1652",
                     "--root", "data/University-1652", "--conditions", "normal", "fog", "mixed",
                     "--device", "cpu", "--out", "eval/mcgf", "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    out = Path("eval/mcgf")
    weather = pd.read_csv(out / "weather_drone_to_satellite.csv")
    for group in ("normal", "fog", "mixed", "mean"):
        for metric in ("R@1", "R@5", "R@10", "AP"):
            assert f"{group} {metric}" in weather.columns and f"{group} {metric} lo" in weather
    assert weather["method"].tolist() == ["mcgf"]
    table1 = pd.read_csv(out / "mcgf_table1_mixed.csv")
    assert list(table1.columns[:5]) == ["method", "R@1", "R@5", "R@10", "AP"]
    long = pd.read_csv(out / "results_long.csv")
    assert {"n_queries", "n_skipped", "n_gallery"} <= set(long.columns)
    normal = long[long["condition"] == "normal"].iloc[0]
    assert (normal["n_queries"], normal["n_gallery"]) == (8, 10)  # 4 locations x 2 views; 10 tiles
    curves = pd.read_csv(out / "recall_at_k_drone_to_satellite.csv")
    assert list(curves.columns) == ["condition", "k", "recall", "lo", "hi", "n_queries"]
    for name in ("weather_drone_to_satellite", "mcgf_table1_mixed", "results_long"):
        assert (out / f"{name}.md").read_text().startswith("| method")


def test_evaluate_refuses_a_dataset_of_the_other_task(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    make_cvact(Path("data/CVACT"))
    assert _geoloc("evaluate", "runs/mcgf", "--dataset", "cvact", "--root", "data/CVACT") == 2
    assert "evaluate it on university1652" in capsys.readouterr().err
    bad = _geoloc("evaluate", "runs/mcgf", "--dataset", "university1652", "--root", "data/U",
                  "--conditions", "hail")  # fmt: skip
    assert bad == 2 and "invalid choice: 'hail'" in capsys.readouterr().err
    assert _geoloc("evaluate", "runs/none", "--dataset", "university1652", "--root", "x") == 2


def test_features_submit_and_the_local_score_round_trip(workdir, monkeypatch, capsys):
    import torch

    from geoloc_lib.eval import evaluate_university1652, load_feature_file
    from geoloc_lib.eval.local_challenge import read_answer, score_answer
    from geoloc_lib.eval.submit import read_query_list, stem

    monkeypatch.chdir(workdir)
    truth = make_university160k_wx_from(Path("data/University-1652"), Path("data/WX"))
    status = _geoloc("features", "runs/mcgf", "--root", "data/WX", "--out", "feats/features.pt",
                     "--device", "cpu", "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert "next: geoloc submit" in capsys.readouterr().out
    status = _geoloc("submit", "--features", "feats/features.pt",
                     "--query-list", "data/WX/query_drone_name.txt", "--out", "answer.zip",
                     "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    query_list = read_query_list("data/WX/query_drone_name.txt")
    scored = score_answer(read_answer("answer.zip"), query_list, truth)
    # the evaluation of the same features, with the truth as labels
    feats = load_feature_file("feats/features.pt")
    assert len(feats.query_names) == 8 and len(feats.gallery_names) == 10
    q_labels = [int(truth[stem(n)]) for n in feats.query_names]
    g_labels = [int(stem(n)) for n in feats.gallery_names]
    metrics = evaluate_university1652(
        feats.query_features, feats.gallery_features, q_labels, g_labels, progress=False
    )
    for k in ("R@1", "R@5", "R@10"):
        assert scored[k] == pytest.approx(metrics[k], abs=1e-9), k
    # the features are the run's own embeddings of those images
    assert torch.isfinite(feats.query_features).all()
    assert feats.query_names == query_list  # in the list's order, under their file names


def test_evaluate_a_street_checkpoint_on_cvact(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(tmp_path)
    make_cvact(Path("data/CVACT"))
    net = preset_for("infonce_baseline", "smoke").build(pretrained=False)
    Path("weights").mkdir()
    torch.save({"model": net.state_dict(), "model_name": "infonce_baseline",
                "model_config": net.config_dict()}, "weights/street.pt")  # fmt: skip
    status = _geoloc("evaluate", "weights/street.pt", "--dataset", "cvact",
                     "--root", "data/CVACT", "--device", "cpu", "--quiet")  # fmt: skip
    assert status == 0, capsys.readouterr().err
    out = Path("evaluation/street")  # the default: evaluation/<checkpoint name>
    recall = pd.read_csv(out / "street_recall.csv")
    assert list(recall.columns[:5]) == ["method", "R@1", "R@5", "R@10", "R@1%"]
    meters = pd.read_csv(out / "street_meter_level.csv")
    assert list(meters.columns[:5]) == ["method", "0 m", "36 m", "72 m", "144 m"]
    assert (out / "street_topk_distance.md").is_file() and (
        out / "street_recall_test.csv"
    ).is_file()
    limited = _geoloc("evaluate", "weights/street.pt", "--dataset", "cvact", "--root", "data/CVACT",
                      "--max-queries", "4")  # fmt: skip
    assert limited == 2 and "--max-queries subsamples drone queries" in capsys.readouterr().err
