"""Training curves: each run's loss terms and its validation recall, per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from geoloc_lib.viz.samples import save_figure

# History columns that are loss terms (the engine logs every key a model's training_losses
# returns, plus bookkeeping columns listed here so they are not plotted as losses).
NOT_LOSSES = {
    "epoch", "steps", "grad_norm", "images", "time_s", "images_per_s", "logit_scale",
    "data_s", "transform_s", "validate_s",
}  # fmt: skip


def loss_columns(history: pd.DataFrame) -> list[str]:
    """The loss terms of a run's history (``loss`` first), in logged order."""
    cols = [
        c
        for c in history.columns
        if c not in NOT_LOSSES and not c.startswith(("lr_", "val_")) and c != "loss"
    ]
    return (["loss"] if "loss" in history.columns else []) + cols


def val_columns(history: pd.DataFrame) -> list[str]:
    """Validation recall columns (``val_r1``, ``val_R@1``, ``val_R@1%``); AP is left out."""
    return [c for c in history.columns if c.startswith("val_") and "ap" not in c.lower()]


def training_curves_figure(
    histories: Mapping[str, pd.DataFrame], path: str | Path | None = None
) -> Figure:
    """One row per run: loss terms per epoch (log scale) and validation recall (%) per epoch."""
    if not histories:
        raise ValueError("training_curves_figure: no histories to plot")
    fig = Figure(figsize=(10, 2.6 * len(histories)), layout="constrained")
    axes = fig.subplots(len(histories), 2, squeeze=False)
    for (name, hist), (ax_loss, ax_val) in zip(histories.items(), axes, strict=True):
        for col in loss_columns(hist):
            ax_loss.plot(
                hist["epoch"], hist[col], marker=".", label=col, lw=2 if col == "loss" else 1
            )
        ax_loss.set_yscale("log")
        ax_loss.set_title(f"{name}: training losses", fontsize=9)
        ax_loss.legend(fontsize=7, ncol=2)
        vals = val_columns(hist)
        for col in vals:
            sub = hist[["epoch", col]].dropna()
            ax_val.plot(sub["epoch"], sub[col], marker="o", label=col.removeprefix("val_"))
        ax_val.set_title(f"{name}: validation recall (%)", fontsize=9)
        if vals:
            ax_val.legend(fontsize=7)
        for ax in (ax_loss, ax_val):
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    save_figure(fig, path)
    return fig
