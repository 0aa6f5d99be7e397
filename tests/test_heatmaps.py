"""Feature heatmaps and Grad-CAM through the model contract's explanation hooks, and heatmap
figures (geoloc_lib.analysis.explain, models.cam, viz.heatmaps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layouts import make_cvact, make_university1652
from matplotlib.figure import Figure

from geoloc_lib.analysis import explain
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models import create_model
from geoloc_lib.models.cam import NHWCToNCHW, TokensToNCHW, swin_stage_blocks, vit_last_block
from geoloc_lib.training.recipes import preset_for
from geoloc_lib.viz import heatmaps as viz


def _trained_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Spread the LayerNorms' affine parameters as training does: SwinV2's stage outputs are
    sums of LayerNorm outputs, whose channel mean is exactly 0 with the initial gamma 1, beta 0."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def gvm():
    torch.manual_seed(0)
    return _trained_norms(preset_for("geoviewmatch", "smoke").build()).eval()


@pytest.fixture(scope="module")
def mcgf():
    torch.manual_seed(0)
    return preset_for("mcgf", "smoke").build().eval()


def _images(b: int, hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, *hw, generator=torch.Generator().manual_seed(seed))


def _capture(module: torch.nn.Module, run) -> torch.Tensor:
    """The output of ``module`` while ``run()`` executes."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen[-1]


# --------------------------------------------------------------------------- map utilities


def test_channel_mean_heatmap_ramp_and_constant():
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(2, 5, 3, 4)
    heat = explain.channel_mean_heatmap(ramp, (6, 8))
    assert heat.shape == (2, 6, 8)
    assert heat.min() == 0 and heat.max() == 1
    assert (heat[:, :, 1:] >= heat[:, :, :-1]).all()  # increases left to right
    assert torch.equal(heat[0], heat[1])
    flat = explain.channel_mean_heatmap(torch.full((1, 3, 2, 2), 7.0), (4, 4))
    assert torch.equal(flat, torch.zeros(1, 4, 4))


def test_channel_mean_uses_the_channel_mean():
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0, 0, 0], feats[0, 1, 1, 1] = 4.0, 2.0  # means: 2 at (0,0), 1 at (1,1), 0 elsewhere
    heat = explain.channel_mean_heatmap(feats, (2, 2))
    assert torch.allclose(heat[0], torch.tensor([[1.0, 0.0], [0.0, 0.5]]))


def test_centre_weight():
    assert torch.allclose(explain.centre_weight(torch.ones(2, 16, 16)), torch.ones(2))
    centre = torch.zeros(1, 16, 16)
    centre[:, 6:10, 6:10] = 1
    edge = torch.zeros(1, 16, 16)
    edge[:, :, :3] = 1
    assert explain.centre_weight(centre) > 3 and explain.centre_weight(edge) == 0
    stats = explain.heatmap_stats({"c": centre, "u": torch.ones(1, 16, 16)})
    assert list(stats["heatmap"]) == ["c", "u"] and stats["contrast (std)"][1] == 0


# --------------------------------------------------------------------------- feature heatmaps


def test_stage_heatmaps(gvm):
    aerial = _images(2, gvm.cfg.aerial_size)
    maps = explain.stage_heatmaps(gvm, aerial, "aerial")
    assert list(maps) == ["stage 2", "stage 3", "stage 4", "multi-scale 3+4", "multi-scale 2+3+4"]
    for m in maps.values():
        assert m.shape == (2, *gvm.cfg.aerial_size) and m.min() >= 0 and m.max() <= 1
    expected = explain.minmax_scale((maps["stage 3"] + maps["stage 4"]) / 2)
    assert torch.allclose(maps["multi-scale 3+4"], expected, atol=1e-6)
    # the stage heatmap is the channel mean of that stage's output (no final norm)
    net = gvm.backbone.aerial
    out3 = _capture(net.layers[2], lambda: gvm.embed(aerial, "aerial"))
    own = explain.channel_mean_heatmap(out3.permute(0, 3, 1, 2), gvm.cfg.aerial_size)
    assert torch.allclose(maps["stage 3"], own, atol=1e-5)
    assert all(float(m.amax()) == 1.0 for m in maps.values())  # not the flat case
    ground = explain.stage_heatmaps(gvm, _images(1, gvm.cfg.ground_size), "ground")
    assert ground["multi-scale 2+3+4"].shape == (1, *gvm.cfg.ground_size)
    with pytest.raises(ConfigError, match="no feature map 'stage 5'.*stage 1, stage 2"):
        explain.stage_heatmaps(gvm, aerial, "aerial", stages=(5,))
    with pytest.raises(ConfigError, match="view"):
        explain.stage_heatmaps(gvm, aerial, "drone")


