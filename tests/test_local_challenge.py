"""A University160k-WX-style challenge from a test split: masked names, answer.zip, scoring."""

from __future__ import annotations

import zipfile

import pytest

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.eval.local_challenge import (
    masked_names,
    read_answer,
    score_answer,
    score_local_challenge,
    write_local_challenge,
)
from tests.layouts import make_university1652


def test_masked_names_are_deterministic_unique_and_seeded():
    paths = ["q/0001/image-01.jpeg", "q/0002/image-01.jpeg", "q/0001/image-02.jpeg"]
    names = masked_names(paths, seed=0)
    assert names == masked_names(paths, seed=0)
    assert len(set(names)) == 3  # same file name in two folders: distinct masks
    assert all(len(n) == 15 + len(".jpeg") and n.endswith(".jpeg") for n in names)
    assert masked_names(paths, seed=1) != names


def test_score_answer_counts_hits_at_k():
    rows = [["a", "b", "c"], ["x", "y", "b"], ["c", "a", "b"]]
    truth = {"q1": "a", "q2": "b", "q3": "z"}
    scores = score_answer(rows, ["q1.jpeg", "q2.jpeg", "q3.jpeg"], truth, ks=(1, 3))
    assert scores == {"R@1": pytest.approx(100 / 3), "R@3": pytest.approx(200 / 3)}
    with pytest.raises(DatasetError, match="2 lines for 3 queries"):
        score_answer(rows[:2], ["q1", "q2", "q3"], truth)
    with pytest.raises(DatasetError, match="no truth for 1"):
        score_answer(rows, ["q1", "q2", "q9"], truth, ks=(1,))


def test_local_challenge_scores_like_the_evaluation_and_rewrites_identical_bytes(tmp_path):
    from geoloc_lib.data.university import load_university1652
    from geoloc_lib.eval.university import eval_queries, evaluate_mcgf
    from geoloc_lib.models.raw_pixel import RawPixelMatcher
    from geoloc_lib.weather.sets import MIXED

    root = make_university1652(tmp_path / "u", train_ids=(1,), test_ids=(10, 11, 12), views=4)
    query, gallery = load_university1652(root).task("drone->satellite")
    model = RawPixelMatcher(4, img_size=16)
    queries = eval_queries(query, 9)
    ch = write_local_challenge(model, queries, gallery, tmp_path / "sub", seed=3)
    assert (ch.n_queries, ch.n_gallery) == (9, 6)
    with zipfile.ZipFile(ch.answer_zip) as archive:
        assert archive.namelist() == ["answer.txt"]
    rows = read_answer(ch.answer_zip)
    assert len(rows) == 9 and all(len(r) == 6 for r in rows)  # top-10 capped at 6 tiles
    listed = ch.query_list.read_text().split()
    assert listed == sorted(listed) and set(listed) == set(masked_names(queries.paths, 3))
    scored = score_local_challenge(ch, ks=(1, 5))
    evaluated = evaluate_mcgf(
        model, root, (MIXED,), tasks=("drone->satellite",), max_queries=9, progress=False
    ).set_index("condition")
    for k in ("R@1", "R@5"):
        assert scored[k] == pytest.approx(evaluated.loc[MIXED, k])
    again = write_local_challenge(model, queries, gallery, tmp_path / "again", seed=3)
    assert again.answer_zip.read_bytes() == ch.answer_zip.read_bytes()
