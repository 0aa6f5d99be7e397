"""What the models look at: channel-mean feature heatmaps and Grad-CAM, through the model contract.

Everything here calls only :class:`~geoloc_lib.models.contract.GeolocModel`'s explanation hooks:
``explained_images`` (what the retrieval features are read from: MCGF restores drone queries
first), ``feature_maps`` (named ``[B, C, h, w]`` maps), ``cam_embedding``,
``cam_target_layers`` and ``cam_reshape``. Which maps and layers a model offers, and why, is
documented at its hooks (``models/geoviewmatch.py``, ``models/mcgf.py``, ``models/baseline.py``).

Feature heatmaps (GeoViewMatch §5, Figures 8 and 9). The paper: "we average the features along
the channel dimension, resize them to the original image size, and overlay them on the original
image". Our reading, stated where the paper leaves room:

- A heatmap is the channel mean of one feature map, bilinearly resized to the image and min-max
  scaled to [0, 1] per image (:func:`channel_mean_heatmap`).
- A *multi-scale* heatmap combines several maps (Table 6's ⊕, the concatenation of stages). The
  multi-scale descriptor L2-normalises each stage's part before concatenating, so every stage
  weighs the same; the multi-scale heatmap is accordingly the mean of the selected maps' [0, 1]
  heatmaps, rescaled to [0, 1] (a plain channel mean of the concatenated maps would let the
  stage with the larger activations decide alone).
- A map whose channel mean is flat up to rounding gives zeros, not amplified rounding noise
  (SwinV2 at random init: :func:`channel_mean_heatmap`).

MCGF (Figure 3) does not say how its heatmaps are made; we use the same channel-mean reading on
the maps MCGF's hooks give (its matching branch on the restored query), and Grad-CAM as a second
view.

Grad-CAM goes through the ``grad-cam`` package (``pytorch_grad_cam``) with
:class:`CosineSimilarityTarget`: the CAM explains the cosine similarity of the explained image's
embedding to a reference embedding (the matched view's), at the model's ``cam_target_layers``,
whose outputs its ``cam_reshape`` turns into NCHW maps (:mod:`geoloc_lib.models.cam`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.data.types import ImageSet, PairSet
from geoloc_lib.models.contract import stage_key
from geoloc_lib.weather.sets import weather_keys
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth

# --------------------------------------------------------------------------- map utilities


def minmax_scale(maps: Tensor) -> Tensor:
    """Scale each map of ``[B, ...]`` to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1).float()
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    scaled = (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny)
    return torch.where(span > 0, scaled, torch.zeros_like(scaled)).view_as(maps)


# A channel-mean map whose spatial range is below this fraction of the features' RMS is float
# rounding, not signal (float32 means of unit-scale values round at ~1e-7).
FLAT_TOLERANCE = 1e-5


