"""Weather synthesis: shapes, determinism, per-condition behaviour, texture banks against the
exact path, the query-set writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.weather.synth import (
    CONDITIONS,
    RECIPES,
    WeatherSynth,
    _Bank,
    _brightness,
    _mix64,
    _uniform,
    condition_index,
    conditions_from_seeds,
    motion_blur_kernels,
)

# Shared instances so each test module builds a texture bank once per image size.
BANKED = WeatherSynth()
EXACT = WeatherSynth(exact=True)


def _images(b: int = 4, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, h // 8, w // 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")
    return (0.2 + 0.6 * img).clamp(0, 1)


def _run(
    name: str,
    images: torch.Tensor,
    seeds: torch.Tensor | None = None,
    synth: WeatherSynth = BANKED,
) -> torch.Tensor:
    b = images.shape[0]
    seeds = torch.arange(b) if seeds is None else seeds
    out, cond = synth(images, torch.full((b,), condition_index(name)), seeds=seeds)
    assert (cond == condition_index(name)).all()
    return out


def test_condition_names_and_errors() -> None:
    assert len(CONDITIONS) == 10 and CONDITIONS[0] == "normal" and CONDITIONS[9] == "wind"
    assert [condition_index(n) for n in CONDITIONS] == list(range(10))
    with pytest.raises(ConfigError, match="fog_rain"):
        condition_index("hail")
    synth = WeatherSynth()
    with pytest.raises(ConfigError):
        synth(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError):
        synth(torch.zeros(2, 3, 8, 8), torch.tensor([0, 10]))
    with pytest.raises(ConfigError, match="multiple of 3"):
        WeatherSynth(bank_size=4)
    with pytest.raises(ConfigError, match="threads"):
        WeatherSynth(threads=0)


@pytest.mark.parametrize("exact", [False, True], ids=["banked", "exact"])
@pytest.mark.parametrize("name", CONDITIONS)
def test_every_condition_shape_range_and_effect(name: str, exact: bool) -> None:
    images = _images(b=3, h=40, w=56)  # non-square, not a power of two
    out = _run(name, images, synth=EXACT if exact else BANKED)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(images, images.clone().zero_())  # input untouched
    diff = (out - images).abs().mean().item()
    if name == "normal":
        assert diff == 0.0
    else:
        assert diff > 0.005, f"{name} changed the images by only {diff}"


def test_photometric_directions() -> None:
    images = _images()
    mean = images.mean().item()
    assert _run("dark", images).mean().item() < 0.25 * mean
    assert _run("light", images).mean().item() > mean + 0.1
    # Fog pulls everything towards light grey and flattens contrast.
    fog = _run("fog", images)
    assert fog.mean().item() > mean + 0.1
    assert fog.std().item() < 0.7 * images.std().item()
    # Snow only brightens (sum and max blends), flakes reach white.
    snow = _run("snow", images)
    assert bool((snow >= images - 1e-6).all())
    assert float(snow.max()) > 0.99


@pytest.mark.parametrize("exact", [False, True], ids=["banked", "exact"])
def test_rain_streaks_follow_the_fall_direction(exact: bool) -> None:
    """On a flat grey image, rain's change map is correlated along (near-)vertical lines."""
    images = torch.full((2, 3, 96, 96), 0.3)
    delta = (_run("rain", images, synth=EXACT if exact else BANKED) - images).mean(1)
    delta = delta - delta.mean((1, 2), keepdim=True)
    vertical = (delta[:, 2:, :] * delta[:, :-2, :]).mean()
    horizontal = (delta[:, :, 2:] * delta[:, :, :-2]).mean()
    assert vertical > 2 * horizontal


def test_wind_is_a_normalised_blur() -> None:
    images = _images(b=2, h=64, w=64)
    out = _run("wind", images)
    assert out.mean().item() == pytest.approx(images.mean().item(), abs=0.01)

    def grad(x: torch.Tensor) -> float:
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
        dx = (x[..., 1:] - x[..., :-1]).abs().mean()
        return float(dy + dx)

    assert grad(out) < grad(images)
    k = motion_blur_kernels(15, torch.tensor([0.0, 37.0, 90.0]), torch.tensor([0.0, 1.0, -0.5]))
    assert k.shape == (3, 15, 15)
    assert torch.allclose(k.sum((1, 2)), torch.ones(3))
    # 0 degrees is a vertical line: all weight in the centre column.
    assert k[0, :, 7].sum().item() == pytest.approx(1.0, abs=1e-5)
    # 90 degrees: the centre row.
    assert k[2, 7, :].sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("exact", [False, True], ids=["banked", "exact"])
