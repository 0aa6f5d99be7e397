"""geoloc_lib: cross-view geo-localization research library (MCGF, GeoViewMatch).

Map of the package, one layer per folder, lowest first. A module imports only from its own
layer or below (``tests/test_layers.py`` checks every import; training may also use eval's
metrics for validation). docs/architecture.md has the layers and where a change goes.

- ``core/``      errors, paths, config checks, runtime (progress), seeding, distributed,
  device/AMP, checkpoint reading, portable float ops, parallel (runs side by side on a CPU)
- ``data/``      dataset loaders (University-1652, CVUSA, CVACT), torch datasets, pair
  augmentation, the GeoSynth generator, manifest checks (``data/sources.py``: which folders a
  run reads)
- ``weather/``   ``synth`` (the 10 conditions), ``sets`` (the one per-image key, the evaluation
  transform, ``geoloc data weather``)
- ``models/``    the model contract (``contract.py``), ``create_model`` / ``load_model``, MCGF,
  GeoViewMatch, the InfoNCE baseline, the raw-pixel matchers, ``losses.py``, ``diffusion.py``
- ``training/``  ``engine.py`` (``fit``, checkpoints), ``optim.py`` (optimisers, schedules),
  ``recipes.py`` (one recipe per model), ``mcgf.py`` and ``geoviewmatch.py`` (the papers'
  recipes), ``runs.py`` (``train_run`` / ``train_runs`` / ``load_run``)
- ``eval/``      features, ranking, metrics, ``university.py`` (drone/satellite per weather),
  ``street.py`` (street/aerial per split), ``uncertainty.py`` (bootstrap intervals over queries
  and seeds, verdicts), ``examples.py`` (seeded draws of queries for the top-k figures),
  ``restoration.py`` (PSNR/SSIM/correlation of MCGF's restored queries), tables, submissions,
  ``challenge_features.py`` (University160k-WX feature files), local challenge
- ``analysis/``  ablations (seeded grids), claims (the papers' claims and their verdicts), explain
  (heatmaps, Grad-CAM), cost; ``viz/`` and ``reporting.py`` (report folders, markdown tables)
  draw the results of eval and analysis
- ``pipeline/``  ``cli.py`` (``geoloc``), ``runner.py`` (papermill runner), ``profiles.py``,
  ``dry_run.py``, ``record.py`` (re-recording the notebooks), ``reports_index.py``,
  ``evaluate.py`` and ``features.py`` (``geoloc evaluate`` / ``geoloc features``: a run on a
  dataset outside the notebooks);
  ``bench/`` beside it: ``eval.py``, ``train.py``, ``fit.py``, ``weather.py``, ``gpu.py``
  (``geoloc bench``)
"""

__version__ = "0.1.0"
