"""Protocol metrics on hand-computed cases: University-1652 CMC/AP, CVUSA/CVACT, meter-level."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch

from geoloc_lib.eval import (
    FeatureError,
    breakdown,
    evaluate_pairs,
    evaluate_university1652,
    n_without_match,
    one_percent_k,
    pairs_per_query,
    rank_gallery,
    university1652_per_query,
)
from geoloc_lib.eval.naive import naive_evaluate_university1652


def gallery_with_scores(scores: list[float]) -> torch.Tensor:
    """Unit 2-d vectors whose dot product with (1, 0) is exactly ``scores``."""
    s = torch.tensor(scores, dtype=torch.float64)
    return torch.stack([s, torch.sqrt(1 - s**2)], dim=1).float()


def unit_queries(n: int) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0]]).repeat(n, 1)


def u1652(scores, gallery_labels, query_label=1):
    return evaluate_university1652(
        unit_queries(1), gallery_with_scores(scores), [query_label], gallery_labels, progress=False
    )


def test_ap_with_junk_and_ties():
    # non-junk order: .9 bad, .7 bad, .7 good (tie against the query), .2 good -> ranks 2, 3
    out = u1652([0.9, 0.7, 0.7, 0.7, 0.2, 0.8], [5, -1, 1, 4, 1, -1])
    ap = ((0 + 1 / 3) / 2 + (1 / 3 + 2 / 4) / 2) / 2
    assert out["AP"] == pytest.approx(100 * ap, abs=1e-9)
    assert out["AP"] == pytest.approx(100 * 7 / 24, abs=1e-9)
    assert (out["R@1"], out["R@5"], out["R@10"]) == (0.0, 100.0, 100.0)
    assert out["n_queries"] == 1 and out["n_skipped"] == 0


def test_junk_above_a_good_item_does_not_count():
    # Without junk removal the good item would sit at rank 2.
    out = u1652([0.9, 0.8, 0.5], [-1, -1, 1])
    assert out["R@1"] == 100.0 and out["AP"] == pytest.approx(100.0)


def test_single_match_ranked_last():
    out = u1652([0.5, 0.4, 0.3, 0.1], [2, 3, 4, 1])
    assert out["R@1"] == 0.0 and out["R@5"] == 100.0
    assert out["AP"] == pytest.approx(100 * (0 + 1 / 4) / 2)


def test_first_match_at_rank_zero_uses_old_precision_one():
    # goods at ranks 0 and 2: (1 + 1)/2 and (1/2 + 2/3)/2, over 2 goods
    out = u1652([0.9, 0.8, 0.7], [1, 3, 1])
    assert out["AP"] == pytest.approx(100 * (1.0 + 7 / 12) / 2)
    assert out["R@1"] == 100.0


def test_many_matches_tied_with_distractors():
    # ties against the query: .9 bad, .7 bad, then the two tied goods, .1 good -> ranks 2, 3, 4
    out = u1652([0.7, 0.7, 0.7, 0.9, 0.1], [3, 8, 3, 8, 3], query_label=3)
    expected = ((0 + 1 / 3) / 2 + (1 / 3 + 2 / 4) / 2 + (2 / 4 + 3 / 5) / 2) / 3
    assert out["AP"] == pytest.approx(100 * expected)


def test_query_without_match_counts_as_a_miss_over_all_queries():
    # The official University-1652 evaluation leaves a query without a true match out of its
    # sums but divides by ALL queries: such a query is a miss (R@k 0, AP 0).
    # Gallery by score: .9 label 0, .8 label 5, .7 label 1, .6 label 6 (same order for every query).
    q = unit_queries(4)
    g = gallery_with_scores([0.9, 0.8, 0.7, 0.6])
    query_labels, gallery_labels = [0, 1, 7, 8], [0, 5, 1, 6]  # labels 7 and 8: no true match
    out = evaluate_university1652(q, g, query_labels, gallery_labels, progress=False)
    # query 0: match at rank 0 -> hit at 1, AP 1; query 1: match at rank 2 -> hit at 5 and 10,
    # AP (old precision 0/2 + precision 1/3) / 2 = 1/6; queries 2 and 3 contribute 0.
    assert out["R@1"] == pytest.approx(100 * 1 / 4)
    assert out["R@5"] == pytest.approx(100 * 2 / 4) and out["R@10"] == pytest.approx(100 * 2 / 4)
    assert out["AP"] == pytest.approx(100 * (1 + 1 / 6) / 4)
    assert out["n_queries"] == 4 and out["n_skipped"] == 2
    result = rank_gallery(q, g, query_labels, gallery_labels, progress=False, ties="against")
    per_query = university1652_per_query(result)
    assert per_query.loc[2:].eq(0).all().all()  # the no-match rows are misses, not NaN
    assert n_without_match(result) == 2
    table = breakdown(per_query, ["fog", "fog", "rain", "rain"])
    assert table.loc["rain", "R@1"] == 0 and table.loc["rain", "n_queries"] == 2
    assert table.loc["all", "AP"] == pytest.approx(out["AP"])
    naive = naive_evaluate_university1652(q, g, query_labels, gallery_labels)
    for name, value in naive.items():
        assert value == pytest.approx(out[name]), name


def test_every_query_matched_gives_the_same_means_either_way():
    # With a true match for every query, dividing by all queries is dividing by the matched ones.
    q = unit_queries(2)
    g = gallery_with_scores([0.9, 0.1])
    out = evaluate_university1652(q, g, [0, 1], [0, 1], progress=False)
    assert out["R@1"] == 50.0 and out["n_skipped"] == 0 and out["n_queries"] == 2


def test_collapsed_model_scores_nothing_on_university1652():
    # Every gallery feature identical: with ties in the query's favour drone->satellite would be
    # R@1 = 100 %; against the query the true match comes last (no better than chance).
    n_gallery = 20
    g = torch.tensor([[1.0, 0.0]]).repeat(n_gallery, 1)
    q = unit_queries(5)
    out = evaluate_university1652(q, g, [0, 1, 2, 3, 4], list(range(n_gallery)), progress=False)
    assert out["R@1"] <= 100 / n_gallery and out["R@10"] <= 100 * 10 / n_gallery
    assert out["AP"] <= 100 / n_gallery
    # satellite->drone-like: 4 true drones per query among 20 identical items
    labels = [i // 4 for i in range(n_gallery)]
    out = evaluate_university1652(q, g, [0, 1, 2, 3, 4], labels, progress=False)
    assert out["R@1"] == 0.0 and out["AP"] < 100 * 4 / n_gallery


def test_pairs_report_and_warn_about_ties():
    # CVUSA/CVACT keep the "strictly higher" rank but say how many true matches tie.
    g = torch.tensor([[1.0, 0.0]]).repeat(4, 1)
    with pytest.warns(UserWarning, match="4 of 4 queries"):
        out = evaluate_pairs(unit_queries(4), g, progress=False)
    assert out["R@1"] == 100.0 and out["n_tied"] == 4
    g = gallery_with_scores([1 - j / 1000 for j in range(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = evaluate_pairs(unit_queries(3), g, progress=False)
    assert out["n_tied"] == 0


def test_custom_ks():
    out = evaluate_university1652(
        unit_queries(1), gallery_with_scores([0.9, 0.8, 0.7]), [1], [0, 2, 1], ks=(2, 3),
        progress=False,
    )  # fmt: skip
    assert out["R@2"] == 0.0 and out["R@3"] == 100.0 and "R@1" not in out


@pytest.mark.filterwarnings("ignore:evaluate_pairs. the true match")
def test_pairs_ties_in_query_favour_and_one_percent():
    # all queries score the gallery identically; query i's match is gallery i.
    g = gallery_with_scores([0.9, 0.9, 0.5, 0.1])
    out = evaluate_pairs(unit_queries(4), g, progress=False)
    assert out["R@1"] == 50.0 and out["R@5"] == 100.0
    assert out["R@1%"] == 50.0  # k = max(1, 4 // 100) = 1
    assert one_percent_k(8884) == 88 and one_percent_k(92802) == 928 and one_percent_k(50) == 1


def test_pairs_one_percent_cut_on_a_larger_gallery():
    g = gallery_with_scores([1 - j / 1000 for j in range(250)])  # distinct, descending
    out = evaluate_pairs(unit_queries(5), g, progress=False)  # ranks 0..4, k(1%) = 2
    assert out["R@1"] == 20.0 and out["R@1%"] == 40.0 and out["R@5"] == 100.0
    assert out["R@10"] == 100.0


@pytest.mark.filterwarnings("ignore:evaluate_pairs. the true match")
def test_meter_level_thresholds_and_mean_distances():
    g = gallery_with_scores([0.9, 0.9, 0.5, 0.1])
    coords = [[0.0, 0.0], [30.0, 40.0], [100.0, 0.0], [0.0, 200.0]]
    out = evaluate_pairs(unit_queries(4), g, gallery_coords=coords, progress=False)
    # top-1: q0 -> 0 (0 m), q1 -> 1 (tied, its own match first: 0 m), q2 -> 0 (100 m), q3 -> 0 (200 m)
    assert out["top1_within_0m"] == 50.0
    assert out["top1_within_36m"] == 50.0
    assert out["top1_within_72m"] == 50.0
    assert out["top1_within_144m"] == 75.0
    assert out["mean_dist_top1_m"] == pytest.approx((0 + 0 + 100 + 200) / 4)
    # top-5 is clamped to the 4 items; lists: q0 [0,1,2,3], q1 [1,0,2,3], q2/q3 [0,1,2,3]
    pts = [(0, 0), (30, 40), (100, 0), (0, 200)]

    def mean_to(p, order):
        return sum(math.dist(pts[j], p) for j in order) / len(order)

    expected = (
        mean_to(pts[0], [0, 1, 2, 3])
        + mean_to(pts[1], [1, 0, 2, 3])
        + mean_to(pts[2], [0, 1, 2, 3])
        + mean_to(pts[3], [0, 1, 2, 3])
    ) / 4
    assert out["mean_dist_top5_m"] == pytest.approx(expected)
    assert out["mean_dist_top10_m"] == pytest.approx(expected)
    assert out["mean_dist_top1%_m"] == pytest.approx(out["mean_dist_top1_m"])  # k = 1


def test_meter_level_keeps_utm_precision_and_custom_query_coords():
    g = gallery_with_scores([0.9, 0.1])
    gallery_coords = [[500_000.3, 6_000_000.0], [500_100.0, 6_000_000.0]]
    query_coords = [[500_000.0, 6_000_000.0]]
    out = evaluate_pairs(
        unit_queries(1), g, query_coords=query_coords, gallery_coords=gallery_coords,
        thresholds_m=(0, 0.5), progress=False,
    )  # fmt: skip
    # 0 m is the index match (the top-1 item is the query's tile), whatever the coordinates
    assert out["top1_within_0m"] == 100.0 and out["top1_within_0.5m"] == 100.0
    assert out["mean_dist_top1_m"] == pytest.approx(0.3, abs=1e-6)


def test_pairs_errors():
    g = gallery_with_scores([0.9, 0.1])
    with pytest.raises(FeatureError, match="3 queries but only 2 gallery"):
        evaluate_pairs(unit_queries(3), g, progress=False)
    with pytest.raises(FeatureError, match=r"gallery_coords: expected \[N, 2\]"):
        evaluate_pairs(unit_queries(1), g, gallery_coords=[1.0, 2.0], progress=False)
    with pytest.raises(FeatureError, match="gallery_coords: has 3 rows but there are 2"):
        evaluate_pairs(unit_queries(1), g, gallery_coords=[[0, 0]] * 3, progress=False)
    with pytest.raises(FeatureError, match="query_coords: has 2 rows"):
        evaluate_pairs(
            unit_queries(1), g, query_coords=[[0, 0]] * 2, gallery_coords=[[0, 0]] * 2,
            progress=False,
        )  # fmt: skip
    result = rank_gallery(unit_queries(1), g, [0], [0, 1], topk=0, progress=False)
    with pytest.raises(FeatureError, match="topk >= 1"):
        pairs_per_query(result, gallery_coords=[[0, 0]] * 2)


def test_breakdown_by_attribute_and_total_row():
    g = gallery_with_scores([0.9, 0.5, 0.1])
    # queries 0..2 all score the same; labels put their match at ranks 0, 1, 2.
    result = rank_gallery(unit_queries(3), g, [0, 1, 2], [0, 1, 2], progress=False)
    per_query = university1652_per_query(result)
    assert per_query["R@1"].tolist() == [100.0, 0.0, 0.0]
    weather = pd.Series(["fog", "rain", "fog"], name="weather")
    table = breakdown(per_query, weather)
    assert table.index.name == "weather"
    assert table.loc["fog", "R@1"] == 50.0 and table.loc["fog", "n_queries"] == 2
    assert table.loc["rain", "AP"] == pytest.approx(25.0)  # rank 1: (0 + 1/2) / 2
    assert table.loc["all", "R@1"] == pytest.approx(100 / 3)
    assert table.loc["all", "n_queries"] == 3
    two = breakdown(per_query, {"weather": weather, "alt": [150, 150, 250]}, total=False)
    assert list(two.index.names) == ["weather", "alt"]
    assert two.loc[("fog", 250), "R@1"] == 0.0
    with pytest.raises(FeatureError, match="2 attribute values for 3 queries"):
        breakdown(per_query, ["fog", "rain"])


def test_zero_metres_is_the_index_match_not_identical_coordinates():
    # Query 0's top-1 is tile 1, a different tile at the same UTM position: not a 0 m hit
    # (GeoViewMatch §4.5.2: 0 m is the one-to-one match; its Tables 1 and 2 give 0 m = R@1).
    g = gallery_with_scores([0.5, 0.9, 0.1])
    coords = [[500_000.0, 6_000_000.0], [500_000.0, 6_000_000.0], [500_300.0, 6_000_000.0]]
    out = evaluate_pairs(unit_queries(1), g, gallery_coords=coords, progress=False)
    assert out["R@1"] == 0.0
    assert out["top1_within_0m"] == out["R@1"] == 0.0
    assert out["top1_within_36m"] == 100.0  # the other tile is 0 m away
