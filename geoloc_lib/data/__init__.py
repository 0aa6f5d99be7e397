"""Datasets: loaders for the real layouts, the GeoSynth generator, manifest checks."""