def test_determinism_and_batch_independence(exact: bool) -> None:
    images = _images(b=6, h=32, w=40)
    conds = torch.arange(6) + 1
    seeds = torch.arange(6) * 7 + 3
    synth = WeatherSynth(exact=exact, chunk=4)
    a, _ = synth(images, conds, seeds=seeds)
    b, _ = synth(images, conds, seeds=seeds)
    assert torch.equal(a, b)
    # An image's output depends only on its own seed, not on its batch companions; the banked
    # path is bit-identical (per-image gathers and pointwise maps), the exact path renders a
    # batch's layers on a shared frame (float rounding).
    part, _ = synth(images[2:4].flip(0), conds[2:4].flip(0), seeds=seeds[2:4].flip(0))
    if exact:
        assert torch.allclose(part.flip(0), a[2:4], atol=1e-5)
    else:
        assert torch.equal(part.flip(0), a[2:4])
        same, _ = synth(images, torch.full((6,), 2), seeds=seeds)  # chunks of 4 and 2
        alone, _ = synth(images[5:], torch.full((1,), 2), seeds=seeds[5:])
        assert torch.equal(same[5:], alone)
    other, _ = synth(images, conds, seeds=seeds + 1)
    assert not torch.allclose(other, a)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1, c1 = synth(images, generator=g1)
    r2, c2 = synth(images, generator=g2)
    assert torch.equal(r1, r2) and torch.equal(c1, c2)


def test_mixed_batch_matches_single_condition_runs() -> None:
    images = _images(b=10)
    seeds = torch.arange(10) + 100
    conds = torch.arange(10)
    mixed, labels = BANKED(images, conds, seeds=seeds)
    assert torch.equal(labels, conds)
    for i in (1, 2, 3, 9):
        single = _run(CONDITIONS[i], images[i : i + 1], seeds[i : i + 1])
        assert torch.allclose(single[0], mixed[i], atol=1e-5)


def test_uniform_random_conditions_cover_all() -> None:
    labels = conditions_from_seeds(torch.arange(5000))
    counts = torch.bincount(labels, minlength=10).float()
    assert counts.min() > 400 and counts.max() < 600
    u = _uniform(torch.arange(20000, dtype=torch.int64), 3)
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(u.var().item() - 1 / 12) < 0.005
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0


def test_reference_size_scales_particles() -> None:
    """Drawn 'as at 512', a 96 px snow image gets smaller flakes than at its own scale."""
    images = torch.full((2, 3, 96, 96), 0.2)
    seeds = torch.tensor([1, 2])
    cond = torch.full((2,), condition_index("snow"))
    native, _ = WeatherSynth(bank_size=6)(images, cond, seeds=seeds)
    scaled, _ = WeatherSynth(reference_size=512, bank_size=6)(images, cond, seeds=seeds)

    def blob_size(x: torch.Tensor) -> float:
        m = ((x - 0.2).mean(1) > 0.3).float()
        # run length proxy: fraction of bright pixels whose right neighbour is also bright
        return ((m[..., 1:] * m[..., :-1]).sum() / m.sum().clamp(min=1)).item()

    assert blob_size(scaled) < blob_size(native)


def _effect(out: torch.Tensor, images: torch.Tensor) -> tuple[float, float, float]:
    """Mean brightness change, fraction of visibly changed pixels, output contrast."""
    delta = (out - images).mean(1)
    return delta.mean().item(), (delta.abs() > 0.02).float().mean().item(), out.std().item()


