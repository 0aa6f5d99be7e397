"""Bootstrap intervals over queries and seeds, and the verdict rule, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.uncertainty import (
    CONTRADICTED,
    SUPPORTED,
    UNDECIDED,
    bootstrap_interval,
    interval_table,
    paired_interval,
    resampled_means,
    seed_effect,
    verdict,
)


def test_constant_metric_has_a_zero_width_interval():
    assert bootstrap_interval(np.full(50, 100.0)) == (100.0, 100.0)
    lo, hi = bootstrap_interval(np.column_stack([np.full(7, 3.5), np.arange(7.0)]))
    assert lo[0] == hi[0] == 3.5 and lo[1] < 3.0 < hi[1]


def test_binomial_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    hits = (rng.random(2000) < 0.3) * 100.0  # recall@k as a 100/0 per-query indicator
    lo, hi = bootstrap_interval(hits)
    p = hits.mean() / 100
    half = 1.96 * np.sqrt(p * (1 - p) / len(hits)) * 100
    assert lo == pytest.approx(hits.mean() - half, abs=0.25)
    assert hi == pytest.approx(hits.mean() + half, abs=0.25)


def test_deterministic_and_independent_of_chunking(monkeypatch):
    values = np.random.default_rng(0).random(300)
    first = bootstrap_interval(values)
    assert bootstrap_interval(values) == first
    assert bootstrap_interval(values, seed=1) != first
    means = resampled_means(values, n_resamples=50)
    assert means.shape == (50, 1)
    # the resampled means are means of draws from the values
    assert values.min() <= means.min() and means.max() <= values.max()


def test_paired_difference_of_identical_methods_is_zero():
    a = np.random.default_rng(2).random(40) * 100
    assert paired_interval(a, a) == (0.0, 0.0, 0.0)
    effect, lo, hi = paired_interval(a + 5.0, a)
    assert effect == pytest.approx(5.0) and lo == pytest.approx(5.0) and hi == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="same queries"):
        paired_interval(a, a[:-1])


def test_paired_interval_is_tighter_than_separate_intervals():
    rng = np.random.default_rng(3)
    hard = rng.random(500) * 100  # shared query difficulty
    a, b = hard + rng.normal(0, 2, 500) + 1.0, hard + rng.normal(0, 2, 500)
    _, lo, hi = paired_interval(a, b)
    a_lo, a_hi = bootstrap_interval(a)
    assert hi - lo < (a_hi - a_lo) / 4 and lo > 0


def test_nan_and_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="drop the queries the protocol skips"):
        bootstrap_interval([1.0, np.nan])
    with pytest.raises(ConfigError, match="no queries"):
        bootstrap_interval([])
    with pytest.raises(ConfigError, match="n_resamples must be a positive integer"):
        bootstrap_interval([1.0], n_resamples=0)
    with pytest.raises(ConfigError, match="confidence must lie strictly between 0 and 1"):
        bootstrap_interval([1.0], confidence=95)


def test_interval_table_groups_skips_nan_rows_and_orders_columns():
    per_query = pd.DataFrame(
        {
            "condition": ["fog"] * 4 + ["rain"] * 4,
            "R@1": [100.0, 0.0, 100.0, np.nan, 0.0, 0.0, 0.0, 0.0],
            "AP": [100.0, 20.0, 100.0, np.nan, 10.0, 10.0, 10.0, 10.0],
        }
    )
    table = interval_table(per_query, ["R@1", "AP"], by=["condition"])
    assert list(table.columns) == [
        "condition", "R@1", "AP", "R@1 lo", "R@1 hi", "AP lo", "AP hi", "n_queries",
    ]  # fmt: skip
    fog, rain = table.iloc[0], table.iloc[1]
    assert fog["n_queries"] == 3 and fog["R@1"] == pytest.approx(200 / 3)
    assert fog["R@1 lo"] <= fog["R@1"] <= fog["R@1 hi"]
    assert (rain["R@1 lo"], rain["R@1 hi"], rain["AP lo"], rain["AP hi"]) == (0, 0, 10, 10)
    with pytest.raises(ConfigError, match="lacks"):
        interval_table(per_query, ["R@5"])
    skipped = interval_table(per_query.iloc[3:4], ["R@1"])  # only a skipped query
    assert skipped["n_queries"].tolist() == [0] and np.isnan(skipped.loc[0, "R@1 lo"])


def test_seed_effect_means_stds_and_interval():
    rng = np.random.default_rng(4)
    a = [rng.random(200) * 100 + 10 for _ in range(3)]
    b = [rng.random(200) * 100 for _ in range(3)]
    e = seed_effect(a, b)
    assert e.n_seeds == 3 and e.n_queries == 200
    assert e.effect == pytest.approx(
        np.mean([x.mean() - y.mean() for x, y in zip(a, b, strict=True)])
    )
    assert e.mean_a == pytest.approx(np.mean([x.mean() for x in a]))
    assert e.std_a == pytest.approx(np.std([x.mean() for x in a], ddof=1))
    assert e.lo < e.effect < e.hi and e.lo > 0
    assert seed_effect(a, b) == e  # fixed bootstrap seed: deterministic
    same = seed_effect(a, a)
    assert (same.effect, same.lo, same.hi) == (0.0, 0.0, 0.0)
    one = seed_effect(a[:1], b[:1])
    assert one.n_seeds == 1 and one.std_a == 0.0
    with pytest.raises(ConfigError, match="same seeds"):
        seed_effect(a, b[:2])


def test_seed_effect_carries_the_spread_between_seeds():
    # Every seed's difference is exact within the seed (no query noise) but seeds disagree.
    a = [np.full(100, v) for v in (1.0, 5.0, 9.0)]
    b = [np.zeros(100)] * 3
    e = seed_effect(a, b)
    assert e.effect == pytest.approx(5.0)
    assert e.lo < 5.0 < e.hi and e.lo >= 1.0 and e.hi <= 9.0


@pytest.mark.parametrize(
    "lo, hi, direction, n_seeds, want",
    [
        (0.5, 2.0, 1, 3, SUPPORTED),
        (-2.0, -0.5, 1, 3, CONTRADICTED),
        (-0.5, 2.0, 1, 3, UNDECIDED),
        (-2.0, -0.5, -1, 3, SUPPORTED),  # claimed decrease ("adding stage 1 hurts")
        (0.5, 2.0, -1, 5, CONTRADICTED),
        (0.5, 2.0, 1, 2, UNDECIDED),
        (0.0, 2.0, 1, 3, UNDECIDED),  # touching 0 is not excluding it
    ],
)
def test_verdict_rule(lo, hi, direction, n_seeds, want):
    assert verdict(lo, hi, direction, n_seeds)[0] == want


def test_verdict_note_names_the_seed_count_and_bad_direction_is_refused():
    assert verdict(1.0, 2.0, 1, 1) == (UNDECIDED, "1 seed (at least 3 needed for a verdict)")
    assert verdict(1.0, 2.0, 1, 2)[1].startswith("2 seeds")
    with pytest.raises(ConfigError, match="direction must be"):
        verdict(1.0, 2.0, 0, 3)
