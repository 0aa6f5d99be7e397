"""geoloc_lib: cross-view geo-localization research library (MCGF, GeoViewMatch).

Map of the package (see README.md for the full repository map):

- ``data/``      dataset loaders for the real layouts, GeoSynth generator, manifest checks
- ``eval/``      retrieval ranking core and metrics (University-1652, CVUSA, CVACT)
- ``weather.py`` batched multi-weather synthesis; ``diffusion.py`` DDPM/DDIM schedules
- ``pipeline.py`` papermill runner behind ``geoloc run``; ``profiles.py`` profile resolution
- ``cli.py``     the ``geoloc`` command
"""

__version__ = "0.1.0"
