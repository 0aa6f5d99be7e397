"""Reading a checkpoint file (core): every layer that rebuilds a model from a run reads it here.

``engine.fit`` writes the files (model, optimizer, scheduler, scaler, RNG states, epoch,
history, ``model_name``, ``model_config``); this module only reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from geoloc_lib.core.errors import ConfigError


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``fit`` (a dict: model, optimizer, ..., epoch, history)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated or foreign file
        raise ConfigError(f"cannot read checkpoint {path}: {err}") from err
