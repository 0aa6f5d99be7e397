"""Error types that carry a user-facing message.

The CLI prints these without a traceback; notebooks show them as-is. Every
message names the file, folder, parameter or manifest entry at fault and says
what to do about it.
"""

from __future__ import annotations


class GeolocError(Exception):
    """Base class: an error whose message is meant for the user."""


class DatasetError(GeolocError):
    """A dataset is missing, incomplete or laid out differently than expected."""


class ImageReadError(DatasetError):
    """An image file is unreadable or corrupt."""


class ConfigError(GeolocError, ValueError):
    """A profile, parameter or configuration value is invalid."""


def choices_message(kind: str, value: object, valid: object) -> str:
    """Format "unknown <kind> 'x'; valid choices: a, b, c"."""
    items = sorted(str(v) for v in valid)  # type: ignore[union-attr]
    return f"unknown {kind} {value!r}; valid choices: {', '.join(items)}"
