"""Pretrained-weight files are checked when loaded: a file of another architecture, another size,
with a wrapper prefix, or unreadable never gives a random backbone that claims to be loaded."""

from __future__ import annotations

import pytest
import timm
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models.backbones import create_backbone
from geoloc_lib.training.recipes import preset_for

SWIN = "swinv2_tiny_window8_256"


def _smoke_arch() -> dict:
    cfg = preset_for("geoviewmatch", "smoke").config
    return dict(
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_size=cfg.window_size,
        img_size=cfg.aerial_size,
        num_classes=0,
    )


@pytest.fixture(scope="module")
def ref_state():
    torch.manual_seed(3)
    return timm.create_model(SWIN, **_smoke_arch()).state_dict()


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_valid_file_loads_every_tensor_and_says_how_many(tmp_path, ref_state):
    path = tmp_path / "swin.pth"
    torch.save(ref_state, path)
    torch.manual_seed(0)
    m = create_backbone(SWIN, pretrained_file=path, **_smoke_arch())
    n = len(ref_state)
    assert m.weights_source == f"file:{path} [{n}/{n} tensors]"
    assert _equal(m.state_dict(), ref_state)


@pytest.mark.parametrize("prefix", ["backbone.", "module.", "model.", "module.backbone."])
def test_wrapper_prefixes_are_stripped(tmp_path, ref_state, prefix):
    path = tmp_path / "prefixed.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in ref_state.items()}}, path)
    m = create_backbone(SWIN, pretrained_file=path, **_smoke_arch())
    assert _equal(m.state_dict(), ref_state)
    assert m.weights_source.endswith(f"[{len(ref_state)}/{len(ref_state)} tensors]")


def test_resnet_file_for_geoviewmatch_is_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match=r"resnet18\.pth does not fit backbone 'swinv2_tiny") as e:
        preset_for("geoviewmatch", "smoke").build(pretrained_file=str(path))
    assert "missing (e.g. patch_embed.proj.weight" in str(e.value)
    assert "conv1.weight" in str(e.value)


def test_unknown_prefix_is_refused(tmp_path, ref_state):
    path = tmp_path / "odd.pth"
    torch.save({"net." + k: v for k, v in ref_state.items()}, path)
    with pytest.raises(ConfigError, match="unexpected in the file .e.g. net.patch_embed"):
        create_backbone(SWIN, pretrained_file=path, **_smoke_arch())


def test_resnet_file_for_mcgf_encoder_names_the_argument(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match=r"^encoder_pretrained_file .*does not fit backbone"):
        preset_for("mcgf", "smoke").build(num_classes=5, encoder_pretrained_file=str(path))


def test_full_size_weights_with_smoke_preset_is_one_line(tmp_path):
    path = tmp_path / "swinv2_t.pth"
    torch.save(timm.create_model(SWIN, num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError) as e:
        preset_for("geoviewmatch", "smoke").build(pretrained_file=str(path))
    msg = str(e.value)
    assert "\n" not in msg and "with another shape" in msg and len(msg) < 700


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_garbage_file_names_the_file(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"not weights at all" * 8)
    with pytest.raises(ConfigError, match=f"garbage\\{suffix} cannot be read") as e:
        create_backbone(SWIN, pretrained_file=path, **_smoke_arch())
    assert "weights_only=False" not in str(e.value)


def test_mcgf_offline_message_names_its_arguments(monkeypatch):
    monkeypatch.setenv("GEOLOC_OFFLINE", "1")
    with pytest.raises(ConfigError, match="content_pretrained_file=") as e:
        preset_for("mcgf", "smoke").build(num_classes=5, pretrained=True)
    assert " pretrained_file=" not in str(e.value)


def test_mcgf_offline_message_names_the_encoder_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_OFFLINE", "1")
    cfg = preset_for("mcgf", "smoke").config
    content = create_backbone(
        cfg.content, num_classes=0, **{"img_size": cfg.img_size, **cfg.content_arch}
    )
    path = tmp_path / "content.pth"
    torch.save(content.state_dict(), path)
    with pytest.raises(ConfigError, match="encoder_pretrained_file="):
        preset_for("mcgf", "smoke").build(
            num_classes=5,
            pretrained=True,
            content_pretrained_file=str(path),
        )


def test_dry_run_config_check_refuses_a_wrong_file(tmp_path):
    # What `geoloc run --dry-run` runs for each trained model (built on the meta device).
    from geoloc_lib.training.runs import check_config

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit backbone"):
        check_config("geoviewmatch", "smoke", {"model": {"pretrained_file": str(path)}})
