"""What the models look at: channel-mean feature heatmaps and Grad-CAM for embedding models.

Feature heatmaps (GeoViewMatch §5, Figures 8 and 9). The paper: "we average the features along
the channel dimension, resize them to the original image size, and overlay them on the original
image". Our reading, stated where the paper leaves room:

- A *stage* heatmap is the channel mean of the Swin stage's output map (the residual stream
  after the stage's last block, before the backbone's final norm: the norm is a separate layer,
  not part of stage 4, and a LayerNorm'd map has a nearly constant channel mean), bilinearly
  resized to the image and min-max scaled to [0, 1] per image.
- The *multi-scale* feature is the concatenation of the selected stages (Table 6's ⊕). Its
  descriptor L2-normalises each stage's part before concatenating, so every stage weighs the
  same; the multi-scale heatmap is accordingly the mean of the selected stages' [0, 1] stage
  heatmaps, rescaled to [0, 1] (a plain channel mean of the concatenated maps would let the
  stage with the larger activations decide alone).
- SwinV2 adds only LayerNorm outputs to its residual stream (post-norm blocks, normalised patch
  merging), so a stage's channel mean is set by the norms' learnt affine parameters: it is
  zero up to rounding at random init (such maps come out all zero, see
  :func:`channel_mean_heatmap`) and carries signal once those parameters are trained
  (pretrained weights, or training). The paper used ImageNet-pretrained SwinV2-T.

MCGF (Figure 3) does not say how its heatmaps are made; we use the same channel-mean
reading on the matching branch (EVA-02's last-block patch tokens of the *restored* query, i.e.
what is matched), and Grad-CAM as a second view.

Grad-CAM goes through the ``grad-cam`` package (``pytorch_grad_cam``) with
:class:`CosineSimilarityTarget`: the CAM explains the cosine similarity of the explained image's
embedding to a reference embedding (the matched view's). Token layouts are turned into NCHW maps
by :class:`NHWCToNCHW` (timm Swin blocks output ``[B, H, W, C]``) and :class:`TokensToNCHW`
(EVA/ViT: prefix tokens dropped, then the patch grid).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoloc_lib.core.errors import ConfigError, choices_message
from geoloc_lib.data.types import ImageSet, PairSet
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


# --------------------------------------------------------------------------- GeoViewMatch


def stage_key(stage: int) -> str:
    return f"stage {stage}"


def multi_scale_key(stages: Sequence[int]) -> str:
    return "multi-scale " + "+".join(str(s) for s in sorted(stages))


def geoviewmatch_stage_maps(
    model: nn.Module, images: Tensor, view: str, stages: Sequence[int]
) -> dict[int, Tensor]:
    """NCHW outputs of the 1-based Swin ``stages`` of ``model``'s ``view`` instance (no final norm).

    ``images``: ``[B, 3, H, W]`` in [0, 1] at the view's input size.
    """
    net = model.backbone.instance(view)
    n_stages = len(net.layers)
    stages = sorted(set(int(s) for s in stages))
    if not stages or not all(1 <= s <= n_stages for s in stages):
        raise ConfigError(f"stages must lie in 1..{n_stages}, got {stages}")
    x = (images.to(model.mean.device) - model.mean) / model.std
    maps = net.forward_intermediates(
        x,
        indices=[s - 1 for s in stages],
        norm=False,
        stop_early=True,
        output_fmt="NCHW",
        intermediates_only=True,
    )
    return dict(zip(stages, maps, strict=True))


@torch.no_grad()
def geoviewmatch_heatmaps(
    model: nn.Module,
    images: Tensor,
    view: str,
    stages: Sequence[int] = (2, 3, 4),
    multi_scales: Sequence[Sequence[int]] = ((3, 4), (2, 3, 4)),
) -> dict[str, Tensor]:
    """Channel-mean heatmaps ``[B, H, W]`` (CPU, [0, 1]) of GeoViewMatch, keyed
    ``"stage s"`` for each of ``stages`` and ``"multi-scale a+b"`` for each of ``multi_scales``
    (the mean of those stages' heatmaps, rescaled; module docstring)."""
    if view not in ("ground", "aerial"):
        raise ConfigError(
            f"geoviewmatch_heatmaps: {choices_message('view', view, ('ground', 'aerial'))}"
        )
    needed = set(int(s) for s in stages).union(*(set(int(s) for s in m) for m in multi_scales))
    maps = geoviewmatch_stage_maps(model, images, view, sorted(needed))
    size = tuple(images.shape[-2:])
    per_stage = {s: channel_mean_heatmap(m, size).cpu() for s, m in maps.items()}
    out = {stage_key(s): per_stage[s] for s in sorted(set(int(s) for s in stages))}
    for combo in multi_scales:
        stacked = torch.stack([per_stage[int(s)] for s in combo])
        out[multi_scale_key(combo)] = minmax_scale(stacked.mean(dim=0))
    return out


# --------------------------------------------------------------------------- MCGF


@torch.no_grad()
def mcgf_matched_images(model: nn.Module, images: Tensor) -> Tensor:
    """The images MCGF's matching branch sees for drone queries: the last DDIM prediction of the
    restored query (``restoration=False`` models: the query itself). ``[B, 3, H, W]`` in [0, 1]."""
    images = images.to(model.alpha_bar.device)
    if getattr(model, "restore", None) is None:
        return images
    return model.restore_query(images)[-1].clamp(0, 1)


@torch.no_grad()
def mcgf_feature_heatmap(model: nn.Module, images: Tensor, restore: bool = True) -> Tensor:
    """Channel-mean heatmaps ``[B, H, W]`` of EVA-02's last-block patch tokens (MCGF ``content``)
    on the restored query (``restore=False``: on ``images`` as given, e.g. satellite tiles)."""
    seen = mcgf_matched_images(model, images) if restore else images.to(model.alpha_bar.device)
    content = model.content
    tokens = content.forward_intermediates(
        model.content_norm(seen),
        indices=[len(content.blocks) - 1],
        norm=False,
        output_fmt="NCHW",
        intermediates_only=True,
    )[0]
    return channel_mean_heatmap(tokens, tuple(images.shape[-2:])).cpu()


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
    device = model.alpha_bar.device
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


class NHWCToNCHW:
    """Reshape for timm Swin block outputs: ``[B, H, W, C]`` -> ``[B, C, H, W]``; token lists
    ``[B, H*W, C]`` (e.g. what ``norm2`` sees) need ``grid`` = (H, W)."""

    def __init__(self, grid: tuple[int, int] | None = None) -> None:
        self.grid = grid

    def __call__(self, tensor: Tensor) -> Tensor:
        if tensor.ndim == 4:
            return tensor.permute(0, 3, 1, 2)
        if tensor.ndim == 3 and self.grid is not None:
            b, n, c = tensor.shape
            h, w = self.grid
            if n != h * w:
                raise ConfigError(f"NHWCToNCHW: {n} tokens do not fill a {h}x{w} grid")
            return tensor.reshape(b, h, w, c).permute(0, 3, 1, 2)
        raise ConfigError(
            f"NHWCToNCHW: expected [B, H, W, C] (or [B, L, C] with a grid), got {tuple(tensor.shape)}"
        )


class TokensToNCHW:
    """Reshape for ViT/EVA token sequences ``[B, P + h*w, C]``: drop the ``P`` prefix (class,
    register) tokens, lay the patch tokens on the ``grid`` = (h, w) -> ``[B, C, h, w]``."""

    def __init__(self, grid: tuple[int, int], num_prefix_tokens: int) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)

    @classmethod
    def for_model(cls, vit: nn.Module) -> TokensToNCHW:
        return cls(tuple(vit.patch_embed.grid_size), getattr(vit, "num_prefix_tokens", 0))

    def __call__(self, tensor: Tensor) -> Tensor:
        patches = tensor[:, self.num_prefix_tokens :]
        b, n, c = patches.shape
        h, w = self.grid
        if n != h * w:
            raise ConfigError(
                f"TokensToNCHW: {n} patch tokens (after {self.num_prefix_tokens} prefix tokens) "
                f"do not fill the {h}x{w} patch grid"
            )
        return patches.reshape(b, h, w, c).permute(0, 3, 1, 2)


