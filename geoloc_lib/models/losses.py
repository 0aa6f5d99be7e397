"""Metric-learning losses for street-view / aerial retrieval (GeoViewMatch and the InfoNCE baseline).

All losses take L2-normalised features ``[B, D]`` where row ``i`` of one view matches row ``i``
of the other; every other row in the batch is a negative.

- :func:`soft_margin_triplet`: the weighted soft-margin triplet loss of CVM-Net, used by SAFA and
  GeoViewMatch (eq. 1 of the GeoViewMatch paper) for both the retrieval losses and the contrastive
  loss.
- :class:`SymmetricInfoNCE`: Sample4Geo's symmetric InfoNCE with a learnable temperature and label
  smoothing, the loss of the InfoNCE baseline.
- :func:`contrastive_loss`: GeoViewMatch's L_con. The paper (§3.3) says the contrastive loss uses
  "soft-margin triplet loss in place of the traditional NCE-loss": positives are the strongly and
  weakly augmented views of the same aerial image (after the shared projection head), negatives
  the views of the other images of the batch. So L_con is the same soft-margin triplet, applied to
  (strong, weak) projected features instead of (ground, aerial) descriptors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoloc_lib.core.errors import ConfigError


def _check_pair(a: Tensor, b: Tensor, who: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ConfigError(
            f"{who}: expected two [B, D] feature matrices of the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] < 2:
        raise ConfigError(f"{who}: needs a batch of at least 2 pairs (in-batch negatives)")


def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """``[B, B]`` squared Euclidean distances of L2-normalised rows: ``2 - 2 cos``."""
    return 2.0 - 2.0 * (a @ b.t())


def soft_margin_triplet(a: Tensor, b: Tensor, alpha: float = 10.0) -> Tensor:
    """Weighted soft-margin triplet loss over all in-batch negatives, both directions.

    ``d = 2 - 2 a bᵀ`` (squared distance of unit vectors); for each anchor ``i`` of ``a`` and
    each negative ``j != i`` of ``b``: ``log(1 + exp(alpha (d_ii - d_ij)))``, and the same with
    ``b`` as anchors. The result is the mean over the ``B (B - 1)`` off-diagonal pairs, averaged
    over the two directions. Computed in fp32 with softplus: ``exp(alpha * 4)`` overflows fp16.
    """
    _check_pair(a, b, "soft_margin_triplet")
    d = squared_distance(a.float(), b.float())
    pos = d.diagonal()
    off = ~torch.eye(d.shape[0], dtype=torch.bool, device=d.device)
    a_to_b = F.softplus(alpha * (pos[:, None] - d))[off].mean()  # row i: anchor a_i
    b_to_a = F.softplus(alpha * (pos[None, :] - d))[off].mean()  # column j: anchor b_j
    return 0.5 * (a_to_b + b_to_a)


def contrastive_loss(strong: Tensor, weak: Tensor, alpha: float = 10.0) -> Tensor:
    """GeoViewMatch's L_con: soft-margin triplet between strong and weak views (see module doc).

    ``strong[i]`` and ``weak[i]`` are the projected, L2-normalised features of two augmentations
    of aerial image ``i``.
    """
    return soft_margin_triplet(strong, weak, alpha)


def first_occurrence(labels: Tensor) -> Tensor:
    """Boolean mask of the entries of ``labels`` that are the first with their value."""
    _, inverse = torch.unique(labels, return_inverse=True)
    pos = torch.arange(labels.shape[0], device=labels.device)
    first = torch.full_like(pos, labels.shape[0]).scatter_reduce(0, inverse, pos, "amin")
    return first[inverse] == pos


class SymmetricInfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable logit scale and label smoothing (Sample4Geo).

    ``logits = s * a bᵀ`` with ``s = exp(log_scale)`` initialised to ``1 / temperature`` and
    clamped to ``max_scale`` (as CLIP does, so the temperature cannot collapse); the loss is the
    mean of the cross-entropies a→b and b→a with the diagonal as the target.
    """

    def __init__(
        self, temperature: float = 0.07, label_smoothing: float = 0.1, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"SymmetricInfoNCE: temperature must be > 0, got {temperature}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"SymmetricInfoNCE: label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.label_smoothing = label_smoothing
        self.max_scale = max_scale

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def forward(self, a: Tensor, b: Tensor, labels: Tensor | None = None) -> Tensor:
        """``a[i]``, ``b[i]`` are a positive pair; with ``labels``, rows repeating an earlier
        row's label are dropped (a repeated location would otherwise be its own negative)."""
        _check_pair(a, b, "SymmetricInfoNCE")
        if labels is not None:
            keep = first_occurrence(labels)
            a, b = a[keep], b[keep]
        logits = self.scale * (a.float() @ b.float().t())
        target = torch.arange(a.shape[0], device=a.device)
        ls = self.label_smoothing
        return 0.5 * (
            F.cross_entropy(logits, target, label_smoothing=ls)
            + F.cross_entropy(logits.t(), target, label_smoothing=ls)
        )
