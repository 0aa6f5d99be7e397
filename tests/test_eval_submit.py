"""Challenge submission: answer.txt format, list order, feature files, CLI errors."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.eval import load_feature_file, rank_gallery, write_submission
from geoloc_lib.pipeline.cli import main as cli_main


def read_answer(path) -> list[list[str]]:
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["answer.txt"]
        text = archive.read("answer.txt").decode()
    assert text.endswith("\n")
    return [line.split("\t") for line in text.splitlines()]


def test_write_submission_orders_by_list_and_strips_extensions(tmp_path):
    top = [["g1.webp", "g2.webp"], ["dir/g3.webp", "g1.webp"], ["g2", "g3"]]
    out = write_submission(
        top, ["a.jpeg", "b.jpeg", "c.jpeg"], tmp_path / "answer.zip", query_list=["c", "a", "b"]
    )
    assert read_answer(out) == [["g2", "g3"], ["g1", "g2"], ["g3", "g1"]]
    # Same content gives a byte-identical archive (fixed timestamp).
    again = write_submission(
        top, ["a", "b", "c"], tmp_path / "again.zip", query_list=["c", "a", "b"]
    )
    assert out.read_bytes() == again.read_bytes()


def test_write_submission_errors(tmp_path):
    with pytest.raises(DatasetError, match="1 of 2 queries.*zzz.jpeg"):
        write_submission([["g"]], ["a.jpeg"], tmp_path / "x.zip", query_list=["a.jpeg", "zzz.jpeg"])
    with pytest.raises(DatasetError, match="same name 'a'"):
        write_submission(
            [["g"], ["h"]], ["q/a.jpeg", "a.png"], tmp_path / "x.zip", query_list=["a"]
        )
    with pytest.raises(ValueError, match="2 top-k rows for 1 queries"):
        write_submission([["g"], ["h"]], ["a"], tmp_path / "x.zip")
    with pytest.raises(ValueError, match="tab or newline"):
        write_submission([["g\tx"]], ["a"], tmp_path / "x.zip")


def make_features(tmp_path, suffix: str):
    gen = torch.Generator().manual_seed(0)
    qf = torch.nn.functional.normalize(torch.randn(12, 8, generator=gen), dim=1)
    gf = torch.nn.functional.normalize(torch.randn(30, 8, generator=gen), dim=1)
    q_names = [f"query_{i:02d}.jpeg" for i in range(12)]
    g_names = [f"sat_{i:03d}.webp" for i in range(30)]
    path = tmp_path / f"features{suffix}"
    if suffix == ".pt":
        torch.save(
            {"query_features": qf, "query_names": q_names, "gallery_features": gf,
             "gallery_names": g_names},
            path,
        )  # fmt: skip
    else:
        np.savez(
            path, query_features=qf.numpy(), query_names=np.array(q_names),
            gallery_features=gf.numpy(), gallery_names=np.array(g_names),
        )  # fmt: skip
    return path, qf, gf, q_names, g_names


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_cli_submit_writes_top10_in_list_order(tmp_path, suffix, capsys):
    path, qf, gf, q_names, g_names = make_features(tmp_path, suffix)
    order = [7, 0, 11, 3, 5]
    listing = tmp_path / "query_drone_name.txt"
    listing.write_text("".join(q_names[i] + "\n" for i in order))
    out = tmp_path / "answer.zip"
    code = cli_main(
        ["submit", "--features", str(path), "--query-list", str(listing), "--out", str(out),
         "--quiet"]
    )  # fmt: skip
    assert code == 0 and "wrote" in capsys.readouterr().out
    lines = read_answer(out)
    expected = rank_gallery(qf[order], gf, topk=10, progress=False).topk_indices
    assert lines == [[g_names[j].removesuffix(".webp") for j in row] for row in expected.tolist()]
    assert all(len(line) == 10 for line in lines)


def test_cli_submit_reports_missing_queries_without_traceback(tmp_path, capsys):
    path, *_ = make_features(tmp_path, ".pt")
    listing = tmp_path / "query_drone_name.txt"
    listing.write_text("query_00.jpeg\nnot_extracted.jpeg\n")
    code = cli_main(["submit", "--features", str(path), "--query-list", str(listing), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not_extracted.jpeg" in err and "Traceback" not in err


def test_load_feature_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_feature_file(tmp_path / "none.pt")
    bad = tmp_path / "bad.npz"
    np.savez(bad, query_features=np.zeros((2, 3)), query_names=np.array(["a"]))
    with pytest.raises(DatasetError, match="missing gallery_features, gallery_names"):
        load_feature_file(bad)
    worse = tmp_path / "worse.npz"
    np.savez(
        worse, query_features=np.zeros((2, 3)), query_names=np.array(["a"]),
        gallery_features=np.zeros((1, 3)), gallery_names=np.array(["g"]),
    )  # fmt: skip
    with pytest.raises(DatasetError, match=r"query_features has shape \(2, 3\) but there are 1"):
        load_feature_file(worse)


def _cli_submit(tmp_path, features, out=None, extra=()):
    listing = tmp_path / "query_drone_name.txt"
    listing.write_text("query_00.jpeg\nquery_01.jpeg\n")
    args = ["submit", "--features", str(features), "--query-list", str(listing), "--quiet"]
    if out is not None:
        args += ["--out", str(out)]
    return cli_main([*args, *extra])


def _save_pt(path, g_names, n_gallery=None):
    gen = torch.Generator().manual_seed(0)
    n_gallery = len(g_names) if n_gallery is None else n_gallery
    torch.save(
        {"query_features": torch.nn.functional.normalize(torch.randn(12, 8, generator=gen), dim=1),
         "query_names": [f"query_{i:02d}.jpeg" for i in range(12)],
         "gallery_features": torch.nn.functional.normalize(
             torch.randn(n_gallery, 8, generator=gen), dim=1),
         "gallery_names": g_names},
        path,
    )  # fmt: skip
    return path


def test_submit_refuses_repeated_gallery_names(tmp_path, capsys):
    names = [f"sat_{i:03d}.webp" for i in range(29)] + ["sat_000.webp"]
    path = _save_pt(tmp_path / "f.pt", names)
    assert _cli_submit(tmp_path, path, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert "gallery names of the feature file: 'sat_000.webp' (row 29)" in err
    assert not (tmp_path / "a.zip").exists()
    with pytest.raises(ValueError, match="lists gallery name 'g1' more than once"):
        write_submission([["g1.webp", "x/g1.jpg"]], ["a"], tmp_path / "x.zip")


def test_submit_refuses_a_gallery_smaller_than_topk(tmp_path, capsys):
    path = _save_pt(tmp_path / "f.pt", [f"sat_{i}.webp" for i in range(5)])
    assert _cli_submit(tmp_path, path, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert "the gallery has 5 images, fewer than --topk 10" in err
    assert not (tmp_path / "a.zip").exists()
    assert _cli_submit(tmp_path, path, tmp_path / "a.zip", ["--topk", "5"]) == 0
    assert all(len(line) == 5 for line in read_answer(tmp_path / "a.zip"))
    assert "top-5 each" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["corrupt_pt", "object_npz", "pickled_pt"])
def test_submit_unreadable_feature_files_are_one_line(tmp_path, capsys, kind):
    if kind == "corrupt_pt":
        path = tmp_path / "f.pt"
        path.write_bytes(b"garbage that is not a checkpoint" * 4)
    elif kind == "pickled_pt":
        path = tmp_path / "f.pt"
        torch.save({"query_features": object()}, path)
    else:
        path = tmp_path / "f.npz"
        obj = np.empty(2, dtype=object)
        obj[:] = [{"a": 1}, None]
        np.savez(path, query_features=obj, query_names=obj, gallery_features=obj,
                 gallery_names=obj)  # fmt: skip
    assert _cli_submit(tmp_path, path, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert f"feature file {path} cannot be read" in err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert len(err.strip().splitlines()) == 1


def test_submit_out_that_is_a_folder(tmp_path, capsys):
    path, *_ = make_features(tmp_path, ".pt")
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert _cli_submit(tmp_path, path, folder) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder" in err and "Traceback" not in err
