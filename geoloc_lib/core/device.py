"""Device and mixed-precision resolution (core): ``"auto"`` made concrete, batches moved.

Every layer that runs a model (training, evaluation, analysis) resolves its ``device`` and
``amp`` parameters here, so the same strings mean the same thing everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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

    ``auto`` means bf16 on GPUs that support it (fp16 + GradScaler otherwise) and ``off`` on CPU.
    This is the answer without a model to measure: ``fit`` refines ``auto`` on a CPU with native
    bf16 per model and machine (:func:`geoloc_lib.training.amp.resolve_fit_amp`), because bf16
    autocast was ≈10× slower than fp32 on a CPU without AVX512-BF16/AMX but about as fast, or
    faster, on one with them.
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


# --------------------------------------------------------------------------- CPU bf16


@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU runs bf16 natively with the kernels PyTorch picked, and why."""

    native: bool
    reason: str
    model_name: str
    capability: str


CPUINFO = Path("/proc/cpuinfo")
# Instruction-set extensions with bf16 arithmetic (dot products / tile multiplies).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_fields(text: str) -> tuple[str, set[str]]:
    """``(model name, flags)`` of the first processor in ``/proc/cpuinfo`` text ("" and {} if
    absent)."""
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def cpu_bf16_support(
    cpuinfo: str | None = None,
    capability: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CpuBf16:
    """Detect native bf16 on this CPU: the ``avx512_bf16``/``amx_bf16`` flags of
    ``/proc/cpuinfo`` *and* AVX-512 kernels selected by PyTorch.

    An ``ATEN_CPU_CAPABILITY`` override below avx512 (``default``, ``avx2``) runs kernels that
    cannot use the bf16 instructions, so it counts as no native bf16 whatever the flags say.
    Without ``/proc/cpuinfo`` (not Linux) the flags are unknown and the answer is no. The
    arguments replace the machine's values (tests).
    """
    env = os.environ if env is None else env
    if capability is None:
        capability = str(torch.backends.cpu.get_cpu_capability())
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    name, flags = cpuinfo_fields(cpuinfo)
    forced = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if forced and not forced.startswith("avx512"):
        return CpuBf16(
            False, f"ATEN_CPU_CAPABILITY={forced} (no AVX-512 kernels)", name, capability
        )
    if not capability.upper().startswith("AVX512"):
        return CpuBf16(False, f"PyTorch runs {capability} kernels (no AVX-512)", name, capability)
    if not flags:
        return CpuBf16(False, "CPU flags unknown (no /proc/cpuinfo)", name, capability)
    have = [f for f in BF16_FLAGS if f in flags]
    if not have:
        return CpuBf16(False, "no AVX512-BF16/AMX in the CPU flags", name, capability)
    return CpuBf16(True, "/".join(have) + f" with {capability} kernels", name, capability)


# bf16 must beat fp32 by this factor: a smaller gain is within the noise of a short measurement on
# a shared CPU, and bf16 also costs precision.
BF16_MIN_SPEEDUP = 1.15


def choose_cpu_amp(fp32_img_s: float, bf16_img_s: float, margin: float = BF16_MIN_SPEEDUP) -> str:
    """``bf16`` when it trains at least ``margin`` times faster than fp32, else ``off``."""
    return "bf16" if bf16_img_s >= margin * fp32_img_s else "off"


AMP_CACHE_FILE = "cpu_amp.json"


def amp_cache_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/geoloc/cpu_amp.json`` (``~/.cache/geoloc/`` without XDG): the CPU bf16
    measurements, one entry per machine and model; delete it to measure again."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geoloc" / AMP_CACHE_FILE


def amp_cache_key(cpu: CpuBf16, model: str, preset: str, batch: int, threads: int) -> str:
    """What a measurement depends on: the CPU and its kernels, torch, the model and its batch."""
    parts = (cpu.model_name or "unknown CPU", cpu.capability, torch.__version__, model, preset)
    return " | ".join((*parts, f"batch {batch}", f"{threads} threads"))


def read_amp_cache(key: str, path: Path | None = None) -> dict[str, Any] | None:
    """The cached entry of ``key``, or None (no file, no entry, or an unreadable file)."""
    path = amp_cache_path() if path is None else path
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        ok = entry["mode"] in ("off", "bf16") and float(entry["fp32_img_s"]) > 0
        ok = ok and float(entry["bf16_img_s"]) > 0
    except (KeyError, TypeError, ValueError):
        ok = False
    return entry if ok else None


def write_amp_cache(key: str, entry: Mapping[str, Any], path: Path | None = None) -> Path:
    """Add ``entry`` under ``key`` (other entries kept; a damaged file is replaced). Written to a
    temporary file first, so a concurrent reader never sees half a file."""
    path = amp_cache_path() if path is None else path
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[key] = dict(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


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
