"""Process-level settings shared by every layer (core): whether long work draws progress bars.

Library calls are quiet unless asked: a function called from a script or a notebook writes no
progress bar by default (``progress=None``). The ``geoloc`` command asks for bars when stderr is
a terminal (:func:`terminal_progress`); ``GEOLOC_PROGRESS=1`` turns them on for library calls.
"""

from __future__ import annotations

import os
import sys


def resolve_progress(progress: bool | None) -> bool:
    """``progress`` if given; otherwise bars only when ``GEOLOC_PROGRESS=1``."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("GEOLOC_PROGRESS", "0") not in ("", "0")


def terminal_progress(quiet: bool = False) -> bool:
    """The command line's choice: bars on a terminal, none with ``--quiet`` or when redirected."""
    return not quiet and sys.stderr.isatty()
