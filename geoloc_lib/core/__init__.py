"""Core layer: what every other layer may import, and which imports nothing above it.

- ``errors``       user-facing error types
- ``paths``        where the repository's own files are
- ``config``       config dataclasses: field changes and value checks
- ``runtime``      progress-bar policy (library calls are quiet by default)
- ``seeding``      seeding and RNG state (checkpointed by ``engine.fit``)
- ``distributed``  torchrun helpers (rank, barrier, broadcast)
- ``device``       ``device``/``amp`` resolution, moving batches to a device
- ``portable_ops`` ISA-independent float ops for the data and weather generators
- ``parallel``     independent jobs side by side in spawned workers (``parallel_runs``)
- ``checkpoints``  checkpoint files: plain values only, loaded with ``weights_only=True``
- ``locks``        exclusive folder locks (one training per run folder, one GeoSynth generation)
"""
