"""The model contract: what training, evaluation and the figures may call on any model.

Every registered model (MCGF and its matching-only baseline, GeoViewMatch, the InfoNCE
baseline, the raw-pixel matchers) derives from :class:`GeolocModel`:

- ``embed(images, view)``: L2-normalised retrieval features of ``[B, 3, H, W]`` images in
  [0, 1] seen from ``view`` (``drone``/``satellite`` or ``ground``/``aerial``);
- ``input_size(view)``: the ``(H, W)`` the model takes for that view (loaders resize to it);
- ``config_dict()``: plain config values; ``create_model(name, **config_dict())`` rebuilds it;
- trainable models also give ``training_losses(batch)`` (``"loss"`` plus logged terms) and
  ``param_groups(lr)`` (optimiser groups, each named), and may give ``batch_transform()``, an
  on-device augmentation the engine runs before each forward pass;
- models with spatial features give the explanation hooks ``geoloc_lib.analysis.explain`` draws
  heatmaps and Grad-CAM from: ``feature_maps(images, view)`` (named ``[B, C, h, w]`` maps),
  ``cam_target_layers(view)`` and ``cam_reshape(view)`` (a target layer's output as an NCHW
  map), and may change ``explained_images(images, view)`` (what the features are read from)
  and ``cam_embedding(images, view)`` (the embedding Grad-CAM explains). Models without them
  (the raw-pixel matchers) raise a :class:`ConfigError` naming the model.
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


def stage_key(stage: int) -> str:
    """The ``feature_maps`` name of a hierarchical backbone's 1-based ``stage``."""
    return f"stage {stage}"


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

    # ---- explanation hooks (heatmaps and Grad-CAM: geoloc_lib.analysis.explain)

    def explained_images(self, images: Tensor, view: str) -> Tensor:
        """The images ``view``'s retrieval features are read from, ``[B, 3, H, W]`` in [0, 1]:
        the images themselves unless the model transforms them first. Explanations run on these
        (Grad-CAM without a gradient through this step)."""
        return images

    def feature_maps(self, images: Tensor, view: str) -> dict[str, Tensor]:
        """Named spatial feature maps ``[B, C, h, w]`` of ``explained_images`` (heatmaps are
        drawn from them)."""
        raise ConfigError(
            f"{type(self).__name__} ({self.registry_name}) has no spatial feature maps to draw "
            "heatmaps from"
        )

    def cam_embedding(self, images: Tensor, view: str) -> Tensor:
        """The embedding Grad-CAM explains, computed from ``explained_images``."""
        return self.embed(images, view)

    def cam_target_layers(self, view: str) -> list[nn.Module]:
        """The layers whose activations and gradients make ``view``'s Grad-CAM."""
        raise ConfigError(
            f"{type(self).__name__} ({self.registry_name}) has no layers to explain with Grad-CAM"
        )

    def cam_reshape(self, view: str) -> Callable[[Tensor], Tensor] | None:
        """Turns a target layer's output into a ``[B, C, h, w]`` map (None: it already is one)."""
        return None
