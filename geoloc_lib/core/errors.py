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


class NotWritableError(GeolocError, OSError):
    """A folder or file could not be written (disk full, read-only, no permission)."""


def not_writable(target: object, err: OSError, what: str = "") -> NotWritableError:
    """One line for a failed write to ``target`` (a file or folder): the reason and the fix."""
    import errno
    import os

    reason = os.strerror(err.errno) if err.errno else (str(err) or type(err).__name__)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free disk space there"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make it writable"
    else:
        advice = "check that it is writable and has free space"
    return NotWritableError(
        f"cannot write {what + ' ' if what else ''}{target} ({reason}); {advice}, or use "
        "another folder"
    )


def choices_message(kind: str, value: object, valid: object) -> str:
    """Format "unknown <kind> 'x'; valid choices: a, b, c"."""
    items = sorted(str(v) for v in valid)  # type: ignore[union-attr]
    return f"unknown {kind} {value!r}; valid choices: {', '.join(items)}"
