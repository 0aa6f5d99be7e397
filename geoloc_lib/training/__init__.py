"""Training entry points built on :mod:`geoloc_lib.engine` (one module per paper)."""
