"""Closed forms of the DDPM schedule, forward process, posterior and DDIM sampler."""

from __future__ import annotations

import math

import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models.diffusion import (
    NoiseSchedule,
    ddim_sample,
    ddim_timesteps,
    posterior_mean_variance,
    q_sample,
)


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(), NoiseSchedule.cosine()])
def test_alpha_bar_strictly_decreasing_in_unit_interval(schedule: NoiseSchedule) -> None:
    ab = schedule.alpha_bar
    assert schedule.timesteps == 1000
    assert bool((ab > 0).all()) and bool((ab <= 1).all())
    assert bool((ab[1:] < ab[:-1]).all())
    assert ab[-1] < 0.01  # the chain ends close to pure noise


def test_linear_endpoints_and_cosine_shape() -> None:
    lin = NoiseSchedule.linear(10, 1e-4, 0.02)
    assert lin.betas[0].item() == pytest.approx(1e-4)
    assert lin.betas[-1].item() == pytest.approx(0.02)
    cos = NoiseSchedule.cosine(1000)
    # Nichol & Dhariwal: alpha_bar(t) = f(t)/f(0) with f = cos²(((t/T)+s)/(1+s)·π/2).
    t = 500
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos.alpha_bar[t - 1].item() == pytest.approx(f(t / 1000) / f(0), rel=1e-6)


def test_bad_parameters_raise() -> None:
    with pytest.raises(ConfigError):
        NoiseSchedule.linear(0)
    with pytest.raises(ConfigError):
        NoiseSchedule.linear(10, 0.5, 0.1)
    with pytest.raises(ConfigError):
        q_sample(NoiseSchedule.linear(10), torch.zeros(2, 3), torch.tensor([0, 10]))


def test_q_sample_mean_and_variance_monte_carlo() -> None:
    sched = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(0)
    n = 200_000
    z0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    for t_int in (0, 250, 999):
        t = torch.full((n,), t_int, dtype=torch.long)
        zt = q_sample(sched, z0, t, generator=g)
        ab = sched.alpha_bar[t_int].item()
        assert zt.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=5e-3)
        assert zt.var().item() == pytest.approx(1 - ab, abs=5e-3 + 0.02 * (1 - ab))


def test_q_sample_mixed_timesteps_per_sample() -> None:
    sched = NoiseSchedule.cosine(100)
    z0 = torch.ones(3, 2)
    noise = torch.zeros(3, 2)
    t = torch.tensor([0, 50, 99])
    zt = q_sample(sched, z0, t, noise=noise)
    expected = sched.alpha_bar[t].sqrt().float()
    assert torch.allclose(zt[:, 0], expected)


def test_posterior_consistent_with_marginals() -> None:
    """If z_t ~ q(z_t|z_0), then z_{t-1} ~ q(z_{t-1}|z_t, z_0) must follow q(z_{t-1}|z_0)."""
    sched = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(1)
    n = 200_000
    z0 = torch.full((n, 1), -0.4, dtype=torch.float64)
    for t_int in (1, 300, 800):
        t = torch.full((n,), t_int, dtype=torch.long)
        zt = q_sample(sched, z0, t, generator=g)
        mean, var = posterior_mean_variance(sched, z0, zt, t)
        z_prev = mean + var.sqrt() * torch.randn(mean.shape, generator=g, dtype=mean.dtype)
        ab_prev = sched.alpha_bar[t_int - 1].item()
        assert z_prev.mean().item() == pytest.approx(math.sqrt(ab_prev) * -0.4, abs=5e-3)
        assert z_prev.var().item() == pytest.approx(1 - ab_prev, abs=5e-3 + 0.02 * (1 - ab_prev))


def test_posterior_at_t0_is_z0() -> None:
    sched = NoiseSchedule.linear(50)
    z0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    zt = q_sample(sched, z0, torch.zeros(4, dtype=torch.long), generator=torch.Generator())
    mean, var = posterior_mean_variance(sched, z0, zt, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(mean, z0, atol=1e-6)
    assert float(var.abs().max()) == 0.0


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(), NoiseSchedule.cosine()])
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_ddim_with_perfect_predictor_recovers_x0(schedule: NoiseSchedule, steps: int) -> None:
    """The predictor knows the true noise and infers x0 from (z, t) alone: it stays exact only
    if every DDIM update keeps z on the q(z_s|x0) trajectory with the same noise."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    ab = schedule.alpha_bar

    def x0_model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t].view(-1, 1, 1, 1)
        return (z - (1 - a).sqrt() * eps) / a.sqrt()

    t_start = 700
    zt = q_sample(schedule, x0, torch.full((2,), t_start), noise=eps)
    calls: list[int] = []

    def counting_model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(int(t[0]))
        return x0_model(z, t)

    out = ddim_sample(counting_model, zt, t_start, steps, schedule=schedule)
    assert torch.allclose(out, x0, atol=1e-5)
    assert calls[0] == t_start and calls[-1] == 0 and len(calls) == steps + 1


def test_ddim_detects_wrong_noise_level() -> None:
    """Starting from the wrong t makes the same predictor miss x0: the test above can fail."""
    sched = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    ab = sched.alpha_bar

    def x0_model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t].view(-1, 1, 1, 1)
        return (z - (1 - a).sqrt() * eps) / a.sqrt()

    zt = q_sample(sched, x0, torch.full((1,), 700), noise=eps)
    out = ddim_sample(x0_model, zt, 400, 5, schedule=sched)
    assert not torch.allclose(out, x0, atol=1e-3)


def test_ddim_timesteps() -> None:
    sched = NoiseSchedule.linear(1000)
    assert ddim_timesteps(sched, 999, 3) == [999, 666, 333, 0]
    assert ddim_timesteps(sched, 2, 10) == [2, 1, 0]
