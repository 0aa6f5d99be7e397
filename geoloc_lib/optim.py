"""Optimisers for the street-view recipes: ASAM around AdamW (schedules: ``engine.make_scheduler``).

ASAM (Kwon et al., 2021; reference-facts §4), for a base optimiser and weights ``w`` with
gradient ``g`` from a first forward/backward:

1. ``T = |w| + eta`` (element-wise), ``eps = rho * T² g / ‖T g‖`` (norm over all parameters);
2. ``w <- w + eps``; recompute the loss and its gradient there (the closure);
3. ``w <- w - eps``; the base optimiser steps with the gradient from step 2.

``ASAM.requires_closure`` tells the engine to call ``step(closure)``, where the closure re-runs
forward and backward on the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from geoloc_lib.errors import ConfigError


class ASAM(Optimizer):
    """Adaptive sharpness-aware minimisation wrapped around a base optimiser.

    The wrapper shares the base optimiser's ``param_groups`` (so LR schedulers built on the
    wrapper change the base's learning rates) and delegates its state (``state_dict``).
    """

    requires_closure = True

    def __init__(self, base: Optimizer, rho: float = 0.5, eta: float = 0.01) -> None:
        if rho <= 0:
            raise ConfigError(f"ASAM: rho must be > 0, got {rho}")
        if eta < 0:
            raise ConfigError(f"ASAM: eta must be >= 0, got {eta}")
        self.base = base
        self.rho = rho
        self.eta = eta
        # Optimizer.__init__ appends the very dicts it is given: the groups stay shared with base.
        super().__init__(base.param_groups, base.defaults)
        self.state = base.state

    def _params_with_grad(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def ascent(self) -> list[tuple[Tensor, Tensor]]:
        """Move every weight to ``w + eps`` (step 1–2); returns the (param, eps) pairs to undo."""
        params = self._params_with_grad()
        if not params:
            return []
        scaled = [(p.abs() + self.eta) * p.grad for p in params]  # T g
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = self.rho / (norm + 1e-12)
        moved = []
        for p, tg in zip(params, scaled, strict=True):
            eps = (p.abs() + self.eta) * tg * factor  # T² g * rho / ‖T g‖
            p.add_(eps)
            moved.append((p, eps))
        return moved

    @torch.no_grad()
    def restore(self, moved: list[tuple[Tensor, Tensor]]) -> None:
        for p, eps in moved:
            p.sub_(eps)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One ASAM step; the gradients of the first backward must already be in ``.grad``."""
        if closure is None:
            raise ConfigError(
                "ASAM.step needs a closure that re-runs forward and backward on the same batch"
            )
        moved = self.ascent()
        self.zero_grad(set_to_none=False)  # the closure's backward must not add to the old grads
        with torch.enable_grad():
            loss = closure()
        self.restore(moved)
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "rho": self.rho, "eta": self.eta}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict["base"])
        # torch rebuilds the group dicts on load: share the new ones again (schedulers see these).
        self.param_groups = self.base.param_groups
        self.state = self.base.state
        self.rho, self.eta = state_dict["rho"], state_dict["eta"]


def build_adamw(
    param_groups: Iterable[dict],
    *,
    weight_decay: float = 0.03,
    betas: tuple[float, float] = (0.9, 0.999),
    asam: bool = False,
    rho: float = 0.5,
    eta: float = 0.01,
) -> Optimizer:
    """AdamW over ``param_groups`` (each with its own ``lr``), optionally wrapped in ASAM."""
    groups = list(param_groups)
    if not groups or not all("lr" in g for g in groups):
        raise ConfigError("build_adamw: every parameter group needs an 'lr'")
    opt: Optimizer = torch.optim.AdamW(groups, betas=betas, weight_decay=weight_decay)
    return ASAM(opt, rho=rho, eta=eta) if asam else opt


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
