"""Every registered model follows the model contract (geoloc_lib.models.contract)."""

from __future__ import annotations

import pytest
import torch

from geoloc_lib.models import create_model, list_models
from geoloc_lib.models.contract import GeolocModel
from geoloc_lib.training.recipes import recipes

VIEWS = {"drone->satellite": ("drone", "satellite"), "street->aerial": ("ground", "aerial")}
RAW = {"raw_pixels": ("drone", "satellite"), "street_raw_pixels": ("ground", "aerial")}


def test_every_trainable_model_has_a_recipe_and_the_raw_matchers_are_registered():
    assert set(list_models()) == set(recipes()) | set(RAW)


@pytest.mark.parametrize("name", sorted(set(recipes()) | set(RAW)))
def test_model_follows_the_contract(name: str):
    views = RAW.get(name) or VIEWS[recipes()[name].task]
    kw = {} if name in RAW else {"preset": "smoke", **recipes()[name].data_config}
    with torch.device("meta"):
        model = create_model(name, **kw)
    assert isinstance(model, GeolocModel)
    assert model.registry_name == name
    for view in views:
        h, w = model.input_size(view)
        assert isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    rebuilt_cfg = model.config_dict()
    assert isinstance(rebuilt_cfg, dict) and rebuilt_cfg
    transform = model.batch_transform()
    assert transform is None or callable(transform)