@pytest.mark.parametrize("name", ["fog", "rain", "snow", "fog_rain", "fog_snow", "rain_snow"])
def test_banked_statistics_match_the_exact_path(name: str) -> None:
    """Over a batch, the banked layers change images like the exact per-image rendering."""
    images = _images(b=12, h=40, w=40, seed=3)
    seeds = torch.arange(12) + 500
    change_e, cover_e, std_e = _effect(_run(name, images, seeds, EXACT), images)
    change_b, cover_b, std_b = _effect(_run(name, images, seeds, BANKED), images)
    assert change_b == pytest.approx(change_e, rel=0.2, abs=0.02), (change_b, change_e)
    assert cover_b == pytest.approx(cover_e, abs=0.08), (cover_b, cover_e)
    assert std_b == pytest.approx(std_e, rel=0.2), (std_b, std_e)


def test_pointwise_conditions_are_identical_in_both_modes() -> None:
    images = _images(b=3)
    for name in ("normal", "dark", "light", "wind"):
        assert torch.equal(_run(name, images), _run(name, images, synth=EXACT))


def test_bank_is_deterministic_and_cached() -> None:
    images = _images(b=4, h=24, w=32)
    seeds = torch.arange(4) + 9
    conds = torch.tensor([1, 2, 3, 8])
    one = WeatherSynth(bank_seed=7, bank_size=6, bank_cache=1)
    two = WeatherSynth(bank_seed=7, bank_size=6)
    out1, _ = one(images, conds, seeds=seeds)
    out2, _ = two(images, conds, seeds=seeds)
    assert torch.equal(out1, out2)  # same bank seed: same textures, same pixels
    spec = RECIPES["rain"][0]
    assert torch.equal(one.bank(spec, 24, 32).textures, two.bank(spec, 24, 32).textures)
    other, _ = WeatherSynth(bank_seed=8, bank_size=6)(images, conds, seeds=seeds)
    assert not torch.allclose(other[1:], out1[1:])  # another bank, other streaks and flakes
    # The bank is built once per size and reused; bank_cache=1 keeps only the latest size.
    assert one.bank("fog", 24, 32) is one.bank("fog", 24, 32)
    one(images[:, :, :16], conds, seeds=seeds)
    assert list(one._banks) == [(16, 32, "cpu")]
    again, _ = one(images, conds, seeds=seeds)  # rebuilt from the seed: identical
    assert torch.equal(again, out1)


def test_bank_windows_are_crops_of_the_textures() -> None:
    """The sliding-window gather equals plain slicing, including wrap-around and flips."""
    g = torch.Generator().manual_seed(0)
    k, c, r, s, h, w = 3, 2, 10, 14, 6, 7
    bank = _Bank(torch.rand(k, c, r, s, generator=g), offsets_y=r, offsets_x=s - w + 1)
    u = torch.rand(5, 4, generator=g)
    vflip = torch.tensor([False, True, False, True, True])
    got = bank.window(u, h, w, vflip)
    for i in range(5):
        t = int(u[i, 0] * k)
        dy, dx = int(u[i, 1] * r), int(u[i, 2] * (s - w + 1))
        rows = (torch.arange(h) + dy) % r
        expect = bank.textures[t][:, rows, dx : dx + w]
        if vflip[i]:
            expect = bank.textures[t][:, ((h - 1 - torch.arange(h)) + dy) % r, dx : dx + w]
        assert torch.equal(got[i], expect)


