"""Top-k retrieval examples (eval) and their figures (viz): ranking, match flags, the uniform
draw and its hit rate, the green/red framing; recall@k curves with their bands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.examples import pick_queries, top_matches
from geoloc_lib.viz.retrieval import (
    MATCH_COLOR,
    MISS_COLOR,
    frame_colors,
    retrieval_figure,
)
from tests.layouts import make_cvact, make_university1652


def _unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_top_matches_orders_by_score_flags_matches_and_skips_junk():
    gallery = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.8, 0.2, 0], [0, 0, 1]])
    g_labels = [7, 8, -1, 7, 9]  # item 2 is junk
    query = _unit([[1, 0, 0], [0, 1, 0.05]])
    top = top_matches(query, gallery, [7, 9], g_labels, k=3)
    # query 0: items 0 (7), 1 (8), 3 (7); query 1: junk item 2 skipped -> 3, 1, 4 by score.
    assert top.indices.tolist() == [[0, 1, 3], [3, 1, 4]]
    assert top.is_match.tolist() == [[True, False, True], [False, False, True]]
    assert top.true_rank.tolist() == [0, 2]
    assert top.rank_labels() == ["true match #1", "true match #3"]
    assert bool((top.scores[:, :-1] >= top.scores[:, 1:]).all())
    no_match = top_matches(query[:1], gallery, [5], g_labels, k=2)
    assert no_match.rank_labels() == ["no true match"]
    assert not no_match.is_match.any()
    with pytest.raises(ConfigError, match="k must be >= 1"):
        top_matches(query, gallery, [7, 9], g_labels, k=0)


def test_frame_colors_and_pick_queries():
    colors = frame_colors(torch.tensor([[True, False], [False, True]]))
    assert colors.tolist() == [[MATCH_COLOR, MISS_COLOR], [MISS_COLOR, MATCH_COLOR]]
    picks = pick_queries(100, 4, seed=3)
    assert picks.tolist() == sorted(set(picks.tolist())) and len(picks) == 4
    assert np.array_equal(picks, pick_queries(100, 4, seed=3))
    assert len(pick_queries(2, 5, seed=0)) == 2  # capped at the set size
    with pytest.raises(ConfigError):
        pick_queries(0, 3, seed=0)


def _frames(fig: Figure, k: int) -> list[list[tuple | None]]:
    """Per figure row: the query's frame (None if hidden) then each retrieved item's colour."""
    axes = fig.axes
    rows = []
    for start in range(0, len(axes), k + 1):
        row = []
        for ax in axes[start : start + k + 1]:
            spine = ax.spines["left"]
            row.append(tuple(spine.get_edgecolor()) if spine.get_visible() else None)
        rows.append(row)
    return rows


def test_retrieval_figure_frames_true_matches_green_and_others_red():
    rng = np.random.default_rng(0)
    queries = [rng.integers(0, 255, (8, 40, 3), dtype=np.uint8), torch.rand(3, 8, 8)]
    gallery = [[torch.rand(3, 8, 8) for _ in range(3)] for _ in range(2)]
    is_match = np.array([[False, True, False], [False, False, False]])
    fig = retrieval_figure(queries, gallery, is_match, scores=np.ones((2, 3)), title="t")
    assert len(fig.axes) == 2 * 4
    green, red = to_rgba(MATCH_COLOR), to_rgba(MISS_COLOR)
    assert _frames(fig, 3) == [[None, red, green, red], [None, red, red, red]]
    assert fig.axes[2].get_title() == "#2  1.00"
    with pytest.raises(ConfigError, match="one row per query"):
        retrieval_figure(queries, gallery[:1], is_match)
    with pytest.raises(ConfigError, match="needs 3 retrieved"):
        retrieval_figure(queries, [gallery[0], gallery[1][:2]], is_match)


def test_drone_examples_are_a_seeded_uniform_draw_and_the_figure_frames_follow_the_labels(
    tmp_path,
):
    from geoloc_lib.data.university import load_university1652
    from geoloc_lib.eval.examples import drone_examples
    from geoloc_lib.models.raw_pixel import RawPixelMatcher
    from geoloc_lib.viz.retrieval import examples_figure

    root = make_university1652(tmp_path / "u", train_ids=(1,), test_ids=(10, 11), views=2)
    query, gallery = load_university1652(root).task("drone->satellite")
    model = RawPixelMatcher(4, img_size=16)
    ex = drone_examples(model, query, gallery, "mixed", n_queries=2, k=5, seed=1, set_recall=50.0)
    picks = pick_queries(len(query), 2, seed=1)
    assert all(t.startswith(query.names[p]) for t, p in zip(ex.query_titles, picks, strict=True))
    assert ex.is_match.shape == (2, 5) and ex.scores.shape == (2, 5)
    assert (ex.is_match.sum(axis=1) == 1).all()  # one satellite tile per location, all ranked
    assert ex.hit_rate == 100.0 * ex.is_match[:, 0].mean()
    assert ex.n_set == len(query) and "R@1 of all 4 queries: 50.0 %" in ex.summary()
    again = drone_examples(model, query, gallery, "mixed", n_queries=2, k=5, seed=1)
    assert again.gallery_paths == ex.gallery_paths and again.set_recall is None
    fig = examples_figure(ex, title="t")
    assert len(fig.axes) == 2 * 6 and ex.summary() in fig._suptitle.get_text()
    green = to_rgba(MATCH_COLOR)
    for row, flags in zip(_frames(fig, 5), ex.is_match, strict=True):
        assert row[0] is None
        assert [c == green for c in row[1:]] == flags.tolist()
    with pytest.raises(ConfigError, match="set_recall must be the set's R@1 in percent"):
        drone_examples(model, query, gallery, n_queries=1, set_recall=150.0)


def test_street_examples_mark_the_paired_tile(tmp_path):
    from geoloc_lib.data.street import load_cvact
    from geoloc_lib.eval.examples import street_examples
    from geoloc_lib.models.raw_pixel import StreetRawPixelMatcher
    from geoloc_lib.viz.retrieval import examples_figure

    pairs = load_cvact(make_cvact(tmp_path / "act"), "train")
    model = StreetRawPixelMatcher(ground_size=(8, 32), aerial_size=(16, 16), grid=2)
    k = len(pairs)  # the whole gallery: the true tile is always among the frames
    ex = street_examples(model, pairs, n_queries=2, k=k, seed=0)
    assert (ex.is_match.sum(axis=1) == 1).all() and (ex.true_rank >= 1).all()
    fig = examples_figure(ex)
    green = to_rgba(MATCH_COLOR)
    for row in _frames(fig, k):
        assert sum(c == green for c in row[1:]) == 1


def test_recall_curves_and_their_figure():
    import pandas as pd

    from geoloc_lib.eval.uncertainty import recall_curves
    from geoloc_lib.viz.retrieval import recall_curves_figure

    per_query = pd.DataFrame(
        {"condition": ["fog"] * 4 + ["rain"] * 4, "rank": [1, 2, 5, np.nan, 1, 1, 1, 1]}
    )
    curves = recall_curves(per_query, ks=(1, 2, 10))
    fog = curves[curves["condition"] == "fog"]
    # the query without a true match (NaN rank) is a miss at every k, as in R@k's means
    assert fog["recall"].tolist() == pytest.approx([25.0, 50.0, 75.0])
    assert (fog["n_queries"] == 4).all()
    assert (curves["lo"] <= curves["recall"]).all() and (curves["recall"] <= curves["hi"]).all()
    rain = curves[curves["condition"] == "rain"]
    assert (rain["lo"] == 100).all() and (rain["hi"] == 100).all()
    fig = recall_curves_figure(curves)
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ConfigError, match="lacks"):
        recall_curves(per_query.drop(columns="rank"))
    with pytest.raises(ConfigError, match="curves lack"):
        recall_curves_figure(curves.drop(columns="lo"))
