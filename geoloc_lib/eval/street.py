"""Street -> aerial retrieval per split (GeoViewMatch, Sec. 4.1): R@1/5/10/1% on CVUSA / CVACT."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn
from torch.utils.data import DataLoader

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.data.sources import DataSources, street_pairs
from geoloc_lib.data.street_torch import StreetPairDataset, ViewDataset
from geoloc_lib.data.types import PairSet
from geoloc_lib.eval.features import extract_features
from geoloc_lib.eval.metrics import evaluate_pairs
from geoloc_lib.eval.uncertainty import interval_table
from geoloc_lib.models import load_model


def subset_pairs(pairs: PairSet, n: int | None) -> PairSet:
    if n is None or len(pairs) <= n:
        return pairs
    return PairSet(
        name=pairs.name,
        ground=pairs.ground[:n],
        aerial=pairs.aerial[:n],
        ids=pairs.ids[:n],
        coords=None if pairs.coords is None else pairs.coords[:n],
    )


def evaluate_pair_dataset(
    model: nn.Module,
    ds: StreetPairDataset,
    pairs: PairSet,
    batch_size: int,
    device: str,
    progress: bool = False,
    per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """Street->aerial metrics of ``model`` on a prepared pair dataset (both views embedded);
    ``per_query=True`` also returns the per-query table (see :func:`evaluate_pairs`)."""
    feats = {}
    for view in ("ground", "aerial"):
        loader = DataLoader(ViewDataset(ds, view), batch_size=batch_size, shuffle=False)
        feats[view], _ = extract_features(model, loader, view, device=device, progress=progress)
    return evaluate_pairs(
        feats["ground"],
        feats["aerial"],
        gallery_coords=pairs.coords,
        progress=progress,
        per_query=per_query,
    )


def evaluate_street_model(
    checkpoint_or_model: str | Path | nn.Module,
    sources: DataSources | str | Path | PairSet,
    split: str = "test",
    *,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = False,
    per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """R@1/5/10/1% (and meter-level metrics with coordinates) of street→aerial retrieval.

    ``checkpoint_or_model``: a model with ``embed(images, view)`` (GeoViewMatch, the baseline,
    :class:`StreetRawPixelMatcher`) or a checkpoint path. Input sizes come from
    ``model.input_size(view)``. ``per_query=True`` also returns one row per query (``rank`` and
    the per-query metrics; :func:`geoloc_lib.eval.metrics.evaluate_pairs`).
    """
    model = (
        checkpoint_or_model
        if isinstance(checkpoint_or_model, nn.Module)
        else load_model(checkpoint_or_model, expect=("geoviewmatch", "infonce_baseline"))
    )
    pairs = sources if isinstance(sources, PairSet) else street_pairs(sources, split)
    ds = StreetPairDataset(pairs, model.input_size("ground"), model.input_size("aerial"))
    return evaluate_pair_dataset(model, ds, pairs, batch_size, device, progress, per_query)


# GeoViewMatch's Tables 1-3 (and its ablations, Tables 5-6) are on the validation split: CVUSA's
# 8,884 val pairs and CVACT's val set "of the same size" (§4.1), i.e. CVACT val (ACT_small), not
# ACT_test (~92.8k pairs), which is evaluated and reported separately.
PAPER_TABLE_SPLIT = "val"


def evaluate_street_splits(
    models: dict[str, nn.Module],
    sources: DataSources | str | Path,
    splits: tuple[str, ...] = ("val", "test"),
    *,
    dataset: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = False,
    per_query: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Long results of every model on every split: ``method, dataset, split, n_pairs`` + metrics,
    then each metric's 95 % bootstrap interval over the queries (``"R@1 lo"``, ``"R@1 hi"``, ...;
    :mod:`geoloc_lib.eval.uncertainty`). ``per_query=True`` returns ``(long, per_query)``, the
    second with one row per (method, split, query): ``query``, ``rank`` and the metrics.

    The paper's tables are the rows with ``split == PAPER_TABLE_SPLIT``; ``test`` (CVACT's
    ACT_test) is a separate, labelled result. A split the dataset does not have is left out
    (CVUSA has train/val only: its "test" would repeat val).
    """
    if isinstance(sources, DataSources):
        available = sources.street_splits
    else:  # a CVUSA root (splits/) has no test split; street_pairs maps "test" to its val
        cvusa = (Path(sources) / "splits").is_dir()
        available = ("train", "val") if cvusa else ("train", "val", "test")
    rows, frames = [], []
    for split in splits:
        if split not in available:
            continue
        pairs = street_pairs(sources, split)
        for name, model in models.items():
            metrics, table = evaluate_street_model(
                model, pairs, batch_size=batch_size, device=device, progress=progress,
                per_query=True,
            )  # fmt: skip
            rows.append(
                {"method": name, "dataset": dataset or pairs.name, "split": split,
                 "n_pairs": len(pairs), **metrics}
            )  # fmt: skip
            table.insert(0, "query", range(len(table)))
            table.insert(0, "split", split)
            table.insert(0, "method", name)
            frames.append(table)
    if not rows:
        raise ConfigError(f"evaluate_street_splits: none of {splits} exists in {sources}")
    long = pd.DataFrame(rows)
    per_q = pd.concat(frames, ignore_index=True)
    keys = ["method", "split"]
    metrics = [c for c in per_q.columns if c not in (*keys, "query", "rank")]
    bounds = interval_table(per_q, metrics, by=keys).drop(columns=[*metrics, "n_queries"])
    long = long.merge(bounds, on=keys, how="left", sort=False)
    return (long, per_q) if per_query else long
