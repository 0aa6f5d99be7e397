"""Augmentations: rotation/shift alignment on a synthetic pair, strong augmentation properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.augment import (
    PAIR_AUGMENTS,
    PairAugConfig,
    StrongAugConfig,
    affine_warp,
    augment_pair,
    gaussian_blur,
    random_quarter_turns,
    rotate_aerial_and_shift_panorama,
    strong_augment,
)


def polar_panorama(aerial: torch.Tensor, width: int = 64, rows: int = 8) -> torch.Tensor:
    """A toy panorama seen from the tile centre: column c looks at azimuth 360·c/W clockwise
    from north (image up), row r at ground distance (r + 1)/(rows + 1) of the half side.
    Nearest-pixel sampling; the convention of CVUSA/CVACT/GeoSynth panoramas."""
    _, _, size, _ = aerial.shape
    half = size / 2
    az = 2 * math.pi * torch.arange(width) / width
    dist = half * (torch.arange(rows) + 1) / (rows + 1)
    east = torch.sin(az)[None, :] * dist[:, None]  # x grows to the right (east)
    north = torch.cos(az)[None, :] * dist[:, None]  # y grows upwards (north)
    col = (half + east - 0.5).round().long().clamp(0, size - 1)
    row = (half - north - 0.5).round().long().clamp(0, size - 1)
    return aerial[:, :, row, col]


def _landmark_tile(size: int = 32) -> torch.Tensor:
    """A tile with a red blob north of the centre and a green one to the east."""
    t = torch.zeros(1, 3, size, size)
    t[0, 0, 2:8, 13:19] = 1.0  # north (top)
    t[0, 1, 13:19, 25:31] = 1.0  # east (right)
    return t


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_and_shift_keep_the_pair_aligned(k: int) -> None:
    aerial = _landmark_tile()
    pano = polar_panorama(aerial)
    rot_a, shifted_p = rotate_aerial_and_shift_panorama(aerial, pano, k)
    # The panorama of the rotated tile is the shifted panorama: the pair stays aligned.
    torch.testing.assert_close(shifted_p, polar_panorama(rot_a))
    # And clockwise means clockwise: after 90° the north landmark (red) is at the east side.
    if k == 1:
        red = rot_a[0, 0]
        rows, cols = torch.nonzero(red, as_tuple=True)
        assert cols.float().mean() > 24 and abs(rows.float().mean() - 15.5) < 1
    # The wrong direction would not be aligned (guards against a sign error in the test itself).
    wrong = torch.roll(pano, -k * pano.shape[-1] // 4, dims=-1)
    if k != 2:
        assert not torch.allclose(wrong, polar_panorama(rot_a))


def test_per_sample_turns_and_identity() -> None:
    aerial = torch.rand(4, 3, 16, 16)
    pano = torch.rand(4, 3, 8, 32)
    k = torch.tensor([0, 1, 2, 3])
    a, p = rotate_aerial_and_shift_panorama(aerial, pano, k)
    for i in range(4):
        torch.testing.assert_close(a[i], torch.rot90(aerial[i], -i, dims=(-2, -1)))
        torch.testing.assert_close(p[i], torch.roll(pano[i], i * 8, dims=-1))
    a4, p4 = rotate_aerial_and_shift_panorama(aerial, pano, 4)
    torch.testing.assert_close(a4, aerial)
    torch.testing.assert_close(p4, pano)
    turns = random_quarter_turns(200, torch.Generator().manual_seed(0))
    assert set(turns.tolist()) == {1, 2, 3}


def test_rotation_rejects_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="square"):
        rotate_aerial_and_shift_panorama(torch.zeros(1, 3, 8, 6), torch.zeros(1, 3, 4, 16), 1)
    with pytest.raises(ConfigError, match="divisible by 4"):
        rotate_aerial_and_shift_panorama(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 4, 18), 1)


def test_strong_augment_is_seeded_in_range_and_photometric_only() -> None:
    x = torch.rand(6, 3, 24, 24)
    y1 = strong_augment(x, generator=torch.Generator().manual_seed(3))
    y2 = strong_augment(x, generator=torch.Generator().manual_seed(3))
    y3 = strong_augment(x, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(y1, y2)
    assert not torch.allclose(y1, y3)
    assert y1.shape == x.shape and y1.min() >= 0 and y1.max() <= 1
    assert not torch.allclose(y1, x)


def test_strong_augment_parts() -> None:
    x = torch.rand(4, 3, 16, 16)
    # All probabilities zero: identity.
    off = StrongAugConfig(p_jitter=0.0, p_gray=0.0, p_blur=0.0)
    torch.testing.assert_close(strong_augment(x, off), x)
    # Grey always: the three channels are equal.
    gray = strong_augment(x, StrongAugConfig(p_jitter=0.0, p_gray=1.0, p_blur=0.0))
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])
    # Zero hue shift and unit factors leave the image unchanged (the YIQ round trip is exact).
    neutral = StrongAugConfig(
        brightness=0, contrast=0, saturation=0, hue=0, p_jitter=1, p_gray=0, p_blur=0
    )
    torch.testing.assert_close(strong_augment(x, neutral), x, atol=1e-5, rtol=0)


def test_gaussian_blur_preserves_constants_and_smooths() -> None:
    const = torch.full((2, 3, 12, 12), 0.3)
    torch.testing.assert_close(gaussian_blur(const, torch.tensor([1.0, 2.0]), 5), const)
    noise = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noise, torch.tensor([0.1, 2.0]), 5)
    torch.testing.assert_close(blurred[0], noise[0], atol=1e-3, rtol=0)  # tiny sigma: ~identity
    assert blurred[1].std() < 0.6 * noise[1].std()


# --------------------------------------------------------------------------- drone/satellite pairs


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 quarter-turn/mirror images of ``[C, H, W]``."""
    return [torch.rot90(y, k, dims=(1, 2)) for y in (x, x.flip(-1)) for k in range(4)]


