"""GeoSynth: the embedded, procedurally generated cross-view benchmark.

``generate_geosynth(out, profile, seed)`` builds a 2.5D city world, renders
satellite tiles, drone orbits and street panoramas, and writes them in the real
University-1652, CVUSA and CVACT layouts with a hashed manifest;
``verify_geosynth(root)`` checks a copy against that manifest.
"""

from geoloc_lib.data.geosynth.generate import generate_geosynth
from geoloc_lib.data.geosynth.profiles import PROFILES, GeoSynthProfile, get_profile
from geoloc_lib.data.geosynth.writer import load_geosynth_meta, verify_geosynth

__all__ = [
    "PROFILES",
    "GeoSynthProfile",
    "generate_geosynth",
    "get_profile",
    "load_geosynth_meta",
    "verify_geosynth",
]
