"""Bad input files and arguments give one line naming the file or parameter, never a traceback;
silently wrong data (16-bit images, links, duplicates, NaN, fractional indices) is refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import scipy.io
import torch
from layouts import make_cvact, make_cvusa, make_university160k_wx, make_university1652
from PIL import Image

from geoloc_lib.core.errors import ConfigError, DatasetError, ImageReadError
from geoloc_lib.data.images import read_image
from geoloc_lib.data.street import load_cvact, load_cvusa
from geoloc_lib.data.university import load_university160k_wx, load_university1652
from geoloc_lib.data.verify import check_image, verify_dataset
from geoloc_lib.pipeline.cli import main as cli_main


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _cvusa_manifest() -> dict:
    return {
        "mini_cvusa": {
            "loader": "geoloc_lib.data.street.load_cvusa",
            "layout": [{"path": "splits/train-19zl.csv", "kind": "file"}],
        }
    }


def _wx_manifest() -> dict:
    return {
        "mini_wx": {
            "loader": "geoloc_lib.data.university.load_university160k_wx",
            "layout": [
                {"path": "query_drone_name.txt", "kind": "file"},
                {"path": "query_drone_160k_wx_24", "kind": "dir", "glob": "*.jpeg"},
            ],
        }
    }


# ------------------------------------------------------------------ text files that are not UTF-8


def test_non_utf8_split_csv_names_file_and_line(tmp_path):
    root = make_cvusa(tmp_path / "cvusa")
    csv_path = root / "splits/train-19zl.csv"
    data = csv_path.read_bytes().split(b"\n")
    data[1] = data[1][:5] + b"\xff" + data[1][5:]
    csv_path.write_bytes(b"\n".join(data))
    with pytest.raises(DatasetError, match=r"train-19zl.csv, line 2: byte 0xFF .* not UTF-8"):
        load_cvusa(root, "train")
    report = verify_dataset("mini_cvusa", root, _cvusa_manifest())
    assert any("line 2: byte 0xFF" in p for p in report.problems)


def test_non_utf8_query_list_names_file_and_line(tmp_path, capsys):
    root = make_university160k_wx(tmp_path / "wx")
    qlist = root / "query_drone_name.txt"
    qlist.write_bytes(qlist.read_bytes() + b"\xffbad.jpeg\n")
    with pytest.raises(DatasetError, match=r"query_drone_name.txt, line 5: byte 0xFF"):
        load_university160k_wx(root)
    report = verify_dataset("mini_wx", root, _wx_manifest())
    assert any("line 5: byte 0xFF" in p for p in report.problems)
    feats = tmp_path / "f.pt"
    torch.save(
        {"query_features": torch.eye(4), "query_names": ["a", "b", "c", "d"],
         "gallery_features": torch.eye(4), "gallery_names": ["w", "x", "y", "z"]},
        feats,
    )  # fmt: skip
    code = cli_main(
        ["submit", "--features", str(feats), "--query-list", str(qlist), "--topk", "2",
         "--out", str(tmp_path / "a.zip"), "--quiet"]
    )  # fmt: skip
    assert "line 5: byte 0xFF" in _one_line(capsys, code)


# ------------------------------------------------------------------ images


def _png_header(path, width: int, height: int) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_is_one_clear_error(tmp_path):
    path = tmp_path / "huge.png"
    _png_header(path, 100_000, 100_000)
    with pytest.raises(ImageReadError, match=r"huge.png: its header declares .* pixels"):
        read_image(path)
    for full in (False, True):
        problem = check_image(path, full=full)
        assert problem is not None and "DecompressionBomb" in problem


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 257 * 64], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)  # 16-bit greyscale PNG
    rgb = np.asarray(read_image(path))
    assert rgb.shape == (2, 2, 3)
    assert rgb[..., 0].tolist() == [[0, 64], [128, 255]]


# ------------------------------------------------------------------ links and folders named as images


def test_links_and_folders_named_like_images_are_reported(tmp_path):
    root = make_university1652(tmp_path / "u")
    loc = root / "train/drone/0001"
    (loc / "image-90.jpeg").symlink_to(loc / "nowhere.jpeg")
    (loc / "image-91.jpeg").symlink_to(loc / "image-91.jpeg")  # a loop
    (loc / "image-92.jpeg").mkdir()
    manifest = {
        "mini": {
            "loader": "geoloc_lib.data.university.load_university1652",
            "layout": [{"path": "train/drone", "kind": "dir", "glob": "*/*"}],
        }
    }
    problems = "\n".join(verify_dataset("mini", root, manifest).problems)
    assert "image-90.jpeg: a dangling symbolic link" in problems
    assert "image-91.jpeg: a symbolic link loop" in problems
    assert "image-92.jpeg: a folder, not a file" in problems
    with pytest.raises(DatasetError, match="image-90.jpeg is a dangling symbolic link"):
        load_university1652(root)


# ------------------------------------------------------------------ duplicates, NaN, fractions


def test_duplicate_csv_row_is_refused_with_its_line(tmp_path):
    root = make_cvusa(tmp_path / "cvusa")
    csv_path = root / "splits/train-19zl.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(DatasetError, match=r"train-19zl.csv:5: .* listed again \(first on line 1"):
        load_cvusa(root, "train")


def _rewrite_mat(root, **changes):
    mat = scipy.io.loadmat(root / "ACT_data.mat")
    data = {k: v for k, v in mat.items() if not k.startswith("__")}
    data.update(changes)
    scipy.io.savemat(root / "ACT_data.mat", data)


def _act_manifest() -> dict:
    return {
        "mini_cvact": {
            "loader": "geoloc_lib.data.street.load_cvact",
            "layout": [{"path": "ACT_data.mat", "kind": "file"}],
        }
    }


def test_nan_coordinates_fail_loader_and_verify(tmp_path):
    root = make_cvact(tmp_path / "c")
    utm = scipy.io.loadmat(root / "ACT_data.mat")["utm"].copy()
    utm[5, 1] = np.nan
    _rewrite_mat(root, utm=utm)
    with pytest.raises(DatasetError, match=r"utm row 6 .*id0005.* not finite"):
        load_cvact(root, "val")
    report = verify_dataset("mini_cvact", root, _act_manifest())
    assert not report.ok and any("utm row 6" in p for p in report.problems)


def test_duplicate_ids_and_fractional_indices_are_refused(tmp_path):
    root = make_cvact(tmp_path / "c")
    panos = scipy.io.loadmat(root / "ACT_data.mat")["panoIds"].copy()
    panos[4, 0] = panos[1, 0]
    _rewrite_mat(root, panoIds=panos)
    with pytest.raises(DatasetError, match=r"panoIds 5 and 2 are both 'id0001'"):
        load_cvact(root, "val")
    root = make_cvact(tmp_path / "d")
    _rewrite_mat(root, valSet={"valInd": np.array([[5.0], [6.7]])})
    with pytest.raises(DatasetError, match=r"valSet.valInd entry 2 is 6.7, not a whole number"):
        load_cvact(root, "val")
    _rewrite_mat(root, valSet={"valInd": np.array([[5.0], [5.0]])})
    with pytest.raises(DatasetError, match=r"valSet.valInd entries 1 and 2 both hold index 5"):
        load_cvact(root, "val")


def test_duplicate_query_list_line_is_refused(tmp_path):
    root = make_university160k_wx(tmp_path / "wx")
    qlist = root / "query_drone_name.txt"
    names = qlist.read_text().splitlines()
    qlist.write_text("\n".join([*names, names[1]]) + "\n")
    with pytest.raises(DatasetError, match=r"line 5: .* listed again \(first on line 2\)"):
        load_university160k_wx(root)
    report = verify_dataset("mini_wx", root, _wx_manifest())
    assert any("listed again" in p for p in report.problems)


# ------------------------------------------------------------------ answer files and submissions


def test_answer_that_is_not_a_zip_is_one_line(tmp_path):
    from geoloc_lib.eval.local_challenge import read_answer

    path = tmp_path / "answer.zip"
    path.write_text("a\tb\n")
    with pytest.raises(DatasetError, match=r"answer file .*answer.zip is not a zip archive"):
        read_answer(path)


def test_answer_names_with_extension_are_scored_with_a_warning():
    from geoloc_lib.eval.local_challenge import score_answer

    rows = [["0002.webp", "0001.webp"], ["0002.webp", "0001.webp"]]
    with pytest.warns(UserWarning, match=r"keep an image extension, e.g. '0002.webp'"):
        scores = score_answer(rows, ["q1.jpeg", "q2.jpeg"], {"q1": "0001", "q2": "0002"}, ks=(1, 2))
    assert scores == {"R@1": 50.0, "R@2": 100.0}


def _submit_args(tmp_path, qf, gf):
    feats = tmp_path / "f.pt"
    torch.save(
        {"query_features": qf, "query_names": [f"q{i}.jpeg" for i in range(len(qf))],
         "gallery_features": gf, "gallery_names": [f"g{i}.webp" for i in range(len(gf))]},
        feats,
    )  # fmt: skip
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"q{i}.jpeg\n" for i in range(len(qf))))
    return ["submit", "--features", str(feats), "--query-list", str(listing), "--topk", "3",
            "--out", str(tmp_path / "a.zip"), "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    "device", ["tpu", "cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"])
)
def test_submit_device_errors_are_one_line(tmp_path, capsys, device):
    args = _submit_args(tmp_path, torch.eye(2, 4), torch.eye(4))
    err = _one_line(capsys, cli_main([*args, "--device", device]))
    assert f"--device {device!r}" in err


def test_submit_refuses_zero_features_with_normalize(tmp_path, capsys):
    qf = torch.zeros(2, 4)
    err = _one_line(capsys, cli_main([*_submit_args(tmp_path, qf, torch.eye(4)), "--normalize"]))
    assert "query_features: 2 row(s) are all zeros" in err and "'q0.jpeg'" in err
    assert not (tmp_path / "a.zip").exists()


# ------------------------------------------------------------------ configuration files and flags


def test_missing_profiles_file_is_one_line(tmp_path, capsys, monkeypatch):
    import geoloc_lib.pipeline.profiles as profiles

    monkeypatch.setattr(profiles, "PROFILES_FILE", tmp_path / "configs" / "profiles.yaml")
    err = _one_line(capsys, cli_main(["run", "--profile", "smoke", "--dry-run"]))
    assert "profiles.yaml not found" in err


def test_manifest_item_without_path_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("mini:\n  layout:\n    - {kind: dir, glob: '*.jpg'}\n")
    err = _one_line(
        capsys,
        cli_main(["data", "verify", "mini", "--root", str(tmp_path), "--manifest", str(manifest)]),
    )
    assert "entry 'mini', layout item 1" in err and "has no 'path'" in err


def test_bench_fit_lever_that_is_not_json_is_one_line(tmp_path, capsys):
    from geoloc_lib.bench.fit import parse_lever

    with pytest.raises(ConfigError, match=r"--lever 'batch_size=\[oops': value .* not valid JSON"):
        parse_lever("batch_size=[oops")
    assert parse_lever("compile=inductor") == ("compile", "inductor")
    assert parse_lever("batch_size=64") == ("batch_size", 64)
    err = _one_line(
        capsys, cli_main(["bench", "fit", "--root", str(tmp_path), "--lever", "batch_size=[oops"])
    )
    assert "batch_size=[oops" in err


# ------------------------------------------------------------------ weight files


def _swin_state():
    import timm
    from test_backbone_weights import SWIN, _smoke_arch

    return SWIN, _smoke_arch(), timm.create_model(SWIN, **_smoke_arch()).state_dict()


@pytest.mark.parametrize("damage", ["int", "nan", "inf"])
def test_weight_files_with_integer_or_non_finite_tensors_are_refused(tmp_path, damage):
    from geoloc_lib.models.backbones import create_backbone

    name, arch, state = _swin_state()
    key = "patch_embed.proj.weight"
    if damage == "int":
        state[key] = state[key].to(torch.int64)
        words = "not floating point"
    else:
        state[key] = state[key].clone()
        state[key][0, 0, 0, 0] = float(damage)
        words = "NaN or Inf"
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=rf"w.pth: 1 tensor\(s\) .*{words}.*{key}"):
        create_backbone(name, pretrained_file=path, **arch)
