"""Weather layer: synthetic multi-weather for drone images (University-1652-WX, as in MCGF).

- ``synth``  batched weather synthesis, the 10 conditions (:class:`WeatherSynth`)
- ``sets``   weathered query sets: the one per-image key (:func:`~geoloc_lib.weather.sets.weather_keys`),
  the evaluation transform (``eval_weather``) and ``geoloc data weather`` (files on disk)

Its benchmark (``geoloc bench weather``) is :mod:`geoloc_lib.bench.weather`.
"""

from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth, conditions_from_seeds

__all__ = ["CONDITIONS", "WeatherSynth", "conditions_from_seeds"]
