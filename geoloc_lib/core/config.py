"""Config dataclasses with named presets (``paper``, ``default``, ``smoke``).

Every model and training recipe keeps one dataclass and a dict of presets; the
same code builds the paper-size model and the tiny CPU one. This is the one
place that resolves a preset and validates overrides.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, TypeVar

from geoloc_lib.core.errors import ConfigError, choices_message

C = TypeVar("C")


def resolve_preset(presets: dict[str, C], name: str, overrides: dict[str, Any], what: str) -> C:
    """``presets[name]`` with ``overrides`` applied; unknown presets or keys list the valid ones."""
    if name not in presets:
        raise ConfigError(f"{what} preset: {choices_message('preset', name, presets)}")
    base = presets[name]
    valid = {f.name for f in fields(base)}  # type: ignore[arg-type]
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ConfigError(
            f"unknown {what} config key(s) {bad}; valid keys: {', '.join(sorted(valid))}"
        )
    return replace(base, **overrides)  # type: ignore[type-var]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: Any, low: int = 1, none: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= ``low`` (or None if allowed)."""
    if none and value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return
    raise ConfigError(
        f"{owner} {name}: expected an integer >= {low}{' or null' if none else ''}, got {value!r}"
    )


def check_number(
    owner: str, name: str, value: Any, low: float = 0.0, strict: bool = False, none: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number >= ``low`` (> if strict)."""
    if none and value is None:
        return
    if _is_number(value) and math.isfinite(value) and (value > low if strict else value >= low):
        return
    bound = f"{'>' if strict else '>='} {low:g}"
    raise ConfigError(
        f"{owner} {name}: expected a finite number {bound}{' or null' if none else ''}, "
        f"got {value!r}"
    )


def check_size(owner: str, name: str, value: Any, dims: int = 2) -> None:
    """Raise unless ``value`` is ``dims`` positive integers (an image size)."""
    ok = (
        isinstance(value, tuple | list)
        and len(value) == dims
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )
    if not ok:
        raise ConfigError(f"{owner} {name}: expected {dims} positive integers, got {value!r}")
