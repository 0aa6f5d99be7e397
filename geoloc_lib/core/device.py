"""Device and mixed-precision resolution (core): ``"auto"`` made concrete, batches moved.

Every layer that runs a model (training, evaluation, analysis) resolves its ``device`` and
``amp`` parameters here, so the same strings mean the same thing everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from geoloc_lib.core.errors import ConfigError, choices_message

AMP_MODES = ("auto", "off", "bf16", "fp16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` when a GPU is present, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"parameter device: cannot parse {device!r} ({err})") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"parameter device={device!r}, but no CUDA GPU is available; use 'cpu'")
    return dev


def resolve_amp(amp: str, device: torch.device) -> str:
    """The autocast mode actually used: ``off``, ``bf16`` or ``fp16``.

    ``auto`` means bf16 on GPUs that support it (fp16 + GradScaler otherwise) and ``off`` on CPU:
    bf16 autocast on this project's reference CPU (no AMX/AVX512-BF16) was measured slower than
    fp32 (see the MCGF report); pass ``amp="bf16"`` to use it on a CPU where it pays.
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"parameter amp: {choices_message('amp mode', amp, AMP_MODES)}")
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp='fp16' needs a CUDA device; use amp='bf16' or 'off' on CPU")
    return amp


def autocast_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype of a resolved AMP mode (None for ``off``)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device`` (other values pass through)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def batch_size(batch: Mapping[str, Any]) -> int:
    """The leading dimension of the batch's first non-scalar tensor (1 if none)."""
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.ndim > 0:
            return int(v.shape[0])
    return 1
