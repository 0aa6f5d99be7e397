"""GeoViewMatch: aggregation module, shared SwinV2 weights, shapes at tiny and paper size,
losses and ablation switches, the InfoNCE baseline, and one engine step with ASAM."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models.geoviewmatch import (
    ABLATIONS,
    FeatureAggregation,
    ablation_fields,
)
from geoloc_lib.training.recipes import preset_for


def _batch(cfg, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "ground": torch.rand(n, 3, *cfg.ground_size, generator=g),
        "aerial": torch.rand(n, 3, *cfg.aerial_size, generator=g),
    }


@pytest.fixture(scope="module")
def smoke():
    torch.manual_seed(0)
    return preset_for("geoviewmatch", "smoke").build()


def test_feature_aggregation_matches_a_per_head_loop() -> None:
    torch.manual_seed(0)
    fa = FeatureAggregation(hw=6, num_heads=3)
    with torch.no_grad():  # non-trivial weights so every term matters
        for p in fa.parameters():
            p.normal_()
    x = torch.randn(2, 5, 2, 3)
    out = fa(x)
    assert out.shape == (2, 5 * 3)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    expected = []
    for b in range(2):
        pooled = x[b].amax(0).flatten()  # max over channels: [HW]
        cols = []
        for n in range(3):
            a = (pooled @ fa.w1[n] + fa.b1[n]) @ fa.w2[n] + fa.b2[n]  # [HW]
            cols.append(torch.stack([(x[b, c].flatten() * a).sum() for c in range(5)]))
        expected.append(torch.stack(cols, dim=1).flatten())  # [C, N] flattened
    expected = F.normalize(torch.stack(expected), dim=1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="positions"):
        fa(torch.randn(1, 5, 3, 3))


def test_backbone_weights_are_shared_and_compute_like_timm(smoke) -> None:
    bb = smoke.backbone
    assert bb.ground is not bb.aerial
    names_g = dict(bb.ground.named_parameters())
    for name, p in bb.aerial.named_parameters():
        assert names_g[name] is p  # one set of weights
    # The module counts each shared weight once (the optimizer sees one copy).
    n_aerial = sum(p.numel() for p in bb.aerial.parameters())
    assert sum(p.numel() for p in bb.parameters()) == n_aerial
    # The ground instance computes exactly what timm's model at the panorama size computes.
    cfg = smoke.cfg
    ref = timm.create_model(
        cfg.backbone,
        num_classes=0,
        img_size=cfg.ground_size,
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_size=cfg.window_size,
        drop_path_rate=0.0,
    ).eval()
    ref.load_state_dict(bb.aerial.state_dict())
    x = torch.rand(2, 3, *cfg.ground_size)
    with torch.no_grad():
        got = bb.ground.eval().forward_intermediates(x, indices=[3], intermediates_only=True)[0]
        want = ref.forward_intermediates(x, indices=[3], intermediates_only=True)[0]
    torch.testing.assert_close(got, want)


def test_tiny_shapes_losses_and_gradients(smoke) -> None:
    cfg = smoke.cfg
    batch = _batch(cfg)
    smoke.train()
    out = smoke.training_losses(batch)
    assert set(out) == {"loss", "con", "ret1", "ret2"}
    expected = cfg.w_con * out["con"] + cfg.w_ret1 * out["ret1"] + cfg.w_ret2 * out["ret2"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    smoke.zero_grad()
    out["loss"].backward()
    groups = smoke.param_groups({"backbone": 1e-4, "head": 2e-4})
    seen = [p for g in groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(smoke.parameters()))
    assert {g["name"] for g in groups} >= {"backbone", "head"}
    head_lr = {g["lr"] for g in groups if g["name"].startswith("head")}
    assert head_lr == {2e-4}
    assert smoke.backbone.aerial.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in smoke.aggregators.parameters())
    assert all(p.grad is not None for p in smoke.head.parameters())
    smoke.eval()
    with torch.no_grad():
        g = smoke.embed(batch["ground"], "ground")
        a = smoke.embed(batch["aerial"], "aerial")
    c3, c4 = cfg.embed_dim * 4, cfg.embed_dim * 8
    assert g.shape == a.shape == (4, (c3 + c4) * cfg.fa_heads)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    with pytest.raises(ConfigError, match="view"):
        smoke.embed(batch["ground"], "drone")


def test_augment_batch_views_are_consistent(smoke) -> None:
    batch = _batch(smoke.cfg, n=3)
    out = smoke.augment_batch(batch, torch.Generator().manual_seed(0))
    assert out["aerial_strong"].shape == batch["aerial"].shape
    for i in range(3):  # each weak pair is one of the three quarter turns, applied to both views
        ks = [
            k
            for k in (1, 2, 3)
            if torch.equal(out["aerial_weak"][i], torch.rot90(batch["aerial"][i], -k, (-2, -1)))
        ]
        assert len(ks) == 1
        w = batch["ground"].shape[-1]
        assert torch.equal(
            out["ground_weak"][i], torch.roll(batch["ground"][i], ks[0] * w // 4, -1)
        )
    assert smoke.augment_batch(out) is out  # already augmented: unchanged (ASAM's second pass)


@pytest.mark.parametrize(
    "ablation, n_stages, has_head",
    [("BS", 1, False), ("BS+CL", 1, True), ("BS+MF", 2, False), ("f4+f3+f2+f1", 4, True)],
)
def test_ablation_switches(ablation: str, n_stages: int, has_head: bool) -> None:
    m = preset_for("geoviewmatch", "smoke", {"model": ablation_fields(ablation)}).build()
    assert len(m.aggregators) == 2 * n_stages
    assert (m.head is not None) == has_head
    out = m.training_losses(_batch(m.cfg))
    assert torch.isfinite(out["loss"])
    assert ("con" in out) == has_head
    assert set(ABLATIONS) >= {"BS", "BS+CL", "BS+MF", "BS+CL+MF", "f4", "f4+f3", "f4+f3+f2"}


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="preset"):
        preset_for("geoviewmatch", "huge")
    with pytest.raises(ConfigError, match="section .model.: unknown key"):
        preset_for("geoviewmatch", "smoke", {"model": dict(widht=3)})
    with pytest.raises(ConfigError, match="stage"):
        preset_for("geoviewmatch", "smoke", {"model": dict(stages=(5,))})
    with pytest.raises(ConfigError, match="divisible by 4"):
        preset_for("geoviewmatch", "smoke", {"model": dict(ground_size=(32, 130))})
    with pytest.raises(ConfigError, match="ablation"):
        ablation_fields("BS+XX")


@pytest.mark.slow  # two paper-size SwinV2-T on CPU (~20 s on an idle 2-core machine)
def test_paper_size_shapes() -> None:
    """SwinV2-T at 128x640 / 256x256: stage maps 8x40 & 4x20 / 16x16 & 8x8, 9,216-d descriptors."""
    torch.manual_seed(0)
    m = preset_for("geoviewmatch", "paper").build(pretrained=False).eval()
    shapes = {k: fa.hw for k, fa in m.aggregators.items()}
    assert shapes == {"ground_s3": 320, "ground_s4": 80, "aerial_s3": 256, "aerial_s4": 64}
    assert m.embed_dim == (384 + 768) * 8 == 9216
    with torch.no_grad():
        g = m.embed(torch.rand(1, 3, 128, 640), "ground")
        a = m.embed(torch.rand(1, 3, 256, 256), "aerial")
    assert g.shape == a.shape == (1, 9216)
    backbone = sum(p.numel() for p in m.backbone.parameters())
    assert 2 * 27.5e6 < backbone < 2 * 27.7e6  # one SwinV2-T per view, no classifier


def test_infonce_baseline_shapes_and_loss() -> None:
    torch.manual_seed(0)
    m = preset_for("infonce_baseline", "smoke").build()
    batch = _batch(m.cfg)
    out = m.training_losses(batch)
    assert set(out) >= {"loss", "infonce", "logit_scale"}
    out["loss"].backward()
    assert m.loss_fn.log_scale.grad is not None
    assert m.backbone.ground is m.backbone.aerial  # a CNN runs both sizes in one instance
    with torch.no_grad():
        g = m.embed(batch["ground"], "ground")
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    groups = m.param_groups({"backbone": 1e-3})
    assert sum(len(gr["params"]) for gr in groups) == len(list(m.parameters()))


def test_engine_step_with_asam_uses_the_same_views() -> None:
    from geoloc_lib.training.engine import FitConfig, fit
    from geoloc_lib.training.optim import ASAM

    torch.manual_seed(0)
    m = preset_for("geoviewmatch", "smoke").build()
    calls = []

    def transform(batch):
        out = m.augment_batch(batch)
        calls.append(out["aerial_strong"].sum().item())
        return out

    groups = m.param_groups({"backbone": 1e-3, "head": 2e-3})
    opt = ASAM(torch.optim.AdamW(groups, weight_decay=0.03))
    before = m.backbone.aerial.patch_embed.proj.weight.detach().clone()
    loader = [_batch(m.cfg, seed=s) for s in range(2)]
    hist = fit(
        m, loader, opt, FitConfig(epochs=1, device="cpu", progress=False), batch_transform=transform
    )
    assert len(calls) == 2  # augmented once per step, not once per ASAM pass
    assert torch.isfinite(torch.tensor(hist.records[-1]["loss"]))
    assert not torch.equal(before, m.backbone.aerial.patch_embed.proj.weight)
    assert torch.equal(
        m.backbone.ground.patch_embed.proj.weight, m.backbone.aerial.patch_embed.proj.weight
    )


# --------------------------------------------------------------------------- data + training


def _write_cvact(root, n_train: int = 12, n_val: int = 6, n_test: int = 6):
    """A CVACT-layout tree whose panoramas are (crudely) rendered from their aerial tiles."""
    import numpy as np
    import scipy.io
    from PIL import Image

    rng = np.random.default_rng(0)
    n = n_train + n_val + n_test
    ids = [f"p{k:04d}" for k in range(n)]
    utm = np.stack([rng.uniform(0, 500, n) + 690000.0, rng.uniform(0, 500, n) + 6090000.0], 1)
    split_of = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    for pid, split in zip(ids, split_of, strict=True):
        folder = root / ("ANU_data_test" if split == "test" else "ANU_data_small")
        tile = rng.integers(0, 256, (4, 4, 3)).repeat(12, 0).repeat(12, 1).astype(np.uint8)
        sky = np.full((16, 96, 3), 200, np.uint8)
        band = np.concatenate([np.roll(tile.mean(0), 3 * q, 0) for q in range(2)], 0)
        band = np.resize(band.astype(np.uint8), (16, 96, 3))
        pano = np.concatenate([sky, band, band[::-1], sky], 0)  # 64 rows; middle half = band
        for sub, name, arr in (
            ("satview_polish", f"{pid}_satView_polish.jpg", tile),
            ("streetview", f"{pid}_grdView.jpg", pano),
        ):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / sub / name, quality=95)
    panos = np.empty((n, 1), dtype=object)
    for k, pid in enumerate(ids):
        panos[k, 0] = pid
    one = np.arange(1, n + 1, dtype=float)
    scipy.io.savemat(
        root / "ACT_data.mat",
        {
            "panoIds": panos,
            "utm": utm,
            "trainSet": {"trainInd": one[:n_train].reshape(-1, 1)},
            "valSet": {"valInd": one[n_train : n_train + n_val].reshape(-1, 1)},
            "valSetAll": {"valInd": one[n_train + n_val :].reshape(-1, 1)},
        },
    )
    return root


def test_street_dataset_crops_cvact_and_sampler_groups_neighbours(tmp_path) -> None:
    import numpy as np

    from geoloc_lib.data.street import load_cvact
    from geoloc_lib.data.street_torch import GeoNeighbourSampler, StreetPairDataset

    pairs = load_cvact(_write_cvact(tmp_path), "train")
    ds = StreetPairDataset(pairs, (8, 32), (16, 16), cache=True)
    item = ds[0]
    assert item["ground"].shape == (3, 8, 32) and item["aerial"].shape == (3, 16, 16)
    assert 0.0 <= float(item["ground"].min()) and float(item["ground"].max()) <= 1.0
    # The sky rows (200 grey) are cropped away: the middle half holds only the coloured band.
    assert not torch.allclose(item["ground"][:, 0], torch.full((3, 32), 200 / 255), atol=0.03)

    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10_000, (64, 2))
    s = GeoNeighbourSampler(64, 8, coords, group_size=4, seed=1)
    order = list(s)
    assert sorted(order) == list(range(64))
    s.set_epoch(0)
    assert list(s) == order  # (seed, epoch) fixes the order
    s.set_epoch(1)
    assert list(s) != order

    def nearest_in_batch(batches):  # mean distance of each pair to its closest batch mate
        out = []
        for b in batches:
            d = np.linalg.norm(coords[b][:, None] - coords[b][None], axis=2)
            np.fill_diagonal(d, np.inf)
            out.append(d.min(1).mean())
        return np.mean(out)

    random_batches = [list(rng.permutation(64)[i : i + 8]) for i in range(0, 64, 8)]
    assert nearest_in_batch(s.batches()) < 0.6 * nearest_in_batch(random_batches)


@pytest.mark.slow  # three short training runs
def test_train_resume_and_evaluate_street_model(tmp_path) -> None:
    from geoloc_lib.eval.street import evaluate_street_model
    from geoloc_lib.models.raw_pixel import StreetRawPixelMatcher
    from geoloc_lib.training.geoviewmatch import train_street_model

    root = _write_cvact(tmp_path / "cvact")
    kw = dict(seed=0, device="cpu", progress=False)
    over = {"train": {"epochs": 2, "batch_size": 4}, "run": {"max_steps_per_epoch": 1}}
    preset = preset_for("geoviewmatch", "smoke", over)
    keep = preset.with_overrides({"run": {"keep_epoch_checkpoints": True}})
    full = train_street_model(root, keep, out_dir=tmp_path / "full", **kw)
    assert list(full.history["epoch"]) == [1, 2]
    assert {"loss", "con", "ret1", "ret2", "val_R@1", "val_R@1%"} <= set(full.history.columns)
    # A run stopped after epoch 1 and resumed replays the uninterrupted one (ASAM, sampler, RNG).
    resumed = train_street_model(
        root,
        preset,
        out_dir=tmp_path / "part",
        resume=tmp_path / "full" / "checkpoint_epoch1.pt",
        **kw,
    )
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)  # interrupted + resumed == uninterrupted

    metrics = evaluate_street_model(full.checkpoint, root, "test")
    assert {"R@1", "R@5", "R@10", "R@1%", "top1_within_0m", "mean_dist_top1_m"} <= set(metrics)
    assert metrics["n_queries"] == 6 and 0 <= metrics["R@1"] <= 100
    raw = evaluate_street_model(
        StreetRawPixelMatcher(ground_size=(32, 128), aerial_size=(48, 48)), root
    )
    assert 0 <= raw["R@1"] <= 100


def test_baseline_trains_with_the_same_function(tmp_path) -> None:
    from geoloc_lib.training.geoviewmatch import train_street_model

    root = _write_cvact(tmp_path / "cvact")
    over = {"train": {"epochs": 1, "batch_size": 4}, "run": {"max_steps_per_epoch": 2}}
    preset = preset_for("infonce_baseline", "smoke", over)
    res = train_street_model(root, preset, device="cpu", progress=False)
    assert "infonce" in res.history.columns and res.checkpoint is None
    # the train functions take a resolved preset of their own models only
    with pytest.raises(ConfigError, match="preset must be resolved.*preset_for"):
        train_street_model(root, "smoke")
    with pytest.raises(ConfigError, match="unknown model 'mcgf'"):
        train_street_model(root, preset_for("mcgf", "smoke"))


def test_model_cost_counts_flops_and_shared_parameters_once(smoke) -> None:
    from torch import nn

    from geoloc_lib.analysis.cost import model_cost, pair_forward

    lin = nn.Linear(10, 20)
    c = model_cost(lin, torch.zeros(3, 10), repeats=1)
    assert c["gflops"] == pytest.approx(2 * 3 * 10 * 20 / 1e9)  # one multiply-add = 2 FLOPs
    assert c["params_m"] == pytest.approx(220 / 1e6) and c["latency_ms"] > 0
    cfg = smoke.cfg
    x = (torch.rand(1, 3, *cfg.ground_size), torch.rand(1, 3, *cfg.aerial_size))
    smoke.train()
    cost = model_cost(smoke, x, forward=pair_forward, repeats=1)
    n = sum(p.numel() for p in smoke.backbone.aerial.parameters())
    n += sum(p.numel() for p in smoke.aggregators.parameters())
    n += sum(p.numel() for p in smoke.head.parameters())
    assert cost["params_m"] == pytest.approx(n / 1e6)
    assert cost["gflops"] > 0 and smoke.training  # the mode is restored


def test_paper_parameter_count_is_two_backbones_within_3_percent_of_table4() -> None:
    # Table 4: 57.47 M. One shared SwinV2-T gave 33.8 M; two (one per view) plus the FA modules
    # land within 3 %. Counted: what inference uses (backbones + FA), not the training-only
    # projection head (+4.8 M).
    from geoloc_lib.analysis.cost import build_for_cost, count_parameters

    m = build_for_cost("geoviewmatch", "paper", "meta")
    assert not m.backbone.shared and m.backbone.ground is not m.backbone.aerial
    total = count_parameters(m)
    head = count_parameters(m.head)
    inference = total - head
    assert abs(inference / 57.47e6 - 1) < 0.03, inference
    assert abs(total / 57.47e6 - 1) > 0.03  # with the projection head it would not match
    shared = build_for_cost("geoviewmatch", "paper", "meta", share_backbone=True)
    assert shared.backbone.shared and count_parameters(shared) - head < 0.65 * inference


def test_geo_neighbour_batches_are_an_option_off_for_geoviewmatch() -> None:
    from geoloc_lib.training.geoviewmatch import make_street_sampler

    coords = np.random.default_rng(0).normal(size=(256, 2)) * 100
    for preset in ("paper", "default", "smoke"):  # random batches, as the paper trains
        settings = preset_for("geoviewmatch", preset).train
        assert make_street_sampler(256, coords, settings).neighbours is None
        # the baseline keeps Sample4Geo's neighbour batches
        baseline = preset_for("infonce_baseline", preset).train
        assert make_street_sampler(256, coords, baseline).neighbours is not None
    on = preset_for("geoviewmatch", "default", {"train": dict(geo_neighbours=True)}).train
    assert make_street_sampler(256, coords, on).neighbours is not None


def test_paper_tables_are_evaluated_on_val_and_test_is_labelled_apart(tmp_path) -> None:
    # GeoViewMatch Tables 1-3 are on CVACT val; ACT_test is a separate, labelled result.
    from geoloc_lib.eval.street import PAPER_TABLE_SPLIT, evaluate_street_splits
    from geoloc_lib.models.raw_pixel import StreetRawPixelMatcher

    root = _write_cvact(tmp_path / "cvact", n_val=6, n_test=5)
    raw = StreetRawPixelMatcher(ground_size=(32, 128), aerial_size=(48, 48))
    long = evaluate_street_splits({"raw": raw}, root, dataset="CVACT")
    assert PAPER_TABLE_SPLIT == "val"
    assert list(long["split"]) == ["val", "test"] and list(long["n_pairs"]) == [6, 5]
    assert list(long["n_queries"]) == [6, 5] and set(long["dataset"]) == {"CVACT"}
    assert {"R@1", "top1_within_0m", "n_tied"} <= set(long.columns)
    # through the notebooks' DataSources too (their street_splits decide what exists)
    from geoloc_lib.data.sources import resolve_sources

    sources = resolve_sources("real", street_root=root, street_format="cvact")
    via_sources = evaluate_street_splits({"raw": raw}, sources, dataset="CVACT")
    assert list(via_sources["split"]) == ["val", "test"]