def test_feature_heatmaps_names_and_combinations(gvm):
    aerial = _images(2, gvm.cfg.aerial_size)
    every = explain.feature_heatmaps(gvm, aerial, "aerial")
    assert list(every) == ["stage 1", "stage 2", "stage 3", "stage 4"]
    combined = {"both": ["stage 4", "stage 2"]}
    some = explain.feature_heatmaps(gvm, aerial, "aerial", ["stage 2"], combined)
    assert list(some) == ["stage 2", "both"] and torch.equal(some["stage 2"], every["stage 2"])
    mean = explain.minmax_scale((every["stage 2"] + every["stage 4"]) / 2)
    assert torch.allclose(some["both"], mean, atol=1e-6)


def test_swinv2_at_init_gives_flat_maps_not_noise():
    torch.manual_seed(0)
    fresh = preset_for("geoviewmatch", "smoke").build().eval()
    maps = explain.stage_heatmaps(fresh, _images(2, fresh.cfg.aerial_size), "aerial")
    assert all(torch.equal(m, torch.zeros_like(m)) for m in maps.values())


def test_mcgf_feature_heatmap_is_on_the_restored_query(mcgf):
    query = _images(2, (mcgf.cfg.img_size, mcgf.cfg.img_size))
    maps = explain.feature_heatmaps(mcgf, query, "drone")
    assert list(maps) == ["content last block"]
    heat = maps["content last block"]
    assert heat.shape == (2, 32, 32) and torch.isfinite(heat).all()
    assert (heat.flatten(1).amax(dim=1) == 1).all()  # EVA's pre-norm stream: not flat at init
    restored = explain.explained_images(mcgf, query, "drone")
    assert not torch.allclose(restored, query)
    with torch.no_grad():
        assert torch.equal(restored, mcgf.restore_query(query)[-1].clamp(0, 1))
    assert torch.equal(explain.explained_images(mcgf, query, "satellite"), query)
    direct = explain.feature_heatmaps(mcgf, restored, "satellite")["content last block"]
    assert torch.allclose(heat, direct, atol=1e-6)


def test_matching_only_mcgf_explains_the_query_itself():
    torch.manual_seed(0)
    model = preset_for("mcgf_matching_only", "smoke").build().eval()
    query = _images(2, (32, 32), 8)
    assert torch.equal(explain.explained_images(model, query, "drone"), query)
    drone = explain.feature_heatmaps(model, query, "drone")["content last block"]
    tile = explain.feature_heatmaps(model, query, "satellite")["content last block"]
    assert torch.equal(drone, tile)


def test_infonce_baseline_has_stage_heatmaps_but_no_grad_cam():
    torch.manual_seed(0)
    model = preset_for("infonce_baseline", "smoke").build().eval()
    aerial = _images(2, model.cfg.aerial_size)
    maps = explain.stage_heatmaps(model, aerial, "aerial", (1, 2, 3, 4), ((3, 4),))
    assert list(maps) == ["stage 1", "stage 2", "stage 3", "stage 4", "multi-scale 3+4"]
    assert all(m.shape == (2, *model.cfg.aerial_size) for m in maps.values())
    with pytest.raises(ConfigError, match="InfoNCEBaseline .*Grad-CAM"):
        explain.grad_cam(model, aerial, "aerial", torch.zeros(2, 8))


