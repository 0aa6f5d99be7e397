"""Restoration quality of MCGF's restorer: image metrics, the per-query table, intervals, figure."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.university import load_university1652
from geoloc_lib.data.university_torch import eval_loader
from geoloc_lib.eval.restoration import (
    PER_QUERY_COLUMNS,
    PSNR_CAP_DB,
    SSIM_K1,
    SSIM_K2,
    cluster_bootstrap_interval,
    pearson_corr,
    psnr,
    restoration_deltas,
    restoration_quality,
    restoration_summary,
    ssim,
)
from geoloc_lib.eval.uncertainty import bootstrap_interval
from geoloc_lib.eval.university import eval_queries
from geoloc_lib.training.recipes import preset_for
from geoloc_lib.weather.sets import eval_weather

sys.path.insert(0, str(Path(__file__).parent))
from layouts import make_university1652  # noqa: E402

CONDITIONS = ("normal", "dark", "wind")
SEED = 7


def _images(b: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- image metrics


def test_identical_images_give_the_psnr_cap_ssim_1_and_corr_1():
    x = _images()
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_CAP_DB, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(pearson_corr(x, x), torch.ones(2, dtype=torch.float64))


def test_a_constant_shift_sets_the_psnr_and_leaves_corr_at_1():
    y = 0.25 + 0.5 * _images().double()  # in [0.25, 0.75]: a shift of 0.1 stays in [0, 1]
    # MSE = shift²: PSNR = -20 log10(shift); halving the shift adds 20 log10(2) = 6.02 dB
    torch.testing.assert_close(psnr(y + 0.1, y), torch.full((2,), 20.0, dtype=torch.float64))
    gain = psnr(y + 0.05, y) - psnr(y + 0.1, y)
    torch.testing.assert_close(gain, torch.full((2,), 20 * math.log10(2), dtype=torch.float64))
    torch.testing.assert_close(pearson_corr(y + 0.1, y), torch.ones(2, dtype=torch.float64))
    # a contrast gain keeps r = 1; an inverted image gives r = -1 (the sign is the image's)
    torch.testing.assert_close(pearson_corr(0.5 * y, y), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(pearson_corr(1 - y, y), -torch.ones(2, dtype=torch.float64))
    # an independent noise image is uncorrelated
    assert abs(float(pearson_corr(_images(1, 64, 1), _images(1, 64, 2)))) < 0.05


def test_ssim_of_two_constant_images_in_closed_form():
    # no variance anywhere: SSIM = (2ab + C1) / (a² + b² + C1) (the structure term is C2 / C2)
    a, b = 0.2, 0.4
    x, y = torch.full((1, 3, 12, 12), a), torch.full((1, 3, 12, 12), b)
    c1 = SSIM_K1**2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    torch.testing.assert_close(ssim(x, y), torch.tensor([expected], dtype=torch.float64))


def _ssim_numpy(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM of one image pair [C, H, W], window by window (the definition, unvectorised)."""
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    values = []
    for ch in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                px, py = x[ch, i : i + size, j : j + size], y[ch, i : i + size, j : j + size]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cov = (w * (px - mx) * (py - my)).sum()
                values.append(
                    (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return float(np.mean(values))


def test_ssim_matches_a_window_by_window_numpy_reference():
    x = _images(2, 14, seed=3)
    y = (0.6 * x + 0.3 * _images(2, 14, seed=4)).clamp(0, 1)  # related but not equal
    expected = [_ssim_numpy(x[i].double().numpy(), y[i].double().numpy()) for i in range(2)]
    got = ssim(x, y)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=0)
    assert 0.2 < float(got.min()) < 0.95  # a case far from both ends
    with pytest.raises(ConfigError, match="window"):
        ssim(_images(1, 8), _images(1, 8))


# --------------------------------------------------------------------------- cluster bootstrap


def test_cluster_bootstrap_resamples_whole_clusters():
    # 8 locations of 6 identical views each: really 8 observations, not 48
    clusters = np.repeat(np.arange(8), 6)
    values = np.repeat(np.arange(8, dtype=np.float64), 6)
    lo_c, hi_c = cluster_bootstrap_interval(values, clusters)
    lo_q, hi_q = bootstrap_interval(values)
    assert lo_c < values.mean() < hi_c
    # the views move together: about sqrt(6) = 2.4 times the per-query width
    assert (hi_c - lo_c) > 1.8 * (hi_q - lo_q)
    # one view per cluster: the per-query bootstrap's width (a different draw, the same spread)
    lo_1, hi_1 = cluster_bootstrap_interval(values[::6], clusters[::6])
    assert (hi_c - lo_c) == pytest.approx(hi_1 - lo_1, rel=0.15)
    # deterministic; several columns resampled with the same draws; a constant column is exact
    assert cluster_bootstrap_interval(values, clusters) == (lo_c, hi_c)
    lo2, hi2 = cluster_bootstrap_interval(np.c_[values, np.full(48, 3.0)], clusters)
    assert (lo2[0], hi2[0]) == (lo_c, hi_c) and lo2[1] == hi2[1] == 3.0
    with pytest.raises(ConfigError, match="NaN"):
        cluster_bootstrap_interval(np.r_[values[:-1], np.nan], clusters)


# --------------------------------------------------------------------------- per-query table


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_university1652(
        tmp_path_factory.mktemp("u"), train_ids=(1, 2), test_ids=(10, 11, 12, 13), views=3
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(num_classes=5).eval()
    torch.nn.init.normal_(model.restore.deconv3[0].weight, std=0.2)  # the steps differ
    return model


@pytest.fixture(scope="module")
def table(root, model) -> pd.DataFrame:
    return restoration_quality(
        model, root, CONDITIONS, max_queries=9, seed=SEED, device="cpu", batch_size=4
    )


def test_per_query_table_shape_and_columns(table, model, root):
    steps = 3  # smoke: t_start = 10 in 2 DDIM steps: ẑ_0 at t = 10, 5, 0
    assert list(table.columns) == list(PER_QUERY_COLUMNS)
    assert len(table) == len(CONDITIONS) * 9 * (steps + 1)
    assert list(dict.fromkeys(table["condition"])) == list(CONDITIONS)
    one = table[table["condition"] == "dark"]
    assert one["step"].tolist() == list(range(steps + 1)) * 9
    assert one["query"].tolist() == np.repeat(np.arange(9), steps + 1).tolist()
    assert one.groupby("step")["t"].first().tolist()[1:] == [10.0, 5.0, 0.0]
    assert one.loc[one["step"] == 0, "t"].isna().all()
    assert set(one.loc[one["step"] == 0, "stage"]) == {"weathered"}
    assert set(one.loc[one["step"] == 2, "stage"]) == {"step 2"}
    # the queries evaluate_mcgf draws for the same seed and max_queries, with their labels
    queries = eval_queries(load_university1652(root).task("drone->satellite")[0], 9, SEED)
    assert one.loc[one["step"] == 0, "location"].tolist() == queries.labels.tolist()
    # "normal" leaves the query clean: the cap, SSIM 1 and corr 1 at step 0
    clean = table[(table["condition"] == "normal") & (table["step"] == 0)]
    assert (clean["psnr"] == PSNR_CAP_DB).all()
    assert np.allclose(clean[["ssim", "corr"]], 1.0)
    assert table[["psnr", "ssim", "corr"]].notna().all().all()


def test_rows_are_the_metrics_of_the_evaluation_weather_and_each_ddim_step(table, model, root):
    """Recomputed by hand on one batch of all queries (the table used batches of 4)."""
    queries = eval_queries(load_university1652(root).task("drone->satellite")[0], 9, SEED)
    batch = next(iter(eval_loader(queries, model.cfg.img_size, batch_size=9)))
    clean = batch["image"]
    weathered = eval_weather("wind", seed=SEED)(batch)["image"]
    with torch.no_grad():
        preds = model.restore_query(weathered)
    rows = table[table["condition"] == "wind"]
    for step, image in enumerate([weathered, *preds]):
        got = rows[rows["step"] == step]
        np.testing.assert_allclose(got["corr"], pearson_corr(image, clean).numpy(), atol=1e-6)
        np.testing.assert_allclose(got["psnr"], psnr(image, clean).numpy(), atol=1e-4)
        np.testing.assert_allclose(got["ssim"], ssim(image, clean).numpy(), atol=1e-5)
    assert not np.allclose(rows.loc[rows["step"] == 1, "corr"], rows.loc[rows["step"] == 3, "corr"])


def test_same_seed_same_table_and_model_mode_kept(table, model, root):
    # one condition alone, in one batch: the same rows as the three-condition, batch-of-4 table
    model.train()
    again = restoration_quality(
        model, root, ("wind",), max_queries=9, seed=SEED, device="cpu", batch_size=9
    )
    assert model.training  # restored after the pass
    model.eval()
    wind = table[table["condition"] == "wind"].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, wind, check_exact=False, atol=1e-6, rtol=0)
    # another seed: other queries and another weather draw
    other = restoration_quality(model, root, ("wind",), max_queries=9, seed=SEED + 1, device="cpu")
    assert not np.allclose(
        other.loc[other["step"] == 0, "psnr"], wind.loc[wind["step"] == 0, "psnr"]
    )


def test_models_without_a_restorer_are_refused(root):
    baseline = preset_for("mcgf", "smoke").build(num_classes=5, restoration=False)
    with pytest.raises(ConfigError, match="restoration=False"):
        restoration_quality(baseline, root, ("normal",), device="cpu")
    model = preset_for("mcgf", "smoke").build(num_classes=5)
    with pytest.raises(ConfigError, match="condition"):
        restoration_quality(model, root, ("drizzle",), device="cpu")


# --------------------------------------------------------------------------- summaries


def test_summary_means_intervals_and_the_mean_condition(table):
    summary = restoration_summary(table, n_resamples=300)
    assert list(summary["condition"].unique()) == [*CONDITIONS, "mean"]
    assert len(summary) == (len(CONDITIONS) + 1) * 4
    for m in ("psnr", "ssim", "corr"):
        assert {m, f"{m} lo", f"{m} hi"} <= set(summary.columns)
        assert (summary[f"{m} lo"] <= summary[m] + 1e-12).all()
        assert (summary[m] <= summary[f"{m} hi"] + 1e-12).all()
    assert (summary["n_queries"] == 9).all() and (summary["n_locations"] == 4).all()
    # the share of capped PSNR values in each mean: the clean "normal" input, 1 of 3 in the mean
    capped = summary.set_index(["condition", "step"])["psnr_capped"]
    assert capped[("normal", 0)] == 1.0 and capped[("mean", 0)] == pytest.approx(1 / 3)
    assert capped.drop([("normal", 0), ("mean", 0)]).eq(0).all()
    row = summary[(summary["condition"] == "mean") & (summary["step"] == 2)]
    by_condition = table[table["step"] == 2].groupby("condition")["corr"].mean()
    assert float(row["corr"].iloc[0]) == pytest.approx(by_condition.mean())
    wind = summary[(summary["condition"] == "wind") & (summary["step"] == 1)]
    assert float(wind["t"].iloc[0]) == 10.0 and wind["stage"].iloc[0] == "step 1"
    # the mean row over chosen conditions only
    part = restoration_summary(table, mean_over=("dark", "wind"), n_resamples=50)
    mean = part[(part["condition"] == "mean") & (part["step"] == 0)]
    expected = table[(table["step"] == 0) & table["condition"].isin(["dark", "wind"])]["psnr"]
    assert float(mean["psnr"].iloc[0]) == pytest.approx(expected.mean())


def test_deltas_are_restored_minus_weathered_per_query(table):
    deltas = restoration_deltas(table, n_resamples=300)
    assert list(dict.fromkeys(deltas["condition"])) == [*CONDITIONS, "mean"]
    assert deltas.groupby("condition")["step"].apply(list).tolist() == [[1, 3]] * 4
    assert {"d_psnr", "d_psnr lo", "d_psnr hi", "d_corr", "d_ssim hi"} <= set(deltas.columns)
    for step in (1, 3):
        dark = table[table["condition"] == "dark"]
        want = (
            dark.loc[dark["step"] == step, "corr"].to_numpy()
            - dark.loc[dark["step"] == 0, "corr"].to_numpy()
        ).mean()
        got = deltas[(deltas["condition"] == "dark") & (deltas["step"] == step)]
        assert float(got["d_corr"].iloc[0]) == pytest.approx(want)
        assert float(got["d_corr lo"].iloc[0]) <= want <= float(got["d_corr hi"].iloc[0])
    # the clean input cannot be improved on: "normal"'s differences are at most 0
    normal = deltas[deltas["condition"] == "normal"]
    assert (normal[["d_psnr", "d_corr"]] <= 1e-9).all().all()
    assert set(deltas["stage"]) == {"step 1 (one pass)", "step 3 (last)"}


def test_figure_draws_the_summary(table):
    from geoloc_lib.viz.restoration import restoration_quality_figure

    fig = restoration_quality_figure(restoration_summary(table, n_resamples=50))
    axes = fig.axes
    assert len(axes) == 2
    assert "dB" in axes[1].get_ylabel() and "corr" in axes[0].get_ylabel().lower()
    assert [t.get_text() for t in axes[1].get_xticklabels()] == [*CONDITIONS, "mean"]
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0].startswith("weathered") and texts[1].startswith("step 1")
    assert "step k" in legend.get_title().get_text()
    assert fig._suptitle is not None
    notes = " ".join(t.get_text() for t in axes[1].texts)
    assert "capped at 100 dB" in notes and "includes values at the cap" in notes
