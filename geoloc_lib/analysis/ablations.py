"""The ablation grid of notebook 04: variants -> ``train_run`` -> evaluation -> tidy tables.

GeoViewMatch (Remote Sensing 2024, 16, 678; Tables 5 and 6): the base model with and without contrastive learning
(CL) and multi-scale features (MF), and the Swin stages feeding the descriptor. Two labels of
the paper name one configuration each, and the paper's own numbers show it (its Table 6 rows f4
and f4+f3 repeat Table 5's BS+CL and BS+CL+MF): a variant whose effective configuration
(contrastive or not, stages used) equals an earlier one's reuses that run.

MCGF (the paper has no ablation table): the full model, the matching branch alone (w/o
restoration) and the restoration branch without the noising (w/o diffusion, :data:`NO_DIFFUSION`).

Every variant trains at the same budget and seed into ``runs_dir/ablations/<run>``. A folder that
already holds a finished run with the same ``run.json`` settings is loaded, not retrained; an
interrupted one with the same settings resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.data.sources import DataSources
from geoloc_lib.training import runs
from geoloc_lib.training.runs import Run

ABLATION_DIR = "ablations"
STREET_METRICS = ("R@1", "R@5", "R@10", "R@1%")
MCGF_METRICS = ("R@1", "R@5", "R@10", "AP")

TABLE5 = ("BS", "BS+CL", "BS+MF", "BS+CL+MF")
TABLE6 = ("f4", "f4+f3", "f4+f3+f2", "f4+f3+f2+f1")

# "w/o diffusion": our reading of models/mcgf.py. Training draws t ~ U[0, t_max), so t_max = 1
# always uses t = 0, where z_0 = sqrt(ab_0) y + sqrt(1 - ab_0) eps with 1 - ab_0 = beta_1 = 1e-4
# (noise std 0.01 on [-1, 1] pixels, about 1/400 of the range): the noising is off in all but
# name. Inference starts DDIM at t_start = 0 with one step: a single deterministic pass of the
# restoration network on the weathered query. Everything else (encoder, restoration module,
# L_res, L_mat, the matching branch) is unchanged.
NO_DIFFUSION: dict[str, Any] = {"t_max": 1, "t_start": 0, "infer_steps": 1}

# GeoViewMatch (Remote Sens. 2024) Tables 5 and 6: R@1, R@5, R@10, R@1%. The text's Table 5 prints
# "9853" for BS's CVUSA R@5 (a lost decimal point): 98.53.
PAPER_TABLE5: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CVUSA": {
        "BS": (94.99, 98.53, 99.71, 99.84),
        "BS+CL": (95.28, 98.77, 99.20, 99.81),
        "BS+MF": (95.32, 98.81, 99.31, 99.82),
        "BS+CL+MF": (95.52, 99.22, 99.67, 99.83),
    },
    "CVACT": {
        "BS": (88.65, 95.27, 96.67, 98.39),
        "BS+CL": (89.17, 95.81, 96.92, 98.41),
        "BS+MF": (89.25, 95.67, 96.59, 98.41),
        "BS+CL+MF": (89.71, 95.93, 96.92, 98.48),
    },
}
PAPER_TABLE6: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CVUSA": {
        "f4": (95.28, 98.77, 99.20, 99.81),
        "f4+f3": (95.52, 99.22, 99.67, 99.83),
        "f4+f3+f2": (95.38, 98.68, 99.25, 99.81),
        "f4+f3+f2+f1": (50.11, 71.65, 78.18, 91.86),
    },
    "CVACT": {
        "f4": (89.17, 95.81, 96.92, 98.41),
        "f4+f3": (89.71, 95.93, 96.92, 98.48),
        "f4+f3+f2": (89.25, 95.67, 96.57, 98.39),
        "f4+f3+f2+f1": (35.12, 59.06, 68.66, 91.37),
    },
}
# GeoViewMatch Table 4 (RTX 4090, batch 16): GFLOPs, GPU memory (GB), inference time (ms),
# parameters (M), CVACT R@1.
PAPER_TABLE4: dict[str, tuple[float, float, float, float, float]] = {
    "SAFA": (42.24, 9.63, 120.0, 81.66, 81.03),
    "L2LTR": (44.16, 15.50, 82.0, 195.90, 84.89),
    "GeoViewMatch": (9.7616, 11.40, 42.0, 57.47, 89.71),
}
# The paper changes of Table 5/6 we test: (name, from variant, to variant).
STREET_CLAIMS = (
    ("+ contrastive learning", "BS", "BS+CL"),
    ("+ multi-scale features", "BS", "BS+MF"),
    ("+ both (full model)", "BS", "BS+CL+MF"),
    ("f4 -> f4+f3", "f4", "f4+f3"),
    ("f4+f3 -> f4+f3+f2", "f4+f3", "f4+f3+f2"),
    ("f4+f3+f2 -> all four stages", "f4+f3+f2", "f4+f3+f2+f1"),
)


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: its label, how to train it, and the run folder it uses."""

    label: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    run_name: str = ""
    # config fields changed on the trained model before evaluation (test-time ablations)
    eval_overrides: dict[str, Any] = field(default_factory=dict)


