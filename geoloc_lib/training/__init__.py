"""Training entry points built on :mod:`geoloc_lib.training.engine` (one module per paper)."""
