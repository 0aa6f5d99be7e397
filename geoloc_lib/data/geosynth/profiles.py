"""GeoSynth sizes per profile.

``smoke`` is what CI generates (seconds); ``default`` is the benchmark the
reports use (several hundred test locations, >= 1,000 satellite distractors,
>= 1,000 street pairs, generated in minutes on 2 CPU cores). ``tiny`` exists for
the unit tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from geoloc_lib.core.errors import ConfigError, choices_message


@dataclass(frozen=True)
class GeoSynthProfile:
    """Every size that shapes a GeoSynth generation (recorded in the manifest)."""

    name: str
    train_campuses: int  # districts whose locations are training classes
    test_campuses: int  # disjoint districts for the test classes and street val/test pairs
    campus_grid: int  # locations per side of a campus (grid x grid locations)
    distractor_campuses: int  # districts cut into satellite-only distractor tiles
    distractor_grid: int  # tiles per side of a distractor district
    drone_views: int  # views per location on the descending orbit
    orbit_loops: float  # turns of the orbit
    street_train: int  # street/aerial pairs per train campus
    street_val: int  # per test campus
    street_test: int  # per test campus
    res_m: float = 0.5  # metres per world pixel
    tile_px: int = 256  # satellite / aerial tile size (covers tile_px * res_m metres)
    drone_px: int = 128
    pano_width: int = 616  # rendered equirectangular width; CVACT is resized to 512x256
    margin_m: float = 160.0  # city around the outermost locations (seen by oblique views)
    street_spacing_m: float = 12.0  # spacing of panoramas along a street run
    street_run: int = 10  # panoramas per run (a drive along one street)
    # How each view's capture relates to the satellite/aerial imagery (``CAPTURES``).
    drone_capture: str = "same_imagery"
    street_capture: str = "different_time"

    def __post_init__(self) -> None:
        for field, value in (("drone_capture", self.drone_capture),
                             ("street_capture", self.street_capture)):  # fmt: skip
            if value not in CAPTURES[field]:
                raise ConfigError(
                    f"GeoSynth profile {self.name!r}: "
                    + choices_message(field, value, CAPTURES[field])
                )

    @property
    def tile_m(self) -> float:
        return self.tile_px * self.res_m

    @property
    def campus_px(self) -> int:
        size_m = self.campus_grid * self.tile_m + 2 * self.margin_m
        return int(round(size_m / self.res_m))

    @property
    def distractor_px(self) -> int:
        return self.distractor_grid * self.tile_px

    def as_dict(self) -> dict:
        return asdict(self)


# The capture relation of each view to the overhead imagery, and what each mimics:
# - drone ``same_imagery``: University-1652's drone views are Google Earth renders of 3D meshes
#   textured with the same aerial imagery as the satellite tile (the dataset's paper, §3), so
#   both views share season, sun direction, cast shadows and colour balance, and the haze is
#   light. ``independent``: each orbit under its own season, sun, colour balance and heavy haze —
#   real drone photographs taken at another time (a harder robustness variant, not the dataset).
# - street ``different_time``: CVUSA/CVACT panoramas (Street View) and aerial tiles were
#   captured at different times, so season, sun and shadows may differ. ``same_time``: under
#   the aerial tile's conditions (a diagnostic: how much the capture gap costs).
CAPTURES: dict[str, tuple[str, ...]] = {
    "drone_capture": ("same_imagery", "independent"),
    "street_capture": ("different_time", "same_time"),
}

PROFILES: dict[str, GeoSynthProfile] = {
    "tiny": GeoSynthProfile(
        name="tiny", train_campuses=1, test_campuses=1, campus_grid=3, distractor_campuses=1,
        distractor_grid=2, drone_views=3, orbit_loops=1.0, street_train=4, street_val=2,
        street_test=4, margin_m=60.0, street_run=3, tile_px=128, drone_px=64, pano_width=308,
    ),
    "smoke": GeoSynthProfile(
        name="smoke", train_campuses=1, test_campuses=1, campus_grid=4, distractor_campuses=1,
        distractor_grid=4, drone_views=8, orbit_loops=2.0, street_train=40, street_val=12,
        street_test=40,
    ),
    # University-1652 trains on 701 buildings: 11 districts of 8 x 8 = 704 training classes. The
    # street pairs stay at 640 (58 per district; 638): the street models are limited by input
    # size and compute, not by pairs (4x the pairs at equal compute do not raise their recall), and
    # CVUSA/CVACT's 35,532 pairs are far beyond a 2-core budget.
    "default": GeoSynthProfile(
        name="default", train_campuses=11, test_campuses=5, campus_grid=8, distractor_campuses=16,
        distractor_grid=8, drone_views=12, orbit_loops=2.0, street_train=58, street_val=32,
        street_test=128,
    ),
}  # fmt: skip
# Today's default with the drone orbits captured independently of the satellite imagery: the
# robustness variant (``geoloc data generate geosynth --profile default_capture_gap``).
PROFILES["default_capture_gap"] = replace(
    PROFILES["default"], name="default_capture_gap", drone_capture="independent"
)


def get_profile(profile: str | GeoSynthProfile) -> GeoSynthProfile:
    """Resolve a profile name (or pass a custom :class:`GeoSynthProfile` through)."""
    if isinstance(profile, GeoSynthProfile):
        return profile
    if profile not in PROFILES:
        raise ConfigError(
            f"parameter profile: {choices_message('GeoSynth profile', profile, PROFILES)}"
        )
    return PROFILES[profile]