def test_snow_layers_compose_in_closed_form() -> None:
    """max(min(x + a, 1), b) layers compose to one map of the same form (the snow bank)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1000, generator=g)
    layers = [
        (0.5 * torch.rand(1000, generator=g), torch.rand(1000, generator=g)) for _ in range(4)
    ]
    seq = x.clone()
    total, floor = torch.zeros(1000), torch.zeros(1000)
    for a, b in layers:
        seq = torch.maximum((seq + a).clamp(max=1.0), b)
        floor = torch.maximum((floor + a).clamp(max=1.0), b)
        total = total + a
    assert torch.allclose(torch.maximum((x + total).clamp(max=1.0), floor), seq, atol=1e-6)


def test_brightness_matches_the_colour_space_definition() -> None:
    """The fused luma/value transfer equals evaluating each colour space and order directly."""
    g = torch.Generator().manual_seed(2)
    images = torch.rand(48, 3, 6, 6, generator=g)
    images[:, :, 0, 0] = 0.0  # black pixels: HSV value 0 becomes grey
    keys = _mix64(torch.arange(48))
    mul, lo, hi = 1.6, 0.0, 30.0
    got = _brightness(images.clone(), keys, mul, (lo, hi))
    add = (lo + (hi - lo) * _uniform(keys, 50) / 1.0) / 255.0
    add_first = _uniform(keys, 51) < 0.5
    by_value = (_uniform(keys, 52) * 6).long() == 1
    assert 0 < int(by_value.sum()) < 48 and 0 < int(add_first.sum()) < 48
    for i in range(48):
        x = images[i]

        def transfer(y: torch.Tensor, i: int = i) -> torch.Tensor:
            if add_first[i]:
                return ((y + add[i]).clamp(0, 1) * mul).clamp(0, 1)
            return ((y * mul).clamp(0, 1) + add[i]).clamp(0, 1)

        if by_value[i]:
            v = x.amax(0)
            new = transfer(v)
            expect = torch.where(v > 1e-6, x * new / v.clamp(min=1e-6), new)
        else:
            y = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
            expect = x + (transfer(y) - y)
        assert torch.allclose(got[i], expect.clamp(0, 1), atol=1e-5), i


def test_thread_setting_is_restored() -> None:
    before = torch.get_num_threads()
    WeatherSynth(threads=1)(_images(b=2), torch.tensor([3, 9]), seeds=torch.tensor([1, 2]))
    assert torch.get_num_threads() == before


def _make_dataset(root: Path) -> None:
    g = np.random.default_rng(0)
    for loc in ("0001", "0002"):
        for k in range(1, 4):
            path = root / "test" / "query_drone" / loc / f"image-{k:02d}.jpeg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(g.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


def test_materialise_mixed_is_deterministic_across_batch_sizes(tmp_path: Path) -> None:
    from geoloc_lib.weather.sets import materialise_weather_queries

    root = tmp_path / "data"
    _make_dataset(root)
    a = materialise_weather_queries(
        root, tmp_path / "a", "mixed", seed=3, progress=False, batch_size=4
    )
    b = materialise_weather_queries(
        root, tmp_path / "b", "mixed", seed=3, progress=False, batch_size=1
    )
    table = pd.read_csv(a / "weather.csv", dtype={"id": str})
    assert list(table.columns) == ["id", "file", "condition", "condition_idx"]
    assert len(table) == 6 and set(table["id"]) == {"0001", "0002"}
    assert all(
        CONDITIONS[i] == n for i, n in zip(table.condition_idx, table.condition, strict=True)
    )
    for rel in table["file"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert table.equals(pd.read_csv(b / "weather.csv", dtype={"id": str}))


def test_materialise_single_condition_and_all(tmp_path: Path) -> None:
    from geoloc_lib.weather.sets import main, materialise_weather_queries

    root = tmp_path / "data"
    _make_dataset(root)
    out = materialise_weather_queries(root, tmp_path / "fog", "fog", seed=0, progress=False)
    table = pd.read_csv(out / "weather.csv")
    assert set(table["condition"]) == {"fog"} and set(table["condition_idx"]) == {1}
    src = np.asarray(Image.open(root / "test/query_drone/0001/image-01.jpeg"), dtype=float)
    dst = np.asarray(Image.open(out / "test/query_drone/0001/image-01.jpeg"), dtype=float)
    assert dst.shape == src.shape and dst.mean() > src.mean() + 20  # fog brightens
    with pytest.raises(ConfigError, match="mixed"):
        materialise_weather_queries(root, tmp_path / "x", "hail", progress=False)

    class Args:
        pass

    args = Args()
    args.__dict__.update(
        root=str(root),
        out=str(tmp_path / "all"),
        condition="all",
        seed=1,
        query_folder="query_drone",
        size=24,
        no_progress=True,
        batch_size=8,
        quality=90,
        reference_size=None,
        force=False,
    )
    assert main(args) == 0
    for name in ("normal", "wind"):
        t = pd.read_csv(tmp_path / "all" / name / "weather.csv")
        assert set(t["condition"]) == {name}
        im = Image.open(tmp_path / "all" / name / t["file"][0])
        assert im.size == (24, 24)
    written = {p.name for p in (tmp_path / "all").iterdir()}
    assert written == {*CONDITIONS, ".geoloc"}  # one set per condition, and geoloc's marker


def test_materialise_refuses_an_existing_output(tmp_path: Path) -> None:
    from geoloc_lib.weather.sets import materialise_weather_queries

    root = tmp_path / "data"
    _make_dataset(root)
    out = materialise_weather_queries(root, tmp_path / "fog", "fog", progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(
        ConfigError,
        match=r"--out folder .*fog already holds a weather set \(.*weather.csv exists\)",
    ):
        materialise_weather_queries(root, out, "rain", progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("sub", ["test", "test/query_drone", "train/extra"])
def test_materialise_refuses_an_output_inside_the_loaded_folders(tmp_path: Path, sub) -> None:
    from geoloc_lib.data.university import index_image_folder
    from geoloc_lib.weather.sets import materialise_weather_queries

    root = tmp_path / "data"
    _make_dataset(root)
    with pytest.raises(ConfigError, match="a folder the dataset loader reads"):
        materialise_weather_queries(root, root / sub / "fog", "fog", progress=False)
    assert len(index_image_folder(root / "test/query_drone", "q")) == 6
    # elsewhere under the dataset root is fine (e.g. next to a GeoSynth tree's folders)
    materialise_weather_queries(root, root / "fog_queries", "fog", progress=False)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"size": -8}, r"--size: expected an integer >= 1, got -8"),
        ({"size": 0}, r"--size: expected an integer >= 1, got 0"),
        ({"seed": 9999999999}, r"--seed: expected an integer from -2147483647 to 2147483647"),
        ({"seed": 2**31}, r"--seed: expected an integer from"),
        ({"seed": -(2**31)}, r"--seed: expected an integer from"),
        ({"quality": 0}, r"--quality: expected an integer from 1 to 100"),
    ],
)
def test_materialise_validates_numbers(tmp_path: Path, kw, message) -> None:
    from geoloc_lib.weather.sets import materialise_weather_queries

    root = tmp_path / "data"
    _make_dataset(root)
    with pytest.raises(ConfigError, match=message):
        materialise_weather_queries(root, tmp_path / "o", "fog", progress=False, **kw)
    assert not (tmp_path / "o").exists()


def test_extreme_seeds_give_distinct_keys() -> None:
    from geoloc_lib.weather.sets import SEED_LIMIT, weather_keys

    seeds = (SEED_LIMIT, -SEED_LIMIT, 0, 1, -1)
    keys = {int(k) for s in seeds for k in weather_keys(torch.arange(3), s)}
    assert len(keys) == 15


@pytest.mark.parametrize("condition", ["mixed", "snow"])
def test_data_weather_writes_the_pixels_evaluation_uses(tmp_path: Path, condition: str) -> None:
    """``geoloc data weather --seed N --size S`` == the queries evaluation weathers with seed N."""
    from geoloc_lib.data.university import load_university1652
    from geoloc_lib.data.university_torch import eval_loader
    from geoloc_lib.weather.sets import eval_weather, main

    root, out, seed, size = tmp_path / "data", tmp_path / "wx", 20240611, 24
    g = np.random.default_rng(1)
    for loc in ("0001", "0002"):
        for k in range(1, 4):
            path = root / "test" / "query_drone" / loc / f"image-{k:02d}.png"  # lossless
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(g.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)

    class Args:
        pass

    args = Args()
    args.__dict__.update(
        root=str(root),
        out=str(out),
        condition=condition,
        seed=seed,
        query_folder="query_drone",
        size=size,
        no_progress=True,
        batch_size=4,
        quality=95,
        reference_size=512,  # the CLI's default, as evaluation
        force=False,
    )
    assert main(args) == 0

    queries = load_university1652(root, sets=("test/query_drone",)).sets["test/query_drone"]
    weather = eval_weather(condition, seed=seed)
    evaluated = torch.cat(
        [weather(batch)["image"] for batch in eval_loader(queries, size, batch_size=5)]
    )
    expected = evaluated.mul(255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    written = [
        np.asarray(Image.open(out / "test" / "query_drone" / p.parent.name / p.name))
        for p in queries.paths
    ]
    assert np.array_equal(np.stack(written), expected.numpy())
