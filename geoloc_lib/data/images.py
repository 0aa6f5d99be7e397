"""Reading images with errors that name the file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geoloc_lib.core.errors import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


# Modes of single-channel images with more than 8 bits (16-bit PNG greyscale).
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _declared(err: Exception) -> str:
    text = str(err)
    return text.split("(")[1].split(" pixels")[0] if "(" in text else "too many"


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB. 16-bit greyscale is scaled (``v * 255 / 65535``), not clipped at 255
    (Pillow's own conversion turns every value above 255 white)."""
    if im.mode in WIDE_MODES:
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.round(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return im.convert("RGB")


def not_a_file(path: Path) -> str | None:
    """Why ``path`` (a directory entry) is not an image file one can read, or None."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            return "a symbolic link loop"
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "a symbolic link loop"
            return f"a dangling symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        return "a folder, not a file"
    if not path.is_file():
        return "not a regular file"
    return None


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> Image.Image:
    """Open an image as RGB, optionally resized to ``size`` = (width, height).

    Raises ImageReadError naming the file if it is missing, truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im)
    except FileNotFoundError as err:
        raise ImageReadError(f"image file not found: {path}") from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            f"cannot read image {path}: its header declares {_declared(err)} pixels, more than "
            f"the {Image.MAX_IMAGE_PIXELS * 2} read as an image (a corrupt header or not a "
            "dataset image); re-extract it from the dataset archive (see data_manifest.yaml)."
        ) from None
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
