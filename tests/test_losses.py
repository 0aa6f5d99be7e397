"""Losses: the weighted soft-margin triplet against hand-computed values, InfoNCE, L_con."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models.losses import SymmetricInfoNCE, contrastive_loss, soft_margin_triplet


def _unit(*rows: tuple[float, ...]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_triplet_hand_computed_two_pairs() -> None:
    # a0 = (1, 0), a1 = (0, 1); b0 = (1, 0), b1 = (0.6, 0.8).
    a = _unit((1.0, 0.0), (0.0, 1.0))
    b = _unit((1.0, 0.0), (0.6, 0.8))
    # Squared distances d_ij = 2 - 2 a_i·b_j: d00 = 0, d01 = 0.8, d10 = 2, d11 = 0.4.
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    a_to_b = (sp(10 * (0.0 - 0.8)) + sp(10 * (0.4 - 2.0))) / 2  # anchors a0, a1
    b_to_a = (sp(10 * (0.0 - 2.0)) + sp(10 * (0.4 - 0.8))) / 2  # anchors b0, b1
    expected = (a_to_b + b_to_a) / 2
    got = soft_margin_triplet(a, b, alpha=10.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_matches_loop_reference_and_alpha_is_on_squared_distance() -> None:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 5, generator=g), dim=1)
    b = F.normalize(torch.randn(6, 5, generator=g), dim=1)
    total = []
    for anchors, others in ((a, b), (b, a)):
        terms = []
        for i in range(6):
            for j in range(6):
                if i != j:
                    dp = ((anchors[i] - others[i]) ** 2).sum()
                    dn = ((anchors[i] - others[j]) ** 2).sum()
                    terms.append(math.log(1 + math.exp(7.0 * float(dp - dn))))
        total.append(sum(terms) / len(terms))
    assert soft_margin_triplet(a, b, alpha=7.0).item() == pytest.approx(sum(total) / 2, rel=1e-5)


def test_triplet_is_fp32_safe_for_fp16_inputs() -> None:
    # Opposite positives, identical negatives: alpha * (4 - 0) = 40, exp(40) overflows fp16.
    a = _unit((1.0, 0.0), (0.0, 1.0)).half()
    b = -a
    loss = soft_margin_triplet(a, b, alpha=10.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() > 10.0


def test_triplet_rewards_matching() -> None:
    a = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    perfect = soft_margin_triplet(a, a)
    shuffled = soft_margin_triplet(a, a.roll(1, dims=0))
    assert perfect < shuffled


def test_triplet_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError, match="same shape"):
        soft_margin_triplet(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="at least 2"):
        soft_margin_triplet(torch.ones(1, 3), torch.ones(1, 3))


def test_contrastive_loss_is_the_triplet_on_the_two_views() -> None:
    g = torch.Generator().manual_seed(2)
    s = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    w = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    assert contrastive_loss(s, w).item() == pytest.approx(soft_margin_triplet(s, w).item())


def test_infonce_hand_computed_and_gradient_reaches_the_scale() -> None:
    loss_fn = SymmetricInfoNCE(temperature=0.5, label_smoothing=0.1)
    a = _unit((1.0, 0.0), (0.0, 1.0))
    b = _unit((1.0, 0.0), (0.6, 0.8))
    logits = 2.0 * (a @ b.t())  # scale 1/0.5

    def smoothed_ce(row: torch.Tensor, target: int) -> float:
        logp = torch.log_softmax(row, 0)
        n = len(row)
        return float(-(0.9 * logp[target] + 0.1 * logp.mean()) if n else 0.0)

    expected = 0.5 * (
        sum(smoothed_ce(logits[i], i) for i in range(2)) / 2
        + sum(smoothed_ce(logits.t()[i], i) for i in range(2)) / 2
    )
    loss = loss_fn(a, b)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert loss_fn.log_scale.grad is not None and loss_fn.log_scale.grad.abs() > 0


def test_infonce_scale_is_clamped_and_init_is_one_over_temperature() -> None:
    loss_fn = SymmetricInfoNCE(temperature=0.07)
    assert loss_fn.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        loss_fn.log_scale.fill_(10.0)
    assert loss_fn.scale.item() == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="temperature"):
        SymmetricInfoNCE(temperature=0.0)
