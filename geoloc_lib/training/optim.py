"""Optimisers and LR schedules of every recipe: :func:`build_optimizer`, :func:`build_scheduler`.

A recipe's settings dataclass (``training/mcgf.py``, ``training/geoviewmatch.py``) names what
both read (:class:`OptimSettings`); the model names its parameter groups (``param_groups``).

ASAM (Kwon et al., ICML 2021; GeoViewMatch trains with it, §4.3), for a base optimiser and weights ``w`` with
gradient ``g`` from a first forward/backward:

1. ``T = |w| + eta`` (element-wise) for weight tensors and ``T = 1`` for every other parameter,
   ``eps = rho * T² g / ‖T g‖`` (norm over all parameters);
2. ``w <- w + eps``; recompute the loss and its gradient there (the closure);
3. ``w <- w - eps``; the base optimiser steps with the gradient from step 2.

Which parameters are "weight tensors" (Kwon et al.'s adaptive scaling is defined on the
network's weights; the reference implementation scales weights only): linear and convolution
kernels and other rank >= 2 maps (:func:`weight_tensor_ids` picks them by name and rank). Biases,
normalisation scales and shifts and temperatures (``logit_scale``) keep ``T = 1``: they get
SAM's plain perturbation ``rho g / ‖T g‖``. Our choice where the reference's rule ("weight" in
the parameter name) and the papers are silent: norm scales are named "weight" but are 1-d
gains, so they are not scaled; SwinV2's ``logit_scale`` is [heads, 1, 1] but a temperature.

``ASAM.requires_closure`` tells the engine to call ``step(closure)``, where the closure re-runs
forward and backward on the same batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from geoloc_lib.core.errors import ConfigError, choices_message


class ASAM(Optimizer):
    """Adaptive sharpness-aware minimisation wrapped around a base optimiser.

    The wrapper shares the base optimiser's ``param_groups`` (so LR schedulers built on the
    wrapper change the base's learning rates) and delegates its state (``state_dict``).
    """

    requires_closure = True

    def __init__(
        self,
        base: Optimizer,
        rho: float = 0.5,
        eta: float = 0.01,
        weights: Iterable[int] | None = None,
    ) -> None:
        """``weights``: ids of the parameters that get the adaptive scale ``|w| + eta``
        (:func:`weight_tensor_ids`); None: every parameter of rank >= 2."""
        if rho <= 0:
            raise ConfigError(f"ASAM: rho must be > 0, got {rho}")
        if eta < 0:
            raise ConfigError(f"ASAM: eta must be >= 0, got {eta}")
        self.base = base
        self.rho = rho
        self.eta = eta
        self.weights = None if weights is None else set(weights)
        # Optimizer.__init__ appends the very dicts it is given: the groups stay shared with base.
        super().__init__(base.param_groups, base.defaults)
        self.state = base.state

    def _params_with_grad(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def is_adaptive(self, p: Tensor) -> bool:
        """Whether ``p`` gets ``T = |w| + eta`` (a weight tensor) or ``T = 1``."""
        return p.ndim >= 2 if self.weights is None else id(p) in self.weights

    @torch.no_grad()
    def ascent(self) -> list[tuple[Tensor, Tensor]]:
        """Move every weight to ``w + eps`` (step 1–2); returns the (param, eps) pairs to undo."""
        params = self._params_with_grad()
        if not params:
            return []
        scales = [(p.abs() + self.eta) if self.is_adaptive(p) else None for p in params]  # T
        scaled = [p.grad if t is None else t * p.grad for p, t in zip(params, scales, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = self.rho / (norm + 1e-12)
        moved = []
        for p, t, tg in zip(params, scales, scaled, strict=True):
            eps = (tg if t is None else t * tg) * factor  # T² g * rho / ‖T g‖
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


# Parameters that are not weight tensors whatever their rank: biases (``bias``, the FA module's
# per-head ``b1``/``b2``) and temperatures (SwinV2's [heads, 1, 1] ``logit_scale``).
_NOT_WEIGHT = re.compile(r"(^|\.)(bias|b\d+|logit_scale|log_scale)$")


def weight_tensor_ids(named: Iterable[tuple[str, nn.Parameter]]) -> set[int]:
    """Ids of the weight tensors among ``named`` parameters: rank >= 2 and not a bias or a
    temperature by name (ASAM's adaptive scale applies to these only; module docstring)."""
    return {id(p) for n, p in named if p.ndim >= 2 and not _NOT_WEIGHT.search(n)}


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    epochs: int,
    steps_per_epoch: int = 1,
    warmup_epochs: float = 0.0,
    interval: str = "epoch",
    step_size: int = 0,
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A checkpointable LR schedule as a multiplicative factor on every group's base lr.

    ``kind``: ``none`` | ``cosine`` (to ``min_factor``) | ``step`` (×gamma every ``step_size``
    epochs) | ``linear``; with linear warm-up over ``warmup_epochs``. ``interval`` must match
    ``FitConfig.scheduler_interval``.
    """
    kinds = ("none", "cosine", "step", "linear")
    if kind not in kinds:
        raise ConfigError(f"parameter scheduler: {choices_message('scheduler', kind, kinds)}")
    if kind == "none":
        return None
    per = steps_per_epoch if interval == "step" else 1
    total = max(1, epochs * per)
    warm = int(round(warmup_epochs * per))

    def factor(i: int) -> float:
        if i < warm:
            return (i + 1) / (warm + 1)
        if kind == "step":
            return gamma ** ((i // per) // max(1, step_size)) if step_size else 1.0
        p = min(1.0, (i - warm) / max(1, total - warm))
        if kind == "cosine":
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * p))
        return min_factor + (1 - min_factor) * (1 - p)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


OPTIMIZERS = ("sgd", "adamw")


class OptimSettings(Protocol):
    """What :func:`build_optimizer` and :func:`build_scheduler` read from a recipe's settings."""

    optimizer: str  # one of OPTIMIZERS
    lr_backbone: float  # also the optimiser's default rate (every group names its own)
    weight_decay: float
    momentum: float  # read for SGD only
    asam: bool  # wrap in ASAM, its adaptive scale on the weight tensors only
    rho: float  # read with asam only
    eta: float  # read with asam only
    scheduler: str  # a make_scheduler kind
    epochs: int
    warmup_epochs: float
    step_size: int  # epochs between x0.1 steps (scheduler "step")

    def param_group_lr(self) -> dict[str, float]:
        """The learning rate of each of the model's ``param_groups`` names."""
        ...


def build_optimizer(net: nn.Module, settings: OptimSettings) -> Optimizer:
    """The optimiser of a run: ``settings.optimizer`` over ``net.param_groups`` (each group at
    its ``settings.param_group_lr()`` rate), wrapped in ASAM when ``settings.asam``."""
    groups = net.param_groups(settings.param_group_lr())
    if not groups or not all("lr" in g for g in groups):
        raise ConfigError("build_optimizer: every parameter group needs an 'lr'")
    if settings.optimizer == "sgd":
        opt: Optimizer = torch.optim.SGD(
            groups,
            lr=settings.lr_backbone,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    elif settings.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=settings.lr_backbone, weight_decay=settings.weight_decay)
    else:
        raise ConfigError(
            f"parameter optimizer: {choices_message('optimizer', settings.optimizer, OPTIMIZERS)}"
        )
    if not settings.asam:
        return opt
    weights = weight_tensor_ids(net.named_parameters())
    return ASAM(opt, rho=settings.rho, eta=settings.eta, weights=weights)


def build_scheduler(
    optimizer: Optimizer, settings: OptimSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The run's per-step schedule (``settings.scheduler``, warm-up and ``step_size`` in epochs)."""
    return make_scheduler(
        optimizer,
        settings.scheduler,
        epochs=settings.epochs,
        steps_per_epoch=steps_per_epoch,
        warmup_epochs=settings.warmup_epochs,
        interval="step",
        step_size=settings.step_size,
    )


def sgd_from_groups(
    model: nn.Module, lr: Mapping[str, float], *, momentum: float = 0.9, weight_decay: float = 5e-4
) -> torch.optim.SGD:
    """SGD over ``model.param_groups(lr)`` (one group per name with its own learning rate)."""
    groups = model.param_groups(dict(lr)) if hasattr(model, "param_groups") else None
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
        groups[0]["lr"] = next(iter(lr.values()))
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, weight_decay=weight_decay)