def channel_mean_heatmap(features: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, C, h, w]`` features -> ``[B, H, W]`` heatmaps in [0, 1] at ``size`` = (H, W).

    Channel mean, bilinear resize (align_corners=False), per-image min-max scaling. A mean map
    that is flat up to rounding (range < ``FLAT_TOLERANCE`` x the features' RMS, e.g. SwinV2 at
    random init, module docstring) gives zeros instead of amplified rounding noise.
    """
    if features.ndim != 4:
        raise ConfigError(f"channel_mean_heatmap expects [B, C, h, w], got {tuple(features.shape)}")
    feats = features.float()
    mean = feats.mean(dim=1, keepdim=True)
    span = mean.amax(dim=(1, 2, 3)) - mean.amin(dim=(1, 2, 3))
    rms = feats.pow(2).mean(dim=(1, 2, 3)).sqrt()
    up = F.interpolate(mean, size=tuple(size), mode="bilinear", align_corners=False)
    heat = minmax_scale(up[:, 0])
    flat = span <= FLAT_TOLERANCE * rms
    return torch.where(flat[:, None, None], torch.zeros_like(heat), heat)


def centre_weight(heatmaps: Tensor, radius: float = 0.25) -> Tensor:
    """Mean heat inside the central disc (``radius`` x the short side) over the mean heat of
    the whole map, per map ``[B]``: > 1 when the heat gathers at the tile's centre, where the
    panorama was taken (GeoViewMatch §5's reading of its Figures 8 and 9)."""
    h, w = heatmaps.shape[-2:]
    y = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
    x = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
    disc = (y[:, None] ** 2 + x[None, :] ** 2) <= (radius * min(h, w)) ** 2
    heat = heatmaps.float()
    inside = heat[..., disc].mean(dim=-1)
    return inside / heat.flatten(-2).mean(dim=-1).clamp_min(1e-12)


def heatmap_stats(heatmaps: dict[str, Tensor], radius: float = 0.25) -> pd.DataFrame:
    """Per heatmap kind, over the examples: the mean :func:`centre_weight` and the mean per-map
    standard deviation of the [0, 1] heat ("contrast": how different the thermal values are)."""
    rows = [
        {
            "heatmap": key,
            "centre weight": float(centre_weight(maps, radius).mean()),
            "contrast (std)": float(maps.float().flatten(1).std(dim=1).mean()),
        }
        for key, maps in heatmaps.items()
    ]
    return pd.DataFrame(rows)


def require_model(run: object, allowed: Sequence[str], parameter: str) -> nn.Module:
    """The model of a :class:`~geoloc_lib.training.runs.Run` whose ``model_name`` is in
    ``allowed``; otherwise a ConfigError naming the notebook ``parameter``."""
    name = getattr(run, "model_name", None)
    if name not in allowed:
        raise ConfigError(
            f"parameter {parameter}: run {getattr(run, 'name', run)!r} holds a {name!r} model; "
            f"this needs one of {', '.join(allowed)} (see notebooks/01_train.ipynb)"
        )
    return run.model  # type: ignore[attr-defined]


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors are (the CPU for a model without any, e.g. raw pixels)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


# --------------------------------------------------------------------------- feature heatmaps


@torch.no_grad()
def explained_images(model: nn.Module, images: Tensor, view: str) -> Tensor:
    """The images ``model`` reads ``view``'s retrieval features from (its ``explained_images``
    hook; MCGF: a drone query's last DDIM restoration), on the model's device, in [0, 1]."""
    return model.explained_images(images.to(model_device(model)), view)


def multi_scale_key(stages: Sequence[int]) -> str:
    return "multi-scale " + "+".join(str(s) for s in sorted(stages))


@torch.no_grad()
def feature_heatmaps(
    model: nn.Module,
    images: Tensor,
    view: str,
    names: Sequence[str] | None = None,
    combined: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Tensor]:
    """Channel-mean heatmaps ``[B, H, W]`` (CPU, [0, 1], at the images' size) of the model's
    ``feature_maps`` of its ``explained_images``: one per map of ``names`` (None: every map),
    then one per entry of ``combined`` (key -> map names: the mean of those maps' heatmaps,
    rescaled; module docstring)."""
    combined = dict(combined or {})
    maps = model.feature_maps(explained_images(model, images, view), view)
    names = list(maps) if names is None else list(names)
    needed = list(dict.fromkeys([*names, *(n for parts in combined.values() for n in parts)]))
    missing = [n for n in needed if n not in maps]
    if missing:
        raise ConfigError(
            f"{type(model).__name__} has no feature map {missing[0]!r} for view {view!r} "
            f"(it has: {', '.join(maps)})"
        )
    size = tuple(images.shape[-2:])
    per_map = {n: channel_mean_heatmap(maps[n], size).cpu() for n in needed}
    out = {n: per_map[n] for n in names}
    for key, parts in combined.items():
        out[key] = minmax_scale(torch.stack([per_map[n] for n in parts]).mean(dim=0))
    return out


def stage_heatmaps(
    model: nn.Module,
    images: Tensor,
    view: str,
    stages: Sequence[int] = (2, 3, 4),
    multi_scales: Sequence[Sequence[int]] = ((3, 4), (2, 3, 4)),
) -> dict[str, Tensor]:
    """:func:`feature_heatmaps` of a model whose maps are its backbone's stages: keyed
    ``"stage s"`` for each of ``stages`` (1-based, ascending) and ``"multi-scale a+b"`` for each
    of ``multi_scales`` (GeoViewMatch Figures 8 and 9)."""
    combined = {
        multi_scale_key(combo): [stage_key(int(s)) for s in combo] for combo in multi_scales
    }
    names = [stage_key(s) for s in sorted(set(int(s) for s in stages))]
    return feature_heatmaps(model, images, view, names, combined)


# --------------------------------------------------------------------------- MCGF Figure 3


@dataclass
class QueryVariants:
    """A drone query under several weathers and rotations: ``images`` ``[V, 3, H, W]``."""

    images: Tensor
    conditions: list[str]
    rotations: list[int]  # degrees, counter-clockwise

    @property
    def labels(self) -> list[str]:
        return [
            c if r == 0 else f"{c}, {r}°"
            for c, r in zip(self.conditions, self.rotations, strict=True)
        ]


def weather_rotation_variants(
    image: Tensor,
    conditions: Sequence[str] = CONDITIONS,
    rotations: Sequence[int] = (90, 180, 270),
    *,
    seed: int = 0,
    reference_size: int | None = 512,
) -> QueryVariants:
    """One image ``[3, H, W]`` under every condition (upright), then rotated by each of
    ``rotations`` (multiples of 90°, counter-clockwise) in clear weather (MCGF Figure 3).

    The rotation comes first (the drone turns), then the weather; every variant uses the same
    weather key, derived from ``seed``. ``reference_size`` as in :class:`WeatherSynth` (the
    evaluation draws the recipe at 512 px).
    """
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ConfigError(
            f"weather_rotation_variants: {choices_message('condition', bad[0], CONDITIONS)}"
        )
    rots = [int(r) for r in rotations]
    if any(r % 90 for r in rots):
        raise ConfigError(f"parameter rotations: multiples of 90 degrees only, got {rots}")
    conds = list(conditions) + ["normal"] * len(rots)
    degrees = [0] * len(conditions) + rots
    turned = torch.stack([torch.rot90(image, (d // 90) % 4, dims=(-2, -1)) for d in degrees])
    index = torch.tensor([CONDITIONS.index(c) for c in conds], dtype=torch.long)
    # every variant is image ``seed`` of a set weathered with key seed 17
    keys = weather_keys(torch.full((len(conds),), int(seed)), 17)
    weathered, _ = WeatherSynth(reference_size=reference_size)(turned.float(), index, seeds=keys)
    return QueryVariants(weathered.clamp(0, 1), conds, degrees)


@dataclass
class DroneMatches:
    """Retrieval of query variants against a satellite gallery (top-k, best first)."""

    variants: QueryVariants
    topk: Tensor  # [V, k] gallery indices
    scores: Tensor  # [V, k] cosine similarities
    correct: Tensor  # [V, k] bool: the gallery item is the query's location
    true_rank: Tensor  # [V] 0-based rank of the true match (ties in the query's favour)
    true_score: Tensor  # [V] cosine similarity to the true match


@torch.no_grad()
def match_variants(
    model: nn.Module,
    variants: QueryVariants,
    label: int,
    gallery_features: Tensor,
    gallery_labels: np.ndarray | Tensor,
    k: int = 5,
) -> DroneMatches:
    """Embed the variants as drone queries and rank the (L2-normalised) satellite gallery."""
    from geoloc_lib.eval import rank_gallery

    gallery_labels = torch.as_tensor(np.asarray(gallery_labels), dtype=torch.int64)
    hits = (gallery_labels == int(label)).nonzero().flatten()
    if hits.numel() == 0:
        raise ConfigError(f"the gallery holds no item with the query's label {label}")
    device = model_device(model)
    query = model.embed(variants.images.to(device), "drone").float().cpu()
    gallery = gallery_features.float().cpu()
    labels = torch.full((query.shape[0],), int(label), dtype=torch.int64)
    res = rank_gallery(query, gallery, labels, gallery_labels, topk=k, progress=False)
    true_score = (query @ gallery[hits].T).amax(dim=1)
    return DroneMatches(
        variants=variants,
        topk=res.topk_indices,
        scores=res.topk_scores,
        correct=gallery_labels[res.topk_indices] == int(label),
        true_rank=res.first_rank,
        true_score=true_score,
    )


def matches_table(matches: DroneMatches, gallery_names: Sequence[str]) -> pd.DataFrame:
    """One row per variant: condition, rotation, 1-based rank of the true match, its cosine
    similarity and the top-k gallery locations (``*`` marks the true match)."""
    v = matches.variants
    names = np.asarray(gallery_names, dtype=object)[matches.topk.numpy()]
    marked = np.where(matches.correct.numpy(), names + "*", names)
    return pd.DataFrame(
        {
            "condition": v.conditions,
            "rotation": v.rotations,
            "true rank": (matches.true_rank + 1).tolist(),
            "cos(true)": matches.true_score.tolist(),
            "top-k": [" ".join(row) for row in marked],
        }
    )


# --------------------------------------------------------------------------- Grad-CAM


class CosineSimilarityTarget:
    """A ``pytorch_grad_cam`` target: cosine similarity of a model output to ``reference``.

    grad-cam calls a target with one sample's output (``[D]``); a batch ``[B, D]`` gives ``[B]``.
    """

    def __init__(self, reference: Tensor) -> None:
        self.reference = reference.detach().float().flatten()

    def __call__(self, model_output: Tensor) -> Tensor:
        ref = self.reference.to(model_output.device)
        return F.cosine_similarity(model_output.float(), ref.expand_as(model_output), dim=-1)


class _Embedder(nn.Module):
    """``forward(x) = fn(x)`` for grad-cam, which calls ``model(x)`` and needs parameters."""

    def __init__(self, owner: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def embedder_grad_cam(
    embedder: nn.Module,
    images: Tensor,
    references: Tensor,
    target_layers: list[nn.Module],
    reshape_transform: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Grad-CAM ``[B, H, W]`` in [0, 1] (CPU) of ``embedder(images)`` towards ``references``
    ``[B, D]`` (one per image) with the cosine target; several layers are averaged (grad-cam)."""
    from pytorch_grad_cam import GradCAM

    if references.shape[0] != images.shape[0]:
        raise ConfigError(
            f"grad_cam: {references.shape[0]} reference embeddings for {images.shape[0]} images"
        )
    device = next(embedder.parameters()).device
    targets = [CosineSimilarityTarget(r) for r in references]
    with torch.enable_grad(), GradCAM(embedder, target_layers, reshape_transform) as cam:
        maps = cam(input_tensor=images.to(device).float(), targets=targets)
    embedder.zero_grad(set_to_none=True)  # grad-cam's backward fills the parameters' .grad
    return torch.from_numpy(np.ascontiguousarray(maps)).float()


def grad_cam(model: nn.Module, images: Tensor, view: str, references: Tensor) -> Tensor:
    """Grad-CAM ``[B, H, W]`` of ``model``'s ``view`` embedding towards ``references`` ``[B, D]``
    (the matched view's embeddings), at the model's ``cam_target_layers``.

    The CAM is computed on the model's ``explained_images`` (MCGF: the restored drone query; no
    gradient flows through the restoration), so it explains the embedding of the image that is
    matched; the geometry is the input's, so it overlays the input. With MCGF's ``pool_steps``
    the embedding averages every DDIM step; the CAM explains the last.
    """
    seen = explained_images(model, images, view)
    layers = model.cam_target_layers(view)
    embedder = _Embedder(model, lambda x: model.cam_embedding(x, view)).eval()
    return embedder_grad_cam(embedder, seen, references, layers, model.cam_reshape(view))


# --------------------------------------------------------------------------- example picking


def pick_street_pairs(
    pairs: PairSet, ground_size: tuple[int, int], aerial_size: tuple[int, int], n: int, seed: int
) -> tuple[list[str], Tensor, Tensor]:
    """``n`` seeded pairs (sorted by index): ids, panoramas ``[n, 3, Hg, Wg]``, tiles ``[n, 3, Ha, Wa]``."""
    from geoloc_lib.data.street_torch import StreetPairDataset

    if n < 1 or n > len(pairs):
        raise ConfigError(
            f"parameter n_examples: must be in 1..{len(pairs)} ({pairs.name}), got {n}"
        )
    data = StreetPairDataset(pairs, ground_size, aerial_size)
    picks = np.sort(np.random.default_rng(seed).choice(len(pairs), n, replace=False))
    items = [data[int(i)] for i in picks]
    return (
        [pairs.ids[int(i)] for i in picks],
        torch.stack([it["ground"] for it in items]),
        torch.stack([it["aerial"] for it in items]),
    )


def pick_drone_query(query: ImageSet, size: int, seed: int) -> tuple[Tensor, int, str]:
    """One seeded drone query: image ``[3, size, size]``, label, file name."""
    from geoloc_lib.data.university_torch import to_tensor

    if len(query) == 0:
        raise ConfigError(f"query set {query.name!r} is empty")
    i = int(np.random.default_rng(seed).integers(len(query)))
    path = query.paths[i]
    return to_tensor(path, size), int(query.labels[i]), f"{query.names[i]}/{path.name}"