def test_affine_warp_quarter_turns_and_flip_are_exact():
    x = torch.rand(3, 16, 16)
    assert torch.allclose(affine_warp(x, 0.0), x, atol=1e-5)
    assert torch.allclose(affine_warp(x, 0.0, flip=True), x.flip(-1), atol=1e-5)
    turned = affine_warp(x, math.pi / 2)
    assert any(torch.allclose(turned, y, atol=1e-5) for y in _dihedral(x)[1:4])
    zoomed = affine_warp(x, 0.3, scale=0.8, shift=(0.1, -0.1))
    assert zoomed.shape == x.shape and 0 <= zoomed.min() and zoomed.max() <= 1


def test_augment_pair_recipes():
    drone, sat = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    # University-1652's recipe: the drone flipped alone, the tile turned by quarter turns, exactly
    base = PAIR_AUGMENTS["flip_rot90"]
    seen_flip = set()
    for seed in range(12):
        d, s = augment_pair(drone, sat, base, np.random.default_rng(seed))
        flipped = torch.equal(d, drone.flip(-1))
        assert flipped or torch.equal(d, drone)
        seen_flip.add(flipped)
        assert any(torch.equal(s, y) for y in _dihedral(sat)[:4])
    assert seen_flip == {True, False}
    # joint flips: a flipped drone view comes with a mirrored tile (the mirrored world)
    joint = PairAugConfig(sat_rotation="quarter")
    for seed in range(12):
        d, s = augment_pair(drone, sat, joint, np.random.default_rng(seed))
        mirrored = any(torch.equal(s, y) for y in _dihedral(sat)[4:])
        assert mirrored == torch.equal(d, drone.flip(-1))
    # strong: a pure function of the rng seed, images stay in [0, 1]
    strong = PAIR_AUGMENTS["strong"]
    a = augment_pair(drone, sat, strong, np.random.default_rng([3, 1, 7]))
    b = augment_pair(drone, sat, strong, np.random.default_rng([3, 1, 7]))
    c = augment_pair(drone, sat, strong, np.random.default_rng([3, 1, 8]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    for x in (*a, *c):
        assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1


def test_pair_aug_config_errors():
    with pytest.raises(ConfigError, match="sat_rotation"):
        PairAugConfig(sat_rotation="half")
    with pytest.raises(ConfigError, match="drone_zoom"):
        PairAugConfig(drone_zoom=(1.0, 0.5))
