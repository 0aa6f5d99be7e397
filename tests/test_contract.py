"""Every registered model follows the model contract (geoloc_lib.models.contract)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.models import create_model, list_models
from geoloc_lib.models.contract import GeolocModel
from geoloc_lib.training.recipes import preset_for, recipes

VIEWS = {"drone->satellite": ("drone", "satellite"), "street->aerial": ("ground", "aerial")}
RAW = {"raw_pixels": ("drone", "satellite"), "street_raw_pixels": ("ground", "aerial")}


def test_every_trainable_model_has_a_recipe_and_the_raw_matchers_are_registered():
    assert set(list_models()) == set(recipes()) | set(RAW)


@pytest.mark.parametrize("name", sorted(set(recipes()) | set(RAW)))
def test_model_follows_the_contract(name: str):
    views = RAW.get(name) or VIEWS[recipes()[name].task]
    kw = (
        {}
        if name in RAW
        else {"config": preset_for(name, "smoke").config, **recipes()[name].data_config}
    )
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


# Models with spatial features to explain: feature maps for heatmaps, and (all but the InfoNCE
# baseline, whose backbone may be any timm model) Grad-CAM target layers.
FEATURE_MAPS = {"mcgf", "mcgf_matching_only", "geoviewmatch", "infonce_baseline"}
GRAD_CAM = {"mcgf", "mcgf_matching_only", "geoviewmatch"}


@pytest.mark.parametrize("name", sorted(set(recipes()) | set(RAW)))
def test_explanation_hooks_or_an_error_naming_the_model(name: str):
    views = RAW.get(name) or VIEWS[recipes()[name].task]
    kw = (
        {}
        if name in RAW
        else {"config": preset_for(name, "smoke").config, **recipes()[name].data_config}
    )
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    own = {id(m) for m in model.modules()}
    for view in views:
        images = torch.rand(
            2, 3, *model.input_size(view), generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            seen = model.explained_images(images, view)
        assert seen.shape == images.shape
        if name in FEATURE_MAPS:
            with torch.no_grad():
                maps = model.feature_maps(seen, view)
            assert maps and all(m.ndim == 4 and m.shape[0] == 2 for m in maps.values())
        else:
            with pytest.raises(ConfigError, match=f"{type(model).__name__}.*feature maps"):
                model.feature_maps(seen, view)
        if name in GRAD_CAM:
            layers = model.cam_target_layers(view)
            assert layers and all(isinstance(x, nn.Module) and id(x) in own for x in layers)
            assert callable(model.cam_reshape(view))
            with torch.no_grad():
                assert model.cam_embedding(seen, view).shape[0] == 2
        else:
            with pytest.raises(ConfigError, match=f"{type(model).__name__}.*Grad-CAM"):
                model.cam_target_layers(view)