def geoviewmatch_variants(
    labels: tuple[str, ...] = TABLE5 + TABLE6, preset: str = "default"
) -> list[Variant]:
    """GeoViewMatch ablations; labels with the same effective configuration share one run,
    named after the first such label in ``ABLATIONS`` (f4 -> BS+CL, whatever ``labels`` holds)."""
    from geoloc_lib.models.geoviewmatch import ABLATIONS, GeoViewMatchConfig

    def key(label: str) -> tuple:
        cfg = GeoViewMatchConfig.preset(preset, **ABLATIONS[label])
        # all that differs between the variants
        return (cfg.contrastive, cfg.used_stages, cfg.share_backbone)

    canonical: dict[tuple, str] = {}
    for label in ABLATIONS:
        canonical.setdefault(key(label), label)
    out: list[Variant] = []
    for label in labels:
        if label not in ABLATIONS:
            raise ConfigError(
                f"GeoViewMatch ablations: {choices_message('variant', label, ABLATIONS)}"
            )
        run = canonical[key(label)]
        out.append(Variant(label, "geoviewmatch", {"ablation": run}, run))
    return out


def mcgf_variants() -> list[Variant]:
    """MCGF full, w/o restoration (the matching branch alone), w/o diffusion (:data:`NO_DIFFUSION`)
    and two test-time variants of the full model's run: queries not restored (what the
    restoration pass adds) and the last DDIM step's features only (what pooling the steps,
    the paper's "multiple granularities", adds)."""
    return [
        Variant("MCGF (full)", "mcgf", {}, "mcgf"),
        Variant("w/o restoration", "mcgf_matching_only", {}, "mcgf_matching_only"),
        Variant("w/o diffusion", "mcgf", dict(NO_DIFFUSION), "mcgf_no_diffusion"),
        # the full model's run, its drone queries matched without the restoration pass
        Variant("queries not restored", "mcgf", {}, "mcgf", {"restore_queries": False}),
        Variant("last step only", "mcgf", {}, "mcgf", {"pool_steps": False}),
    ]


def run_settings(variant: Variant, preset: str, epochs: int, seed: int) -> dict[str, Any]:
    """The ``run.json`` fields that must match for a finished run of ``variant`` to be reused."""
    return runs.run_settings(variant.model, preset, epochs, seed, variant.overrides)


def ensure_run(
    variant: Variant,
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: int,
    seed: int,
    device: str = "auto",
    progress: bool | None = None,
) -> tuple[Run, bool]:
    """Load ``runs_dir/ablations/<run>`` if it holds this finished run, else train it.

    A variant without overrides (a main model) first looks for 01_train's run of the model,
    ``runs_dir/<model>``: trained with the same settings, it is that run, reused as it is.
    Returns ``(run, trained_now)``; the caching itself is :func:`geoloc_lib.training.runs.ensure_run`.
    """
    if int(epochs) < 1:
        raise ConfigError(f"ablation epochs must be >= 1, got {epochs}")
    if not variant.overrides:
        want = run_settings(variant, preset, epochs, seed)
        main = runs.finished_run(Path(runs_dir) / variant.model, want)
        if main is not None:
            return main, False
    return runs.ensure_run(
        variant.model,
        sources,
        Path(runs_dir) / ABLATION_DIR,
        name=variant.run_name,
        preset=preset,
        epochs=epochs,
        seed=seed,
        overrides=variant.overrides,
        device=device,
        progress=progress,
    )


def street_eval_split(sources: DataSources) -> str:
    """The split the paper's Tables 5/6 use: CVACT val / CVUSA val on real data; GeoSynth's
    larger ``test`` split (its val split only monitors training)."""
    return "test" if sources.dataset == "geosynth" else "val"


