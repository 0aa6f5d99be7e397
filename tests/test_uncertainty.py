"""Bootstrap intervals over queries and seeds, and the verdict rule, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.uncertainty import (
    NOT_REPRODUCED,
    SUPPORTED,
    UNDECIDED,
    adjust_p_values,
    bootstrap_interval,
    interval_table,
    paired_interval,
    resampled_means,
    seed_effect,
    t_interval,
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
    d = np.array([x.mean() - y.mean() for x, y in zip(a, b, strict=True)])
    assert e.effect == pytest.approx(d.mean())
    # Student's t with n - 1 = 2 degrees of freedom: t_0.975 = 4.303 (reference facts, §8)
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)
    assert (e.lo, e.hi) == pytest.approx((d.mean() - half, d.mean() + half))
    assert e.std_effect == pytest.approx(d.std(ddof=1))
    assert e.mean_a == pytest.approx(np.mean([x.mean() for x in a]))
    assert e.std_a == pytest.approx(np.std([x.mean() for x in a], ddof=1))
    assert seed_effect(a, b) == e
    same = seed_effect(a, a)
    assert (same.effect, same.lo, same.hi, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    one = seed_effect(a[:1], b[:1])
    assert one.n_seeds == 1 and one.std_a == 0.0 and np.isnan(one.lo) and np.isnan(one.p_value)
    with pytest.raises(ConfigError, match="same seeds"):
        seed_effect(a, b[:2])


def test_seed_effect_carries_the_spread_between_seeds():
    # Every seed's difference is exact within the seed (no query noise) but seeds disagree:
    # the interval is wider than the seeds' range, as t with 2 degrees of freedom is.
    a = [np.full(100, v) for v in (1.0, 5.0, 9.0)]
    b = [np.zeros(100)] * 3
    e = seed_effect(a, b)
    assert e.effect == pytest.approx(5.0)
    assert e.lo == pytest.approx(5.0 - 4.302652729911275 * 4.0 / np.sqrt(3))
    assert e.lo < 0 < 9.0 < e.hi
    # p-value of the one-sample t-test (mean 5, sd 4, n 3: t = 2.165, df 2)
    assert e.p_value == pytest.approx(0.16288, abs=1e-4)


def test_t_interval_is_vectorised_and_matches_the_scalar_case():
    rng = np.random.default_rng(0)
    effects = rng.normal(size=(50, 4))
    mean, lo, hi, p = t_interval(effects)
    for i in (0, 17, 49):
        e = seed_effect([np.array([v]) for v in effects[i]], [np.zeros(1)] * 4)
        assert (e.effect, e.lo, e.hi, e.p_value) == pytest.approx((mean[i], lo[i], hi[i], p[i]))
    # the interval excludes 0 exactly when p < 0.05
    assert ((lo > 0) | (hi < 0)).tolist() == (p < 0.05).tolist()


# Seed SDs of the per-seed effect (points of R@1): the range the repository's grids show and beyond.
SEED_SDS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)


def _null_verdict_rate(n_seeds: int, seed_sd: float, confidence: float, n_sim: int = 4000) -> float:
    """How often a claim with a true effect of 0 gets a verdict, by the repository's own rule
    (:func:`t_interval` + :func:`verdict`), with per-seed effects that also carry query noise
    (a recall over 640 queries: binomial SE about 1.4 points at p = 0.3)."""
    rng = np.random.default_rng(int(seed_sd * 1000) + n_seeds)
    seed_level = rng.normal(0.0, seed_sd, size=(n_sim, n_seeds))
    query_level = rng.normal(0.0, 1.4, size=(n_sim, n_seeds))
    _, lo, hi, _ = t_interval(seed_level + query_level, confidence=confidence)
    calls = [verdict(a, b, 1, n_seeds)[0] != UNDECIDED for a, b in zip(lo, hi, strict=True)]
    return float(np.mean(calls))


@pytest.mark.parametrize("seed_sd", SEED_SDS)
def test_null_false_verdict_rate_is_at_most_five_percent_at_three_seeds(seed_sd):
    # 4,000 simulated claims: the Monte Carlo SE of a 5 % rate is 0.34 points; 5.8 % is the
    # 95th percentile of what a true 5 % rate can show, while a 90 % interval labelled 95 %
    # (a 10 % rate) or the percentile bootstrap over seeds (15-24 % at these SDs) fails it.
    assert _null_verdict_rate(3, seed_sd, 0.95) <= 0.058


def test_a_ninety_percent_interval_called_ninety_five_would_be_caught():
    assert _null_verdict_rate(3, 3.0, 0.90) > 0.08


def test_t_interval_has_its_coverage_under_a_true_effect():
    # a true effect of 4 points, seed SD 3: the 95 % interval covers 4 in about 95 % of draws
    rng = np.random.default_rng(7)
    effects = 4.0 + rng.normal(0.0, 3.0, size=(4000, 3))
    _, lo, hi, _ = t_interval(effects)
    assert abs(float(np.mean((lo <= 4.0) & (4.0 <= hi))) - 0.95) < 0.01


def test_holm_and_benjamini_hochberg_adjust_as_their_definitions():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 (m = 4) -> 0.02, 0.03, 0.06, 0.06 (monotone)
    assert adjust_p_values(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 -> 0.02, 0.02, 0.04, 0.04
    assert adjust_p_values(p, "bh")[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(adjust_p_values(p)[4])
    assert adjust_p_values([0.9, 0.8], "holm").tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="method"):
        adjust_p_values(p, "bonferroni")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        adjust_p_values([1.5])


def test_cluster_bootstrap_resamples_whole_locations():
    # 20 locations of 12 views each; a location's views are equal, locations differ: the
    # effective sample is 20, not 240, and the cluster interval is about sqrt(12) wider.
    rng = np.random.default_rng(3)
    per_location = rng.normal(0.0, 10.0, size=20)
    values = np.repeat(per_location, 12)
    clusters = np.repeat(np.arange(20), 12)
    lo_q, hi_q = bootstrap_interval(values)
    lo_c, hi_c = bootstrap_interval(values, clusters=clusters)
    assert (hi_c - lo_c) / (hi_q - lo_q) == pytest.approx(np.sqrt(12), rel=0.25)
    # one view per location: the cluster bootstrap is the query bootstrap
    assert bootstrap_interval(per_location, clusters=np.arange(20)) == pytest.approx(
        bootstrap_interval(per_location)
    )
    # any key type: clusters are numbered in order of first appearance
    keys = np.array([f"loc{(k * 7) % 20:02d}" for k in clusters])
    assert bootstrap_interval(values, clusters=keys) == pytest.approx((lo_c, hi_c))
    with pytest.raises(ConfigError, match="one key per query"):
        bootstrap_interval(values, clusters=clusters[:-1])


@pytest.mark.parametrize(
    "lo, hi, direction, n_seeds, want",
    [
        (0.5, 2.0, 1, 3, SUPPORTED),
        (-2.0, -0.5, 1, 3, NOT_REPRODUCED),
        (-0.5, 2.0, 1, 3, UNDECIDED),
        (-2.0, -0.5, -1, 3, SUPPORTED),  # claimed decrease ("adding stage 1 hurts")
        (0.5, 2.0, -1, 5, NOT_REPRODUCED),
        (0.5, 2.0, 1, 2, UNDECIDED),
        (0.0, 2.0, 1, 3, UNDECIDED),  # touching 0 is not excluding it
        (-3.0, -1.0, -1, 3, SUPPORTED),
        (1.0, 3.0, -1, 3, NOT_REPRODUCED),  # claimed decrease, measured increase
        (-4.58, 3.91, -1, 3, UNDECIDED),  # claimed decrease, interval straddles 0
    ],
)
def test_verdict_rule(lo, hi, direction, n_seeds, want):
    assert verdict(lo, hi, direction, n_seeds)[0] == want


def test_verdict_note_names_the_seed_count_and_bad_direction_is_refused():
    assert verdict(1.0, 2.0, 1, 1) == (UNDECIDED, "1 seed (at least 3 needed for a verdict)")
    assert verdict(1.0, 2.0, 1, 2)[1].startswith("2 seeds")
    with pytest.raises(ConfigError, match="direction must be"):
        verdict(1.0, 2.0, 0, 3)


def test_verdict_needs_the_family_adjusted_p_value_below_alpha():
    assert verdict(0.5, 2.0, 1, 3, p_adjusted=0.01)[0] == SUPPORTED
    label, note = verdict(0.5, 2.0, 1, 3, p_adjusted=0.2)
    assert label == UNDECIDED and "adjustment" in note
    assert verdict(-2.0, -0.5, 1, 3, p_adjusted=0.049)[0] == NOT_REPRODUCED
