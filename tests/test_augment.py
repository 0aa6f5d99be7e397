"""Augmentations: rotation/shift alignment on a synthetic pair, strong augmentation properties."""

from __future__ import annotations

import math

import pytest
import torch

from geoloc_lib.augment import (
    StrongAugConfig,
    gaussian_blur,
    random_quarter_turns,
    rotate_aerial_and_shift_panorama,
    strong_augment,
)
from geoloc_lib.errors import ConfigError


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