def test_raw_pixel_matchers_say_they_have_nothing_to_explain():
    model = create_model("raw_pixels")
    with pytest.raises(ConfigError, match="RawPixelMatcher .*feature maps"):
        explain.feature_heatmaps(model, _images(1, (16, 16)), "drone")


# --------------------------------------------------------------------------- Grad-CAM pieces


def test_reshape_transforms_give_stage_and_patch_grids(gvm, mcgf):
    for view, size in (("aerial", gvm.cfg.aerial_size), ("ground", gvm.cfg.ground_size)):
        images = _images(2, size)
        x = (images - gvm.mean) / gvm.std
        net = gvm.backbone.instance(view)
        with torch.no_grad():
            ref = net.forward_intermediates(x, indices=[2, 3], norm=False, intermediates_only=True)
        layers = swin_stage_blocks(net, (3, 4))
        for layer, expected in zip(layers, ref, strict=True):
            out = _capture(layer, lambda images=images, view=view: gvm.embed(images, view))
            nchw = NHWCToNCHW()(out)
            assert nchw.shape == expected.shape  # e.g. aerial 48 px: [2, 64, 3, 3], [2, 128, 2, 2]
            assert torch.allclose(nchw, expected, atol=1e-5)
            h, w = expected.shape[-2:]
            tokens = out.reshape(2, h * w, -1)  # what norm2 sees
            assert torch.equal(NHWCToNCHW((h, w))(tokens), nchw)
    eva = mcgf.content
    transform = TokensToNCHW.for_model(eva)
    assert transform.grid == (4, 4) and transform.num_prefix_tokens == 1  # 32 px, patch 8, cls
    images = _images(2, (32, 32))
    out = _capture(vit_last_block(eva)[0], lambda: mcgf.match_features(images))
    assert out.shape == (2, 17, eva.num_features)
    with torch.no_grad():
        (expected,) = eva.forward_intermediates(
            mcgf.content_norm(images), indices=[len(eva.blocks) - 1], intermediates_only=True
        )
    assert torch.allclose(transform(out), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="patch grid"):
        TokensToNCHW((4, 4), 0)(out)


def test_cosine_target_equals_cosine_similarity():
    g = torch.Generator().manual_seed(1)
    out, ref = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    direct = F.cosine_similarity(out, ref, dim=-1)
    for i in range(4):
        target = explain.CosineSimilarityTarget(ref[i])
        assert torch.allclose(target(out[i]), direct[i], atol=1e-6)
        manual = (out[i] @ ref[i]) / (out[i].norm() * ref[i].norm())
        assert torch.allclose(target(out[i]), manual, atol=1e-6)
    assert torch.allclose(
        explain.CosineSimilarityTarget(ref[0])(out),
        out @ ref[0] / (out.norm(dim=1) * ref[0].norm()),
        atol=1e-6,
    )


