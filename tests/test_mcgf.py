"""MCGF: shapes at paper and tiny sizes, losses, DDIM inference, pretrained rules, data, training."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.university import load_university1652
from geoloc_lib.data.university_torch import ShardedSampler, UniversityTrainSet
from geoloc_lib.models.backbones import create_backbone
from geoloc_lib.models.mcgf import RESIDUALS
from geoloc_lib.training.recipes import preset_for

sys.path.insert(0, str(Path(__file__).parent))
from layouts import make_university1652  # noqa: E402


def _batch(size: int, b: int = 4, classes: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.rand(b, 3, size, size, generator=g)  # noqa: E731
    return {
        "drone": img(),
        "drone_weather": img(),
        "satellite": img(),
        "label": torch.randint(0, classes, (b,), generator=g),
    }


def test_paper_size_architecture_on_meta_device():
    # The real paper-size modules (Swin-T, EVA-02 base at 448) built without allocating weights.
    with torch.device("meta"):
        model = preset_for("mcgf", "paper").build(pretrained=False, num_classes=701)
    b = {k: v.to("meta") for k, v in _batch(448, b=2, classes=701).items()}
    with torch.no_grad():
        out = model.training_losses(b)
        restored = model.denoise(b["drone_weather"] * 2 - 1, torch.zeros(2, dtype=torch.long))
        sat = model.embed(b["satellite"], "satellite")
    assert isinstance(model.encoder, timm.models.swin_transformer.SwinTransformer)
    assert isinstance(model.content, timm.models.eva.Eva)
    assert model.content.patch_embed.img_size == (448, 448)
    assert model.content.num_features == 768 and len(model.content.blocks) == 12
    assert [len(s.blocks) for s in model.encoder.layers] == [2, 2, 6, 2]
    assert model.encoder.num_features == 768
    assert restored.shape == (2, 3, 448, 448)
    assert sat.shape == (2, 512)
    assert out["loss"].shape == () and set(out) == {"loss", "res", "mat", "cls"}
    assert model.head.dense2.out_features == 701
    n = sum(p.numel() for p in model.content.parameters())
    assert 85e6 < n < 90e6  # EVA-02 base


@pytest.mark.parametrize("name", ["mcgf", "mcgf_matching_only"])
def test_tiny_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = preset_for(name, "smoke").build(num_classes=5)
    out = model.training_losses(_batch(model.cfg.img_size))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    groups = model.param_groups({"backbone": 0.01, "head": 0.1})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert (name == "mcgf") == (model.encoder is not None)


def test_loss_terms():
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(
        num_classes=5, w_res=0.0, w_mat=0.0, w_cls=1.0, w_nce=0.0
    )
    batch = _batch(model.cfg.img_size)
    out = model.training_losses(batch)
    torch.testing.assert_close(out["loss"], out["cls"])

    # The cross-entropy targets each view's own location: logits that pick the batch's labels
    # (satellite, clean drone, restored drone, in that order) give a loss of about zero.
    picks = F.one_hot(batch["label"].repeat(3), 5).float() * 50.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model.head, "logits", lambda m: picks)
        assert float(model.training_losses(batch)["cls"]) < 1e-6

    # A perfect restorer makes L_res and L_mat exactly zero.
    model.denoise = lambda z_t, t: batch["drone"] * 2 - 1
    out = model.training_losses(batch)
    assert float(out["res"]) == 0.0 and float(out["mat"]) < 1e-10

    # L_res is the MSE between the clean image and the restoration.
    model.denoise = lambda z_t, t: torch.zeros_like(z_t)  # mid-grey after (x + 1) / 2
    out = model.training_losses(batch)
    torch.testing.assert_close(out["res"], ((batch["drone"] - 0.5) ** 2).mean())


@pytest.mark.parametrize("train", [True, False])
def test_one_content_pass_over_the_views_gives_each_view_its_own_features(train):
    """match_features_per_view runs E_content once over the concatenated views; each view's
    features equal a pass of its own (BatchNorm statistics per view in training), and do not
    depend on the other views' images."""
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(num_classes=5).train(train)
    batch = _batch(model.cfg.img_size, b=6)
    views = (batch["satellite"], batch["drone"], batch["drone_weather"])
    with torch.no_grad():
        together = model.match_features_per_view(*views)
        alone = [model.match_features(v) for v in views]
        other = model.match_features_per_view(views[0], torch.rand_like(views[1]), views[2])
    for got, want in zip(together, alone, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other[0], together[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other[2], together[2], rtol=1e-5, atol=1e-5)


def test_matching_loss_stops_gradient_at_the_clean_target():
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(
        num_classes=5,
        w_res=0.0,
        w_cls=0.0,
        w_nce=0.0,
        mat_to_restorer=True,  # end to end: L_mat reaches the weathered input
    )
    batch = _batch(model.cfg.img_size)
    batch["drone"].requires_grad_(True)
    batch["drone_weather"].requires_grad_(True)
    model.training_losses(batch)["loss"].backward()
    assert batch["drone"].grad is None or float(batch["drone"].grad.abs().sum()) == 0.0
    assert float(batch["drone_weather"].grad.abs().sum()) > 0


@pytest.mark.parametrize("to_restorer", [True, False])
def test_matching_loss_reaches_the_restorer_only_when_asked(to_restorer):
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(
        num_classes=5, w_res=0.0, w_nce=0.0, mat_to_restorer=to_restorer
    )
    model.training_losses(_batch(model.cfg.img_size))["loss"].backward()

    def grad_sum(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    # E_content always learns from L_mat and L_cls. (The encoder is not checked: its gradient is
    # 0 at init either way, because the restorer's last deconvolution starts at zero.)
    assert grad_sum(model.content) > 0
    assert (grad_sum(model.restore) > 0) == to_restorer


def test_ddim_inference_is_deterministic_and_multi_step():
    torch.manual_seed(0)
    model = preset_for("mcgf", "smoke").build(num_classes=5, pool_steps=False).eval()
    x = torch.rand(3, 3, model.cfg.img_size, model.cfg.img_size)
    with torch.no_grad():
        assert torch.allclose(model.restore_query(x)[-1], x, atol=1e-5)  # identity at init
    torch.nn.init.normal_(model.restore.deconv3[0].weight, std=0.2)  # make the steps differ
    with torch.no_grad():
        preds = model.restore_query(x)
        f1, f2 = model.embed(x, "drone"), model.embed(x, "drone")
        model.cfg.pool_steps = True
        pooled = model.embed(x, "drone")
        mean = torch.stack([F.normalize(model.match_features(p), dim=-1) for p in preds]).mean(0)
    # t_start=10, 2 steps: timesteps 10, 5, 0 -> three x0 predictions in [0, 1]
    assert len(preds) == 3 and all(p.shape == x.shape for p in preds)
    assert not torch.allclose(preds[0], preds[-1])
    assert all(float(p.min()) >= 0 and float(p.max()) <= 1 for p in preds)
    assert torch.equal(f1, f2)
    torch.testing.assert_close(f1.norm(dim=1), torch.ones(3))
    assert not torch.allclose(pooled, f1)
    torch.testing.assert_close(pooled, F.normalize(mean, dim=-1))  # every step's ẑ_0, pooled
    with pytest.raises(ConfigError, match="view"):
        model.embed(x, "street")


@pytest.mark.parametrize("residual", RESIDUALS)
@pytest.mark.parametrize("patch", [4, 2])
def test_restorer_output_size_and_residual_modes(residual, patch):
    """ẑ_0 has the input's size for any encoder patch size; at init (last deconvolution zero)
    the residual modes return their input and "none" a grey image."""
    torch.manual_seed(0)
    arch = {**preset_for("mcgf", "smoke").config.encoder_arch, "patch_size": patch}
    model = preset_for("mcgf", "smoke").build(num_classes=5, residual=residual, encoder_arch=arch)
    z = torch.rand(2, 3, model.cfg.img_size, model.cfg.img_size) * 1.6 - 0.8
    t = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        out = model.eval().denoise(z, t)
    assert out.shape == z.shape
    x_in = z / model.alpha_bar[0].sqrt()
    expected = torch.zeros_like(z) if residual == "none" else x_in
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    with torch.no_grad():  # a large correction stays in [-1, 1]
        torch.nn.init.constant_(model.restore.deconv3[0].bias, 10.0)
        out = model.denoise(z, t)
    assert float(out.min()) >= -1 and float(out.max()) <= 1 and float(out.mean()) > 0.9


def test_pretrained_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_OFFLINE", "1")
    with pytest.raises(ConfigError, match="pretrained_file"):
        preset_for("mcgf", "smoke").build(num_classes=5, pretrained=True)
    arch = dict(preset_for("mcgf", "smoke").config.content_arch, img_size=32, num_classes=0)
    ref = create_backbone("eva02_base_patch14_448", **arch)
    assert ref.weights_source == "random"
    path = tmp_path / "eva.pth"
    torch.save(ref.state_dict(), path)
    loaded = create_backbone(
        "eva02_base_patch14_448", pretrained=True, pretrained_file=path, **arch
    )
    n = len(ref.state_dict())
    assert loaded.weights_source == f"file:{path} [{n}/{n} tensors]"
    for a, b in zip(ref.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("eva02_base_patch14_448", pretrained_file=tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_backbone("no_such_net")


def test_config_validation():
    with pytest.raises(ConfigError, match="valid keys"):
        preset_for("mcgf", "smoke", {"model": dict(wrong_key=1)})
    with pytest.raises(ConfigError, match="preset"):
        preset_for("mcgf", "huge")
    with pytest.raises(ConfigError, match="t_start"):
        preset_for("mcgf", "smoke", {"model": dict(t_start=100)})
    with pytest.raises(ConfigError, match="content_norm"):
        preset_for("mcgf", "smoke", {"model": dict(content_norm="imagenet")})
    with pytest.raises(ConfigError, match="residual"):
        preset_for("mcgf", "smoke", {"model": dict(residual=True)})


def test_per_image_content_norm_removes_brightness_and_contrast():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    dark = x * 0.25 + 0.01  # a darker, lower-contrast copy, same colour ratios around the mean
    per_image = preset_for("mcgf", "smoke").build(num_classes=4, content_norm="per_image").eval()
    clip = preset_for("mcgf", "smoke").build(num_classes=4, content_norm="clip").eval()
    clip.load_state_dict(per_image.state_dict())
    with torch.no_grad():
        normed, normed_dark = per_image.content_norm(x), per_image.content_norm(dark)
        assert torch.allclose(normed.mean((1, 2, 3)), torch.zeros(2), atol=1e-5)
        # eps keeps flat images finite; the rest is a positive rescaling of the same image
        assert torch.allclose(
            F.normalize(normed.flatten(1)), F.normalize(normed_dark.flatten(1)), atol=1e-5
        )
        a, b = per_image.embed(x, "satellite"), per_image.embed(dark, "satellite")
        c, d = clip.embed(x, "satellite"), clip.embed(dark, "satellite")
    assert (a * b).sum(1).min() > (c * d).sum(1).min()
    assert torch.isfinite(per_image.content_norm(torch.full((1, 3, 8, 8), 0.5))).all()


def test_sharded_sampler_partitions_and_is_seeded():
    full = list(ShardedSampler(10, seed=1, views=[3] * 10, rank=0, world_size=1))
    shards = [
        list(ShardedSampler(10, seed=1, views=[3] * 10, rank=r, world_size=3)) for r in range(3)
    ]
    assert all(len(s) == 4 for s in shards)  # 10 padded to 12
    merged = [x for pos in zip(*shards, strict=True) for x in pos]
    assert merged[:10] == full  # padding repeats the first items (with a fresh view draw)
    assert [i for i, _, _ in merged[10:]] == [i for i, _, _ in full[:2]]
    assert all(0 <= v < 3 for _, v, _ in full)
    # the augmentation draw changes with the epoch, so a location is not augmented the same way
    views = ShardedSampler(10, seed=1, views=[3] * 10)
    views.set_epoch(1)
    assert {d for *_, d in views} != {d for *_, d in full}
    s = ShardedSampler(10, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(s) == list(range(10))
    s.set_epoch(0)
    assert list(s) == first


def test_train_set_items(tmp_path):
    root = make_university1652(tmp_path / "u", train_ids=(1, 2, 3), views=2)
    data = load_university1652(root)
    ds = UniversityTrainSet(data.sets["train/drone"], data.sets["train/satellite"], 24, cache=True)
    item = ds[(2, 1)]
    assert item["drone"].shape == (3, 24, 24) and item["satellite"].shape == (3, 24, 24)
    assert item["label"] == 2 and item["location"] == 3
    assert 0 <= float(item["drone"].min()) and float(item["drone"].max()) <= 1
    assert torch.equal(ds[(2, 1)]["drone"], item["drone"])  # cached and deterministic
    # the draw seeds the augmentation: some draw turns the satellite tile, the same draw repeats
    sats = [ds[(2, 1, d)]["satellite"] for d in range(8)]
    assert any(not torch.equal(sats[0], x) for x in sats[1:])
    assert torch.equal(ds[(2, 1, 5)]["satellite"], sats[5])


def test_train_and_evaluate_end_to_end(tmp_path):
    from geoloc_lib.eval.university import evaluate_mcgf
    from geoloc_lib.models.raw_pixel import RawPixelMatcher
    from geoloc_lib.training.mcgf import train_mcgf

    root = make_university1652(tmp_path / "u", train_ids=range(1, 9), test_ids=(10, 11), views=2)
    preset = preset_for(
        "mcgf",
        "smoke",
        {"train": {"epochs": 1}, "run": {"val_queries": 2, "max_steps_per_epoch": 2}},
    )
    res = train_mcgf(root, preset, out_dir=tmp_path / "run", device="cpu", progress=False)
    assert res.checkpoint.is_file() and (tmp_path / "run" / "history.csv").is_file()
    assert {"loss", "res", "mat", "cls", "val_r1"} <= set(res.history.columns)
    df = evaluate_mcgf(
        res.checkpoint,
        root,
        conditions=("normal", "rain"),
        tasks=("drone->satellite",),
        device="cpu",
        progress=False,
    )
    assert list(df["condition"]) == ["normal", "rain", "mean"]
    assert df[["R@1", "AP"]].apply(np.isfinite).all().all()
    assert ((df["R@1"] >= 0) & (df["R@1"] <= 100)).all()
    raw = evaluate_mcgf(
        RawPixelMatcher(8, img_size=16), root, conditions=("normal",), device="cpu", progress=False
    )
    assert set(raw["task"]) == {"drone->satellite", "satellite->drone"}


def _lr_at_epoch(scheduler, group: int, epoch: int, steps_per_epoch: int) -> float:
    """The learning rate a per-step LambdaLR gives ``group`` at the first step of ``epoch``."""
    base = scheduler.base_lrs[group]
    return base * scheduler.lr_lambdas[group](epoch * steps_per_epoch)


def test_paper_lr_steps_down_by_ten_at_epoch_80():
    # The per-step schedule counts its step size in steps (80 x steps per epoch), so the rate
    # drops at epoch 80: 0.01 at epochs 0 and 79, 0.001 at 80 and 119.
    from geoloc_lib.training.optim import build_optimizer, build_scheduler

    settings = preset_for("mcgf", "paper").train
    net = torch.nn.Linear(2, 2)
    net.param_groups = lambda lr: [{"params": list(net.parameters()), "lr": lr["backbone"]}]
    steps = 2184  # 701 locations x 54 drone views / batch 16 (any value > 1 works)
    sched = build_scheduler(build_optimizer(net, settings), settings, steps)
    lrs = [_lr_at_epoch(sched, 0, e, steps) for e in (0, 79, 80, 119)]
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001])


def test_restoration_module_has_its_own_group_at_the_backbone_rate_in_paper():
    # §3: 0.1 for the classification layer only; the restoration module at the backbone's 0.01.
    from geoloc_lib.training.optim import build_optimizer

    model = preset_for("mcgf", "smoke").build(num_classes=5)
    opt = build_optimizer(model, preset_for("mcgf", "paper").train)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": 0.01, "head": 0.1, "restoration": 0.01}
    restore_ids = {id(p) for p in model.restore.parameters()}
    groups = {g["name"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert groups["restoration"] == restore_ids
    assert {id(p) for p in model.head.parameters()} <= groups["head"]  # + the InfoNCE scale
    assert not groups["head"] & (restore_ids | {id(p) for p in model.encoder.parameters()})
    # CPU presets: the restoration group at lr_head
    opt = build_optimizer(model, preset_for("mcgf", "default").train)
    assert {g["name"]: g["lr"] for g in opt.param_groups}["restoration"] == 1e-3


def test_literal_restoration_module_without_lateral_connections():
    # §2.3: "three deconvolutions, an upsampling, and a Tanh": reachable with lateral=False,
    # residual="none", time_embed=False; then the output depends on the last stage map only.
    torch.manual_seed(0)
    model = (
        preset_for("mcgf", "smoke")
        .build(num_classes=5, lateral=False, residual="none", time_embed=False)
        .eval()
    )
    restore = model.restore
    params = {name.split(".")[0] for name, _ in restore.named_parameters()}
    assert params == {"deconv1", "deconv2", "deconv3"}
    assert restore.lateral2 is None and restore.lateral3 is None and restore.time is None
    torch.nn.init.normal_(restore.deconv3[0].weight, std=0.1)  # not the all-zero init
    g = torch.Generator().manual_seed(1)
    size = model.cfg.img_size
    f4 = torch.randn(
        2, model.encoder.feature_info[-1]["num_chs"], size // 32, size // 32, generator=g
    )
    f3 = torch.randn(
        2, model.encoder.feature_info[-2]["num_chs"], size // 16, size // 16, generator=g
    )
    f2 = torch.randn(
        2, model.encoder.feature_info[-3]["num_chs"], size // 8, size // 8, generator=g
    )
    x_in = torch.zeros(2, 3, size, size)
    t = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        out = restore([f2, f3, f4], t, x_in)
        by_hand = torch.tanh(
            restore.upsample(restore.deconv3(restore.deconv2(restore.deconv1(f4))))
        )
        other = restore([f2 * 5, f3 * 5, f4], t, x_in)
    torch.testing.assert_close(out, by_hand)
    torch.testing.assert_close(out, other)  # the stage-2/3 maps are not read
    assert out.shape == (2, 3, size, size)
    # the default keeps the lateral connections
    assert preset_for("mcgf", "smoke").build(num_classes=5).restore.lateral3 is not None


def test_ddim_starts_from_a_noise_level_training_draws():
    # Training feeds the restorer z_t ~ q(z_t | y), t ~ U[0, t_max); the paper preset's DDIM must
    # start from such a draw at t_start (a fixed noise field: deterministic per image), not from
    # the noise-free mean sqrt(ab) y.
    assert preset_for("mcgf", "paper").config.infer_start == "noise"
    torch.manual_seed(0)
    model = (
        preset_for("mcgf", "smoke")
        .build(num_classes=5, infer_start="noise", t_max=60, t_start=50)
        .eval()
    )
    seen = []
    denoise = model.denoise

    def spy(z, t):
        seen.append((z.clone(), t.clone()))
        return denoise(z, t)

    model.denoise = spy
    x = torch.rand(3, 3, model.cfg.img_size, model.cfg.img_size)
    with torch.no_grad():
        model.restore_query(x)
        first_alone = model.embed(x[1:2], "drone")
        in_batch = model.embed(x, "drone")[1:2]
    z0, t0 = seen[0]
    assert t0.tolist() == [50, 50, 50]
    ab = model.alpha_bar[50]
    residual = (z0 - ab.sqrt() * (x * 2 - 1)) / (1 - ab).sqrt()
    # a standard-normal field, the same for every image (the mean start gives exactly 0)
    assert 0.9 < float(residual.std()) < 1.1 and abs(float(residual.mean())) < 0.05
    torch.testing.assert_close(residual[0], residual[2], atol=1e-4, rtol=0)
    torch.testing.assert_close(first_alone, in_batch, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="t_start"):
        preset_for("mcgf", "smoke", {"model": dict(t_max=20, t_start=20)})
    with pytest.raises(ConfigError, match="infer_start"):
        preset_for("mcgf", "smoke", {"model": dict(infer_start="zeros")})


def test_train_settings_overrides_keep_explicit_none():
    s = preset_for("mcgf", "default", {"train": dict(batch_size=8, grad_clip=None)}).train
    assert s.epochs == 22 and s.batch_size == 8 and s.grad_clip is None