def swin_target_layers(swin: nn.Module, stages: Sequence[int]) -> list[nn.Module]:
    """The last block of each 1-based stage of a timm Swin (its output is the stage's map)."""
    n = len(swin.layers)
    if not stages or not all(1 <= int(s) <= n for s in stages):
        raise ConfigError(f"stages must lie in 1..{n}, got {list(stages)}")
    return [swin.layers[int(s) - 1].blocks[-1] for s in stages]


def eva_target_layers(vit: nn.Module) -> list[nn.Module]:
    """The last block, or its ``norm1`` when the model pools the class token: after the last
    block the class token no longer reads the patch tokens, so their gradient would be zero."""
    block = vit.blocks[-1]
    return [block.norm1] if getattr(vit, "global_pool", "avg") == "token" else [block]


class _Embedder(nn.Module):
    """``forward(x) = fn(x)`` for grad-cam, which calls ``model(x)`` and needs parameters."""

    def __init__(self, owner: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def grad_cam(
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


def geoviewmatch_grad_cam(
    model: nn.Module, images: Tensor, view: str, references: Tensor
) -> Tensor:
    """Grad-CAM of GeoViewMatch's ``view`` descriptor towards ``references`` (the other view's
    descriptors), at the last block of each stage feeding the multi-scale descriptor."""
    if view not in ("ground", "aerial"):
        raise ConfigError(
            f"geoviewmatch_grad_cam: {choices_message('view', view, ('ground', 'aerial'))}"
        )
    net = model.backbone.instance(view)
    embedder = _Embedder(model, lambda x: model.embed(x, view)).eval()
    layers = swin_target_layers(net, model.cfg.used_stages)
    return grad_cam(embedder, images, references, layers, NHWCToNCHW())


def mcgf_grad_cam(
    model: nn.Module, images: Tensor, references: Tensor, restore: bool = True
) -> Tensor:
    """Grad-CAM of MCGF's matching features (EVA-02 ``content``) towards ``references``.

    Drone queries are restored first (no gradient through the DDIM steps): the CAM explains the
    matching branch on the image it matches; the geometry is the query's, so it overlays the
    query. With ``pool_steps`` the embedding averages every step; the CAM explains the last.
    """
    seen = mcgf_matched_images(model, images) if restore else images
    embedder = _Embedder(model, lambda x: F.normalize(model.match_features(x).float(), dim=-1))
    embedder.eval()
    layers = eva_target_layers(model.content)
    return grad_cam(embedder, seen, references, layers, TokensToNCHW.for_model(model.content))


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
