"""The model contract: what training, evaluation and the figures may call on any model.

Every registered model (MCGF and its matching-only baseline, GeoViewMatch, the InfoNCE
baseline, the raw-pixel matchers) derives from :class:`GeolocModel`:

- ``embed(images, view)``: L2-normalised retrieval features of ``[B, 3, H, W]`` images in
  [0, 1] seen from ``view`` (``drone``/``satellite`` or ``ground``/``aerial``);
- ``input_size(view)``: the ``(H, W)`` the model takes for that view (loaders resize to it);
- ``config_dict()``: plain config values; ``create_model(name, **config_dict())`` rebuilds it;
- trainable models also give ``training_losses(batch)`` (``"loss"`` plus logged terms) and
  ``param_groups(lr)`` (optimiser groups, each named), and may give ``batch_transform()``, an
  on-device augmentation the engine runs before each forward pass.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from geoloc_lib.core.errors import ConfigError

# ImageNet channel statistics (the pretrained backbones' input normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GeolocModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every registered model (the contract in the module docstring)."""

    registry_name: str = ""

    @abc.abstractmethod
    def embed(self, images: Tensor, view: str) -> Tensor: ...

    @abc.abstractmethod
    def input_size(self, view: str) -> tuple[int, int]: ...

    @abc.abstractmethod
    def config_dict(self) -> dict[str, Any]: ...

    def training_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise ConfigError(f"{type(self).__name__} has no training losses: it is not trainable")

    def param_groups(self, lr: dict[str, float]) -> list[dict]:
        raise ConfigError(f"{type(self).__name__} has no parameters to train")

    def batch_transform(self) -> Callable[[dict[str, Tensor]], dict[str, Tensor]] | None:
        """The model's own on-device batch augmentation for training (None: none)."""
        return None
