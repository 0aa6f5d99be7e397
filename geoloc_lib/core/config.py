"""Config dataclasses and the checks of their values.

Every model and training recipe keeps one dataclass and its preset values (``paper``,
``default``, ``smoke``) beside it; :func:`geoloc_lib.training.recipes.preset_for` is the one
place that looks a preset up. :func:`with_fields` applies a set of field changes to a config,
rejecting a key that is not one of its fields with the valid list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, TypeVar

from geoloc_lib.core.errors import ConfigError

C = TypeVar("C")


def field_names(config: Any) -> list[str]:
    """The field names of a config dataclass (or its class), sorted."""
    return sorted(f.name for f in fields(config))


def with_fields(config: C, changes: Mapping[str, Any], what: str) -> C:
    """``config`` with ``changes`` applied (a new object); a key that is not a field fails
    naming ``what`` (e.g. ``overrides section 'model' of mcgf``), the key and the valid keys."""
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{what}: expected a mapping of field -> value, got {changes!r}")
    valid = field_names(config)
    bad = sorted(str(k) for k in set(changes) - set(valid))
    if bad:
        raise ConfigError(f"{what}: unknown key(s) {bad}; valid keys: {', '.join(valid)}")
    return replace(config, **changes)  # type: ignore[type-var]


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
