"""Ablation grid (geoloc_lib.analysis.ablations), its figures, and the cost measurements (analysis.cost)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from layouts import make_university1652
from torch import nn

from geoloc_lib.analysis import ablations as A
from geoloc_lib.analysis.cost import (
    TensorMemoryTracker,
    build_for_cost,
    cost_table,
    flop_counter,
    model_cost,
    pair_forward,
    pair_inputs,
    view_pair,
)
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.sources import DataSources
from geoloc_lib.models.geoviewmatch import ablation_fields
from geoloc_lib.training import runs
from geoloc_lib.training.recipes import preset_for

# --------------------------------------------------------------------------- variants


def test_geoviewmatch_variants_share_runs_of_equal_configurations():
    variants = A.geoviewmatch_variants(preset="smoke")
    names = {v.label: v.run_name for v in variants}
    # the paper's f4 / f4+f3 rows repeat BS+CL / BS+CL+MF: one run each
    assert names["f4"] == "BS+CL" and names["f4+f3"] == "BS+CL+MF"
    assert len(set(names.values())) == 6
    # the preset's own model (BS+CL+MF = f4+f3) has no overrides: it can be 01's run
    full = {"BS+CL+MF", "f4+f3"}
    assert all(v.overrides == {} for v in variants if v.label in full)
    assert all(
        v.overrides == {"model": ablation_fields(v.run_name)}
        for v in variants
        if v.label not in full
    )
    assert [v.run_name for v in A.geoviewmatch_variants(A.TABLE6, "smoke")][:2] == [
        "BS+CL",
        "BS+CL+MF",
    ]
    with pytest.raises(ConfigError, match="valid choices"):
        A.geoviewmatch_variants(("BS", "BS+XX"))


def test_each_mcgf_variant_changes_one_thing():
    v = {x.label: x for x in A.mcgf_variants()}
    full = preset_for("mcgf", "default").config
    # the full model is the paper's method: joint optimisation, InfoNCE on what it matches
    assert full.mat_to_restorer and full.nce_drone == "restored" and full.train_noise
    no_noise = preset_for("mcgf", "default", v[A.NO_NOISE].overrides).config
    changed = {k for k, x in no_noise.to_dict().items() if full.to_dict()[k] != x}
    assert changed == {"train_noise"} and not v[A.NO_NOISE].eval_overrides
    # the two halves of "w/o diffusion": the no-noise run at one pass; the full run at one pass
    assert v[A.NO_NOISE_ONE_PASS].run_name == v[A.NO_NOISE].run_name
    assert v[A.NO_NOISE_ONE_PASS].eval_overrides == {"infer_steps": 1}
    assert v[A.ONE_PASS].run_name == v[A.FULL].run_name
    assert v[A.ONE_PASS].eval_overrides == {"infer_steps": 1}
    assert v[A.CLEAN_QUERY].run_name == v[A.FULL].run_name
    for dev in A.DEVIATIONS:  # each deviation trains its own run with one change of the preset
        cfg = preset_for("mcgf", "default", dev.overrides).config
        changed = {k for k, x in cfg.to_dict().items() if full.to_dict()[k] != x}
        assert list(dev.overrides) == ["model"] and changed == set(dev.overrides["model"])
        assert dev.run_name not in {x.run_name for x in A.mcgf_variants(deviations=False)}
    # the paper's noise levels scale with the schedule: the smoke preset's T is 100
    smoke = {x.label: x for x in A.mcgf_variants(preset="smoke")}[A.PAPER_NOISE].overrides
    assert (smoke["model"]["t_max"], smoke["model"]["t_start"]) == (20, 10)
    preset_for("mcgf", "smoke", smoke)
    assert {x.label for x in A.mcgf_variants(deviations=False)} == set(v) - {
        d.label for d in A.DEVIATIONS
    }


def test_no_training_noise_feeds_the_restorer_the_weathered_image():
    import torch

    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(num_classes=4, train_noise=False)
    seen = []
    model.denoise = lambda z_t, t: seen.append(z_t) or torch.zeros_like(z_t)
    x = torch.rand(2, 3, 32, 32)
    batch = {"drone": x, "drone_weather": x * 0.5, "satellite": x, "label": torch.tensor([0, 1])}
    try:
        model.training_losses(batch)
    except Exception:  # noqa: BLE001 - only the restorer's input is under test
        pass
    (z_t,) = seen
    # z_t = sqrt(ab_t) y: per sample a constant multiple of the weathered image, no noise
    y = x * 0.5 * 2 - 1
    ratio = z_t / y
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-5)


def test_queries_not_restored_reuses_the_full_run_and_skips_restoration_at_test():
    import torch

    v = {x.label: x for x in A.mcgf_variants()}
    assert v["queries not restored"].run_name == v["MCGF (full)"].run_name
    assert v["queries not restored"].overrides == v["MCGF (full)"].overrides
    model = preset_for("mcgf", "smoke").build(num_classes=4).eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(model.restore.deconv3[0].weight, std=0.1)  # a non-identity restorer
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        restored = model.embed(x, "drone")
        model.cfg.restore_queries = False
        direct, sat = model.embed(x, "drone"), model.embed(x, "satellite")
    assert torch.allclose(direct, sat) and not torch.allclose(direct, restored, atol=1e-4)


def test_last_step_only_reuses_the_full_run_and_stops_pooling():
    v = {x.label: x for x in A.mcgf_variants()}
    assert v["last step only"].run_name == v["MCGF (full)"].run_name
    assert v["last step only"].eval_overrides == {"pool_steps": False}
    results = pd.DataFrame(
        [
            {"variant": var, "condition": c, "R@1": r, "AP": r + 1}
            for var, rs in (("MCGF (full)", (3.0, 1.0, 2.0)), ("last step only", (2.0, 2.0, 2.0)))
            for c, r in zip(("rain", "fog", "mean"), rs, strict=True)
        ]
    )
    row = A.mcgf_ablation_deltas(results).set_index("part").loc["pooling the DDIM steps"]
    assert row["mean ΔR@1"] == 0.0 and row["conditions better"] == "1/2"
    assert row["conditions worse"] == "1/2"


def test_paper_tables_are_transcribed_consistently():
    # The paper's Table 6 rows f4 and f4+f3 are its Table 5 rows BS+CL and BS+CL+MF, and its
    # text quotes these R@1 changes (CVUSA, CVACT): a transcription error breaks one of them.
    for ds in ("CVUSA", "CVACT"):
        assert A.PAPER_TABLE6[ds]["f4"] == A.PAPER_TABLE5[ds]["BS+CL"]
        assert A.PAPER_TABLE6[ds]["f4+f3"] == A.PAPER_TABLE5[ds]["BS+CL+MF"]
    quoted = {"BS+CL": (0.29, 0.52), "BS+MF": (0.33, 0.60)}
    for label, (cvusa, cvact) in quoted.items():
        for ds, delta in (("CVUSA", cvusa), ("CVACT", cvact)):
            got = A.PAPER_TABLE5[ds][label][0] - A.PAPER_TABLE5[ds]["BS"][0]
            assert got == pytest.approx(delta, abs=1e-6)
    for ds, delta in (("CVUSA", 0.24), ("CVACT", 0.54)):
        assert A.PAPER_TABLE6[ds]["f4+f3"][0] - A.PAPER_TABLE6[ds]["f4"][0] == pytest.approx(delta)
    for ds, delta in (("CVUSA", -0.14), ("CVACT", -0.46)):
        got = A.PAPER_TABLE6[ds]["f4+f3+f2"][0] - A.PAPER_TABLE6[ds]["f4+f3"][0]
        assert got == pytest.approx(delta)
    paper = A.paper_ablation_table(5)
    assert list(paper.columns) == ["Source", "Method", "R@1", "R@5", "R@10", "R@1%"]
    assert set(paper["Source"]) == {"paper, CVUSA", "paper, CVACT"} and len(paper) == 8
    with pytest.raises(ConfigError, match="5 or 6"):
        A.paper_ablation_table(4)


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    root = make_university1652(
        tmp_path_factory.mktemp("u") / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2
    )
    return DataSources("geosynth", root, None, "cvact")


def _variant() -> A.Variant:
    fast = {"run": {"val_queries": 0, "max_steps_per_epoch": 1}}
    return A.Variant("w/o restoration", "mcgf_matching_only", fast, "matching")


def test_ensure_run_reuses_a_finished_run_and_retrains_on_other_settings(
    tiny_sources, tmp_path, monkeypatch
):
    calls = []
    real = runs.train_run

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "train_run", spy)
    v = _variant()
    kw = dict(preset="smoke", epochs=1, seed=0, device="cpu", progress=False)
    run, trained = A.ensure_run(v, tiny_sources, tmp_path, **kw)
    out = tmp_path / A.ABLATION_DIR / "matching"
    assert trained and run.out_dir == out and (out / "run.json").is_file()
    assert not (out / runs.PENDING_FILE).exists() and calls[-1]["resume"] is False
    again, trained = A.ensure_run(v, tiny_sources, tmp_path, **kw)
    assert not trained and len(calls) == 1
    for a, b in zip(
        run.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a.cpu(), b.cpu())
    # another seed: retrained from scratch, run.json rewritten with the new settings
    _, trained = A.ensure_run(v, tiny_sources, tmp_path, **{**kw, "seed": 1})
    assert trained and calls[-1]["resume"] is False
    assert json.loads((out / "run.json").read_text())["seed"] == 1
    # interrupted (no run.json, pending settings equal): resumes from the checkpoint
    (out / "run.json").unlink()
    (out / runs.PENDING_FILE).write_text(json.dumps(A.run_settings(v, "smoke", 1, 1)))
    _, trained = A.ensure_run(v, tiny_sources, tmp_path, **{**kw, "seed": 1})
    assert trained and calls[-1]["resume"] is True and (out / "run.json").is_file()
    with pytest.raises(ConfigError, match="epochs: expected an integer >= 1"):
        A.ensure_run(v, tiny_sources, tmp_path, **{**kw, "epochs": 0})


def test_ensure_run_reuses_the_main_run_of_01_when_settings_match(tiny_sources, tmp_path):
    main = runs.train_run(
        "mcgf_matching_only", tiny_sources, tmp_path, preset="smoke", epochs=1, progress=False
    )
    plain = A.Variant("w/o restoration", "mcgf_matching_only", {}, "matching")
    kw = dict(preset="smoke", epochs=1, seed=0, device="cpu", progress=False)
    run, trained = A.ensure_run(plain, tiny_sources, tmp_path, **kw)
    assert not trained and run.out_dir == main.out_dir
    # a run trained by another version of the preset (its resolved config differs): retrained
    info = json.loads((main.out_dir / "run.json").read_text())
    info["config"]["training"]["lr_backbone"] = 99.0
    (main.out_dir / "run.json").write_text(json.dumps(info))
    run, trained = A.ensure_run(plain, tiny_sources, tmp_path, **kw)
    assert trained and run.out_dir == tmp_path / A.ABLATION_DIR / "matching"
    # another budget than 01's: trained under ablations/
    run, trained = A.ensure_run(plain, tiny_sources, tmp_path, **{**kw, "epochs": 2})
    assert trained and run.out_dir == tmp_path / A.ABLATION_DIR / "matching"
    assert run.info["config"] == runs.resolved_config(
        preset_for("mcgf_matching_only", "smoke").with_epochs(2)
    )


# --------------------------------------------------------------------------- tables


def _street_results() -> pd.DataFrame:
    r1 = {"BS": 10.0, "BS+CL": 12.5, "BS+MF": 7.5, "BS+CL+MF": 15.0}
    r1 |= {"f4": 12.5, "f4+f3": 15.0, "f4+f3+f2": 15.0, "f4+f3+f2+f1": 5.0}
    rows = [
        {"variant": k, "run": k, "queries": 40, "R@1": v, "R@5": v + 1, "R@10": v + 2, "R@1%": v}
        for k, v in r1.items()
    ]
    return pd.DataFrame(rows)


def test_ablation_table_and_claims():
    res = _street_results()
    t6 = A.ablation_table(res, A.TABLE6)
    assert list(t6["Method"]) == list(A.TABLE6) and list(t6.columns[2:]) == list(A.STREET_METRICS)
    claims = A.ablation_claims(res).set_index("change")
    assert claims.loc["+ contrastive learning", "ours ΔR@1"] == 2.5
    assert claims.loc["+ contrastive learning", "paper CVACT ΔR@1"] == pytest.approx(0.52)
    assert claims.loc["+ contrastive learning", "verdict"] == "same direction"
    assert claims.loc["+ multi-scale features", "verdict"] == "opposite direction"
    assert claims.loc["f4+f3 -> f4+f3+f2", "verdict"] == "no change"
    assert claims.loc["f4+f3+f2 -> all four stages", "verdict"] == "same direction"
    assert (claims["resolution"] == 2.5).all()
    with pytest.raises(ConfigError, match="no results"):
        A.ablation_table(res[res["variant"] != "BS"], A.TABLE5)


def test_ablation_claims_inside_the_query_noise_are_undecided():
    # 40 queries per variant: BS hits the first 4, BS+CL the first 5 (1 query apart: inside the
    # noise) and BS+CL+MF 20 of them (clearly above BS).
    hits = {"BS": 4, "BS+CL": 5, "BS+MF": 3, "BS+CL+MF": 20}
    hits |= {"f4": 5, "f4+f3": 20, "f4+f3+f2": 20, "f4+f3+f2+f1": 2}
    per_query = pd.DataFrame(
        [
            {"variant": k, "query": q, "R@1": 100.0 * (q < n)}
            for k, n in hits.items()
            for q in range(40)
        ]
    )
    results = per_query.groupby("variant", sort=False)["R@1"].mean().reset_index()
    results["queries"] = 40
    claims = A.ablation_claims(results, per_query).set_index("change")
    assert claims.loc["+ contrastive learning", "verdict"] == "undecided"
    assert claims.loc["+ multi-scale features", "verdict"] == "undecided"
    assert claims.loc["+ both (full model)", "verdict"] == "same direction"
    assert claims.loc["+ both (full model)", "ours ΔR@1 lo"] > 0
    assert claims.loc["f4+f3+f2 -> all four stages", "verdict"] == "same direction"


def _mcgf_results() -> pd.DataFrame:
    conds = ["normal", "fog", "mean"]
    r1 = {"MCGF (full)": [50.0, 30.0], "w/o restoration": [40.0, 35.0], A.NO_NOISE: [50.0, 20]}
    rows = []
    for v, vals in r1.items():
        vals = [*vals, sum(vals) / 2]
        rows += [
            {"variant": v, "condition": c, "R@1": x, "AP": x + 5}
            for c, x in zip(conds, vals, strict=True)
        ]
    return pd.DataFrame(rows)


def test_mcgf_weather_table_and_deltas():
    res = _mcgf_results()
    wide = A.mcgf_weather_table(res)
    assert list(wide["condition"]) == ["normal", "fog", "mean"]
    assert list(wide.columns)[1:3] == ["MCGF (full) R@1", "MCGF (full) AP"]
    assert wide.loc[1, "w/o restoration R@1"] == 35.0
    d = A.mcgf_ablation_deltas(res).set_index("part")
    assert d.loc["restoration branch", "mean ΔR@1"] == pytest.approx(2.5)
    assert d.loc["restoration branch", "conditions better"] == "1/2"
    assert d.loc["restoration branch", "conditions worse"] == "1/2"
    assert d.loc["training noise", "mean ΔAP"] == pytest.approx(5.0)
    assert d.loc["training noise", "conditions better"] == "1/2"
    assert d.loc["training noise", "conditions worse"] == "0/2"
    assert (d.loc["training noise", "a"], d.loc["training noise", "b"]) == (A.FULL, A.NO_NOISE)
    assert "pooling the DDIM steps" not in d.index  # its variant is not in these results


def test_figures_have_one_panel_per_group():
    from geoloc_lib.viz.ablations import ablation_bars_figure, weather_recall_figure

    assert len(ablation_bars_figure(_street_results()).axes) == 2
    fig = weather_recall_figure(_mcgf_results())
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) >= 9


def test_weather_bars_have_a_colour_each_and_a_legend_below_the_panels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from geoloc_lib.viz.ablations import weather_recall_figure

    base = _mcgf_results()
    base = base[base["variant"] == base["variant"].iloc[0]]
    many = pd.concat(
        [base.assign(variant=f"variant {i}") for i in range(12)], ignore_index=True
    )  # as many variants as notebook 04 draws
    fig = weather_recall_figure(many)
    FigureCanvasAgg(fig).draw()
    colours = {tuple(c.patches[0].get_facecolor()) for c in fig.axes[0].containers}
    assert len(colours) == 12  # no two variants share a colour
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 12
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # the legend hides no bar: it lies below every panel
        assert box.y1 <= ax.get_window_extent(renderer).y0


# --------------------------------------------------------------------------- cost


def test_cpu_attention_flops_are_counted_like_the_math_path():
    q = torch.randn(2, 3, 16, 8)
    counts = {}
    for dev in ("cpu", "meta"):
        c = flop_counter()
        with c:
            F.scaled_dot_product_attention(q.to(dev), q.to(dev), q.to(dev))
        counts[dev] = c.get_total_flops()
    assert counts["cpu"] == counts["meta"] == 2 * 2 * 3 * 16 * 16 * (8 + 8)


def test_tensor_memory_tracker_counts_live_tensors():
    x = torch.zeros(1000)  # 4000 bytes, made before tracking: not counted
    with TensorMemoryTracker() as t:
        y = x * 2  # +4000
        z = y.view(10, 100)  # a view: no new memory
        w = y + 1  # +4000 -> 8000
        del y, z, w  # all freed
        v = x[:500]  # view of an untracked tensor: nothing
        u = torch.ones(2000)  # +8000 (peak 8000, not 16000: y and w are gone)
    assert t.peak == 8000 and t.current == 8000 and v.numel() == 500 and u.numel() == 2000
    w_ = nn.Linear(4, 3)
    head = nn.Linear(3, 2)  # never called: not an inference parameter
    m = nn.ModuleDict({"body": w_, "head": head})
    c = model_cost(m, torch.zeros(5, 4), forward=lambda mod, x: mod["body"](x), repeats=1)
    assert c["params_m"] == pytest.approx(23 / 1e6)
    assert c["inference_params_m"] == pytest.approx(15 / 1e6)
    assert c["gflops"] == pytest.approx(2 * 5 * 4 * 3 / 1e9)


def test_meta_build_counts_like_a_real_model():
    for name in ("geoviewmatch", "mcgf"):
        meta = build_for_cost(name, "smoke", "meta")
        real = build_for_cost(name, "smoke", "cpu")
        assert view_pair(real) == (
            ("ground", "aerial") if name == "geoviewmatch" else ("drone", "satellite")
        )
        cm = model_cost(meta, pair_inputs(meta, 2), forward=pair_forward)
        cr = model_cost(real, pair_inputs(real, 2), forward=pair_forward, repeats=1)
        assert cm["params_m"] == cr["params_m"] and cm["gflops"] == pytest.approx(cr["gflops"])
        assert cm["inference_params_m"] < cm["params_m"]  # training-only heads are not read
        assert cm["latency_ms"] != cm["latency_ms"] and cr["latency_ms"] > 0  # NaN on meta
        assert cm["tensor_mem_gb"] > 0


def test_cost_table_times_only_within_budget():
    df = cost_table(
        ["infonce_baseline", ("gvm unshared", "geoviewmatch", {"share_backbone": False})],
        ("smoke",),
        batch_size=2,
        device="cpu",
        latency_budget_s=60.0,
        repeats=1,
    )
    assert list(df["model"]) == ["infonce_baseline", "gvm unshared"]
    assert (df["latency_ms"] > 0).all() and (df["note"] == "").all()
    shared = build_for_cost("geoviewmatch", "smoke")
    assert df.loc[1, "params_m"] > _n_params(shared)  # two backbones
    skipped = cost_table(["infonce_baseline"], ("smoke",), device="cpu", latency_budget_s=0.0)
    assert skipped["latency_ms"].isna().all() and skipped["note"][0].startswith("not timed")
    assert skipped.loc[0, "gflops"] == pytest.approx(df.loc[0, "gflops"])  # per pair
    table = A.cost_comparison(df)
    assert "paper params (M)" in table and table["paper params (M)"].isna().all()  # smoke rows


def _n_params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_paper_cost_row_counts_two_backbones_and_states_its_flop_convention():
    # Table 4: 57.47 M parameters, 9.76 GFLOPs. Ours: inference parameters (backbones + FA, not
    # the training-only projection head) within 3 %; FLOPs = 2 x MACs of a query+gallery pair.
    df = cost_table(["geoviewmatch"], ("paper",), device="cpu", latency_budget_s=0.0)
    row = df.iloc[0]
    assert abs(row["inference_params_m"] / 57.47 - 1) < 0.03
    assert row["params_m"] - row["inference_params_m"] == pytest.approx(4.78, abs=0.01)
    # batch 1 per branch vs batch 16 per pair: SwinV2's position-bias MLP runs once per batch
    assert row["gflops"] == pytest.approx(row["gflops_query"] + row["gflops_gallery"], rel=5e-3)
    assert row["gmacs"] == pytest.approx(row["gflops"] / 2)
    assert row["gflops_gallery"] / 2 == pytest.approx(5.94, abs=0.01)  # SwinV2-T at 256 (timm)
    assert row["gflops_query"] / 2 == pytest.approx(7.49, abs=0.01)  # the 128x640 panorama
    table = A.cost_comparison(df)
    assert {"GFLOPs/query image", "GFLOPs/gallery image", "paper GFLOPs"} <= set(table.columns)
    assert table.loc[0, "paper params (M)"] == 57.47
    shared = cost_table(
        [("gvm shared", "geoviewmatch", {"share_backbone": True})], ("paper",),
        device="cpu", latency_budget_s=0.0,
    )  # fmt: skip
    assert A.cost_comparison(shared)["paper params (M)"].isna().all()  # not the paper's model


# --------------------------------------------------------------------------- intervals


def _with_bounds(results: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    out = results.copy()
    for m in metrics:
        out[f"{m} lo"], out[f"{m} hi"] = out[m] - 1.0, out[m] + 2.0
    return out


def test_tables_and_figures_carry_the_intervals():
    from geoloc_lib.viz.ablations import ablation_bars_figure, weather_recall_figure

    street = _with_bounds(_street_results(), A.STREET_METRICS)
    t5 = A.ablation_table(street, A.TABLE5)
    assert list(t5.columns[2:6]) == list(A.STREET_METRICS)  # point values first, as before
    assert list(t5.columns[6:8]) == ["R@1 lo", "R@1 hi"] and len(t5.columns) == 14
    fig = ablation_bars_figure(street)
    bars = [c for c in fig.axes[0].containers if hasattr(c, "errorbar")]
    assert bars and all(c.errorbar is not None for c in bars)
    mcgf = _with_bounds(_mcgf_results(), ("R@1", "AP"))
    wide = A.mcgf_weather_table(mcgf)
    assert list(wide.columns)[1:3] == ["MCGF (full) R@1", "MCGF (full) AP"]
    assert "no training noise AP hi" in wide.columns
    assert wide.loc[0, "MCGF (full) R@1 lo"] == 49.0
    assert len(weather_recall_figure(mcgf).axes) == 2
    assert "MCGF (full) R@1 lo" not in A.mcgf_weather_table(_mcgf_results()).columns


def _per_query_mcgf() -> pd.DataFrame:
    # 4 queries, 2 conditions; the full model hits every query the ablated one misses in fog
    rows = []
    for v, hits in (("MCGF (full)", (1, 1, 1, 1)), ("w/o restoration", (1, 0, 1, 0))):
        for c in ("normal", "fog"):
            for q, h in enumerate(hits if c == "fog" else (1, 1, 1, 1)):
                rows.append({"variant": v, "condition": c, "query": q, "R@1": 100.0 * h,
                             "AP": 100.0 * h})  # fmt: skip
    return pd.DataFrame(rows)


def test_deltas_and_claims_get_paired_intervals():
    per_query = _per_query_mcgf()
    results = per_query.groupby(["variant", "condition"], sort=False)[["R@1", "AP"]].mean()
    results = results.reset_index()
    means = results.groupby("variant", sort=False)[["R@1", "AP"]].mean().reset_index()
    results = pd.concat([results, means.assign(condition="mean")], ignore_index=True)
    d = A.mcgf_ablation_deltas(results, per_query).set_index("part")
    row = d.loc["restoration branch"]
    assert row["mean ΔR@1"] == pytest.approx(25.0)
    assert 0.0 <= row["mean ΔR@1 lo"] <= 25.0 <= row["mean ΔR@1 hi"] <= 50.0
    assert "mean ΔR@1 lo" not in A.mcgf_ablation_deltas(results).columns
    street = _street_results()
    pq = pd.DataFrame(
        [
            {"variant": v, "query": q, "R@1": 100.0 * (q < r / 10)}
            for v, r in zip(street["variant"], street["R@1"], strict=True)
            for q in range(4)
        ]
    )
    claims = A.ablation_claims(street, pq).set_index("change")
    assert list(claims.columns[-2:]) == ["ours ΔR@1 lo", "ours ΔR@1 hi"]
    same = claims.loc["f4+f3 -> f4+f3+f2"]
    assert (same["ours ΔR@1 lo"], same["ours ΔR@1 hi"]) == (0.0, 0.0)


# --------------------------------------------------------------------------- seeds


def test_seed_runs_get_their_own_folders(tiny_sources, tmp_path, monkeypatch):
    names = []

    def fake(preset, sources, runs_dir, *, name, seed, **kw):
        names.append((name, seed))
        return SimpleNamespace(out_dir=runs_dir / name), True

    monkeypatch.setattr(runs, "ensure_run", fake)
    v = _variant()
    kw = dict(preset="smoke", epochs=1, device="cpu", progress=False)
    for seed in (0, 2):
        A.ensure_seed_run(v, tiny_sources, tmp_path, seed=seed, **kw)
    assert names == [("matching", 0), ("matching_seed2", 2)]
    assert A.seed_run_name(v, 0) == "matching" and A.seed_run_name(v, 3) == "matching_seed3"


def test_mcgf_seeds_pair_queries_and_draw_a_sample_per_seed(tiny_sources, monkeypatch):
    from pathlib import Path

    from geoloc_lib.models.raw_pixel import RawPixelMatcher

    class FakeRun:
        def __init__(self, name: str, seed: int) -> None:
            self.out_dir = Path("runs") / name
            torch.manual_seed(seed)
            self.model = RawPixelMatcher(4, img_size=16)
            self.model.cfg = SimpleNamespace()  # test-time variants set fields on it
            self.info = {"train_time_s": 10.0 + seed}

    monkeypatch.setattr(
        A, "ensure_run", lambda v, *a, seed, **k: (FakeRun(v.run_name, seed), False)
    )
    res = A.run_mcgf_seeds(
        tiny_sources, "runs", preset="smoke", epochs=1, seeds=[0, 1],
        labels=("MCGF (full)", "w/o restoration", A.CLEAN_QUERY),
        conditions=("normal", "fog", "mixed"),
        raw_pixels=True, max_queries=3, device="cpu", progress=False,
    )  # fmt: skip
    s = res.summary
    assert list(s.columns[:7]) == [
        "seed", "variant", "run", "trained_now", "epochs", "train_s", "condition",
    ]  # fmt: skip
    assert set(s["variant"]) == {"MCGF (full)", "w/o restoration", A.CLEAN_QUERY, A.RAW_PIXELS}
    assert set(s.loc[s["seed"] == 1, "run"]) == {"mcgf_seed1", "mcgf_matching_only_seed1", ""}
    assert set(s.loc[s["variant"] == "MCGF (full)", "train_s"]) == {10.0, 11.0}
    assert s.loc[s["variant"] == A.CLEAN_QUERY, "train_s"].isna().all()  # test time only
    assert {"R@1 lo", "AP hi"} <= set(s.columns)
    pq = res.per_query
    assert list(pq.columns[:6]) == ["seed", "variant", "condition", "query", "location", "rank"]
    assert (pq.groupby(["seed", "variant", "condition"]).size() == 3).all()
    # the oracle: the full run's clean queries, the same under every condition's name
    oracle = pq[pq["variant"] == A.CLEAN_QUERY].set_index(["seed", "condition", "query"])
    full = pq[pq["variant"] == "MCGF (full)"].set_index(["seed", "condition", "query"])
    for c in ("fog", "mixed"):
        assert (oracle.xs(c, level=1)["rank"] == full.xs("normal", level=1)["rank"]).all()
    # each seed's mean row is the mean of its queries over the fixed conditions
    one = pq[(pq["seed"] == 1) & (pq["variant"] == A.RAW_PIXELS)]
    mean_row = s[(s["seed"] == 1) & (s["variant"] == A.RAW_PIXELS) & (s["condition"] == "mean")]
    fixed = one[one["condition"] != "mixed"]
    assert mean_row["R@1"].iloc[0] == pytest.approx(fixed["R@1"].mean())
    table, per_query = A.run_mcgf_ablations(
        tiny_sources, "runs", preset="smoke", epochs=1, max_queries=3, device="cpu",
        progress=False, per_query=True,
    )  # fmt: skip
    assert "seed" not in table.columns and list(table.columns[:6]) == [
        "variant", "run", "trained_now", "epochs", "train_s", "condition",
    ]  # fmt: skip
    n_variants = len(A.mcgf_variants())
    assert len(per_query) == n_variants * 10 * 3  # every variant, 10 conditions, 3 queries


def test_train_grid_trains_runs_side_by_side_in_worker_processes(tiny_sources, tmp_path):
    """Two seeds of one variant, two at a time: each run is trained in a spawned worker with
    cores // 2 threads (recorded in run.json), reported as trained now, then found as finished;
    the same models as training them one at a time with that thread count."""
    v = _variant()
    kw = dict(preset="smoke", epochs=1, device="cpu")
    trained = A.train_grid([v, v], [0, 3], tiny_sources, tmp_path, parallel_runs=2, **kw)
    assert trained == {("matching", 0): True, ("matching", 3): True}  # one job per run
    threads = max(1, torch.get_num_threads() // 2)
    for seed, name in ((0, "matching"), (3, "matching_seed3")):
        info = json.loads((tmp_path / A.ABLATION_DIR / name / "run.json").read_text())
        assert info["seed"] == seed and info["machine"]["cpu_threads"] == threads
    again = A.train_grid([v], [0, 3], tiny_sources, tmp_path, parallel_runs=2, **kw)
    assert again == {("matching", 0): False, ("matching", 3): False}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone, _ = A.ensure_seed_run(
            v, tiny_sources, tmp_path / "alone", seed=3, progress=False, **kw
        )
    finally:
        torch.set_num_threads(before)
    side, trained_now = A.ensure_seed_run(v, tiny_sources, tmp_path, seed=3, progress=False, **kw)
    assert not trained_now
    for a, b in zip(
        alone.model.state_dict().values(), side.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    for bad in (0, True, 1.5):
        with pytest.raises(ConfigError, match="parallel_runs: expected an integer >= 1"):
            A.train_grid([v], [0], tiny_sources, tmp_path, parallel_runs=bad, **kw)


def test_train_grid_names_the_likely_cause_when_a_worker_dies(tiny_sources, tmp_path, monkeypatch):
    from concurrent import futures
    from concurrent.futures.process import BrokenProcessPool

    class DyingPool:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def map(self, *args, **kwargs):
            raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(futures, "ProcessPoolExecutor", DyingPool)
    with pytest.raises(ConfigError, match=r'parallel_runs=2: a worker .*if __name__ == "__main__"'):
        A.train_grid(
            [_variant()], [0, 1], tiny_sources, tmp_path, preset="smoke", epochs=1, device="cpu",
            parallel_runs=2,
        )  # fmt: skip
