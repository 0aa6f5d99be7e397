"""Figures read on their own: colour bars, short labels, named loss terms, readable colours,
the paper's reference values, the stretched dark condition. Small synthetic inputs."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from geoloc_lib.viz import heatmaps as H

IDS = ["kxEh2w13hKNTOD4Dv__oLb", "2BRMdGbxunuH-HobrtWOL5", "dIH_K-gUaNep3h1-bNhcXW", "178aEFAsV"]


def _size_px(fig, dpi: int = 110) -> tuple[int, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.size


def _colour_bars(fig) -> list:
    return [c for ax in fig.axes for c in ax.child_axes]


def test_heatmap_figures_have_a_colour_bar_and_short_labels():
    torch.manual_seed(0)
    aerial, ground = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 80)
    keys = ["stage 2", "stage 3", "stage 4", "multi-scale 3+4", "multi-scale 2+3+4"]
    a_maps = {k: torch.rand(4, 16, 16) for k in keys}
    g_maps = {k: torch.rand(4, 16, 80) for k in keys}
    figures = [
        H.stage_heatmaps_figure(aerial, a_maps, ground, g_maps["stage 4"], "stage 4", IDS),
        H.panorama_heatmaps_figure(ground, g_maps, IDS),
        H.gradcam_pairs_figure(aerial, a_maps["stage 2"], ground, g_maps["stage 2"], IDS),
    ]
    for fig in figures:
        assert len(_colour_bars(fig)) == 1
        texts = [ax.get_ylabel() for ax in fig.axes] + [ax.get_title() for ax in fig.axes]
        assert "pair 1" in texts and not any(IDS[0] in t for t in texts)
        footnote = fig.get_supxlabel()
        assert IDS[0] in footnote and "pair 4: 178aEFAsV" in footnote
    # the committed panorama figure was 4 x 5:1 panoramas in one row, 2,647 px wide
    pano = figures[1]
    assert len(pano.axes) == 4 * (1 + len(keys))
    assert _size_px(pano)[0] <= 2000
    # short labels stay as they are, with no footnote
    fig = H.gradcam_pairs_figure(aerial[:2], a_maps["stage 2"][:2], ground[:2],
                                 g_maps["stage 2"][:2], ["a", "b"])  # fmt: skip
    assert fig.get_supxlabel() == "" and {"a", "b"} <= {ax.get_ylabel() for ax in fig.axes}


def _history(epochs: int, identical: bool) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    r1 = np.round(np.linspace(0, 5, epochs), 2)
    return pd.DataFrame({
        "epoch": e, "loss": 1 / e, "con": 0.5 / e, "ret1": 0.8 / e, "ret2": 0.6 / e,
        "grad_norm": 1.0, "val_R@1": r1, "val_R@1%": r1 if identical else r1 + 1,
    })  # fmt: skip


def test_training_curves_name_their_terms_and_show_identical_curves():
    from geoloc_lib.viz.training import training_curves_figure

    fig = training_curves_figure({"a": _history(4, True), "b": _history(4, False)})
    loss_ax, val_ax, _, val_b = fig.axes
    assert loss_ax.get_ylabel() and val_ax.get_ylabel() == "recall (%)"
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "ret1: triplet, ground vs strong aerial" in legend and legend[0].startswith("loss")
    same = [line for line in val_ax.lines if "= R@1" in line.get_label()]
    assert len(same) == 1 and same[0].get_linestyle() == "--"
    assert not any("=" in line.get_label() for line in val_b.lines)


def _curves(groups, scale: float = 1.0) -> pd.DataFrame:
    rows = []
    for i, g in enumerate(groups):
        for k in (1, 5, 10):
            r = min(100.0, scale * (10 + 5 * i + k))
            rows.append({"condition": g, "k": k, "recall": r, "lo": r - 1, "hi": r + 1})
    return pd.DataFrame(rows)


def test_recall_curves_use_distinct_colours_and_draw_a_compared_model():
    from geoloc_lib.viz.retrieval import recall_curves_figure
    from geoloc_lib.weather.synth import CONDITIONS

    groups = [*CONDITIONS, "mixed"]
    fig = recall_curves_figure(_curves(groups))
    colours = [tuple(line.get_color()) for line in fig.axes[0].lines]
    assert len(set(colours)) == len(groups)
    from matplotlib import colormaps

    assert colours[:10] == [tuple(colormaps["tab10"](i)) for i in range(10)]  # no pale tab20 shades
    assert colours[-1][:3] == (0.0, 0.0, 0.0)  # mixed: black
    fig = recall_curves_figure(
        _curves(groups), compare=_curves(groups, 1.2), labels=("mcgf", "mcgf_matching_only")
    )
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 2
    assert "mcgf vs mcgf_matching_only" in fig.axes[1].get_title()


def test_ablation_bars_carry_the_papers_values_and_the_split():
    from geoloc_lib.analysis.ablations import STREET_METRICS, TABLE5, TABLE6
    from geoloc_lib.core.errors import ConfigError
    from geoloc_lib.viz.ablations import ablation_bars_figure

    results = pd.DataFrame(
        [
            {"variant": v, **{m: 5.0 + i for i, m in enumerate(STREET_METRICS)}}
            for v in (*TABLE5, *TABLE6)
        ]
    )
    fig = ablation_bars_figure(results, split="test")
    assert "test split" in fig.get_suptitle()
    markers = [line for line in fig.axes[0].lines if line.get_marker() == "D"]
    assert len(markers) == len(TABLE5) * len(STREET_METRICS)
    assert "val split" in ablation_bars_figure(results.assign(split="val")).get_suptitle()
    bare = ablation_bars_figure(results, paper=None).axes[0].lines
    assert not [line for line in bare if line.get_marker() == "D"]
    with pytest.raises(ConfigError, match="CVACT"):
        ablation_bars_figure(results, paper="KITTI")


def test_weather_grid_shows_dark_stretched_for_display():
    from geoloc_lib.viz.weather import stretch_for_display, weather_grid_figure

    images = torch.rand(1, 3, 32, 32)
    fig = weather_grid_figure(images, size=32)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 11 and titles[4] == "4: dark" and "stretched" in titles[5]
    dim = torch.rand(3, 8, 8) * 0.05
    out = stretch_for_display(dim)
    assert out.max() == pytest.approx(1.0, abs=0.05) and out.min() == 0.0


def test_location_footnote_follows_the_capture(tmp_path):
    from geoloc_lib.viz.geosynth import DRONE_NOTES, _captures

    assert _captures(tmp_path) == ("same_imagery", "different_time")  # the generator's defaults
    (tmp_path / "geosynth.json").write_text(
        json.dumps({"params": {"drone_capture": "independent"}})
    )
    assert _captures(tmp_path)[0] == "independent"
    assert "satellite's imagery" in DRONE_NOTES["same_imagery"]


def test_figures_sharing_a_tables_name_have_their_own_caption():
    from geoloc_lib.pipeline.reports_index import CAPTIONS, FIGURE_CAPTIONS, _caption

    for stem, caption in FIGURE_CAPTIONS.items():
        assert _caption(stem, figure=True) == caption != CAPTIONS[stem]
    assert _caption("03_gradcam_pair_cosines") != "03 gradcam pair cosines"