def run_street_ablations(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: int,
    seed: int = 0,
    labels: tuple[str, ...] = TABLE5 + TABLE6,
    split: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> pd.DataFrame:
    """Train (or load) and evaluate each GeoViewMatch variant on street->aerial retrieval.

    One row per label: ``variant``, ``run``, ``trained_now``, ``epochs``, ``queries`` and
    R@1/R@5/R@10/R@1% in percent. A run shared by two labels is evaluated once.
    """
    from geoloc_lib.eval.street import evaluate_street_model

    split = split or street_eval_split(sources)
    pairs = sources.street(split)
    done: dict[str, tuple[dict[str, float], bool]] = {}
    rows = []
    for v in geoviewmatch_variants(labels, preset):
        if v.run_name not in done:
            run, trained = ensure_run(
                v,
                sources,
                runs_dir,
                preset=preset,
                epochs=epochs,
                seed=seed,
                device=device,
                progress=progress,
            )
            with warnings.catch_warnings():
                # Short ablation runs often leave ties; the table's "tied" column reports them
                # per variant instead of one warning per run.
                warnings.filterwarnings("ignore", "evaluate_pairs: the true match", UserWarning)
                metrics = evaluate_street_model(run.model, pairs, device=device)
            done[v.run_name] = (metrics, trained)
        metrics, trained = done[v.run_name]
        rows.append(
            {
                "variant": v.label,
                "run": v.run_name,
                "trained_now": trained,
                "epochs": int(epochs),
                "queries": len(pairs),
                **{m: float(metrics[m]) for m in STREET_METRICS},
                "tied": int(metrics["n_tied"]),  # queries whose true match ties another tile
            }
        )
    return pd.DataFrame(rows)


def run_mcgf_ablations(
    sources: DataSources,
    runs_dir: str | Path,
    *,
    preset: str,
    epochs: int,
    seed: int = 0,
    max_queries: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> pd.DataFrame:
    """Train (or load) and evaluate the MCGF variants per weather (drone->satellite).

    Tidy: one row per (variant, condition) including the ``mean`` over the ten conditions, with
    R@1/R@5/R@10/AP in percent; ``max_queries`` subsamples the drone queries (fixed seed).
    """
    from geoloc_lib.eval.university import evaluate_mcgf

    frames = []
    for v in mcgf_variants():
        run, trained = ensure_run(
            v, sources, runs_dir, preset=preset, epochs=epochs, seed=seed,
            device=device, progress=progress,
        )  # fmt: skip
        model = run.model
        if v.eval_overrides:
            model = copy.deepcopy(model)
            for key, value in v.eval_overrides.items():
                setattr(model.cfg, key, value)
        res = evaluate_mcgf(
            model,
            sources,
            tasks=("drone->satellite",),
            max_queries=max_queries,
            device=device,
            progress=progress,
        )
        res = res[["condition", *MCGF_METRICS]].copy()
        res.insert(0, "variant", v.label)
        res.insert(1, "run", v.run_name)
        res.insert(2, "trained_now", trained)
        res.insert(3, "epochs", int(epochs))
        frames.append(res)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- tables


def ablation_table(results: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """Our rows of a paper table (``Method`` + R@1/R@5/R@10/R@1%) in the paper's order."""
    missing = [lab for lab in labels if lab not in set(results["variant"])]
    if missing:
        raise ConfigError(f"ablation_table: no results for variants {missing}")
    df = results.set_index("variant").loc[list(labels)].reset_index()
    return df.rename(columns={"variant": "Method"})[["Method", "run", *STREET_METRICS]]


def paper_ablation_table(table: int) -> pd.DataFrame:
    """The paper's Table 5 or 6, one row per (dataset, method), labelled ``paper, <dataset>``."""
    source = {5: PAPER_TABLE5, 6: PAPER_TABLE6}.get(table)
    if source is None:
        raise ConfigError(f"paper_ablation_table: table must be 5 or 6, got {table}")
    rows = [
        {"Source": f"paper, {ds}", "Method": m, **dict(zip(STREET_METRICS, vals, strict=True))}
        for ds, methods in source.items()
        for m, vals in methods.items()
    ]
    return pd.DataFrame(rows)


def _paper_r1(label: str) -> dict[str, float]:
    for table in (PAPER_TABLE5, PAPER_TABLE6):
        if label in table["CVUSA"]:
            return {ds: table[ds][label][0] for ds in table}
    raise ConfigError(f"no paper numbers for variant {label!r}")


def ablation_claims(results: pd.DataFrame) -> pd.DataFrame:
    """Each change of Tables 5/6: R@1 difference ours vs the paper's, and whether the sign agrees.

    ``resolution`` is one query in percent: a difference below it is no difference at all.
    """
    r1 = results.set_index("variant")["R@1"]
    queries = int(results["queries"].iloc[0])
    rows = []
    for name, a, b in STREET_CLAIMS:
        if a not in r1 or b not in r1:
            continue
        ours = float(r1[b] - r1[a])
        pa, pb = _paper_r1(a), _paper_r1(b)
        paper = {ds: round(pb[ds] - pa[ds], 2) for ds in pa}
        signs = {np.sign(v) for v in paper.values()}
        if ours == 0:
            verdict = "no change"
        elif len(signs) == 1 and np.sign(ours) in signs:
            verdict = "same direction"
        else:
            verdict = "opposite direction"
        rows.append(
            {
                "change": name,
                "from": a,
                "to": b,
                "ours ΔR@1": ours,
                "paper CVUSA ΔR@1": paper["CVUSA"],
                "paper CVACT ΔR@1": paper["CVACT"],
                "resolution": 100.0 / queries,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def mcgf_weather_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per-weather R@1 and AP, one row per condition (the ten, then ``mean``), variants as
    column groups ``<variant> R@1`` / ``<variant> AP``."""
    order = list(dict.fromkeys(results["condition"]))
    variants = list(dict.fromkeys(results["variant"]))
    wide = results.pivot(index="condition", columns="variant", values=["R@1", "AP"])
    cols = {f"{v} {m}": wide[(m, v)] for v in variants for m in ("R@1", "AP")}
    return pd.DataFrame(cols).loc[order].reset_index()


def mcgf_ablation_deltas(results: pd.DataFrame) -> pd.DataFrame:
    """What each MCGF part adds: full minus the ablated variant, mean R@1/AP and the number of
    weather conditions (of ten) where the full model's R@1 is higher."""
    per = results.pivot(index="condition", columns="variant", values=["R@1", "AP"])
    weather = [c for c in per.index if c != "mean"]
    full = "MCGF (full)"
    rows = []
    for part, ablated in (
        ("restoration branch", "w/o restoration"),
        ("diffusion", "w/o diffusion"),
        ("restoration pass at test", "queries not restored"),
        ("pooling the DDIM steps", "last step only"),
    ):
        if ablated not in per["R@1"].columns:
            continue
        d = per["R@1"][full] - per["R@1"][ablated]
        rows.append(
            {
                "part": part,
                "compared with": ablated,
                "mean ΔR@1": float(d["mean"]),
                "mean ΔAP": float(per["AP"][full]["mean"] - per["AP"][ablated]["mean"]),
                "conditions better": f"{int((d[weather] > 0).sum())}/{len(weather)}",
                "conditions worse": f"{int((d[weather] < 0).sum())}/{len(weather)}",
            }
        )
    return pd.DataFrame(rows)


def cost_comparison(costs: pd.DataFrame) -> pd.DataFrame:
    """:func:`geoloc_lib.analysis.cost.cost_table` in Table 4's layout, the paper's GeoViewMatch
    row beside ours (``paper ...`` columns on the row ``model == "geoviewmatch"``, preset
    ``paper``; NaN elsewhere). Our ``GFLOPs/pair`` are FLOPs (2 per multiply-add) of a query and
    a gallery image; see :mod:`geoloc_lib.analysis.cost` for the gap to the paper's 9.76."""
    paper = PAPER_TABLE4["GeoViewMatch"]
    df = costs.rename(
        columns={
            "params_m": "params (M)",
            "inference_params_m": "inference params (M)",
            "gflops": "GFLOPs/pair",
            "gmacs": "GMACs/pair",
            "gflops_query": "GFLOPs/query image",
            "gflops_gallery": "GFLOPs/gallery image",
            "tensor_mem_gb": "tensor memory (GB, b16)",
            "latency_ms": "latency (ms, b16)",
            "peak_mem_gb": "CUDA peak (GB, b16)",
        }
    )
    # the paper's configuration only (two backbones), not variants such as a shared backbone
    is_gvm = ((df["model"] == "geoviewmatch") & (df["preset"] == "paper")).to_numpy()
    nan = float("nan")
    df["paper params (M)"] = np.where(is_gvm, paper[3], nan)
    df["paper GFLOPs"] = np.where(is_gvm, paper[0], nan)
    df["paper memory (GB)"] = np.where(is_gvm, paper[1], nan)
    df["paper latency (ms)"] = np.where(is_gvm, paper[2], nan)
    return df
