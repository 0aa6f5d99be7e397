"""GeoSynth figures: one location seen from the satellite, its drone orbit and the street."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from geoloc_lib.core.errors import DatasetError
from geoloc_lib.data.geosynth.writer import load_geosynth_meta
from geoloc_lib.data.images import read_image_array


def _location_files(uni: Path, location_id: str, split: str) -> tuple[Path, list[Path]]:
    if split == "train":
        sat_dir, drone_dir = uni / "train/satellite", uni / "train/drone"
    else:
        sat_dir = uni / ("test/query_satellite" if split == "test" else "test/gallery_satellite")
        drone_dir = uni / "test/query_drone"
    sat = sat_dir / location_id / f"{location_id}.jpg"
    drones = sorted((drone_dir / location_id).glob("image-*.jpeg"))
    return sat, drones


# How the drone and street views were captured relative to the satellite tile (GeoSynth's
# ``drone_capture`` / ``street_capture``, recorded in geosynth.json), in the figure's footnote.
DRONE_NOTES = {
    "same_imagery": "rendered from the satellite's imagery, so with its sun, season and colour "
    "balance and a light haze (as University-1652's Google Earth views)",
    "independent": "each orbit under its own sun, season, haze and colour balance "
    "(like drone photographs taken at another time)",
}
STREET_NOTES = {
    "different_time": "captured at another time (season, sun and shadows may differ)",
    "same_time": "under the satellite's sun and season",
}


def _captures(root: Path) -> tuple[str, str]:
    """``(drone_capture, street_capture)`` of the GeoSynth folder (its generation defaults when
    geosynth.json does not say)."""
    from geoloc_lib.data.geosynth.profiles import GeoSynthProfile

    params: dict = {}
    manifest = root / "geosynth.json"
    if manifest.is_file():
        params = json.loads(manifest.read_text(encoding="utf-8")).get("params") or {}
    fields = GeoSynthProfile.__dataclass_fields__
    return (
        str(params.get("drone_capture", fields["drone_capture"].default)),
        str(params.get("street_capture", fields["street_capture"].default)),
    )


def location_figure(
    root: str | Path, location_id: str, path: str | Path | None = None, max_drone: int = 8
) -> Figure:
    """Satellite tile, a strip of the drone orbit and the nearest street panorama of a location.

    ``root`` is a GeoSynth output folder; ``location_id`` a 4-digit id from
    ``University-1652/locations.csv``. The panorama is the CVACT pair (any split)
    closest to the location, with its distance in the title.
    """
    root = Path(root)
    meta = load_geosynth_meta(root)
    locs = meta["locations"]
    row = locs[locs["id"] == str(location_id)]
    if row.empty:
        raise DatasetError(
            f"location {location_id!r} is not in {root / 'University-1652/locations.csv'}; "
            f"valid ids run from {locs['id'].min()} to {locs['id'].max()}"
        )
    split = str(row["split"].iloc[0])
    e, n = float(row["easting"].iloc[0]), float(row["northing"].iloc[0])
    sat, drones = _location_files(root / "University-1652", str(location_id), split)
    drones = drones[:: max(1, int(np.ceil(len(drones) / max_drone)))][:max_drone]
    pano = None
    if "streets" in meta and len(meta["streets"]):
        st = meta["streets"]
        dist = np.hypot(st["easting"].to_numpy() - e, st["northing"].to_numpy() - n)
        k = int(np.argmin(dist))
        folder = "ANU_data_test" if st["split"].iloc[k] == "test" else "ANU_data_small"
        pano = (
            root / "CVACT" / folder / "streetview" / f"{st['pano_id'].iloc[k]}_grdView.jpg",
            float(dist[k]),
        )

    n_cols = max(len(drones), 4)
    fig = Figure(figsize=(2.0 * n_cols, 6.0), layout="constrained")
    grid = fig.add_gridspec(3, n_cols, height_ratios=[2.2, 1.0, 0.6])
    ax = fig.add_subplot(grid[0, : n_cols // 2])
    ax.imshow(read_image_array(sat))
    ax.set_title(
        f"satellite {location_id} ({split}), north up\nE {e:.0f} m, N {n:.0f} m", fontsize=9
    )
    ax.axis("off")
    ax = fig.add_subplot(grid[0, n_cols // 2 :])
    if pano is not None:
        ax.imshow(read_image_array(pano[0]))
        w = read_image_array(pano[0]).shape[1]
        ax.set_xticks([0, w / 4, w / 2, 3 * w / 4, w], ["S", "W", "N", "E", "S"])
        ax.set_yticks([])
        ax.set_title(f"nearest street panorama ({pano[1]:.0f} m away), north at centre", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no street panoramas", ha="center", va="center")
        ax.axis("off")
    views = load_geosynth_meta(root)["drone_views"] if drones else None
    for j, p in enumerate(drones):
        ax = fig.add_subplot(grid[1, j])
        ax.imshow(read_image_array(p))
        ax.axis("off")
        if views is not None:
            v = views[(views["id"] == str(location_id)) & views["file"].str.endswith(p.name)]
            if len(v):
                ax.set_title(
                    f"{p.stem}\nalt {v['altitude_m'].iloc[0]:.0f} m, hdg {v['heading_deg'].iloc[0]:.0f}°",
                    fontsize=7,
                )
    ax = fig.add_subplot(grid[2, :])
    ax.axis("off")
    drone_capture, street_capture = _captures(root)
    notes = [
        "Satellite: orthographic nadir tile (one sun and season per district).",
        "Drone: oblique perspective views along a descending orbit (facades visible), "
        f"{DRONE_NOTES.get(drone_capture, drone_capture)}.",
        "Street: ground-level 360° equirectangular panorama ray-cast from the same height map, "
        f"{STREET_NOTES.get(street_capture, street_capture)}.",
    ]
    width = int(2.0 * n_cols * 15)  # characters per line at 8 pt across the figure
    ax.text(
        0.0, 1.0, "\n".join(textwrap.fill(n, width, subsequent_indent="  ") for n in notes),
        fontsize=8, va="top",
    )  # fmt: skip
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
