"""The claims registry and the claims table built from seeded per-query results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoloc_lib.analysis import ablations as A
from geoloc_lib.analysis.ablations import INFONCE_BASELINE, RAW_PIXELS, SeedResults, check_seeds
from geoloc_lib.analysis.claims import (
    CLAIMS,
    MEASURED,
    PRIMARY,
    SECONDARY,
    claims_registry,
    claims_table,
    per_seed_table,
    restoration_seed_results,
)
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.uncertainty import adjust_p_values
from geoloc_lib.weather.synth import CONDITIONS

GVM_VARIANTS = ("BS", "BS+CL", "BS+MF", "BS+CL+MF", "f4", "f4+f3", "f4+f3+f2", "f4+f3+f2+f1")


def _hits(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return (rng.random(n) < p) * 100.0


def _street(seeds: list[int], n: int = 400) -> SeedResults:
    # BS+CL clearly better than BS; stage 1 clearly hurts; BS+MF equal to BS (undecided)
    p = {"BS": 0.2, "BS+CL": 0.6, "BS+MF": 0.2, "BS+CL+MF": 0.6, "f4": 0.6, "f4+f3": 0.6}
    p |= {"f4+f3+f2": 0.6, "f4+f3+f2+f1": 0.1, INFONCE_BASELINE.label: 0.05}
    p[A.GEO_NEIGHBOURS.label] = 0.3
    train_s = {v: 100.0 for v in p} | {"BS+CL+MF": 400.0}
    rows, summary = [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        base = rng.random(n)  # the same hard and easy queries for every variant
        for v, pv in p.items():
            hits = (base < pv) * 100.0
            near = (base < pv + 0.2) * 100.0  # within 36 m: more than the exact tile
            rows.append(
                pd.DataFrame(
                    {"seed": s, "variant": v, "query": np.arange(n), "R@1": hits,
                     "top1_within_36m": near}
                )
            )  # fmt: skip
            summary.append({"seed": s, "variant": v, "R@1": hits.mean(), "train_s": train_s[v]})
    return SeedResults(pd.DataFrame(summary), pd.concat(rows, ignore_index=True))


MCGF_P = {
    A.FULL: 0.5, A.WITHOUT_RESTORATION: 0.2, A.NO_NOISE: 0.7, A.NO_NOISE_ONE_PASS: 0.6,
    A.ONE_PASS: 0.6, A.LAST_STEP: 0.5, A.NOT_RESTORED: 0.3, A.CLEAN_QUERY: 0.9, RAW_PIXELS: 0.02,
    "detached restorer": 0.4,
}  # fmt: skip


def _mcgf(seeds: list[int], n: int = 300, p: dict | None = None) -> SeedResults:
    p = MCGF_P if p is None else p
    rows, summary = [], []
    for s in seeds:
        rng = np.random.default_rng(100 + s)
        for c in (*CONDITIONS, "mixed"):
            base = rng.random(n)
            for v, pv in p.items():
                pv = pv(c) if callable(pv) else pv
                hits = (base < pv) * 100.0
                rows.append(
                    pd.DataFrame(
                        {"seed": s, "variant": v, "condition": c, "query": np.arange(n),
                         "location": np.arange(n) // 4, "R@1": hits}
                    )
                )  # fmt: skip
                summary.append({"seed": s, "variant": v, "condition": c, "R@1": hits.mean()})
        for v in p:
            summary.append({"seed": s, "variant": v, "condition": "mean", "R@1": 0.0})
    return SeedResults(pd.DataFrame(summary), pd.concat(rows, ignore_index=True))


def _restoration(seeds: list[int], n: int = 200) -> SeedResults:
    rows = []
    for s in seeds:
        rng = np.random.default_rng(200 + s)
        for c in CONDITIONS:
            weathered = rng.uniform(0.5, 0.9, n)
            for step, corr in ((0, weathered), (1, weathered + 0.05), (2, weathered - 0.02)):
                rows.append(
                    pd.DataFrame(
                        {"seed": s, "condition": c, "query": np.arange(n), "step": step,
                         "corr": corr, "psnr": 20.0 + 10 * corr}
                    )
                )  # fmt: skip
    return restoration_seed_results(pd.concat(rows, ignore_index=True))


def test_registry_has_one_primary_claim_per_paper_section():
    ids = {c.id for c in CLAIMS}
    assert {"mcgf-restoration", "mcgf-diffusion", "mcgf-pooling", "mcgf-beats-raw-pixels"} <= ids
    assert {"mcgf-restorer-quality", "mcgf-ddim-steps", "mcgf-diffusion-one-pass"} <= ids
    assert {f"mcgf-restoration-{c}" for c in CONDITIONS} <= ids
    assert {"gvm-contrastive", "gvm-multiscale", "gvm-stage1-hurts", "gvm-beats-infonce"} <= ids
    assert len(ids) == len(CLAIMS)
    reg = claims_registry()
    assert list(reg.columns) == [
        "id", "paper", "where", "statement", "metric", "a", "b", "condition", "direction",
        "role", "results",
    ]  # fmt: skip
    assert reg.set_index("id").loc["gvm-stage1-hurts", "direction"] == "a < b"
    primary = reg[reg["role"] == PRIMARY]
    assert primary["where"].is_unique and len(primary) == 7
    assert set(reg.loc[reg["id"].str.startswith("mcgf-restoration-"), "role"]) == {SECONDARY}
    # every deviation of the CPU presets is a measured row against the paper's method
    measured = reg[reg["role"] == MEASURED]
    assert {d.label for d in A.DEVIATIONS} <= set(measured["a"])
    decided = reg[reg["role"] != MEASURED]
    assert all(w.startswith(("MCGF §", "MCGF Table", "GeoViewMatch §", "GeoViewMatch Table"))
               for w in decided["where"])  # fmt: skip


def _table(seeds=(0, 1, 2)):
    seeds = list(seeds)
    return claims_table(
        mcgf=_mcgf(seeds), street=_street(seeds), restoration=_restoration(seeds)
    ).set_index("claim")


def test_claims_table_verdicts_from_three_seeds():
    table = _table()
    assert table.loc["gvm-contrastive", "verdict"] == "supported"
    assert table.loc["gvm-contrastive", "effect"] == pytest.approx(40.0, abs=6)
    assert table.loc["gvm-multiscale", "verdict"] == "undecided"  # identical per query
    assert table.loc["gvm-multiscale", "effect"] == 0.0
    assert table.loc["gvm-stage1-hurts", "verdict"] == "supported"  # claimed decrease
    assert table.loc["mcgf-diffusion", "verdict"] == "not reproduced"
    assert table.loc["mcgf-restoration-fog", "verdict"] == "supported"
    assert table.loc["mcgf-beats-raw-pixels", "condition"] == "mixed"
    assert table.loc["mcgf-restorer-quality", "verdict"] == "not reproduced"  # last step worse
    assert table.loc["mcgf-restorer-quality", "effect"] == pytest.approx(-0.02)  # last step
    assert table.loc["mcgf-restorer-quality", "condition"] == "mean of 9 weathers"
    assert table.loc["mcgf-ddim-steps", "verdict"] == "not reproduced"  # one pass is better
    row = table.loc["gvm-contrastive"]
    assert row["effect lo"] <= row["effect"] <= row["effect hi"]
    assert (row["n_seeds"], row["n_queries"]) == (3, 400)
    assert row["a mean"] - row["b mean"] == pytest.approx(row["effect"])
    assert row["a std"] > 0
    assert "GeoSynth, random initialisation, 3 seeds" in row["tested"]
    assert "not tested" in row["tested"]


def test_measured_rows_have_no_verdict_and_stay_out_of_the_families():
    table = _table()
    dev = table.loc["mcgf-deviation-detached"]
    assert dev["role"] == MEASURED and dev["verdict"] == "measured"
    assert np.isnan(dev["p adjusted"]) and dev["effect"] < 0
    assert table.loc["mcgf-clean-query-oracle", "effect"] > 0
    assert table.loc["gvm-deviation-geo-neighbours", "verdict"] == "measured"
    # a deviation the grid did not train is left out; a missing claimed variant is an error
    assert "mcgf-deviation-no_nce" not in table.index


def test_p_values_are_adjusted_within_each_family():
    table = _table()
    assert (table["p adjusted"].dropna() >= table.loc[table["p adjusted"].notna(), "p"]).all()
    for role in (PRIMARY, SECONDARY):
        family = table[table["role"] == role]
        assert family["p adjusted"].to_numpy() == pytest.approx(
            adjust_p_values(family["p"].to_numpy(), "holm"), nan_ok=True
        )
    # raw p and the raw interval agree: the interval excludes 0 exactly when p < 0.05
    decided = table[table["role"] != MEASURED]
    excludes = (decided["effect lo"] > 0) | (decided["effect hi"] < 0)
    assert (excludes == (decided["p"] < 0.05)).all()


def test_a_mean_claim_averages_the_ten_conditions():
    # the restoration effect differs by condition: 10 points under fog, 30 elsewhere
    p = dict(MCGF_P)
    p[A.FULL] = lambda c: 0.3 if c == "fog" else 0.5
    table = claims_table(mcgf=_mcgf([0, 1, 2], p=p)).set_index("claim")
    per_condition = [table.loc[f"mcgf-restoration-{c}", "effect"] for c in CONDITIONS]
    assert table.loc["mcgf-restoration", "effect"] == pytest.approx(np.mean(per_condition))
    assert table.loc["mcgf-restoration", "effect"] < 30.0


def test_a_claimed_decrease_straddling_zero_is_undecided():
    # stage 1 neither helps nor hurts: the interval straddles 0 and the claim is "a < b"
    street = _street([0, 1, 2])
    pq = street.per_query.copy()
    rng = np.random.default_rng(9)
    stage1 = pq["variant"] == "f4+f3+f2+f1"
    pq.loc[stage1, "R@1"] = (rng.random(int(stage1.sum())) < 0.6) * 100.0
    row = claims_table(street=SeedResults(street.summary, pq)).set_index("claim")
    row = row.loc["gvm-stage1-hurts"]
    assert row["effect lo"] < 0 < row["effect hi"]
    assert row["verdict"] == "undecided"


def test_compute_ratio_and_meter_level_recall_beside_r1():
    table = _table()
    assert table.loc["gvm-beats-infonce", "compute a/b"] == pytest.approx(4.0)
    assert np.isnan(table.loc["mcgf-pooling", "compute a/b"])  # timings not in these results
    row = table.loc["gvm-contrastive"]
    assert row["effect ≤36 m"] == pytest.approx(40.0, abs=6)
    assert np.isnan(table.loc["mcgf-restoration", "effect ≤36 m"])


def test_fewer_than_three_seeds_is_undecided_with_a_note():
    table = claims_table(street=_street([0])).set_index("claim")
    assert (table.loc[table["role"] != MEASURED, "verdict"] == "undecided").all()
    assert (table.loc[table["role"] != MEASURED, "note"].str.startswith("1 seed")).all()
    assert not table.index.str.startswith("mcgf").any()  # no MCGF results: left out


def test_missing_variant_or_results_is_a_clear_error():
    street = _street([0])
    street = SeedResults(street.summary, street.per_query[street.per_query["variant"] != "BS+CL"])
    with pytest.raises(ConfigError, match="no results for variant 'BS\\+CL'"):
        claims_table(street=street)
    with pytest.raises(ConfigError, match="give the MCGF results"):
        claims_table()
    with pytest.raises(ConfigError, match="seeds must be a non-empty list"):
        check_seeds([0, 0])
    with pytest.raises(ConfigError, match="seeds must be"):
        check_seeds(3)


def test_per_seed_table_and_figure():
    from geoloc_lib.viz.claims import claims_figure

    wide = per_seed_table(_street([0, 1, 2]))
    assert list(wide.columns) == [
        "variant", "seed 0 R@1", "seed 1 R@1", "seed 2 R@1", "mean R@1", "std R@1",
    ]  # fmt: skip
    mcgf = per_seed_table(_mcgf([0, 1]))
    assert set(mcgf["condition"]) == {"mean", "mixed"}
    table = claims_table(street=_street([0, 1, 2]))
    fig = claims_figure(table)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(table)
    # each label is the claim's statement, with its role mark explained in the legend
    assert all(str(s)[:30] in lab for s, lab in zip(table["statement"], labels, strict=True))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"supported", "not reproduced", "undecided", "■ primary", "□ secondary"} <= set(legend)
    assert "(3 seeds;" in fig.axes[0].get_title()
    one = claims_figure(claims_table(street=_street([0])))
    assert "(1 seed;" in one.axes[0].get_title()


def test_seed_results_saved_one_seed_at_a_time_give_the_same_claims(tmp_path):
    from geoloc_lib.analysis.seed_results import load_seed_results, save_seed_results, saved_seeds

    settings = {"preset": "smoke", "epochs": 1, "max_queries": 64}
    whole = _mcgf([0, 1, 2])
    for seed in (2, 0, 1):  # three separate runs, one seed each
        part = _mcgf([seed])
        save_seed_results(part, tmp_path, "mcgf", settings)
    assert saved_seeds(tmp_path, "mcgf") == [0, 1, 2]
    loaded = load_seed_results(tmp_path, "mcgf", settings)
    pd.testing.assert_frame_equal(
        claims_table(mcgf=loaded), claims_table(mcgf=whole), check_exact=True
    )
    first = sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    save_seed_results(whole, tmp_path, "mcgf", settings)  # byte for byte the same files
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()) == first
    assert load_seed_results(tmp_path, "street", settings) is None
    with pytest.raises(ConfigError, match=r"seed1'?.*other settings|seed 0's mcgf results"):
        load_seed_results(tmp_path, "mcgf", {**settings, "epochs": 22})
