"""Optimiser parameter groups a model hands out through ``param_groups(lr)``."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

# Parameters that are temperatures or position-bias MLPs (SwinV2's own no_weight_decay list).
_NO_DECAY_KEYS = ("logit_scale", "log_scale", "cpb_mlp")


def split_decay(named: Iterable[tuple[str, nn.Parameter]], lr: float, name: str) -> list[dict]:
    """Two groups at ``lr``: weights with decay; 1-d parameters (norms, biases) and scales without.

    The groups are named ``name`` and ``name_no_decay`` (the engine logs ``lr_<name>``).
    """
    decay, no_decay = [], []
    for param_name, p in named:
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or any(k in param_name for k in _NO_DECAY_KEYS)
        (no_decay if skip else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "name": name})
    if no_decay:
        groups.append(
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"}
        )
    return groups
