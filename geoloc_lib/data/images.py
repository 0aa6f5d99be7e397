"""Reading images with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geoloc_lib.core.errors import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> Image.Image:
    """Open an image as RGB, optionally resized to ``size`` = (width, height).

    Raises ImageReadError naming the file if it is missing, truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError as err:
        raise ImageReadError(f"image file not found: {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"cannot read image {path}: {err}. The file is corrupt or not an image; "
            "re-extract it from the dataset archive (see data_manifest.yaml)."
        ) from err
    if size is not None and rgb.size != tuple(size):
        rgb = rgb.resize(tuple(size), Image.BILINEAR)
    return rgb


def read_image_array(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Like :func:`read_image`, returned as an HxWx3 uint8 array."""
    return np.asarray(read_image(path, size))
