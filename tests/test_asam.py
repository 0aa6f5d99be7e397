"""ASAM: one ``step(closure)`` equals the hand-written two-step algorithm; engine integration."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.training.optim import ASAM
from geoloc_lib.training.recipes import preset_for


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((net(x) - y) ** 2).mean()


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_one_asam_step_equals_the_two_step_algorithm(base: str) -> None:
    rho, eta, lr = 0.5, 0.01, 0.1
    x, y = _batch()
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9),
        "adamw": lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.01),
    }[base]

    # Library: first backward, then step(closure).
    net = _net()
    ref = copy.deepcopy(net)
    opt = ASAM(make(net.parameters()), rho=rho, eta=eta)
    _loss(net, x, y).backward()

    def closure() -> torch.Tensor:
        loss = _loss(net, x, y)
        loss.backward()
        return loss.detach()

    opt.step(closure)

    # By hand: eps = rho T² g / ‖T g‖, T = |w| + eta on weight matrices and 1 on biases;
    # gradient at w + eps; restore; base step.
    params = list(ref.parameters())
    grads = torch.autograd.grad(_loss(ref, x, y), params)
    with torch.no_grad():
        t = [p.abs() + eta if p.ndim >= 2 else torch.ones_like(p) for p in params]
        norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, grads, strict=True)))
        eps = [rho * ti**2 * gi / norm for ti, gi in zip(t, grads, strict=True)]
        w0 = [p.clone() for p in params]
        for p, e in zip(params, eps, strict=True):
            p.add_(e)
    grads_at_eps = torch.autograd.grad(_loss(ref, x, y), params)
    with torch.no_grad():
        for p, w in zip(params, w0, strict=True):
            p.copy_(w)
    base_opt = make(params)
    for p, gr in zip(params, grads_at_eps, strict=True):
        p.grad = gr.clone()
    base_opt.step()

    for got, want in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # The step actually moved the weights, and differently from a plain base step.
    plain = _net()
    plain_opt = make(plain.parameters())
    _loss(plain, x, y).backward()
    plain_opt.step()
    assert not torch.allclose(next(net.parameters()), next(_net().parameters()))
    assert not torch.allclose(next(net.parameters()), next(plain.parameters()))


def test_eta_zero_and_rho_scale_the_perturbation() -> None:
    x, y = _batch()
    net = _net()
    opt = ASAM(torch.optim.SGD(net.parameters(), lr=0.1), rho=0.05, eta=0.0)
    _loss(net, x, y).backward()
    before = [p.clone() for p in net.parameters()]
    moved = opt.ascent()
    # ‖T⁻¹ eps‖ = rho: the perturbation has radius rho in the adaptive metric.
    with torch.no_grad():
        r = torch.sqrt(
            sum(
                ((e / (p0.abs() if p0.ndim >= 2 else 1.0)) ** 2).sum()
                for (_, e), p0 in zip(moved, before, strict=True)
            )
        )
    assert r.item() == pytest.approx(0.05, rel=1e-4)
    opt.restore(moved)
    for p, b in zip(net.parameters(), before, strict=True):
        torch.testing.assert_close(p, b)


def test_asam_shares_groups_with_base_and_checks_arguments() -> None:
    net = _net()
    base = torch.optim.AdamW([{"params": net.parameters(), "lr": 1e-3, "name": "all"}])
    opt = ASAM(base, rho=2.5)
    assert isinstance(opt, ASAM) and opt.requires_closure
    opt.param_groups[0]["lr"] = 5e-4  # what a scheduler does
    assert opt.base.param_groups[0]["lr"] == 5e-4
    with pytest.raises(ConfigError, match="closure"):
        opt.step()
    with pytest.raises(ConfigError, match="rho"):
        ASAM(torch.optim.SGD(net.parameters(), lr=0.1), rho=0.0)
    state = opt.state_dict()
    opt.load_state_dict(state)
    assert opt.rho == 2.5


def test_asam_through_the_engine_reduces_the_loss() -> None:
    from geoloc_lib.training.engine import FitConfig, fit

    class Reg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def training_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"loss": _loss(self.net, batch["x"], batch["y"])}

    x, y = _batch()
    model = Reg()
    start = _loss(model.net, x, y).item()
    loader = [{"x": x, "y": y}] * 10
    opt = ASAM(torch.optim.AdamW([{"params": model.parameters(), "lr": 1e-2}], weight_decay=0.0))
    hist = fit(model, loader, opt, FitConfig(epochs=2, device="cpu", progress=False, seed=0))
    assert hist.records[-1]["loss"] < start


def test_asam_groups_stay_shared_after_load_state_dict() -> None:
    net = _net()
    opt = ASAM(torch.optim.AdamW([{"params": net.parameters(), "lr": 1e-3}]))
    opt.load_state_dict(opt.state_dict())
    opt.param_groups[0]["lr"] = 7e-4
    assert opt.base.param_groups[0]["lr"] == 7e-4


def test_adaptive_scale_applies_to_weight_tensors_only() -> None:
    # One linear layer y = w x + b, loss = (y - t)^2 / 2: hand-computed ASAM perturbation.
    # T = |w| + eta on the weight matrix, T = 1 on the bias (and on a norm gain, a temperature).
    rho, eta = 0.5, 0.01
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[2.0, -0.5]]))
        net.bias.fill_(3.0)
    x, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0]])
    ((net(x) - t) ** 2 / 2).sum().backward()
    r = 2.0 - 1.0 + 3.0  # residual y - t = 4
    g_w, g_b = [r * 1.0, r * 2.0], r  # dL/dw = r x, dL/db = r
    tw = [abs(2.0) + eta, abs(-0.5) + eta]
    norm = ((tw[0] * g_w[0]) ** 2 + (tw[1] * g_w[1]) ** 2 + g_b**2) ** 0.5
    want_w = [rho * tw[0] ** 2 * g_w[0] / norm, rho * tw[1] ** 2 * g_w[1] / norm]
    want_b = rho * g_b / norm  # the bias is not scaled by |b| + eta = 3.01
    opt = ASAM(torch.optim.SGD(net.parameters(), lr=0.1), rho=rho, eta=eta)
    eps = dict((id(p), e) for p, e in opt.ascent())
    torch.testing.assert_close(eps[id(net.weight)], torch.tensor([want_w]))
    torch.testing.assert_close(eps[id(net.bias)], torch.tensor([want_b]))


def test_weight_tensor_ids_skip_biases_norms_and_temperatures() -> None:
    from geoloc_lib.training.optim import weight_tensor_ids

    model = preset_for("geoviewmatch", "smoke").build()
    ids = weight_tensor_ids(model.named_parameters())
    named = dict(model.named_parameters())
    picked = {n for n, p in named.items() if id(p) in ids}
    assert "aggregators.aerial_s4.w1" in picked and "head.0.weight" in picked
    assert "aggregators.aerial_s4.b1" not in picked  # [N, HW/2]: a bias despite its rank
    assert not any(n.endswith(("bias", "logit_scale")) for n in picked)
    assert not any(named[n].ndim < 2 for n in picked)  # norm gains are 1-d
    assert any(n.endswith("logit_scale") for n in named)  # SwinV2's [heads, 1, 1] temperature


def test_ascent_moves_each_parameter_by_its_formula_exactly() -> None:
    """On a model with weights, biases, norm gains and a temperature (GeoViewMatch at its smoke
    size): weight tensors move by T·(T g)·rho/‖T g‖ with T = |w| + eta, the others by
    g·rho/‖T g‖, bit for bit, and restore puts every parameter back."""
    from geoloc_lib.training.optim import weight_tensor_ids

    torch.manual_seed(0)
    model = preset_for("geoviewmatch", "smoke").build()
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(3)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    weights = weight_tensor_ids(model.named_parameters())
    assert 0 < len(weights) < len(params)  # both kinds of parameter are present
    rho, eta = 0.5, 0.01
    before = [p.detach().clone() for p in params]
    with torch.no_grad():  # the per-parameter loop
        scaled = [(p.abs() + eta) * p.grad if id(p) in weights else p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = rho / (norm + 1e-12)
        want = [
            b + ((p.abs() + eta) * s if id(p) in weights else s) * factor
            for p, b, s in zip(params, before, scaled, strict=True)
        ]
    opt = ASAM(torch.optim.SGD(params, lr=0.1), rho=rho, eta=eta, weights=weights)
    moved = opt.ascent()
    assert [id(p) for p, _ in moved] == [id(p) for p in params]
    for p, w in zip(params, want, strict=True):
        assert torch.equal(p.detach(), w)
    opt.restore(moved)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p.detach(), b, rtol=0, atol=1e-7)