def _check_cam(cam: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert cam.shape == shape
    assert torch.isfinite(cam).all() and (cam >= 0).all() and cam.max() <= 1 + 1e-6
    assert (cam.flatten(1).amax(dim=1) > 0).all()  # a map, not all zeros


def test_geoviewmatch_grad_cam(gvm):
    ground, aerial = _images(3, gvm.cfg.ground_size, 1), _images(3, gvm.cfg.aerial_size, 2)
    with torch.no_grad():
        g_emb, a_emb = gvm.embed(ground, "ground"), gvm.embed(aerial, "aerial")
    assert gvm.cam_target_layers("aerial") == swin_stage_blocks(
        gvm.backbone.aerial, gvm.cfg.used_stages
    )
    cam_a = explain.grad_cam(gvm, aerial, "aerial", g_emb)
    cam_g = explain.grad_cam(gvm, ground, "ground", a_emb)
    _check_cam(cam_a, (3, *gvm.cfg.aerial_size))
    _check_cam(cam_g, (3, *gvm.cfg.ground_size))
    # each image is explained towards its own reference: permuting both permutes the CAMs
    perm = torch.tensor([2, 0, 1])
    cam_p = explain.grad_cam(gvm, aerial[perm], "aerial", g_emb[perm])
    assert torch.allclose(cam_p, cam_a[perm], atol=1e-4)
    assert all(p.grad is None for p in gvm.parameters())  # no gradients left behind
    with pytest.raises(ConfigError, match="reference embeddings"):
        explain.grad_cam(gvm, aerial, "aerial", g_emb[:2])


def test_mcgf_grad_cam(mcgf):
    query, sat = _images(2, (32, 32), 3), _images(2, (32, 32), 4)
    with torch.no_grad():
        refs = mcgf.embed(sat, "satellite")
    assert mcgf.cam_target_layers("drone") == vit_last_block(mcgf.content)
    _check_cam(explain.grad_cam(mcgf, query, "drone", refs), (2, 32, 32))
    _check_cam(explain.grad_cam(mcgf, sat, "satellite", refs.flip(0)), (2, 32, 32))
    # the drone CAM explains the restored query: the same as the restored image as a tile
    restored = explain.explained_images(mcgf, query, "drone")
    assert torch.equal(
        explain.grad_cam(mcgf, query, "drone", refs),
        explain.grad_cam(mcgf, restored, "satellite", refs),
    )


# --------------------------------------------------------------------------- Figure 3 pieces


def test_weather_rotation_variants():
    image = _images(1, (16, 16))[0]
    v = explain.weather_rotation_variants(image, rotations=(90, 270), seed=3)
    assert v.images.shape == (12, 3, 16, 16)
    assert v.labels[0] == "normal" and v.labels[-2:] == ["normal, 90°", "normal, 270°"]
    assert torch.allclose(v.images[0], image)  # clear weather leaves the image as it is
    assert torch.allclose(v.images[10], torch.rot90(image, 1, dims=(1, 2)))
    assert torch.allclose(v.images[11], torch.rot90(image, 3, dims=(1, 2)))
    assert not torch.allclose(v.images[1], image)  # fog
    again = explain.weather_rotation_variants(image, rotations=(90, 270), seed=3)
    assert torch.equal(v.images, again.images)
    with pytest.raises(ConfigError, match="multiples of 90"):
        explain.weather_rotation_variants(image, rotations=(45,))
    with pytest.raises(ConfigError, match="condition"):
        explain.weather_rotation_variants(image, conditions=("hail",))


def test_match_variants_ranks_consistently(mcgf):
    image = _images(1, (32, 32), 5)[0]
    variants = explain.weather_rotation_variants(image, ("normal", "fog", "dark"), (180,))
    with torch.no_grad():
        gallery = mcgf.embed(_images(6, (32, 32), 6), "satellite")
    labels = np.array([10, 11, 12, 13, 14, 15])
    m = explain.match_variants(mcgf, variants, 13, gallery, labels, k=5)
    assert m.topk.shape == (4, 5) and m.correct.shape == (4, 5)
    with torch.no_grad():
        query = mcgf.embed(variants.images, "drone")
    scores = query @ gallery.T
    assert torch.allclose(m.true_score, scores[:, 3], atol=1e-5)
    assert torch.equal(m.true_rank, (scores > scores[:, 3:4]).sum(dim=1))
    assert torch.equal(m.correct, torch.as_tensor(labels)[m.topk] == 13)
    for r, row in zip(m.true_rank.tolist(), m.correct, strict=True):
        assert (r < 5) == bool(row.any()) and (r >= 5 or bool(row[r]))
    table = explain.matches_table(m, [f"{x:04d}" for x in labels])
    assert list(table["true rank"]) == (m.true_rank + 1).tolist()
    assert table["top-k"].str.count(r"\*").tolist() == m.correct.sum(dim=1).tolist()
    with pytest.raises(ConfigError, match="no item with the query's label"):
        explain.match_variants(mcgf, variants, 99, gallery, labels)


def test_pick_examples(tmp_path):
    from geoloc_lib.data.street import load_cvact
    from geoloc_lib.data.university import load_university1652

    pairs = load_cvact(make_cvact(tmp_path / "cvact"), "train")
    ids, ground, aerial = explain.pick_street_pairs(pairs, (8, 32), (12, 12), 2, seed=0)
    assert len(ids) == 2 and ground.shape == (2, 3, 8, 32) and aerial.shape == (2, 3, 12, 12)
    assert ids == explain.pick_street_pairs(pairs, (8, 32), (12, 12), 2, seed=0)[0]
    with pytest.raises(ConfigError, match="n_examples"):
        explain.pick_street_pairs(pairs, (8, 32), (12, 12), 99, seed=0)
    uni = load_university1652(make_university1652(tmp_path / "uni"))
    query, _ = uni.task("drone->satellite")
    image, label, name = explain.pick_drone_query(query, 16, seed=1)
    assert image.shape == (3, 16, 16) and label in set(query.labels.tolist())
    assert name.startswith(f"{label:04d}/")


def test_require_model():
    class Run:
        name, model_name, model = "x", "infonce_baseline", object()

    with pytest.raises(ConfigError, match="parameter street_run.*geoviewmatch"):
        explain.require_model(Run(), ("geoviewmatch",), "street_run")
    assert explain.require_model(Run(), ("infonce_baseline",), "street_run") is Run.model


# --------------------------------------------------------------------------- figures


def test_overlay_heatmap():
    image = _images(1, (4, 6))[0]
    heat = torch.linspace(0, 1, 24).view(4, 6)
    assert np.allclose(viz.overlay_heatmap(image, heat, alpha=0.0), image.permute(1, 2, 0).numpy())
    full = viz.overlay_heatmap(image, heat, alpha=1.0)
    assert full.shape == (4, 6, 3)
    assert full[0, 0, 2] > full[0, 0, 0] and full[-1, -1, 0] > full[-1, -1, 2]  # blue low, red high
    with pytest.raises(ConfigError, match="differ"):
        viz.overlay_heatmap(image, heat.T)


def test_figures(tmp_path):
    from PIL import Image

    aerial, ground = _images(2, (12, 12)), _images(2, (8, 32))
    a_maps = {"stage 2": torch.rand(2, 12, 12), "multi-scale 3+4": torch.rand(2, 12, 12)}
    g_maps = {"stage 2": torch.rand(2, 8, 32)}
    fig = viz.stage_heatmaps_figure(
        aerial, a_maps, ground, g_maps["stage 2"], "stage 2", ["a", "b"]
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 4
    assert len(viz.panorama_heatmaps_figure(ground, g_maps, ["a", "b"]).axes) == 2 * 2
    cam = viz.gradcam_pairs_figure(aerial, a_maps["stage 2"], ground, g_maps["stage 2"], ["a", "b"])
    assert len(cam.axes) == 2 * 3
    with pytest.raises(ConfigError, match="heatmap 'stage 2'"):
        viz.panorama_heatmaps_figure(ground, {"stage 2": torch.rand(2, 8, 8)}, ["a", "b"])
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"g{i}.png")
        Image.new("RGB", (10, 10), (40 * i, 0, 0)).save(paths[-1])
    topk = torch.tensor([[0, 1], [2, 0]])
    correct = topk == 0
    fig = viz.weather_matches_figure(
        aerial,
        ["q0", "q1"],
        {"heat": torch.rand(2, 12, 12)},
        topk,
        correct,
        paths,
        extra_rows={"restored": aerial},
    )
    assert len(fig.axes) == 2 * (3 + 2)
    frame = fig.axes[2 * 3].spines["top"]  # row top-1, column 0: gallery item 0, the true match
    assert frame.get_visible() and frame.get_edgecolor()[:3] == pytest.approx(
        (0x1A / 255, 0x96 / 255, 0x41 / 255)
    )
