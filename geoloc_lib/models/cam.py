"""What Grad-CAM needs from timm backbones: the layers to explain and their outputs as NCHW maps.

The models' explanation hooks (:class:`~geoloc_lib.models.contract.GeolocModel`'s
``cam_target_layers`` and ``cam_reshape``) pick from these; ``geoloc_lib.analysis.explain`` runs
Grad-CAM on what they return. Grad-CAM weighs a layer's ``[B, C, h, w]`` activations by their
gradients, so token layouts are turned into such maps: timm Swin blocks output ``[B, H, W, C]``
(:class:`NHWCToNCHW`), ViT/EVA blocks ``[B, P + h*w, C]`` with ``P`` prefix tokens
(:class:`TokensToNCHW`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from geoloc_lib.core.errors import ConfigError


class NHWCToNCHW:
    """Reshape for timm Swin block outputs: ``[B, H, W, C]`` -> ``[B, C, H, W]``; token lists
    ``[B, H*W, C]`` (e.g. what ``norm2`` sees) need ``grid`` = (H, W)."""

    def __init__(self, grid: tuple[int, int] | None = None) -> None:
        self.grid = grid

    def __call__(self, tensor: Tensor) -> Tensor:
        if tensor.ndim == 4:
            return tensor.permute(0, 3, 1, 2)
        if tensor.ndim == 3 and self.grid is not None:
            b, n, c = tensor.shape
            h, w = self.grid
            if n != h * w:
                raise ConfigError(f"NHWCToNCHW: {n} tokens do not fill a {h}x{w} grid")
            return tensor.reshape(b, h, w, c).permute(0, 3, 1, 2)
        raise ConfigError(
            f"NHWCToNCHW: expected [B, H, W, C] (or [B, L, C] with a grid), got {tuple(tensor.shape)}"
        )


class TokensToNCHW:
    """Reshape for ViT/EVA token sequences ``[B, P + h*w, C]``: drop the ``P`` prefix (class,
    register) tokens, lay the patch tokens on the ``grid`` = (h, w) -> ``[B, C, h, w]``."""

    def __init__(self, grid: tuple[int, int], num_prefix_tokens: int) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)

    @classmethod
    def for_model(cls, vit: nn.Module) -> TokensToNCHW:
        return cls(tuple(vit.patch_embed.grid_size), getattr(vit, "num_prefix_tokens", 0))

    def __call__(self, tensor: Tensor) -> Tensor:
        patches = tensor[:, self.num_prefix_tokens :]
        b, n, c = patches.shape
        h, w = self.grid
        if n != h * w:
            raise ConfigError(
                f"TokensToNCHW: {n} patch tokens (after {self.num_prefix_tokens} prefix tokens) "
                f"do not fill the {h}x{w} patch grid"
            )
        return patches.reshape(b, h, w, c).permute(0, 3, 1, 2)


def swin_stage_blocks(swin: nn.Module, stages: Sequence[int]) -> list[nn.Module]:
    """The last block of each 1-based stage of a timm Swin (its output is the stage's map)."""
    n = len(swin.layers)
    if not stages or not all(1 <= int(s) <= n for s in stages):
        raise ConfigError(f"stages must lie in 1..{n}, got {list(stages)}")
    return [swin.layers[int(s) - 1].blocks[-1] for s in stages]


def vit_last_block(vit: nn.Module) -> list[nn.Module]:
    """The last block, or its ``norm1`` when the model pools the class token: after the last
    block the class token no longer reads the patch tokens, so their gradient would be zero."""
    block = vit.blocks[-1]
    return [block.norm1] if getattr(vit, "global_pool", "avg") == "token" else [block]
