"""Train and evaluate street-view → aerial models: GeoViewMatch and the InfoNCE baseline.

``train_street_model`` wires a :class:`PairSet` (CVACT or CVUSA layout, GeoSynth by default)
into the engine: datasets at the model's input sizes, random or geographic-neighbour batches
(``geo_neighbours``), AdamW (+ ASAM for GeoViewMatch), a per-step warmup + cosine schedule,
validation R@1 each epoch on pairs held out of the training split
(:func:`geoloc_lib.data.street.split_train_pairs`; the dataset's val and test splits are for
evaluation only), and the augmentations as the engine's ``batch_transform`` (once per step, so
ASAM's second pass sees the same views). The whole training step — the engine's loop calls
exactly this::

    batch = model.augment_batch(batch)                  # strong + weak views (GeoViewMatch)
    loss = model.training_losses(batch)["loss"]         # 0.5 L_con + 0.25 L_ret1 + 0.25 L_ret2
    loss.backward()
    optimizer.step(closure)                             # ASAM: w+eps, re-run forward/backward, w, AdamW
    scheduler.step()

``evaluate_street_model`` embeds the ground images (queries) and aerial tiles (gallery) of a split
and returns R@1/5/10/1% and, where UTM coordinates exist (CVACT), the meter-level metrics of
GeoViewMatch's Tables 2 and 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from torch import nn
from torch.utils.data import DataLoader

from geoloc_lib.core.config import check_int, check_number
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.seeding import make_generator, seed_everything
from geoloc_lib.data.sources import DataSources, street_pairs
from geoloc_lib.data.street import STREET_VAL_SPLIT, split_train_pairs
from geoloc_lib.data.street_torch import GeoNeighbourSampler, StreetPairDataset
from geoloc_lib.eval.street import evaluate_pair_dataset, subset_pairs
from geoloc_lib.models.baseline import PRESETS as BASELINE_PRESETS
from geoloc_lib.models.geoviewmatch import PRESETS as GVM_PRESETS
from geoloc_lib.training.engine import FitConfig, fit
from geoloc_lib.training.optim import build_optimizer, build_scheduler
from geoloc_lib.training.recipes import Preset, Recipe, check_preset, register_recipe

MODELS = ("geoviewmatch", "infonce_baseline")


@dataclass
class StreetTrainSettings:
    """Optimisation settings of a preset (architectures live in the models' configs)."""

    epochs: int
    batch_size: int
    lr_backbone: float
    lr_head: float
    weight_decay: float = 0.03
    asam: bool = False
    rho: float = 2.5
    eta: float = 0.01
    warmup_epochs: float = 0.0
    group_size: int = 4  # geographic neighbours per group in a batch (coords only)
    # True: batches of geographic neighbours (Sample4Geo's hard negatives) where coordinates
    # exist; False: a seeded random order (GeoViewMatch §4.3 trains on random batches).
    geo_neighbours: bool = False
    grad_clip: float | None = None
    amp: str = "auto"
    val_every: int = 1
    # validation subset of the pairs held out of the training split (evaluation splits are
    # evaluated in full, after training)
    max_val_pairs: int | None = 1000
    eval_batch_size: int = 64
    # Not fields (run.json keeps the fields only): both street recipes train with AdamW and a
    # per-step warm-up + cosine to 0 (GeoViewMatch §4.3; Sample4Geo's recipe for the baseline).
    optimizer: ClassVar[str] = "adamw"
    scheduler: ClassVar[str] = "cosine"
    step_size: ClassVar[int] = 0

    def __post_init__(self) -> None:
        owner = "training setting"
        for name in ("epochs", "batch_size", "group_size", "val_every", "eval_batch_size"):
            check_int(owner, name, getattr(self, name), 1)
        check_int(owner, "max_val_pairs", self.max_val_pairs, 1, none=True)
        for name in ("lr_backbone", "lr_head"):
            check_number(owner, name, getattr(self, name), strict=True)
        for name in ("weight_decay", "rho", "eta", "warmup_epochs"):
            check_number(owner, name, getattr(self, name))
        check_number(owner, "grad_clip", self.grad_clip, strict=True, none=True)

    def param_group_lr(self) -> dict[str, float]:
        """Rates of the models' param_groups: the backbone, and the FA modules + heads."""
        return {"backbone": self.lr_backbone, "head": self.lr_head}


TRAIN_PRESETS: dict[tuple[str, str], StreetTrainSettings] = {
    # Paper §4.3: batch 32, 200 epochs, AdamW (0.9, 0.999), cosine, lr 1e-4 Swin / 2e-4 FA+head,
    # ASAM. rho and eta are not given: GeoViewMatch follows TransGeo, which used rho = 2.5 with
    # AdamW; eta = 0.01 is ASAM's default. Weight decay is not given: 0.03 (TransGeo's).
    # Random batches (every GeoViewMatch preset, the field's default): the paper does not use
    # geographic-neighbour batches, and with a triplet loss over in-batch negatives neighbours
    # metres apart would be false negatives. geo_neighbours=True remains an explicit override.
    ("geoviewmatch", "paper"): StreetTrainSettings(200, 32, 1e-4, 2e-4, asam=True),
    # CPU: random-init tiny SwinV2 needs larger steps than fine-tuning. Validation recall takes
    # off only after ~10 epochs (measured: 8 epochs R@1 0.6 %, 60 epochs 6.7 %); 40 epochs is
    # ~8 min on 2 cores, inside the 15 min budget.
    ("geoviewmatch", "default"): StreetTrainSettings(
        40, 32, 1e-3, 2e-3, asam=True, rho=0.5, warmup_epochs=0.5, grad_clip=5.0
    ),
    ("geoviewmatch", "smoke"): StreetTrainSettings(1, 4, 1e-3, 2e-3, asam=True, rho=0.5),
    # Sample4Geo's recipe: AdamW lr 1e-3, 1 warmup epoch, cosine, batch 128, 40 epochs, and
    # batches of geographic neighbours as hard negatives, which is part of that recipe (the
    # baseline stands for Sample4Geo, so it keeps them in every preset). Its InfoNCE targets
    # carry label smoothing 0.1, so a near-duplicate negative is not pushed to probability 0.
    ("infonce_baseline", "paper"): StreetTrainSettings(
        40, 128, 1e-3, 1e-3, warmup_epochs=1.0, geo_neighbours=True
    ),
    ("infonce_baseline", "default"): StreetTrainSettings(
        40, 32, 2e-3, 2e-3, warmup_epochs=0.5, grad_clip=5.0, geo_neighbours=True
    ),
    ("infonce_baseline", "smoke"): StreetTrainSettings(1, 4, 1e-3, 1e-3, geo_neighbours=True),
}


@dataclass
class StreetTrainResult:
    """What :func:`train_street_model` returns."""

    model: nn.Module
    history: pd.DataFrame
    checkpoint: Path | None
    out_dir: Path | None
    settings: StreetTrainSettings
    model_config: dict
    train_time_s: float
    amp: dict | None = None  # the precision fit trained with (AmpChoice.as_dict())
    compile: str | None = None  # the torch.compile backend fit trained with, or "off"


# The options of train_street_model (the "run" section of the overrides) and their defaults.
RUN_OPTIONS: dict[str, Any] = {
    "max_steps_per_epoch": None,
    "keep_epoch_checkpoints": False,
    "compile": False,
}


def make_street_sampler(
    n: int, coords: Any, settings: StreetTrainSettings, seed: int = 0
) -> GeoNeighbourSampler:
    """The epoch order: geographic-neighbour groups (with coordinates and ``geo_neighbours``)
    or a seeded random permutation (``GeoNeighbourSampler`` without coordinates)."""
    return GeoNeighbourSampler(
        n,
        settings.batch_size,
        coords if settings.geo_neighbours else None,
        group_size=settings.group_size,
        seed=seed,
    )


def train_street_model(
    sources_or_root: DataSources | str | Path,
    preset: Preset,
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    resume: bool | str | Path = False,
    *,
    run_settings: dict[str, Any] | None = None,
) -> StreetTrainResult:
    """Train GeoViewMatch (an ablation: its fields in ``preset.config``, e.g.
    ``preset_for("geoviewmatch", name, {"model": ablation_fields("BS+CL")})``) or the InfoNCE
    baseline, as the resolved ``preset`` (:func:`geoloc_lib.training.recipes.preset_for`) says:
    the model's config (``config``), the :class:`StreetTrainSettings` (``train``) and the
    options (``run``, defaults :data:`RUN_OPTIONS`).

    Checkpoints and ``history.csv`` go to ``out_dir``; ``resume=True`` continues from there
    (or ``resume=PATH`` from a given checkpoint, e.g. a ``checkpoint_epoch{N}.pt`` kept with
    the ``keep_epoch_checkpoints`` option). ``compile`` option: ``torch.compile`` of the
    training step (``FitConfig.compile``). ``run_settings``: what the caller trains, saved in
    each checkpoint; resuming refuses a checkpoint saved with other values
    (``FitConfig.run_settings``).
    """
    preset = check_preset(preset, MODELS, "train_street_model")
    settings, opts = preset.train, preset.run
    max_steps_per_epoch = opts["max_steps_per_epoch"]

    # The monitor reads pairs held out of the training split, never an evaluation split.
    train_pairs, val_pairs = split_train_pairs(street_pairs(sources_or_root, "train"))
    val_pairs = subset_pairs(val_pairs, settings.max_val_pairs)
    seed_everything(seed)
    net = preset.build()
    cfg = net.cfg
    small = cfg.ground_size[0] * cfg.ground_size[1] <= 128 * 640 // 4
    train_ds = StreetPairDataset(train_pairs, cfg.ground_size, cfg.aerial_size, cache=small)
    if len(train_ds) < settings.batch_size:
        raise ConfigError(
            f"{len(train_ds)} training pairs for batch_size={settings.batch_size}; lower batch_size"
        )
    sampler = make_street_sampler(len(train_ds), train_pairs.coords, settings, seed)
    loader = DataLoader(
        train_ds,
        batch_size=settings.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=0,
        generator=make_generator(seed),
    )
    optimizer = build_optimizer(net, settings)
    steps = len(loader) if max_steps_per_epoch is None else min(len(loader), max_steps_per_epoch)
    scheduler = build_scheduler(optimizer, settings, steps)
    val_ds = StreetPairDataset(val_pairs, cfg.ground_size, cfg.aerial_size, cache=small)

    def validate(m: nn.Module, epoch: int) -> dict[str, float]:
        metrics = evaluate_pair_dataset(m, val_ds, val_pairs, settings.eval_batch_size, device)
        return {"val_R@1": metrics["R@1"], "val_R@1%": metrics["R@1%"]}

    transform = net.batch_transform()
    config = FitConfig(
        epochs=settings.epochs,
        out_dir=out_dir,
        seed=seed,
        device=device,
        amp=settings.amp,
        grad_clip=settings.grad_clip,
        scheduler_interval="step",
        max_steps_per_epoch=max_steps_per_epoch,
        val_every=settings.val_every,
        resume=resume,
        keep_epoch_checkpoints=opts["keep_epoch_checkpoints"],
        progress=progress,
        preset=preset.name,
        fp32_cpu=preset.fp32_cpu,
        compile=opts["compile"],
        run_settings=run_settings,
    )
    t0 = time.perf_counter()
    history = fit(
        net,
        loader,
        optimizer,
        config,
        scheduler=scheduler,
        validate=validate,
        batch_transform=transform,
    )
    return StreetTrainResult(
        model=net,
        history=history.df,
        checkpoint=history.checkpoint,
        out_dir=Path(out_dir) if out_dir is not None else None,
        settings=settings,
        amp=history.amp,
        compile=history.compile,
        model_config=net.config_dict(),
        train_time_s=time.perf_counter() - t0,
    )


_CONFIGS = {"geoviewmatch": GVM_PRESETS, "infonce_baseline": BASELINE_PRESETS}
for _model in MODELS:
    register_recipe(
        Recipe(
            model=_model,
            task="street->aerial",
            settings=StreetTrainSettings,
            presets={p: s for (m, p), s in TRAIN_PRESETS.items() if m == _model},
            configs=_CONFIGS[_model],
            train=train_street_model,
            run_options=RUN_OPTIONS,
            val_split=STREET_VAL_SPLIT,
        )
    )
