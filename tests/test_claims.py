"""The claims registry and the claims table built from seeded per-query results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoloc_lib.analysis.ablations import INFONCE_BASELINE, RAW_PIXELS, SeedResults, check_seeds
from geoloc_lib.analysis.claims import (
    CLAIMS,
    claims_registry,
    claims_table,
    per_seed_table,
)
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.weather.synth import CONDITIONS

GVM_VARIANTS = ("BS", "BS+CL", "BS+MF", "BS+CL+MF", "f4", "f4+f3", "f4+f3+f2", "f4+f3+f2+f1")


def _hits(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return (rng.random(n) < p) * 100.0


def _street(seeds: list[int], n: int = 400) -> SeedResults:
    # BS+CL clearly better than BS; stage 1 clearly hurts; BS+MF equal to BS (undecided)
    p = {"BS": 0.2, "BS+CL": 0.6, "BS+MF": 0.2, "BS+CL+MF": 0.6, "f4": 0.6, "f4+f3": 0.6}
    p |= {"f4+f3+f2": 0.6, "f4+f3+f2+f1": 0.1, INFONCE_BASELINE.label: 0.05}
    rows, summary = [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        base = rng.random(n)  # the same hard and easy queries for every variant
        for v, pv in p.items():
            hits = (base < pv) * 100.0
            rows.append(pd.DataFrame({"seed": s, "variant": v, "query": np.arange(n), "R@1": hits}))
            summary.append({"seed": s, "variant": v, "R@1": hits.mean()})
    return SeedResults(pd.DataFrame(summary), pd.concat(rows, ignore_index=True))


def _mcgf(seeds: list[int], n: int = 300) -> SeedResults:
    p = {"MCGF (full)": 0.5, "w/o restoration": 0.2, "w/o diffusion": 0.7, "last step only": 0.5}
    p[RAW_PIXELS] = 0.02
    rows, summary = [], []
    for s in seeds:
        rng = np.random.default_rng(100 + s)
        for c in (*CONDITIONS, "mixed"):
            base = rng.random(n)
            for v, pv in p.items():
                hits = (base < pv) * 100.0
                rows.append(
                    pd.DataFrame(
                        {"seed": s, "variant": v, "condition": c, "query": np.arange(n),
                         "R@1": hits}
                    )
                )  # fmt: skip
                summary.append({"seed": s, "variant": v, "condition": c, "R@1": hits.mean()})
        for v in p:
            summary.append({"seed": s, "variant": v, "condition": "mean", "R@1": 0.0})
    return SeedResults(pd.DataFrame(summary), pd.concat(rows, ignore_index=True))


def test_registry_covers_the_claims_of_both_papers():
    ids = {c.id for c in CLAIMS}
    assert {"mcgf-restoration", "mcgf-diffusion", "mcgf-pooling", "mcgf-beats-raw-pixels"} <= ids
    assert {f"mcgf-restoration-{c}" for c in CONDITIONS} <= ids
    assert {"gvm-contrastive", "gvm-multiscale", "gvm-stage1-hurts", "gvm-beats-infonce"} <= ids
    assert len(ids) == len(CLAIMS)
    reg = claims_registry()
    assert list(reg.columns) == [
        "id", "paper", "where", "statement", "metric", "a", "b", "condition", "direction",
    ]  # fmt: skip
    assert reg.set_index("id").loc["gvm-stage1-hurts", "direction"] == "a < b"
    assert all(w.startswith(("MCGF §", "MCGF Table", "GeoViewMatch Table")) for w in reg["where"])


def test_claims_table_verdicts_from_three_seeds():
    table = claims_table(mcgf=_mcgf([0, 1, 2]), street=_street([0, 1, 2])).set_index("claim")
    assert len(table) == len(CLAIMS)
    assert table.loc["gvm-contrastive", "verdict"] == "supported"
    assert table.loc["gvm-contrastive", "effect"] == pytest.approx(40.0, abs=6)
    assert table.loc["gvm-multiscale", "verdict"] == "undecided"  # identical per query
    assert table.loc["gvm-multiscale", "effect"] == 0.0
    assert table.loc["gvm-stage1-hurts", "verdict"] == "supported"  # claimed decrease
    assert table.loc["mcgf-diffusion", "verdict"] == "contradicted"
    assert table.loc["mcgf-restoration-fog", "verdict"] == "supported"
    assert table.loc["mcgf-beats-raw-pixels", "condition"] == "mixed"
    row = table.loc["gvm-contrastive"]
    assert row["effect lo"] <= row["effect"] <= row["effect hi"]
    assert (row["n_seeds"], row["n_queries"]) == (3, 400)
    assert row["a mean"] - row["b mean"] == pytest.approx(row["effect"])
    assert row["a std"] > 0


def test_fewer_than_three_seeds_is_undecided_with_a_note():
    table = claims_table(street=_street([0])).set_index("claim")
    assert (table["verdict"] == "undecided").all()
    assert (table["note"].str.startswith("1 seed")).all()
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
    assert len(fig.axes[0].get_yticklabels()) == len(table)
