"""``reports/README.md``: every table and figure a run wrote, with a caption, the profile and commit.

``geoloc run`` rewrites it after executing notebooks, for every ``reports_dir`` the run used. Tables
are shown inline (their Markdown copies), figures as images; both are listed in notebook order
(the ``NN_`` prefix of their names). A file with no caption in :data:`CAPTIONS` is still listed,
captioned by its name, so nothing a notebook writes is hidden.

Profiles share a reports folder (``default`` writes notebooks 00-04 into ``reports/``, ``claims``
adds 05), so each notebook's section names the profile and commit that last wrote it; they are
kept in ``reports_dir/provenance.json`` (:data:`PROVENANCE`), updated for the notebooks a run
executed and left as they are for the others.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.outputs import LIBRARY_FIX, claim_output_dir
from geoloc_lib.core.paths import REPO_ROOT

NOTEBOOK_TITLES = {
    "00": "00 · Data preparation",
    "01": "01 · Training",
    "02": "02 · Evaluation",
    "03": "03 · Heatmaps",
    "04": "04 · Ablations and cost",
    "05": "05 · The papers' claims over seeds",
}

# One line per output; keys are file stems (tables and figures share the namespace).
CAPTIONS = {
    "00_counts": "Locations and images per set, street pairs per split (GeoSynth in the real layouts).",
    "00_trivial_matchers": "Floors: a random ranking and raw 16×16-pixel cosine similarity.",
    "00_samples": "A seeded draw of images from each University-1652-layout set.",
    "00_location": "One location in its three views: satellite tile, drone orbit, street panorama.",
    "00_weather_conditions": "The ten synthetic weather conditions on three test drone views.",
    "01_training": "What trained: model, preset, epochs, parameters, last loss, last monitoring recall (%).",
    "01_curves": "Loss terms and monitoring recall per epoch for every trained model.",
    "02_mcgf_table1_mixed": "MCGF Table 1 format: drone→satellite and satellite→drone under mixed weather.",
    "02_weather_drone_to_satellite": "Drone→satellite R@1/5/10/AP per weather condition, per method.",
    "02_weather_satellite_to_drone": "Satellite→drone R@1/5/10/AP per weather condition, per method.",
    "02_street_recall": "GeoViewMatch Table 1 format: street→aerial R@1/5/10/1%.",
    "02_street_meter_level": "GeoViewMatch Table 2 format: top-1 within 0/36/72/144 m of the true location.",
    "02_street_topk_distance": "GeoViewMatch Table 3 format: mean distance of the top-k to the truth.",
    "02_top5_drone_to_satellite": "Top-5 satellite tiles for weathered drone queries (green: true match).",
    "02_top5_street_to_aerial": "Top-5 aerial tiles for street panoramas (green: true match).",
    "03_geoviewmatch_stage_heatmaps": "GeoViewMatch Fig. 8: channel-mean heatmaps of stages 2-4 and the "
    "multi-scale descriptor on aerial tiles.",
    "03_geoviewmatch_panorama_heatmaps": "GeoViewMatch Fig. 9: the same heatmaps on the panoramas.",
    "03_geoviewmatch_heatmap_stats": "Centre weight and contrast of each heatmap.",
    "03_mcgf_weather_heatmaps": "MCGF Fig. 3: one drone query under the 10 weathers and rotations, "
    "restored image, heatmaps, top-5 matches.",
    "03_mcgf_weather_matches": "Rank of the true satellite tile for each weather and rotation of the query.",
    "03_gradcam_geoviewmatch": "Grad-CAM (target: cosine similarity to the matched view's embedding).",
    "03_gradcam_pair_cosines": "Cosine similarity of each Grad-CAM pair's panorama and tile "
    "descriptors (the target the Grad-CAM maps explain).",
    "04_table5": "GeoViewMatch Table 5 on GeoSynth: BS, BS+CL, BS+MF, BS+CL+MF at one budget.",
    "04_table5_paper": "GeoViewMatch Table 5 as printed in the paper (CVUSA / CVACT), for comparison.",
    "04_table6": "GeoViewMatch Table 6 on GeoSynth: Swin stages feeding the descriptor.",
    "04_table6_paper": "GeoViewMatch Table 6 as printed in the paper (CVUSA / CVACT).",
    "04_geoviewmatch_ablations": "All GeoViewMatch ablation variants, one row each.",
    "04_ablation_claims": "The paper's ablation claims and whether this run supports them.",
    "04_mcgf_ablations": (
        "MCGF's single-factor variants (w/o restoration, no training noise, one restoration pass, "
        "last step only, queries not restored, the clean-query oracle, the CPU-size deviations), "
        "per weather (long form)."
    ),
    "04_mcgf_weather": "MCGF variants: drone→satellite R@1 and AP per weather condition.",
    "04_mcgf_ablation_deltas": (
        "What each MCGF part adds, one change at a time (a - b), with location-cluster intervals."
    ),
    "04_cost": "GeoViewMatch Table 4 format: parameters, GFLOPs, memory, latency per model and size.",
    "02_street_recall_test": "Street→aerial R@1/5/10/1% on the test split (reported apart from the paper's val).",
    "02_recall_at_k_drone_to_satellite": "Drone→satellite recall@k per weather condition with 95 % intervals.",
    "02_recall_at_k_by_weather": "Recall@k curves per weather condition; bands: 95 % bootstrap intervals over queries.",
    "claims": (
        "One row per claim of the papers that GeoSynth can test (primary, secondary, measured): the "
        "effect (mean paired difference over seeds), its 95 % seed-level t interval, raw and "
        "Holm-adjusted p-values, the verdict and what was tested."
    ),
    "05_claims": "Each claim's effect with its 95 % interval (zero: no effect).",
    "05_geoviewmatch_per_seed": "Every GeoViewMatch variant's recall per seed, with intervals over queries.",
    "05_mcgf_per_seed": "Every MCGF variant's recall per weather condition and seed, with intervals.",
    "05_per_seed_r1": "R@1 of every compared variant per seed (the data the claims rest on).",
    "05_street_gallery": "Near-duplicate rate of the evaluated street gallery (tiles overlapping another by more than half).",
    "05_restoration_per_seed": "The restorer's PSNR, SSIM and correlation with the clean image, per seed and step.",
    "04_restoration_quality": "The restorer's PSNR, SSIM and correlation with the clean image per condition and DDIM step.",
    "04_restoration_deltas": "Restored minus weathered PSNR, SSIM and correlation (one pass and last step), per condition.",
}

# Figures written under the same stem as a table: the figure's own caption.
FIGURE_CAPTIONS = {
    "04_geoviewmatch_ablations": "GeoViewMatch ablations (Tables 5 and 6): our recall per variant "
    "and metric with 95 % intervals (bars), the paper's values as markers on the right axis.",
    "04_mcgf_weather": "What each MCGF part adds: R@1 and AP per weather condition, one bar per "
    "variant, with 95 % intervals.",
}

# Tables that open the index, before the per-notebook sections.
LEAD = ("claims",)
# The notebook whose run writes each lead table (its provenance is that notebook's).
LEAD_NOTEBOOK = {"claims": "05"}
PROVENANCE = "provenance.json"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "geoloc_lib", "notebooks"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{out} (with uncommitted changes to the code)" if dirty else out


def _caption(stem: str, figure: bool = False) -> str:
    if figure and stem in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[stem]
    return CAPTIONS.get(stem, stem.replace("_", " "))


def _provenance_line(entry: dict | None) -> str:
    if entry is None:
        return "_Written before provenance was recorded (profile and commit unknown)._"
    return f"_Written by `geoloc run --profile {entry['profile']}` at commit `{entry['commit']}`._"


def update_provenance(
    reports_dir: str | Path, notebooks: list[str], profile: str, commit: str | None = None
) -> dict[str, dict[str, str]]:
    """Record that ``profile`` at ``commit`` wrote the outputs of ``notebooks`` (``NN`` prefixes).

    The file is read and checked (an object of ``{"NN": {"profile": ..., "commit": ...}}``;
    anything else is a :class:`ConfigError` naming the file and the entry) and written only
    when ``notebooks`` is not empty.
    """
    path = Path(reports_dir) / PROVENANCE
    fix = (
        "fix it or delete it (the index then shows 'profile and commit unknown' for the "
        "notebooks not run since)"
    )
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); {fix}") from err
    if not isinstance(entries, dict):
        raise ConfigError(f"{path} must hold a JSON object keyed by notebook number; {fix}")
    for prefix, entry in entries.items():
        if not (
            isinstance(entry, dict)
            and all(isinstance(entry.get(key), str) for key in ("profile", "commit"))
        ):
            raise ConfigError(
                f"{path}: entry {prefix!r} must be an object with string fields 'profile' and "
                f"'commit', got {entry!r}; {fix}"
            )
    if not notebooks:
        return entries
    commit = commit or _commit()
    for prefix in notebooks:
        entries[prefix] = {"profile": profile, "commit": commit}
    claim_output_dir(path.parent, "reports folder", kind="reports", fix=LIBRARY_FIX)
    path.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")
    return entries


def write_reports_index(
    reports_dir: str | Path,
    profile: str,
    commit: str | None = None,
    notebooks: list[str] | None = None,
) -> Path:
    """Write ``reports_dir/README.md`` from the tables and figures present there.

    ``reports_dir`` must be geoloc's, new or empty (:mod:`geoloc_lib.core.outputs`): the index
    never replaces a README.md of someone else.

    ``notebooks`` (``NN`` prefixes) are the ones this run of ``profile`` executed: their sections
    are marked as written by it; the others keep the provenance recorded by earlier runs.
    """
    root = Path(reports_dir)
    claim_output_dir(root, "reports folder", kind="reports", fix=LIBRARY_FIX)
    commit = commit or _commit()
    provenance = update_provenance(root, notebooks or [], profile, commit)
    tables = sorted((root / "tables").glob("*.md"))
    figures = sorted((root / "figures").glob("*.png"))
    groups: dict[str, list[tuple[str, Path]]] = {}
    lead = [path for path in tables if path.stem in LEAD]
    for kind, paths in (("table", tables), ("figure", figures)):
        for path in paths:
            if path.stem not in LEAD:
                groups.setdefault(path.stem[:2], []).append((kind, path))
    lines = [
        "# Reports",
        "",
        "Generated by `geoloc run` (do not edit): every table and figure below was written by the",
        "notebooks in `notebooks/`; the executed notebooks are in `executed/`.",
        "",
        f"- last run: profile `{profile}`"
        + (
            f" (notebook{'s' * (len(notebooks) > 1)} {', '.join(sorted(notebooks))})"
            if notebooks
            else ""
        ),
        f"- commit: `{commit}`",
        "- each section names the profile and commit that wrote it",
        "",
    ]
    for path in lead:
        rel = path.relative_to(root).as_posix()
        lines += [f"## {path.stem.capitalize()}", ""]
        lines += [_provenance_line(provenance.get(LEAD_NOTEBOOK.get(path.stem, ""))), ""]
        lines += [_caption(path.stem), ""]
        lines += [path.read_text().rstrip(), "", f"([CSV]({rel[:-3]}.csv))", ""]
    for prefix in sorted(groups):
        lines += [f"## {NOTEBOOK_TITLES.get(prefix, prefix)}", ""]
        lines += [_provenance_line(provenance.get(prefix)), ""]
        # tables first, then figures, each in name order
        for kind, path in sorted(groups[prefix], key=lambda kp: (kp[0] != "table", kp[1].name)):
            rel = path.relative_to(root).as_posix()
            lines += [f"**{path.stem}** — {_caption(path.stem, kind != 'table')}", ""]
            if kind == "table":
                lines += [path.read_text().rstrip(), "", f"([CSV]({rel[:-3]}.csv))", ""]
            else:
                lines += [f"![{path.stem}]({rel})", ""]
    out = root / "README.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out
