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


# What each logged loss term is (legend text); a term not listed is shown by its name.
LOSS_LABELS = {
    "loss": "loss: weighted total",
    "cls": "cls: cross-entropy over locations",
    "res": "res: restoration MSE (L_res)",
    "mat": "mat: restored vs clean features (L_mat)",
    "nce": "nce: InfoNCE satellite vs drone",
    "con": "con: triplet, strong vs weak aerial (L_con)",
    "ret1": "ret1: triplet, ground vs strong aerial",
    "ret2": "ret2: triplet, rolled ground vs rotated aerial",
    "infonce": "infonce: symmetric InfoNCE",
}
# Validation columns (without ``val_``) and their legend text.
VAL_LABELS = {"r1": "R@1", "R@1": "R@1", "R@1%": "R@1%"}


def _same(a: pd.Series, b: pd.Series) -> bool:
    return len(a) == len(b) and bool((a.to_numpy() == b.to_numpy()).all())


def training_curves_figure(
    histories: Mapping[str, pd.DataFrame], path: str | Path | None = None
) -> Figure:
    """One row per run: loss terms per epoch (log scale) and validation recall (%) per epoch.

    The legend says what each loss term is (:data:`LOSS_LABELS`). A curve equal to another at
    every epoch (R@1% is R@1 when 1 % of the gallery is one item; a run's only loss term is its
    total) is drawn dashed with open markers, so it does not hide under the other, and its
    label says so.
    """
    if not histories:
        raise ValueError("training_curves_figure: no histories to plot")
    fig = Figure(figsize=(12, 2.8 * len(histories)), layout="constrained")
    axes = fig.subplots(len(histories), 2, squeeze=False, width_ratios=[1.25, 1.0])
    for (name, hist), (ax_loss, ax_val) in zip(histories.items(), axes, strict=True):
        for col in loss_columns(hist):
            label = LOSS_LABELS.get(col, col)
            if col != "loss" and "loss" in hist and _same(hist[col], hist["loss"]):
                # the only term: the total itself; dashed so that both stay visible
                ax_loss.plot(
                    hist["epoch"], hist[col], ls="--", marker="s", ms=5, mfc="none", lw=1,
                    label=f"{label} (= total)",
                )  # fmt: skip
                continue
            ax_loss.plot(
                hist["epoch"], hist[col], marker=".", label=label, lw=2 if col == "loss" else 1
            )
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("loss (log scale)", fontsize=8)
        ax_loss.set_title(f"{name}: training losses", fontsize=9)
        ax_loss.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        vals = val_columns(hist)
        drawn: dict[str, pd.Series] = {}
        for col in vals:
            sub = hist[["epoch", col]].dropna()
            short = col.removeprefix("val_")
            label = VAL_LABELS.get(short, short)
            twin = next((k for k, v in drawn.items() if _same(v, sub[col])), None)
            if twin is None:
                ax_val.plot(sub["epoch"], sub[col], marker="o", ms=4, label=label)
            else:  # identical values: dashed, open markers, drawn over the first
                ax_val.plot(
                    sub["epoch"], sub[col], ls="--", marker="s", ms=7, mfc="none", lw=1.2,
                    label=f"{label} (= {twin} at every epoch)",
                )  # fmt: skip
            drawn[label] = sub[col]
        ax_val.set_title(f"{name}: validation recall", fontsize=9)
        ax_val.set_ylabel("recall (%)", fontsize=8)
        if vals:
            ax_val.legend(fontsize=7)
        for ax in (ax_loss, ax_val):
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    save_figure(fig, path)
    return fig
