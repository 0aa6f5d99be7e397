"""The papers' claims that GeoSynth can test, and their verdicts from runs repeated over seeds.

:data:`CLAIMS` is the registry: one :class:`Claim` per testable statement of MCGF (restoration
helps under weather, overall and per condition; the noising helps; pooling the DDIM steps helps;
MCGF beats its baselines) and of GeoViewMatch (contrastive learning and multi-scale features help,
Table 5; stages 3+4 are best and adding stage 1 hurts, Table 6; it beats the InfoNCE baseline).
Each names two variants of the seeded grids of :mod:`geoloc_lib.analysis.ablations` and the
claimed sign of ``a - b``.

:func:`claims_table` turns per-seed, per-query results (:func:`run_street_seeds`,
:func:`run_mcgf_seeds`) into one row per claim: the effect (mean over seeds of the paired
difference, in points), its two-level bootstrap 95 % interval (seeds, then queries within each
seed; :func:`geoloc_lib.eval.uncertainty.seed_effect`), the number of seeds and queries, each
variant's mean ± std over seeds, and the verdict (:func:`geoloc_lib.eval.uncertainty.verdict`:
supported / contradicted / undecided; undecided below three seeds).

Where the comparison is set: MCGF on drone->satellite R@1, per query averaged over the ten
conditions ("mean"), one condition, or the mixed-weather set of MCGF Table 1; GeoViewMatch on
street->aerial R@1 of the split its ablations use (``street_eval_split``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from geoloc_lib.analysis.ablations import INFONCE_BASELINE, RAW_PIXELS, SeedResults
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval.uncertainty import seed_effect, verdict
from geoloc_lib.weather.synth import CONDITIONS

MCGF, GVM = "MCGF", "GeoViewMatch"
MEAN = "mean"  # per query, the mean over the ten weather conditions
MIXED = "mixed"
FULL = "MCGF (full)"


@dataclass(frozen=True)
class Claim:
    """One claim: ``a`` compared with ``b`` on ``metric`` where ``condition`` says; the paper
    claims ``a - b`` has the sign ``direction`` (+1: a is better, -1: a is worse)."""

    id: str
    paper: str  # MCGF | GeoViewMatch
    where: str  # the place in the paper the claim comes from
    statement: str
    metric: str
    a: str
    b: str
    condition: str  # MCGF: a weather condition, "mean" or "mixed"; GeoViewMatch: "split"
    direction: int = 1


def _mcgf_claims() -> list[Claim]:
    rows = [
        Claim(
            "mcgf-restoration", MCGF, "MCGF §2.3",
            "the restoration branch helps under weather (mean of the ten conditions)",
            "R@1", FULL, "w/o restoration", MEAN,
        ),
    ]  # fmt: skip
    rows += [
        Claim(
            f"mcgf-restoration-{c}",
            MCGF,
            "MCGF §2.3",
            f"the restoration branch helps under {c}",
            "R@1",
            FULL,
            "w/o restoration",
            c,
        )  # fmt: skip
        for c in CONDITIONS
    ]
    rows += [
        Claim(
            "mcgf-diffusion", MCGF, "MCGF §2.1 / eqs. 1-3",
            "the noising (diffusion) helps: MCGF beats its restoration without noising",
            "R@1", FULL, "w/o diffusion", MEAN,
        ),
        Claim(
            "mcgf-pooling", MCGF, "MCGF §2.4",
            "pooling the features of every DDIM step ('multiple granularities') helps",
            "R@1", FULL, "last step only", MEAN,
        ),
        Claim(
            "mcgf-beats-matching-only", MCGF, "MCGF Table 1",
            "MCGF beats its matching branch alone under mixed weather", "R@1", FULL,
            "w/o restoration", MIXED,
        ),
        Claim(
            "mcgf-beats-raw-pixels", MCGF, "MCGF Table 1",
            "MCGF beats raw pixels under mixed weather", "R@1", FULL, RAW_PIXELS, MIXED,
        ),
    ]  # fmt: skip
    return rows


def _geoviewmatch_claims() -> list[Claim]:
    return [
        Claim(
            "gvm-contrastive", GVM, "GeoViewMatch Table 5",
            "contrastive learning helps (BS -> BS+CL)", "R@1", "BS+CL", "BS", "split",
        ),
        Claim(
            "gvm-multiscale", GVM, "GeoViewMatch Table 5",
            "multi-scale features help (BS -> BS+MF)", "R@1", "BS+MF", "BS", "split",
        ),
        Claim(
            "gvm-stages34-vs-4", GVM, "GeoViewMatch Table 6",
            "stages 3+4 are best: f4+f3 beats f4", "R@1", "f4+f3", "f4", "split",
        ),
        Claim(
            "gvm-stages34-vs-234", GVM, "GeoViewMatch Table 6",
            "stages 3+4 are best: f4+f3 beats f4+f3+f2", "R@1", "f4+f3", "f4+f3+f2", "split",
        ),
        Claim(
            "gvm-stage1-hurts", GVM, "GeoViewMatch Table 6",
            "adding stage 1 hurts (f4+f3+f2 -> all four stages)", "R@1", "f4+f3+f2+f1",
            "f4+f3+f2", "split", direction=-1,
        ),
        Claim(
            "gvm-beats-infonce", GVM, "GeoViewMatch Table 1",
            "GeoViewMatch beats the InfoNCE baseline at the same budget", "R@1", "BS+CL+MF",
            INFONCE_BASELINE.label, "split",
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


def _per_seed_values(results: SeedResults, claim: Claim, variant: str) -> dict[int, pd.Series]:
    """Per seed, ``variant``'s per-query values of the claim's metric, indexed by query."""
    pq = results.per_query
    if variant not in set(pq["variant"]):
        raise ConfigError(
            f"claim {claim.id!r}: no results for variant {variant!r}; run it in the seeded grid "
            f"(present: {sorted(set(pq['variant']))})"
        )
    if claim.metric not in pq.columns:
        raise ConfigError(f"claim {claim.id!r}: per-query results lack metric {claim.metric!r}")
    rows = pq[pq["variant"] == variant]
    if claim.paper == MCGF:
        if claim.condition == MEAN:
            rows = rows[rows["condition"].isin(CONDITIONS)]
            if rows["condition"].nunique() != len(CONDITIONS):
                raise ConfigError(
                    f"claim {claim.id!r}: the mean over the weather conditions needs all ten "
                    "conditions in the MCGF results"
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


def evaluate_claim(results: SeedResults, claim: Claim) -> dict[str, object]:
    """One claims-table row (see :func:`claims_table`)."""
    a, b = _per_seed_values(results, claim, claim.a), _per_seed_values(results, claim, claim.b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ConfigError(f"claim {claim.id!r}: {claim.a!r} and {claim.b!r} share no seed")
    pairs = []
    for s in seeds:
        both = pd.concat([a[s], b[s]], axis=1, keys=["a", "b"]).dropna()  # skipped queries out
        pairs.append((both["a"].to_numpy(), both["b"].to_numpy()))
    e = seed_effect([p[0] for p in pairs], [p[1] for p in pairs])
    label, note = verdict(e.lo, e.hi, claim.direction, e.n_seeds)
    return {
        "claim": claim.id,
        "paper": claim.paper,
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
        "n_seeds": e.n_seeds,
        "n_queries": e.n_queries,
        "a mean": e.mean_a,
        "a std": e.std_a,
        "b mean": e.mean_b,
        "b std": e.std_b,
        "verdict": label,
        "note": note,
    }


def claims_table(
    mcgf: SeedResults | None = None,
    street: SeedResults | None = None,
    claims: Sequence[Claim] = CLAIMS,
) -> pd.DataFrame:
    """One row per claim whose paper has results: ``claim, paper, where, statement, metric,
    condition, a, b, claimed``, ``effect`` (a - b in points, mean over seeds of the paired
    difference) with ``effect lo`` / ``effect hi`` (95 %), ``n_seeds``, ``n_queries`` (per
    seed), ``a mean``, ``a std``, ``b mean``, ``b std`` (over seeds), ``verdict`` and ``note``.

    ``mcgf`` / ``street``: the seeded grids (:func:`run_mcgf_seeds` with ``raw_pixels=True`` and
    the conditions plus ``"mixed"``; :func:`run_street_seeds` with ``baselines=True``). A paper
    whose results are not given is left out; a claim whose variants are missing is an error.
    """
    by_paper = {MCGF: mcgf, GVM: street}
    if all(v is None for v in by_paper.values()):
        raise ConfigError(
            "claims_table: give the MCGF results (mcgf=), the street ones (street=) or both"
        )
    rows = [
        evaluate_claim(by_paper[c.paper], c) for c in claims if by_paper.get(c.paper) is not None
    ]
    return pd.DataFrame(rows)


def per_seed_table(results: SeedResults, metric: str = "R@1") -> pd.DataFrame:
    """``metric`` per variant (rows) and seed (columns ``seed N``), then the mean and the std over
    seeds: a compact view of what the claims table averages."""
    summary = results.summary
    if "condition" in summary.columns:
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
