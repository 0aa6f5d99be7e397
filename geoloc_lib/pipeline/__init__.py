"""The top layer: the ``geoloc`` command and the notebook pipeline it runs.

- ``cli``            ``geoloc`` (every subcommand; ``main(argv)``)
- ``arguments``      every command's arguments and help (imports no torch: help is instant)
- ``runner``         executes the numbered notebooks with papermill (``geoloc run``)
- ``profiles``       resolves ``configs/profiles.yaml`` into per-notebook parameters
- ``dry_run``        ``geoloc run --dry-run``: checks every configuration resolves
- ``record``         ``geoloc notebooks record``: re-records the notebooks' outputs (smoke)
- ``reports_index``  writes the generated ``reports/README.md``
"""
