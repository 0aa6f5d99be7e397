"""DDPM noise schedules, the forward process and a deterministic DDIM sampler (MCGF §2.1).

Notation follows Ho et al. (2020) and the MCGF paper: ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = prod_{s<=t} alpha_s``. Timesteps are integers in ``[0, T)`` (index ``t``
here is the paper's step ``t + 1``), given per sample as a LongTensor ``[B]`` so one batch can
mix noise levels. Note: eq. (3) of the MCGF paper prints ``sqrt(alpha_t)`` for the mean; the
closed form of the product of eqs. (1)-(2) is ``sqrt(alpha_bar_t)``, which is what is used here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from geoloc_lib.core.errors import ConfigError

X0Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NoiseSchedule:
    """A variance schedule beta_1..beta_T and the quantities derived from it (float64, CPU)."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ConfigError("NoiseSchedule betas must be a non-empty 1-D tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("NoiseSchedule betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)

    @classmethod
    def linear(
        cls, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        """Ho et al.'s linear schedule, beta from ``beta_start`` to ``beta_end``."""
        _check_timesteps(timesteps)
        if not 0 < beta_start <= beta_end < 1:
            raise ConfigError(
                f"linear schedule needs 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
            )
        return cls(torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64))

    @classmethod
    def cosine(
        cls, timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
    ) -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos²((t/T + s)/(1 + s)·π/2)."""
        _check_timesteps(timesteps)
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
        return cls(betas)

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, 0)

    @property
    def alpha_bar_prev(self) -> torch.Tensor:
        """alpha_bar at t-1, with alpha_bar_{-1} = 1 (no noise before the first step)."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])

    @property
    def posterior_variance(self) -> torch.Tensor:
        """beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t): the fixed sigma² of eq. (6)."""
        return self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)


def _check_timesteps(timesteps: int) -> None:
    if int(timesteps) < 1:
        raise ConfigError(f"timesteps must be >= 1, got {timesteps}")


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to broadcast over ``like`` ([B, 1, 1, ...]) on like's device/dtype."""
    t = torch.as_tensor(t, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape[0] != like.shape[0]:
        raise ConfigError(f"timesteps have {t.shape[0]} entries for a batch of {like.shape[0]}")
    if bool(((t < 0) | (t >= len(values))).any()):
        raise ConfigError(f"timesteps must lie in [0, {len(values)}), got {t.tolist()}")
    out = values[t.cpu()].to(device=like.device, dtype=like.dtype)
    return out.view(-1, *([1] * (like.ndim - 1)))


def q_sample(
    schedule: NoiseSchedule,
    z0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw z_t ~ q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I) (MCGF eq. 3)."""
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device="cpu").to(
            z0.device
        )
    ab = _gather(schedule.alpha_bar, t, z0)
    return ab.sqrt() * z0 + (1 - ab).sqrt() * noise


def posterior_mean_variance(
    schedule: NoiseSchedule, z0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(z_{t-1} | z_t, z_0), the target of the reverse step (eq. 6).

    mean = sqrt(ab_{t-1}) beta_t / (1 - ab_t) z_0 + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) z_t,
    variance = beta_t (1 - ab_{t-1}) / (1 - ab_t) (zero at t = 0). Variance is [B, 1, ...].
    """
    # Coefficients in float64 before casting: 1 - alpha_bar is tiny at small t.
    ab, ab_prev, beta = schedule.alpha_bar, schedule.alpha_bar_prev, schedule.betas
    coef_z0 = _gather(ab_prev.sqrt() * beta / (1 - ab), t, zt)
    coef_zt = _gather((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab), t, zt)
    mean = coef_z0 * z0 + coef_zt * zt
    variance = _gather(schedule.posterior_variance, t, zt)
    return mean, variance


def ddim_timesteps(schedule: NoiseSchedule, t_start: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps from ``t_start`` down to 0 (inclusive of both ends)."""
    if not 0 <= t_start < schedule.timesteps:
        raise ConfigError(f"t_start must lie in [0, {schedule.timesteps}), got {t_start}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    grid = torch.linspace(float(t_start), 0.0, steps + 1).round().long().tolist()
    # Drop repeats (t_start < steps) while keeping the order.
    out: list[int] = []
    for t in grid:
        if not out or out[-1] != t:
            out.append(int(t))
    return out


@torch.no_grad()
def ddim_sample(
    x0_model: X0Model,
    z_t: torch.Tensor,
    t_start: int,
    steps: int,
    schedule: NoiseSchedule | None = None,
    clip_x0: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from z_t at ``t_start`` to an estimate of z_0.

    ``x0_model(z, t)`` returns the predicted clean sample for a batch at timesteps ``t`` [B].
    Each step predicts x0, recovers the implied noise eps = (z - sqrt(ab_t) x0) / sqrt(1 - ab_t),
    and moves to z_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) eps. The last prediction is returned.
    """
    schedule = schedule or NoiseSchedule.linear()
    ts = ddim_timesteps(schedule, t_start, steps)
    z = z_t
    batch = z.shape[0]
    x0 = z
    for i, t in enumerate(ts):
        t_vec = torch.full((batch,), t, dtype=torch.long, device=z.device)
        x0 = x0_model(z, t_vec)
        if clip_x0 is not None:
            x0 = x0.clamp(*clip_x0)
        if i == len(ts) - 1:
            break
        ab_t = float(schedule.alpha_bar[t])
        ab_s = float(schedule.alpha_bar[ts[i + 1]])
        eps = (z - math.sqrt(ab_t) * x0) / math.sqrt(max(1 - ab_t, 1e-20))
        z = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
    return x0
