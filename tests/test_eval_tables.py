"""Long results -> the papers' wide tables, and the per-weather evaluation they are fed from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.tables import (
    WEATHER_GROUPS,
    mcgf_table1,
    meter_level_table,
    stack_results,
    street_recall_table,
    topk_distance_table,
    weather_table,
    wide_table,
)
from geoloc_lib.weather.synth import CONDITIONS, conditions_from_seeds
from tests.layouts import make_university1652

METRICS = ["R@1", "R@5", "R@10", "AP"]


def _long_weather() -> pd.DataFrame:
    """Two methods, two tasks; every metric value encodes (method, task, condition, metric)."""
    frames = {}
    for m, method in enumerate(("mcgf", "floor")):
        rows = []
        # Deliberately out of the paper's order: the table must reorder the groups.
        for t, task in enumerate(("drone->satellite", "satellite->drone")):
            for c, cond in enumerate(("mean", "mixed", "wind", "normal", "fog")):
                values = {k: 1000 * m + 100 * t + 10 * c + j for j, k in enumerate(METRICS)}
                rows.append({"task": task, "condition": cond, **values, "n_queries": 8})
        frames[method] = pd.DataFrame(rows)
    return stack_results(frames)


def test_stack_results_adds_method_first_and_keeps_order():
    long = stack_results({"b": {"R@1": 1.0}, "a": pd.DataFrame({"R@1": [2.0, 3.0]})})
    assert list(long.columns) == ["method", "R@1"]
    assert long["method"].tolist() == ["b", "a", "a"]
    assert long["R@1"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="empty"):
        stack_results({})
    with pytest.raises(ConfigError, match="already have a 'method'"):
        stack_results({"x": pd.DataFrame({"method": ["y"]})})


def test_weather_table_puts_every_value_in_its_cell_in_paper_order():
    long = _long_weather()
    table = weather_table(long, "satellite->drone")
    assert table["method"].tolist() == ["mcgf", "floor"]
    groups = ["normal", "fog", "wind", "mixed", "mean"]  # WEATHER_GROUPS order
    assert list(table.columns) == ["method"] + [f"{g} {k}" for g in groups for k in METRICS]
    source = ("mean", "mixed", "wind", "normal", "fog")
    for m in range(2):
        for c, cond in enumerate(source):
            for j, k in enumerate(METRICS):
                assert table.loc[m, f"{cond} {k}"] == 1000 * m + 100 + 10 * c + j


def test_weather_table_custom_groups_metrics_and_missing_cells():
    long = _long_weather()
    long = long[~((long["method"] == "floor") & (long["condition"] == "fog"))]
    table = weather_table(long, "drone->satellite", conditions=["fog", "normal"], metrics=["AP"])
    assert list(table.columns) == ["method", "fog AP", "normal AP"]
    assert table.loc[0, "fog AP"] == 4 * 10 + 3
    assert np.isnan(table.loc[1, "fog AP"])  # no result for this method: NaN, not dropped
    with pytest.raises(ConfigError, match=r"no results for condition \['snow'\]"):
        weather_table(long, "drone->satellite", conditions=["snow"])
    with pytest.raises(ConfigError, match="no results for task 'street'"):
        weather_table(long, "street")


def test_wide_table_rejects_duplicates_and_missing_columns():
    long = _long_weather()
    with pytest.raises(ConfigError, match="occurs more than once"):
        weather_table(long, task=None)  # both tasks mixed: ambiguous cells
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['R@1%'\]"):
        wide_table(long, "condition", ["R@1%"])


def test_mcgf_table1_is_the_paper_layout():
    table = mcgf_table1(_long_weather(), "drone->satellite", "mixed")
    assert list(table.columns) == ["method", *METRICS]
    assert table.loc[1].tolist() == ["floor", 1010, 1011, 1012, 1013]


def _street_row(base: float) -> dict[str, float]:
    row = {k: base + i for i, k in enumerate(["R@1", "R@5", "R@10", "R@1%"])}
    for i, t in enumerate((0, 36, 72, 144)):
        row[f"top1_within_{t}m"] = base + 10 + i
    for i, k in enumerate(("1", "5", "10", "1%")):
        row[f"mean_dist_top{k}_m"] = base + 20 + i
    return row


def test_street_tables_follow_geoviewmatch_tables_1_to_3():
    long = stack_results(
        {
            "gvm": {**_street_row(0), "dataset": "CVACT"},
            "raw": {**_street_row(100), "dataset": "CVACT"},
        }
    )
    recall = street_recall_table(long)
    assert list(recall.columns) == ["method", "R@1", "R@5", "R@10", "R@1%"]
    assert recall.loc[1, "R@1%"] == 103
    meters = meter_level_table(long)
    assert list(meters.columns) == ["method", "0 m", "36 m", "72 m", "144 m"]
    assert meters.loc[0, "72 m"] == 12
    dist = topk_distance_table(long)
    assert list(dist.columns) == ["method", "Top-1", "Top-5", "Top-10", "Top-1%"]
    assert dist.loc[1, "Top-1%"] == 123
    # Two datasets: one column group each, as in Table 1.
    two = stack_results(
        {
            "gvm": pd.DataFrame(
                [{**_street_row(0), "dataset": "CVUSA"}, {**_street_row(50), "dataset": "CVACT"}]
            )
        }
    )
    assert list(street_recall_table(two).columns)[:3] == ["method", "CVUSA R@1", "CVUSA R@5"]
    no_coords = stack_results({"gvm": {"R@1": 1.0, "dataset": "CVUSA"}})
    with pytest.raises(ConfigError, match="need gallery coordinates"):
        meter_level_table(no_coords)


def test_eval_weather_mixed_draws_a_seeded_condition_per_image():
    from geoloc_lib.weather.sets import eval_weather

    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    index = torch.arange(10, 16)
    out = eval_weather("mixed", seed=5)({"image": images, "index": index})
    expected = conditions_from_seeds(index * 1_000_003 + 5)
    assert torch.equal(out["condition"], expected)
    # Each image is weathered with its own condition, exactly as a fixed-condition pass would.
    for cond in expected.unique().tolist():
        rows = expected == cond
        fixed = eval_weather(CONDITIONS[cond], seed=5)(
            {"image": images[rows], "index": index[rows]}
        )
        assert torch.equal(fixed["image"], out["image"][rows])
    again = eval_weather("mixed", seed=5)({"image": images, "index": index})
    assert torch.equal(again["image"], out["image"])
    with pytest.raises(ConfigError, match="unknown condition 'hail'"):
        eval_weather("hail")


def test_evaluate_mcgf_mixed_and_views_per_location_feed_the_tables(tmp_path):
    from geoloc_lib.eval.university import evaluate_mcgf
    from geoloc_lib.models.raw_pixel import RawPixelMatcher
    from geoloc_lib.weather.sets import MIXED

    root = make_university1652(tmp_path / "u", train_ids=(1,), test_ids=(10, 11, 12), views=3)
    df = evaluate_mcgf(
        RawPixelMatcher(4, img_size=16),
        root,
        ("normal", "rain", MIXED),
        gallery_views_per_location=1,
        device="cpu",
        progress=False,
    )
    assert df["condition"].tolist() == ["normal", "rain", "mixed"] * 2 + ["mean"] * 2
    for _task, sub in df.groupby("task"):
        sub = sub.set_index("condition")
        # The mean is over the fixed conditions only (the leaderboard's average).
        for k in ("R@1", "AP"):
            assert sub.loc["mean", k] == pytest.approx(sub.loc[["normal", "rain"], k].mean())
        assert sub.loc["mixed", "AP"] != pytest.approx(sub.loc["mean", "AP"])  # a distinct set
    s2d = df[df["task"] == "satellite->drone"]
    # 6 gallery locations (3 test + 3 distractors) x 1 view; every satellite query keeps a match.
    assert (s2d["n_gallery"] == 6).all() and (s2d["n_queries"] == 3).all()
    table = weather_table(stack_results({"raw": df}), "satellite->drone")
    assert list(table.columns)[1:17:4] == ["normal R@1", "rain R@1", "mixed R@1", "mean R@1"]
    # the point columns first, then each one's 95 % bounds in the same order
    assert list(table.columns)[17:19] == ["normal R@1 lo", "normal R@1 hi"]
    assert len(table.columns) == 1 + 4 * 4 * 3
    for k in ("R@1", "R@5", "R@10", "AP"):
        assert (df[f"{k} lo"] <= df[k] + 1e-9).all() and (df[k] <= df[f"{k} hi"] + 1e-9).all()
    # the intervals come from the per-query table the evaluation returns
    again, per_query = evaluate_mcgf(
        RawPixelMatcher(4, img_size=16), root, ("normal", "rain", MIXED),
        gallery_views_per_location=1, device="cpu", progress=False, per_query=True,
    )  # fmt: skip
    pd.testing.assert_frame_equal(again, df)
    assert list(per_query.columns[:5]) == ["task", "condition", "query", "location", "rank"]
    d2s = per_query[(per_query["task"] == "drone->satellite") & (per_query["condition"] == "rain")]
    row = df[(df["task"] == "drone->satellite") & (df["condition"] == "rain")].iloc[0]
    assert d2s["R@1"].mean() == pytest.approx(row["R@1"])
    assert ((d2s["rank"] <= 1) == (d2s["R@1"] == 100)).all()


def test_wide_tables_append_the_bounds_after_the_point_values():
    long = stack_results(
        {
            "gvm": {**_street_row(0), "dataset": "CVACT", "R@1 lo": -1.0, "R@1 hi": 1.0},
            "raw": {**_street_row(100), "dataset": "CVACT", "R@1 lo": 99.0, "R@1 hi": 101.0},
        }
    )
    table = wide_table(long, "dataset", ["R@1", "R@5"], prefix_groups=False)
    assert list(table.columns) == ["method", "R@1", "R@5"]  # R@5 has no bounds: none at all
    with_bounds = wide_table(long, "dataset", ["R@1"], prefix_groups=False)
    assert list(with_bounds.columns) == ["method", "R@1", "R@1 lo", "R@1 hi"]
    assert with_bounds.loc[1, "R@1 hi"] == 101.0
    prefixed = wide_table(long, "dataset", ["R@1"])
    assert list(prefixed.columns) == ["method", "CVACT R@1", "CVACT R@1 lo", "CVACT R@1 hi"]
    with pytest.raises(ConfigError, match="lack column"):
        wide_table(long, "dataset", ["R@5"], intervals=True)


def test_markdown_shows_value_and_interval_in_one_cell():
    from geoloc_lib.reporting import markdown_table, with_intervals

    df = pd.DataFrame({"method": ["a"], "R@1": [4.844], "R@1 lo": [3.1], "R@1 hi": [6.6]})
    shown = with_intervals(df)
    assert list(shown.columns) == ["method", "R@1"] and shown.loc[0, "R@1"] == "4.84 [3.10, 6.60]"
    assert "| a | 4.84 [3.10, 6.60] |" in markdown_table(shown)
    assert set(WEATHER_GROUPS) >= {"normal", "rain", "mixed", "mean"}


def test_views_per_location_keeps_k_seeded_views_of_every_location():
    from geoloc_lib.data.types import ImageSet
    from geoloc_lib.eval.university import _views_per_location

    labels = np.repeat([3, 1, 2], [5, 1, 4])
    images = ImageSet("g", [f"p{i}" for i in range(10)], labels, [str(v) for v in labels])
    two = _views_per_location(images, 2, seed=0)
    counts = pd.Series(two.labels).value_counts().to_dict()
    assert counts == {3: 2, 1: 1, 2: 2}
    assert two.paths == sorted(two.paths, key=lambda p: int(p[1:]))  # original order kept
    assert _views_per_location(images, 2, seed=0).paths == two.paths
    assert _views_per_location(images, None, seed=0) is images
    picks = {tuple(_views_per_location(images, 2, seed=s).paths) for s in range(6)}
    assert len(picks) > 1  # the seed picks the views


def test_evaluate_pairs_per_query_ranks_match_the_summary():
    from geoloc_lib.eval.metrics import evaluate_pairs

    g = torch.nn.functional.normalize(
        torch.randn(20, 8, generator=torch.Generator().manual_seed(1))
    )
    q = torch.nn.functional.normalize(g[:10] + 0.8 * torch.randn(10, 8))
    coords = np.arange(40, dtype=np.float64).reshape(20, 2) * 30
    out, per_query = evaluate_pairs(q, g, gallery_coords=coords, progress=False, per_query=True)
    assert out == evaluate_pairs(q, g, gallery_coords=coords, progress=False)
    assert list(per_query.columns[:2]) == ["rank", "R@1"] and len(per_query) == 10
    for k in (1, 5, 10):
        assert ((per_query["rank"] <= k) * 100.0 == per_query[f"R@{k}"]).all()
        assert per_query[f"R@{k}"].mean() == pytest.approx(out[f"R@{k}"])
