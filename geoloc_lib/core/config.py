"""Config dataclasses with named presets (``paper``, ``default``, ``smoke``).

Every model and training recipe keeps one dataclass and a dict of presets; the
same code builds the paper-size model and the tiny CPU one. This is the one
place that resolves a preset and validates overrides.
"""

from __future__ import annotations

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
