"""The training engine: one ``fit()`` for every model in the project, its config, history and
checkpoint files.

A model follows the contract of :mod:`geoloc_lib.models.contract` (``training_losses(batch)``
returns ``"loss"`` and the terms to log; ``param_groups(lr)`` gives named optimizer groups).

``fit()`` reads as four steps (:class:`_FitRun`): restore (resume), one epoch, record, save.
Per batch: move to the device -> ``batch_transform`` (on device, e.g. on-the-fly
weather) -> forward under autocast -> non-finite guard -> backward -> unscale -> clip -> step
(``optimizer.step(closure)`` for closure optimizers such as ASAM). Per epoch: optional scheduler
step, validation, ``history.csv``/``history.json`` and ``checkpoint_last.pt`` (model, optimizer,
scheduler, scaler, every RNG state, epoch, history). ``FitConfig(resume=True)`` continues from that
checkpoint and, on CPU, ends bit-identical to an uninterrupted run.

``FitConfig(compile="inductor")`` (or ``"aot_eager"``) runs ``model.training_losses`` through
``torch.compile``; the module itself stays plain, so checkpoints and validation are unchanged.

Distributed: launch the same script with ``torchrun --nproc_per_node=N``; call
:func:`geoloc_lib.core.distributed.setup_distributed` first and build loaders with a sampler
that shards by rank (see ``geoloc_lib.data.university_torch.ShardedSampler``). ``fit`` wraps the model in
DistributedDataParallel, averages logged losses over ranks, validates on rank 0 only and broadcasts
the metrics, and writes logs and checkpoints on rank 0 only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from geoloc_lib.core.checkpoints import (
    check_writable,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from geoloc_lib.core.device import (
    AMP_MODES,
    autocast_dtype,
    batch_size,
    resolve_amp,
    resolve_device,
    to_device,
)
from geoloc_lib.core.distributed import DistInfo, barrier, broadcast_object, dist_info
from geoloc_lib.core.errors import (
    ConfigError,
    GeolocError,
    NotWritableError,
    choices_message,
    not_writable,
)
from geoloc_lib.core.locks import folder_lock
from geoloc_lib.core.runtime import resolve_progress
from geoloc_lib.core.seeding import rng_state, seed_everything, set_rng_state
from geoloc_lib.training.amp import AmpChoice, announce, resolve_fit_amp

CHECKPOINT_LAST = "checkpoint_last.pt"


class NonFiniteLossError(GeolocError):
    """Training produced a NaN/inf loss or gradient; the last good checkpoint is kept."""

    def __init__(self, message: str, history: History | None = None) -> None:
        super().__init__(message)
        self.history = history


# --------------------------------------------------------------------------- config & history


@dataclass
class FitConfig:
    """Everything ``fit`` needs besides the model, data, optimizer and scheduler.

    Attributes:
        epochs: total number of epochs (a resumed run continues up to this number).
        out_dir: folder for checkpoints and logs; None keeps everything in memory.
        seed: seeds the training randomness (each rank uses ``seed + rank``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        amp: ``auto`` | ``off`` | ``bf16`` | ``fp16``; ``auto`` on a CPU is decided per model and
            machine (:func:`geoloc_lib.training.amp.resolve_fit_amp`; smoke: always fp32).
        grad_clip: max global gradient L2 norm; None disables clipping (the norm is still logged).
        scheduler_interval: call ``scheduler.step()`` after every ``"epoch"`` or every ``"step"``.
        max_steps_per_epoch: cut epochs short (smoke runs, tests).
        val_every: validate every N epochs (and always after the last one).
        resume: False, True (``out_dir/checkpoint_last.pt`` if it exists) or a checkpoint path.
        keep_epoch_checkpoints: also keep ``checkpoint_epoch{N}.pt`` for every epoch.
        progress: tqdm bar on stderr; None -> off unless ``GEOLOC_PROGRESS=1`` (runtime).
        num_threads: ``torch.set_num_threads`` for the run (None leaves it). On a CPU shared with
            other jobs, fewer threads than cores avoids OpenMP oversubscription, which was
            measured to slow a step ~80x on this project's 2-core machine.
        preset: the model's preset (``smoke``, ``default``, ``paper``), which ``amp="auto"`` on a
            CPU needs to measure; None trains in fp32 there.
        fp32_cpu: ``amp="auto"`` on a CPU trains in fp32 without measuring (the preset's choice,
            ``Preset.fp32_cpu``: the smoke preset's results must not depend on the CPU).
        compile: ``torch.compile`` of ``model.training_losses``: False or ``"off"``; True or
            ``"inductor"`` (needs a C++ compiler on a CPU); ``"aot_eager"`` (no C++ compiler;
            traces forward and backward without generating code). The first step pays the
            compilation.
        run_settings: the caller's full description of what it trains (JSON values: a run's
            model, preset, seed, resolved model config and training settings), saved in every
            checkpoint. Resuming refuses a checkpoint whose saved description differs in any
            value (or has none), naming the setting with its saved and asked values.
    """

    epochs: int = 1
    out_dir: str | Path | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    grad_clip: float | None = None
    scheduler_interval: str = "epoch"
    max_steps_per_epoch: int | None = None
    val_every: int = 1
    resume: bool | str | Path = False
    keep_epoch_checkpoints: bool = False
    progress: bool | None = None
    num_threads: int | None = None
    preset: str | None = None
    fp32_cpu: bool = False
    compile: bool | str = False
    run_settings: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"FitConfig.epochs must be >= 1, got {self.epochs}")
        if self.scheduler_interval not in ("epoch", "step"):
            raise ConfigError(
                "FitConfig.scheduler_interval: "
                + choices_message("interval", self.scheduler_interval, ("epoch", "step"))
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"FitConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"FitConfig.amp: {choices_message('amp mode', self.amp, AMP_MODES)}")
        compile_backend(self.compile)  # raises on an unknown value

    @property
    def show_progress(self) -> bool:
        return resolve_progress(self.progress)


@dataclass
class History:
    """Per-epoch records (losses, learning rates, throughput, validation metrics)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_from_epoch: int = 0
    amp: dict[str, Any] | None = None  # the precision trained with (AmpChoice.as_dict())
    compile: str | None = None  # the torch.compile backend trained with, or "off"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)

    def last(self, key: str, default: Any = None) -> Any:
        for rec in reversed(self.records):
            if key in rec:
                return rec[key]
        return default


def _write_logs(out_dir: Path, history: History) -> None:
    try:
        history.df.to_csv(out_dir / "history.csv", index=False)
        (out_dir / "history.json").write_text(json.dumps(history.records, indent=1, default=float))
    except OSError as err:
        raise not_writable(out_dir, err, "the training logs in") from None


# --------------------------------------------------------------------------- torch.compile

COMPILE_CHOICES = ("off", "inductor", "aot_eager")  # and False / True (= "inductor")


def compile_backend(value: Any) -> str | None:
    """The ``torch.compile`` backend ``FitConfig.compile`` asks for; None: do not compile."""
    if isinstance(value, bool):
        return "inductor" if value else None
    if isinstance(value, str) and value in COMPILE_CHOICES:
        return None if value == "off" else value
    valid = (*COMPILE_CHOICES, "False", "True")
    raise ConfigError(f"FitConfig.compile: {choices_message('compile backend', value, valid)}")


def check_cpp_compiler() -> None:
    """Inductor builds C++ kernels on a CPU: without a compiler fail now, not at the first step."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another torch layout: inductor reports a missing compiler itself
        return
    try:
        get_cpp_compiler()  # runs the configured compiler (CXX, else g++) with --version
    except RuntimeError as err:
        raise ConfigError(
            f"FitConfig.compile='inductor' needs a working C++ compiler on a CPU ({err}); "
            "install one (or point CXX at it), or use compile='aot_eager' (no C++ compiler "
            "needed) or compile=False"
        ) from err


# --------------------------------------------------------------------------- checkpoints


def _load_state(model: nn.Module, state: Any, path: Path | str, strict=True) -> None:
    load_model_state(model, state, path, strict=strict, hint=" (another model config?)")


# FitConfig fields that change what is trained (device, threads, progress and logging do not).
RESUME_FIT_KEYS = ("epochs", "seed", "grad_clip", "scheduler_interval", "max_steps_per_epoch")
_GROUP_KEYS = ("initial_lr", "momentum", "dampening", "weight_decay", "nesterov", "betas", "eps")


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _settings_labels(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``run_settings`` flattened to ``{label: value}``: a run's ``config.training.repeats``
    reads ``repeats`` (``training epochs`` where the top level has ``epochs`` too),
    ``config.model.embed_dim`` reads ``model embed_dim``, other nested values their dotted
    path."""
    flat: dict[str, Any] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(item, (*path, str(key)))
            return
        if path[:2] == ("config", "training") and len(path) == 3:
            label = path[2] if path[2] not in settings else f"training {path[2]}"
        elif path[:2] == ("config", "model") and len(path) == 3:
            label = f"model {path[2]}"
        else:
            label = ".".join(path[1:] if path[0] == "config" and len(path) > 1 else path)
        flat[label] = value

    walk(settings, ())
    return flat


def run_settings_differences(saved: Any, asked: Mapping[str, Any]) -> list[str]:
    """Every value of ``asked`` (a ``FitConfig.run_settings``) that ``saved`` does not have,
    as ``"label: saved -> asked"``."""
    if not isinstance(saved, Mapping):
        return ["run settings: not recorded in the checkpoint -> recorded"]
    old, new = _settings_labels(saved), _settings_labels(json.loads(_plain(dict(asked))))
    return [
        f"{key}: {_plain(old.get(key))} -> {_plain(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if _plain(old.get(key)) != _plain(new.get(key))
    ]


def resume_differences(
    ckpt: Mapping[str, Any], config: FitConfig, model: nn.Module, optimizer: Any
) -> list[str]:
    """What this ``fit`` call would train differently from the run saved in ``ckpt``.

    Compares the :data:`RESUME_FIT_KEYS` of the ``FitConfig``, its ``run_settings`` (every
    value), the model's ``config_dict()`` and the optimizer's per-group hyperparameters (base
    learning rate, momentum, weight decay...). Each item reads ``"name: saved -> asked"``.
    """
    diffs: list[str] = []
    saved_fit = ckpt.get("fit_config") or {}
    for key in RESUME_FIT_KEYS:
        if key in saved_fit and saved_fit[key] != str(getattr(config, key)):
            diffs.append(f"{key}: {saved_fit[key]} -> {getattr(config, key)}")
    if config.run_settings is not None:
        for diff in run_settings_differences(ckpt.get("run_settings"), config.run_settings):
            if diff not in diffs:
                diffs.append(diff)
    saved_model = ckpt.get("model_config")
    new_model = getattr(model, "config_dict", lambda: None)()
    if isinstance(saved_model, Mapping) and isinstance(new_model, Mapping):
        for key in sorted(set(saved_model) | set(new_model)):
            old, new = saved_model.get(key), new_model.get(key)
            if _plain(old) != _plain(new):
                diffs.append(f"model {key}: {_plain(old)} -> {_plain(new)}")
    saved_opt = ckpt.get("optimizer") or {}
    for key in ("rho", "eta"):  # ASAM's own settings
        if key in saved_opt and hasattr(optimizer, key):
            if _plain(saved_opt[key]) != _plain(getattr(optimizer, key)):
                diffs.append(f"{key}: {saved_opt[key]} -> {getattr(optimizer, key)}")
    if "param_groups" not in saved_opt and isinstance(saved_opt.get("base"), Mapping):
        saved_opt = saved_opt["base"]
    saved_groups = saved_opt.get("param_groups") or []
    new_groups = getattr(optimizer, "param_groups", [])
    if saved_groups and len(saved_groups) == len(new_groups):
        for i, (old_g, new_g) in enumerate(zip(saved_groups, new_groups, strict=True)):
            name = new_g.get("name", i)
            # the base learning rate (a scheduler keeps it as initial_lr and changes lr)
            old_lr, new_lr = (
                old_g.get("initial_lr", old_g.get("lr")),
                new_g.get("initial_lr", new_g.get("lr")),
            )
            if _plain(old_lr) != _plain(new_lr):
                diffs.append(f"lr of group {name}: {old_lr} -> {new_lr}")
            for key in _GROUP_KEYS[1:]:
                if key in old_g and key in new_g and _plain(old_g[key]) != _plain(new_g[key]):
                    diffs.append(f"{key} of group {name}: {old_g[key]} -> {new_g[key]}")
    elif saved_groups:
        diffs.append(f"optimizer parameter groups: {len(saved_groups)} -> {len(new_groups)}")
    return list(dict.fromkeys(diffs))


def checkpoint_elapsed_s(ckpt: Mapping[str, Any]) -> float:
    """Wall time of the training saved in ``ckpt`` (for checkpoints written before it was
    recorded: the sum of the epochs' training times)."""
    if "elapsed_s" in ckpt:
        return float(ckpt["elapsed_s"])
    return float(sum(r.get("time_s", 0.0) for r in ckpt.get("history", [])))


def _loader_state(loader: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        state["generator"] = gen.get_state()
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "state_dict"):
        state["sampler"] = sampler.state_dict()
    return state


def _set_loader_state(loader: Any, state: Mapping[str, Any]) -> None:
    if "generator" in state and isinstance(getattr(loader, "generator", None), torch.Generator):
        # a CPU generator takes a CPU byte tensor; resuming on a GPU maps the checkpoint there
        loader.generator.set_state(state["generator"].cpu())
    sampler = getattr(loader, "sampler", None)
    if "sampler" in state and sampler is not None and hasattr(sampler, "load_state_dict"):
        sampler.load_state_dict(state["sampler"])


# --------------------------------------------------------------------------- fit


class _LossForward(nn.Module):
    """Routes ``forward`` to ``training_losses`` so DDP's gradient hooks see the training pass.

    With a ``backend`` the bound method is compiled, not the module: the model's ``state_dict``
    keys, its ``embed`` (validation) and the caller's object stay plain."""

    def __init__(self, model: nn.Module, backend: str | None = None) -> None:
        super().__init__()
        self.model = model
        losses = model.training_losses
        self.losses = losses if backend is None else torch.compile(losses, backend=backend)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.losses(batch)


def _group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {f"lr_{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}


def _all_finite(value: torch.Tensor, info: DistInfo) -> bool:
    # Every rank must take the same branch, or the others would hang in the next all-reduce.
    flag = torch.isfinite(value.detach().float()).all().float().reshape(1)
    if info.distributed:
        flag = flag.to(value.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def fit(
    model: nn.Module,
    train_loader: Iterable[Mapping[str, Any]],
    optimizer: torch.optim.Optimizer,
    config: FitConfig,
    *,
    scheduler: Any | None = None,
    validate: Callable[[nn.Module, int], dict[str, float]] | None = None,
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> History:
    """Train ``model`` for ``config.epochs`` epochs; return the per-epoch history.

    Args:
        model: an ``nn.Module`` with ``training_losses(batch) -> {"loss": ..., ...}``.
        train_loader: yields dicts of tensors. Its sampler's ``set_epoch(epoch)`` is called at the
            start of each epoch when it has one (DistributedSampler, ShardedSampler).
        optimizer: built over ``model``'s parameters (e.g. from ``model.param_groups(lr)``); a
            ``"name"`` key per group names its learning rate in the logs (``lr_<name>``).
            Closure optimizers: when ``getattr(optimizer, "requires_closure", False)`` is true the
            engine first runs forward + backward (the gradients are filled, unscaled and clipped)
            and then calls ``optimizer.step(closure)``. ``closure()`` zeroes the gradients, re-runs
            forward + backward on the same batch (clipping again) and returns the detached loss:
            ASAM's second pass at the perturbed weights. fp16 + GradScaler cannot drive a
            closure; use ``amp="bf16"`` or ``"off"`` with such optimizers.
        config: see :class:`FitConfig`.
        scheduler: anything with ``step()``/``state_dict()``/``load_state_dict()``; stepped per
            epoch or per step (``config.scheduler_interval``).
        validate: ``validate(model, epoch) -> {metric: value}``, called on rank 0 in eval mode
            with the unwrapped model; the metrics go to the history.
            The global RNG states are restored after it, so validating (or not) never changes
            the training.
        batch_transform: runs on the device on each batch before the forward pass, outside
            autocast (MCGF applies the synthetic weather there).

    Returns:
        :class:`History`; ``history.checkpoint`` is ``out_dir/checkpoint_last.pt``.

    Raises:
        NonFiniteLossError: a NaN/inf loss (or gradient without a GradScaler). Nothing is
            written for the failing epoch; ``checkpoint_last.pt`` stays the last good epoch.
    """
    # One training per run folder: a second process fails at once naming the holder (rank 0
    # holds the lock for every rank of a distributed run).
    locked = config.out_dir is not None and dist_info().is_main
    with folder_lock(config.out_dir, "training") if locked else nullcontext():
        run = _FitRun(model, train_loader, optimizer, config, scheduler, validate, batch_transform)
        run.restore()
        for epoch in range(run.start_epoch, config.epochs):
            sums, n_steps, n_images, t0 = run.one_epoch(epoch)
            run.record(epoch, sums, n_steps, n_images, t0)
            run.save(epoch)
    return run.history


class _FitRun:
    """The state of one :func:`fit` call and its steps: restore, one epoch, record, save."""

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer,
        config: FitConfig,
        scheduler: Any | None,
        validate: Callable[[nn.Module, int], dict[str, float]] | None,
        batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        self.model, self.train_loader, self.optimizer = model, train_loader, optimizer
        self.config, self.scheduler = config, scheduler
        self.validate, self.batch_transform = validate, batch_transform
        info = self.info = dist_info()
        device = self.device = resolve_device(config.device)
        amp = resolve_amp(config.amp, device)  # checked now; auto on a CPU is refined below
        self.requires_closure = bool(getattr(optimizer, "requires_closure", False))
        if self.requires_closure and amp == "fp16":
            raise ConfigError(
                "a closure optimizer (ASAM) cannot run under fp16 with a GradScaler; "
                "set amp='bf16' or amp='off'"
            )
        if not hasattr(model, "training_losses"):
            raise ConfigError(f"{type(model).__name__} has no training_losses(batch) method")
        self.compile_backend = compile_backend(config.compile)
        if self.compile_backend == "inductor" and device.type == "cpu":
            check_cpp_compiler()
        out_dir = self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        if out_dir is not None and info.is_main:
            check_writable(out_dir, "run folder")  # not after the first epoch's work

        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        model.to(device)
        # After the thread count is set (it changes the measurement) and before seeding.
        self.amp = resolve_fit_amp(
            config.amp,
            device,
            model,
            preset=config.preset,
            fp32_cpu=config.fp32_cpu,
            batch=getattr(train_loader, "batch_size", None),
            batch_transform=batch_transform,
        )
        amp = self.amp.mode
        seed_everything(config.seed + info.rank)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.dtype = autocast_dtype(amp)

        self.history = History(amp=self.amp.as_dict(), compile=self.compile_backend or "off")
        self.start_epoch = 0
        self.fit_start, self.elapsed_before = time.perf_counter(), 0.0

    def restore(self) -> None:
        """Resume: restore every state, so the continuation replays the uninterrupted run; then
        wrap the model for the training pass (DDP when distributed)."""
        config, out_dir, info = self.config, self.out_dir, self.info
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        resume_path: Path | None = None
        if config.resume is True:
            if out_dir is None:
                raise ConfigError("FitConfig.resume=True needs FitConfig.out_dir")
            resume_path = (
                out_dir / CHECKPOINT_LAST if (out_dir / CHECKPOINT_LAST).is_file() else None
            )
        elif config.resume:
            resume_path = Path(config.resume)
        if resume_path is not None:
            ckpt = load_checkpoint(resume_path, map_location=self.device)
            diffs = resume_differences(ckpt, config, model, optimizer)
            if diffs:
                shown = "; ".join(diffs[:6]) + (
                    f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""
                )
                raise ConfigError(
                    f"cannot resume from {resume_path}: it was trained with other settings "
                    f"(saved -> asked: {shown}). Resume with the saved settings, or train into "
                    "another folder (or with resume=False) to use the new ones"
                )
            _load_state(model, ckpt["model"], resume_path)
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None and ckpt.get("scheduler") is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler") is not None:
                self.scaler.load_state_dict(ckpt["scaler"])
            rngs = ckpt["rng"]
            set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
            _set_loader_state(self.train_loader, ckpt.get("loader", {}))
            self.history.records = list(ckpt["history"])
            self.start_epoch = self.history.resumed_from_epoch = int(ckpt["epoch"])
            self.elapsed_before = checkpoint_elapsed_s(ckpt)
            self.history.checkpoint = resume_path  # also when there is nothing left to train
            saved = (ckpt.get("amp") or {}).get("mode")
            if config.amp == "auto" and self.device.type == "cpu" and saved != self.amp.mode:
                if saved in ("off", "bf16"):  # continue in the precision the run began with
                    self.amp = AmpChoice("auto", saved, "the precision the run began with")
                    self.dtype = autocast_dtype(saved)
                    self.history.amp = self.amp.as_dict()

        net: nn.Module = _LossForward(model, self.compile_backend)
        if info.distributed:
            device = self.device
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.net = net
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.clip = config.grad_clip if config.grad_clip is not None else math.inf
        self.show = config.show_progress and info.is_main
        announce(self.amp, self.show)

    def forward_backward(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Forward under autocast, non-finite guard, backward, unscale and clip."""
        info, scaler = self.info, self.scaler
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.net(batch)
        loss = out["loss"]
        if not _all_finite(loss, info):
            raise _NonFinite("loss", {k: float(v.detach().float()) for k, v in out.items()})
        scaler.scale(loss).backward()
        if scaler.is_enabled():
            scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        # With a GradScaler, inf gradients are expected (the scaler skips the step and lowers the
        # scale); without one they mean the run diverged.
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if not scaler.is_enabled() and not _all_finite(norm, info):
            raise _NonFinite("gradient norm", {"grad_norm": float(norm)})
        return out, norm

    def one_epoch(self, epoch: int) -> tuple[dict[str, torch.Tensor], int, int, float]:
        """Train one epoch: per-batch steps, then the epoch's scheduler step.

        Returns the summed logged values, the steps, the images and the epoch's start time."""
        config, optimizer, scheduler = self.config, self.optimizer, self.scheduler
        train_loader, scaler, show = self.train_loader, self.scaler, self.show
        self.model.train()
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        n_steps, n_images, t0 = 0, 0, time.perf_counter()
        total = len(train_loader) if hasattr(train_loader, "__len__") else None
        if config.max_steps_per_epoch is not None and total is not None:
            total = min(total, config.max_steps_per_epoch)
        bar = tqdm(
            total=total, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show, leave=False
        )
        # Where the epoch's time goes (history columns data_s, transform_s; the rest is the
        # model step): what `geoloc bench train --fit` reports per lever.
        self.epoch_timing = {"data_s": 0.0, "transform_s": 0.0}
        batches = iter(train_loader)
        try:
            while True:
                t_data = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                if config.max_steps_per_epoch is not None and n_steps >= config.max_steps_per_epoch:
                    break
                batch = to_device(batch, self.device)
                t_transform = time.perf_counter()
                self.epoch_timing["data_s"] += t_transform - t_data
                if self.batch_transform is not None:
                    batch = self.batch_transform(batch)
                self.epoch_timing["transform_s"] += time.perf_counter() - t_transform
                optimizer.zero_grad(set_to_none=True)
                out, norm = self.forward_backward(batch)
                if self.requires_closure:

                    def closure(batch: dict[str, Any] = batch) -> torch.Tensor:
                        optimizer.zero_grad(set_to_none=True)
                        return self.forward_backward(batch)[0]["loss"].detach()

                    optimizer.step(closure)
                else:
                    scaler.step(optimizer)
                scaler.update()
                if scheduler is not None and config.scheduler_interval == "step":
                    scheduler.step()
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm.detach().float()
                n_steps += 1
                n_images += batch_size(batch)
                bar.update(1)
                if show and n_steps % 10 == 0:
                    bar.set_postfix(loss=f"{float(sums['loss']) / n_steps:.4f}")
        except _NonFinite as bad:
            bar.close()
            self._stop(bad, epoch, n_steps)
        bar.close()
        if n_steps == 0:
            raise ConfigError("the training loader yielded no batch; is the training set empty?")
        if scheduler is not None and config.scheduler_interval == "epoch":
            scheduler.step()
        return sums, n_steps, n_images, t0

    def _stop(self, bad: _NonFinite, epoch: int, n_steps: int) -> None:
        out_dir = self.out_dir
        where = f"epoch {epoch + 1}, step {n_steps + 1}"
        keep = (
            f"the last good checkpoint is {out_dir / CHECKPOINT_LAST} "
            f"(epoch {_last_epoch(self.history)})"
            if out_dir is not None and (out_dir / CHECKPOINT_LAST).is_file()
            else "no checkpoint was written before the failure"
        )
        lrs = ", ".join(f"{k}={v:g}" for k, v in _group_lrs(self.optimizer).items())
        raise NonFiniteLossError(
            f"non-finite {bad.what} at {where} ({bad.values}); training stopped, {keep}. "
            f"Learning rates: {lrs}. Lower the learning rate, enable grad_clip, or use "
            "amp='off' to rule out reduced precision.",
            self.history,
        ) from None

    def record(
        self, epoch: int, sums: dict[str, torch.Tensor], n_steps: int, n_images: int, t0: float
    ) -> None:
        """The epoch's history record: losses averaged over steps and ranks, learning rates,
        throughput, and the validation metrics when this epoch validates."""
        config, info, model = self.config, self.info, self.model
        keys = sorted(sums)
        vec = torch.stack([torch.as_tensor(sums[k], device=self.device).float() for k in keys])
        counts = torch.tensor([n_steps, n_images], device=self.device, dtype=torch.float64)
        if info.distributed:
            dist.all_reduce(vec)
            dist.all_reduce(counts)
            vec /= info.world_size
        elapsed = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch + 1, "steps": n_steps}
        record.update({k: float(v) / n_steps for k, v in zip(keys, vec.cpu(), strict=True)})
        record.update(_group_lrs(self.optimizer))
        record["images"] = int(counts[1])
        record["time_s"] = elapsed
        record["images_per_s"] = float(counts[1]) / max(elapsed, 1e-9)
        record.update({k: round(v, 3) for k, v in self.epoch_timing.items()})

        if self.validate is not None and (
            (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs
        ):
            metrics = None
            if info.is_main:
                # Validation must not consume the training randomness (a DataLoader draws its
                # iterator seed from the global RNG): val_every and rank 0's extra work then
                # leave the trained weights unchanged.
                training_rng = rng_state()
                model.eval()
                t_val = time.perf_counter()
                with torch.no_grad():
                    metrics = dict(self.validate(model, epoch + 1))
                metrics["validate_s"] = round(time.perf_counter() - t_val, 3)
                model.train()
                set_rng_state(training_rng)
            record.update(broadcast_object(metrics))
        self.history.records.append(record)
        if self.show:
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: "
                + ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in record.items()
                    if isinstance(v, float) and k != "time_s"
                )
            )

    def save(self, epoch: int) -> None:
        """``checkpoint_last.pt`` and the logs (rank 0 writes; every rank's RNG state is
        gathered into it)."""
        out_dir, info, config, model = self.out_dir, self.info, self.config, self.model
        if out_dir is None:
            return
        states = [rng_state()]
        if info.distributed:
            states = [None] * info.world_size
            dist.all_gather_object(states, rng_state())
        if info.is_main:
            ckpt = {
                "model": model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": states,
                "loader": _loader_state(self.train_loader),
                "epoch": epoch + 1,
                "history": self.history.records,
                "amp": self.history.amp,
                "compile": self.history.compile,
                "fit_config": {k: str(v) for k, v in asdict(config).items() if k != "run_settings"},
                "run_settings": config.run_settings,
                "model_config": getattr(model, "config_dict", lambda: None)(),
                "model_name": getattr(model, "registry_name", None),
                # wall time of fit up to this checkpoint, over every resumed part
                "elapsed_s": self.elapsed_before + time.perf_counter() - self.fit_start,
            }
            try:
                save_checkpoint(ckpt, out_dir / CHECKPOINT_LAST)
                if config.keep_epoch_checkpoints:
                    save_checkpoint(ckpt, out_dir / f"checkpoint_epoch{epoch + 1}.pt")
                _write_logs(out_dir, self.history)
            except NotWritableError as err:
                kept = (
                    f"{CHECKPOINT_LAST} there keeps epoch {_last_epoch_saved(out_dir)}"
                    if (out_dir / CHECKPOINT_LAST).is_file()
                    else "no checkpoint was kept"
                )
                raise NotWritableError(
                    f"epoch {epoch + 1} trained but not saved: {err}; {kept} "
                    "(resume=True continues from it)"
                ) from None
        self.history.checkpoint = out_dir / CHECKPOINT_LAST
        barrier()


def _last_epoch_saved(out_dir: Path) -> str:
    try:
        return str(int(load_checkpoint(out_dir / CHECKPOINT_LAST)["epoch"]))
    except (ConfigError, KeyError, TypeError, ValueError):
        return "?"


def _last_epoch(history: History) -> int:
    """Epoch number of the last completed epoch in ``history`` (0 if none)."""
    return int(history.records[-1]["epoch"]) if history.records else 0


class _NonFinite(Exception):
    def __init__(self, what: str, values: dict[str, float]) -> None:
        super().__init__(what)
        self.what = what
        self.values = {k: round(v, 6) if math.isfinite(v) else v for k, v in values.items()}
