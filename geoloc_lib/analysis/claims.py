"""The papers' claims that GeoSynth can test, and their verdicts from runs repeated over seeds.

:data:`CLAIMS` is the registry: one :class:`Claim` per testable statement, each a comparison of
two variants of the seeded grids of :mod:`geoloc_lib.analysis.ablations` that differ in one
thing, with the claimed sign of ``a - b`` and a role:

- ``primary``: one claim per section of a paper, declared before any result is read. MCGF §2.1
  (the training noise helps), §2.3 (the restorer moves a weathered query towards the clean
  image), §2.4 (pooling the DDIM steps helps), Table 1 (the restoration branch helps retrieval
  under weather); GeoViewMatch §3.2 (multi-scale features), §3.3 (contrastive learning),
  Table 1 (beats the InfoNCE baseline, with the training-compute ratio).
- ``secondary``: the same sections in finer detail (each weather condition, the mixed set, the
  DDIM pass count, the stages of Table 6, restoration quality in PSNR); a family of its own.
- ``measured``: each CPU-size deviation from the paper's method (:data:`DEVIATIONS`) and the
  clean-query oracle, against the paper's method: an effect with its interval, no verdict.

:func:`claims_table` turns per-seed, per-query results into one row per claim: the effect (mean
over seeds of the per-seed paired difference, in the metric's unit), its seed-level Student-t
95 % interval and p-value (:func:`geoloc_lib.eval.uncertainty.seed_effect`), the p-value adjusted
within the claim's family (Holm), each variant's mean ± std over seeds, the training-compute
ratio of the two runs where both trained, and the verdict (*supported*, *not reproduced*,
*undecided*; :func:`geoloc_lib.eval.uncertainty.verdict`) with what was tested (:data:`SCOPE`).

Where the comparison is set: MCGF on drone->satellite R@1, per query averaged over the ten
conditions ("mean"), one condition, or the mixed-weather set of MCGF Table 1; the restorer on
the per-image correlation (or PSNR) of its output with the clean image; GeoViewMatch on
street->aerial R@1 of the split its ablations use (``street_eval_split``), with the
meter-level recall (top-1 within 36 m, GeoViewMatch Table 2) beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from geoloc_lib.analysis.ablations import (
    CLEAN_QUERY,
    DEVIATIONS,
    FULL,
    GEO_NEIGHBOURS,
    INFONCE_BASELINE,
    LAST_STEP,
    NO_NOISE,
    NO_NOISE_ONE_PASS,
    NOT_RESTORED,
    ONE_PASS,
    RAW_PIXELS,
    WITHOUT_RESTORATION,
    SeedResults,
)
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.uncertainty import (
    MIN_SEEDS,
    NOT_TESTED,
    SCOPE,
    adjust_p_values,
    seed_effect,
    verdict,
)
from geoloc_lib.weather.synth import CONDITIONS

MCGF, GVM, RESTORER = "MCGF", "GeoViewMatch", "MCGF restorer"
MEAN = "mean"  # per query, the mean over the ten weather conditions
MIXED = "mixed"
# per query, the mean over the nine conditions with weather ("normal" left out): the restorer's
# claims are about weathered queries, and a clean query's PSNR against itself is unbounded
WEATHERS = "mean of 9 weathers"
PRIMARY, SECONDARY, MEASURED = "primary", "secondary", "measured"
ROLES = (PRIMARY, SECONDARY, MEASURED)
ADJUSTMENT = "holm"  # within each family (primary, secondary)
# The restorer's quality as two "variants" of the per-query restoration table.
WEATHERED, RESTORED, RESTORED_ONE_PASS = (
    "weathered input",
    "restored (last step)",
    "restored (one pass)",
)
METER_METRIC = "top1_within_36m"  # GeoViewMatch Table 2's meter-level recall, beside R@1


@dataclass(frozen=True)
class Claim:
    """One claim: ``a`` compared with ``b`` on ``metric`` where ``condition`` says; the paper
    claims ``a - b`` has the sign ``direction`` (+1: a is better, -1: a is worse). ``role``:
    primary, secondary or measured (module docstring); ``results``: which seeded results it
    reads (MCGF, MCGF restorer or GeoViewMatch)."""

    id: str
    paper: str  # MCGF | GeoViewMatch
    where: str  # the place in the paper the claim comes from
    statement: str
    metric: str
    a: str
    b: str
    condition: str  # MCGF: a weather condition, "mean" or "mixed"; GeoViewMatch: "split"
    direction: int = 1
    role: str = PRIMARY
    results: str = ""  # default: the paper's retrieval results

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"claim {self.id!r}: role must be one of {ROLES}, got {self.role!r}")
        if not self.results:
            object.__setattr__(self, "results", self.paper)


def _mcgf_claims() -> list[Claim]:
    rows = [
        Claim(
            "mcgf-restoration", MCGF, "MCGF §2 / Table 1",
            "the restoration branch helps retrieval under weather (mean of the ten conditions)",
            "R@1", FULL, WITHOUT_RESTORATION, MEAN,
        ),
        Claim(
            "mcgf-diffusion", MCGF, "MCGF §2.1 / eqs. 1-3",
            "training the restorer on noised inputs (the diffusion) helps retrieval",
            "R@1", FULL, NO_NOISE, MEAN,
        ),
        Claim(
            "mcgf-restorer-quality", MCGF, "MCGF §2.3",
            "the restorer moves a weathered query towards the clean image (per-image "
            "correlation with the clean image, mean of the nine weather conditions)",
            "corr", RESTORED, WEATHERED, WEATHERS, results=RESTORER,
        ),
        Claim(
            "mcgf-pooling", MCGF, "MCGF §2.4",
            "pooling the features of every DDIM step ('multiple granularities') helps",
            "R@1", FULL, LAST_STEP, MEAN,
        ),
    ]  # fmt: skip
    rows += [
        Claim(
            f"mcgf-restoration-{c}",
            MCGF,
            "MCGF §2 / Table 1",
            f"the restoration branch helps retrieval under {c}",
            "R@1",
            FULL,
            WITHOUT_RESTORATION,
            c,
            role=SECONDARY,
        )  # fmt: skip
        for c in CONDITIONS
    ]
    rows += [
        Claim(
            "mcgf-beats-matching-only", MCGF, "MCGF Table 1",
            "MCGF beats its matching branch alone under mixed weather", "R@1", FULL,
            WITHOUT_RESTORATION, MIXED, role=SECONDARY,
        ),
        Claim(
            "mcgf-beats-raw-pixels", MCGF, "MCGF Table 1",
            "MCGF beats raw pixels under mixed weather", "R@1", FULL, RAW_PIXELS, MIXED,
            role=SECONDARY,
        ),
        Claim(
            "mcgf-restoration-pass", MCGF, "MCGF §2.3",
            "restoring the query at test helps MCGF's own matcher", "R@1", FULL, NOT_RESTORED,
            MEAN, role=SECONDARY,
        ),
        Claim(
            "mcgf-ddim-steps", MCGF, "MCGF §2.4",
            "several DDIM steps (pooled) beat one restoration pass", "R@1", FULL, ONE_PASS,
            MEAN, role=SECONDARY,
        ),
        Claim(
            "mcgf-diffusion-one-pass", MCGF, "MCGF §2.1 / eqs. 1-3",
            "the training noise helps at one restoration pass", "R@1", ONE_PASS,
            NO_NOISE_ONE_PASS, MEAN, role=SECONDARY,
        ),
        Claim(
            "mcgf-restorer-psnr", MCGF, "MCGF §2.3",
            "the restorer raises the PSNR of a weathered query against the clean image "
            "(mean of the nine weather conditions)", "psnr", RESTORED, WEATHERED, WEATHERS,
            role=SECONDARY, results=RESTORER,
        ),
    ]  # fmt: skip
    rows += [
        Claim(
            f"mcgf-deviation-{dev.run_name.removeprefix('mcgf_')}",
            MCGF,
            "CPU-size deviation",
            f"{dev.label} instead of the paper's method",
            "R@1",
            dev.label,
            FULL,
            MEAN,
            role=MEASURED,
        )  # fmt: skip
        for dev in DEVIATIONS
    ]
    rows.append(
        Claim(
            "mcgf-clean-query-oracle", MCGF, "oracle ceiling",
            "MCGF's matcher on the clean query (no weather) against the restored one",
            "R@1", CLEAN_QUERY, FULL, MEAN, role=MEASURED,
        )
    )  # fmt: skip
    return rows


def _geoviewmatch_claims() -> list[Claim]:
    return [
        Claim(
            "gvm-multiscale", GVM, "GeoViewMatch §3.2 / Table 5",
            "multi-scale features help (BS -> BS+MF)", "R@1", "BS+MF", "BS", "split",
        ),
        Claim(
            "gvm-contrastive", GVM, "GeoViewMatch §3.3 / Table 5",
            "contrastive learning helps (BS -> BS+CL)", "R@1", "BS+CL", "BS", "split",
        ),
        Claim(
            "gvm-beats-infonce", GVM, "GeoViewMatch Table 1",
            "GeoViewMatch beats the InfoNCE baseline at the same number of epochs "
            "(compute ratio in its row)", "R@1", "BS+CL+MF", INFONCE_BASELINE.label, "split",
        ),
        Claim(
            "gvm-stages34-vs-4", GVM, "GeoViewMatch Table 6",
            "stages 3+4 are best: f4+f3 beats f4", "R@1", "f4+f3", "f4", "split",
            role=SECONDARY,
        ),
        Claim(
            "gvm-stages34-vs-234", GVM, "GeoViewMatch Table 6",
            "stages 3+4 are best: f4+f3 beats f4+f3+f2", "R@1", "f4+f3", "f4+f3+f2", "split",
            role=SECONDARY,
        ),
        Claim(
            "gvm-stage1-hurts", GVM, "GeoViewMatch Table 6",
            "adding stage 1 hurts (f4+f3+f2 -> all four stages)", "R@1", "f4+f3+f2+f1",
            "f4+f3+f2", "split", direction=-1, role=SECONDARY,
        ),
        Claim(
            "gvm-deviation-geo-neighbours", GVM, "training-batch variant",
            "geographic-neighbour batches instead of the paper's random batches", "R@1",
            GEO_NEIGHBOURS.label, "BS+CL+MF", "split", role=MEASURED,
        ),
    ]  # fmt: skip


CLAIMS: tuple[Claim, ...] = (*_mcgf_claims(), *_geoviewmatch_claims())


def claims_registry(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """The registry as a table, one row per claim (``direction`` as ``a > b`` / ``a < b``)."""
    rows = []
    for c in claims:
        row = asdict(c)
        row["direction"] = "a > b" if c.direction > 0 else "a < b"
        rows.append(row)
    return pd.DataFrame(rows)


def restoration_seed_results(per_query: pd.DataFrame) -> SeedResults:
    """The restorer's per-query quality (:func:`geoloc_lib.eval.restoration.restoration_quality`
    with a ``seed`` column) as seeded results of three variants: the weathered input (step 0),
    the last DDIM step's output and the first step's (one pass), per seed, condition and query.
    """
    need = {"seed", "condition", "query", "step"}
    missing = need - set(per_query.columns)
    if missing:
        raise ConfigError(
            f"restoration results lack columns {sorted(missing)}; pass restoration_quality's "
            "per-query table with a seed column"
        )
    step = per_query["step"].astype(int)
    last = step.groupby([per_query["seed"], per_query["condition"]]).transform("max")
    parts = []
    for label, keep in (
        (WEATHERED, step == 0), (RESTORED, (step == last) & (step > 0)),
        (RESTORED_ONE_PASS, step == 1),
    ):  # fmt: skip
        parts.append(per_query[keep].assign(variant=label))
    frame = pd.concat(parts, ignore_index=True)
    metrics = [m for m in ("psnr", "ssim", "corr") if m in frame.columns]
    summary = frame.groupby(["seed", "variant", "condition"], sort=False)[metrics].mean()
    return SeedResults(summary.reset_index(), frame)


def _per_seed_values(results: SeedResults, claim: Claim, variant: str) -> dict[int, pd.Series]:
    """Per seed, ``variant``'s per-query values of the claim's metric, indexed by query (for a
    ``mean`` claim: each query's mean over the ten conditions)."""
    pq = results.per_query
    if variant not in set(pq["variant"]):
        raise ConfigError(
            f"claim {claim.id!r}: no results for variant {variant!r}; run it in the seeded grid "
            f"(present: {sorted(set(pq['variant']))})"
        )
    if claim.metric not in pq.columns:
        raise ConfigError(f"claim {claim.id!r}: per-query results lack metric {claim.metric!r}")
    rows = pq[pq["variant"] == variant]
    if "condition" in pq.columns and claim.condition != "split":
        if claim.condition in (MEAN, WEATHERS):
            over = (
                CONDITIONS if claim.condition == MEAN else [c for c in CONDITIONS if c != "normal"]
            )
            rows = rows[rows["condition"].isin(over)]
            if rows["condition"].nunique() != len(over):
                raise ConfigError(
                    f"claim {claim.id!r}: the {claim.condition} needs the conditions {list(over)} "
                    "in the results"
                )
        else:
            rows = rows[rows["condition"] == claim.condition]
            if rows.empty:
                raise ConfigError(
                    f"claim {claim.id!r}: no MCGF results under condition {claim.condition!r}; "
                    "evaluate it (run_mcgf_seeds(conditions=...))"
                )
    grouped = rows.groupby(["seed", "query"], sort=True)[claim.metric].mean()
    return {int(s): grouped.loc[s] for s in grouped.index.get_level_values(0).unique()}


def _compute_ratio(results: SeedResults, claim: Claim, seeds: list[int]) -> float:
    """Mean over seeds of a's training time / b's (``train_s`` in the summary), NaN when either
    was not trained (a test-time variant, raw pixels) or the results carry no timings."""
    summary = results.summary
    if "train_s" not in summary.columns:
        return float("nan")
    times = summary[summary["seed"].isin(seeds)].drop_duplicates(["seed", "variant"])
    times = times.set_index(["seed", "variant"])["train_s"]
    ratios = []
    for s in seeds:
        ta, tb = times.get((s, claim.a), np.nan), times.get((s, claim.b), np.nan)
        if not (np.isfinite(ta) and np.isfinite(tb)) or tb <= 0:
            return float("nan")
        ratios.append(ta / tb)
    return float(np.mean(ratios))


def _paired_seeds(
    results: SeedResults, claim: Claim, metric: str
) -> tuple[list[int], list[tuple[np.ndarray, np.ndarray]]]:
    c = claim if metric == claim.metric else replace(claim, metric=metric)
    a, b = _per_seed_values(results, c, c.a), _per_seed_values(results, c, c.b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ConfigError(f"claim {claim.id!r}: {claim.a!r} and {claim.b!r} share no seed")
    pairs = []
    for s in seeds:
        both = pd.concat([a[s], b[s]], axis=1, keys=["a", "b"]).dropna()  # skipped queries out
        pairs.append((both["a"].to_numpy(), both["b"].to_numpy()))
    return seeds, pairs


def evaluate_claim(results: SeedResults, claim: Claim) -> dict[str, object]:
    """One claims-table row before the family adjustment (see :func:`claims_table`)."""
    seeds, pairs = _paired_seeds(results, claim, claim.metric)
    e = seed_effect([p[0] for p in pairs], [p[1] for p in pairs])
    row = {
        "claim": claim.id,
        "paper": claim.paper,
        "role": claim.role,
        "where": claim.where,
        "statement": claim.statement,
        "metric": claim.metric,
        "condition": claim.condition,
        "a": claim.a,
        "b": claim.b,
        "claimed": "a > b" if claim.direction > 0 else "a < b",
        "effect": e.effect,
        "effect lo": e.lo,
        "effect hi": e.hi,
        "p": e.p_value,
        "n_seeds": e.n_seeds,
        "n_queries": e.n_queries,
        "a mean": e.mean_a,
        "a std": e.std_a,
        "b mean": e.mean_b,
        "b std": e.std_b,
        "effect std": e.std_effect,
        "compute a/b": _compute_ratio(results, claim, seeds),
    }
    meter = [np.nan] * 3
    if claim.paper == GVM and METER_METRIC in results.per_query.columns:
        _, mp = _paired_seeds(results, claim, METER_METRIC)
        m = seed_effect([p[0] for p in mp], [p[1] for p in mp])
        meter = [m.effect, m.lo, m.hi]
    row.update(dict(zip(METER_COLUMNS, meter, strict=True)))
    return row


METER_COLUMNS = ("effect ≤36 m", "effect ≤36 m lo", "effect ≤36 m hi")


def _decide(table: pd.DataFrame, claims: Sequence[Claim]) -> pd.DataFrame:
    """Adjusted p-values per family, verdicts and what was tested, in place of the raw rows."""
    by_id = {c.id: c for c in claims}
    table["p adjusted"] = np.nan
    for role in (PRIMARY, SECONDARY):
        family = (table["role"] == role).to_numpy()
        if family.any():
            decidable = family & (table["n_seeds"] >= MIN_SEEDS).to_numpy()
            adjusted = np.full(len(table), np.nan)
            adjusted[decidable] = adjust_p_values(table.loc[decidable, "p"], ADJUSTMENT)
            table.loc[family, "p adjusted"] = adjusted[family]
    verdicts, notes, tested = [], [], []
    for row in table.to_dict("records"):
        n = int(row["n_seeds"])
        tested.append(f"{SCOPE}, {n} seed{'s' if n != 1 else ''}; {NOT_TESTED}")
        if row["role"] == MEASURED:
            verdicts.append("measured")
            notes.append("a CPU-size deviation or reference, measured against the paper's method")
            continue
        p_adj = row["p adjusted"]
        label, note = verdict(
            row["effect lo"], row["effect hi"], by_id[row["claim"]].direction, n,
            float(p_adj) if np.isfinite(p_adj) else None,
        )  # fmt: skip
        verdicts.append(label)
        notes.append(note)
    table["verdict"] = verdicts
    table["tested"] = tested
    table["note"] = notes
    return table


def claims_table(
    mcgf: SeedResults | None = None,
    street: SeedResults | None = None,
    restoration: SeedResults | None = None,
    claims: Sequence[Claim] = CLAIMS,
) -> pd.DataFrame:
    """One row per claim whose results are given: ``claim, paper, role, where, statement,
    metric, condition, a, b, claimed``, ``effect`` (a - b, mean over seeds of the paired
    difference) with ``effect lo`` / ``effect hi`` (95 % seed-level t interval), ``p`` (raw,
    two-sided), ``n_seeds``, ``n_queries`` (per seed), ``a mean``, ``a std``, ``b mean``, ``b
    std`` (over seeds), ``effect std``, ``compute a/b`` (training-time ratio, NaN where a
    variant did not train), the meter-level effect (GeoViewMatch rows), ``p adjusted`` (Holm
    within the primary or the secondary family; NaN for measured rows), ``verdict``, ``tested``
    and ``note``.

    ``mcgf`` / ``street``: the seeded grids (:func:`run_mcgf_seeds` with ``raw_pixels=True`` and
    the conditions plus ``"mixed"``; :func:`run_street_seeds` with ``baselines=True``);
    ``restoration``: :func:`restoration_seed_results`. Results not given leave their claims
    out; a claim whose variants are missing is an error, except a measured row (a deviation
    not trained in this grid is left out).
    """
    by_results = {MCGF: mcgf, GVM: street, RESTORER: restoration}
    if all(v is None for v in by_results.values()):
        raise ConfigError(
            "claims_table: give the MCGF results (mcgf=), the street ones (street=), the "
            "restorer's (restoration=) or several"
        )
    rows = []
    for c in claims:
        results = by_results.get(c.results)
        if results is None:
            continue
        if c.role == MEASURED and not {c.a, c.b} <= set(results.per_query["variant"]):
            continue
        rows.append(evaluate_claim(results, c))
    if not rows:
        raise ConfigError("claims_table: none of the claims has its results here")
    return _decide(pd.DataFrame(rows), claims)


def per_seed_table(results: SeedResults, metric: str = "R@1") -> pd.DataFrame:
    """``metric`` per variant (rows) and seed (columns ``seed N``), then the mean and the std over
    seeds: a compact view of what the claims table averages."""
    summary = results.summary
    if "condition" in summary.columns and "R@1" in summary.columns:
        summary = summary[summary["condition"].isin([MEAN, MIXED])]
        index = ["variant", "condition"]
    else:
        index = ["variant"]
    wide = summary.pivot_table(index=index, columns="seed", values=metric, sort=False)
    wide.columns = [f"seed {s} {metric}" for s in wide.columns]
    values = wide.to_numpy()
    wide[f"mean {metric}"] = values.mean(axis=1)
    ddof = 1 if values.shape[1] > 1 else 0
    wide[f"std {metric}"] = np.std(values, axis=1, ddof=ddof)
    return wide.reset_index()


def per_seed_summary(
    mcgf: SeedResults | None = None, street: SeedResults | None = None, metric: str = "R@1"
) -> pd.DataFrame:
    """Both papers' :func:`per_seed_table` in one: ``paper, variant, condition`` (MCGF: ``mean``
    or ``mixed``; GeoViewMatch: ``split``), ``metric`` per seed, its mean and std over seeds."""
    parts = []
    if mcgf is not None:
        parts.append(per_seed_table(mcgf, metric).assign(paper=MCGF))
    if street is not None:
        parts.append(per_seed_table(street, metric).assign(paper=GVM, condition="split"))
    if not parts:
        raise ConfigError(
            "per_seed_summary: give the MCGF results (mcgf=), the street ones or both"
        )
    table = pd.concat(parts, ignore_index=True)
    first = ["paper", "variant", "condition"]
    return table[first + [c for c in table.columns if c not in first]]
