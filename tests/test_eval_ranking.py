"""Ranking core: hand-computed ranks, tie rule, top-k order, chunking, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval import FeatureError, RankResult, auto_chunk_size, rank_gallery
from geoloc_lib.eval.ranking import NO_MATCH


def gallery_with_scores(scores: list[float]) -> torch.Tensor:
    """Unit 2-d vectors whose dot product with (1, 0) is exactly ``scores``."""
    s = torch.tensor(scores, dtype=torch.float64)
    return torch.stack([s, torch.sqrt(1 - s**2)], dim=1).float()


def unit_queries(n: int) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0]]).repeat(n, 1)


def test_ranks_ties_in_query_favour_and_junk_removed():
    # idx: 0 bad .9 | 1 junk .7 | 2 good .7 | 3 bad .7 | 4 good .2 | 5 junk .8
    gallery = gallery_with_scores([0.9, 0.7, 0.7, 0.7, 0.2, 0.8])
    labels = [5, -1, 1, 4, 1, -1]
    result = rank_gallery(unit_queries(1), gallery, [1], labels, topk=10, progress=False)
    assert result.good_ranks.tolist() == [[1, 3]]
    assert result.n_good.tolist() == [2]
    assert result.n_ranked == 4
    # Junk excluded from the list; the tied true match comes before the tied distractor.
    assert result.topk_indices.tolist() == [[0, 2, 3, 4]]
    assert torch.allclose(result.topk_scores, torch.tensor([[0.9, 0.7, 0.7, 0.2]]))
    assert result.first_rank.tolist() == [1]


def test_ties_against_the_query_and_tie_counts():
    # Same gallery as above: the tied true match (idx 2) now comes after the tied distractor.
    gallery = gallery_with_scores([0.9, 0.7, 0.7, 0.7, 0.2, 0.8])
    labels = [5, -1, 1, 4, 1, -1]
    result = rank_gallery(
        unit_queries(1), gallery, [1], labels, topk=10, progress=False, ties="against",
        count_ties=True,
    )  # fmt: skip
    assert result.good_ranks.tolist() == [[2, 3]]
    assert result.topk_indices.tolist() == [[0, 3, 2, 4]]
    assert result.n_tied.tolist() == [1]  # the distractor at .7 (junk at .7 does not count)
    # one true match, three identical items: favour -> rank 0, against -> rank 2
    flat = torch.tensor([[1.0, 0.0]]).repeat(3, 1)
    for ties, rank in (("favour", 0), ("against", 2)):
        r = rank_gallery(unit_queries(1), flat, [1], [0, 1, 2], progress=False, ties=ties,
                         count_ties=True)  # fmt: skip
        assert r.good_ranks.tolist() == [[rank]] and r.n_tied.tolist() == [2]
    with pytest.raises(FeatureError, match="ties must be one of"):
        rank_gallery(unit_queries(1), flat, ties="random", progress=False)


def test_true_match_ranked_last_and_query_without_match():
    gallery = gallery_with_scores([0.5, 0.4, 0.3, 0.1])
    result = rank_gallery(unit_queries(2), gallery, [7, 9], [1, 2, 3, 7], topk=2, progress=False)
    assert result.good_ranks[0].tolist() == [3]
    assert result.good_ranks[1].tolist() == [-1]
    assert result.n_good.tolist() == [1, 0]
    assert result.first_rank.tolist() == [3, NO_MATCH]  # a miss at every cut-off
    assert result.topk_indices.tolist() == [[0, 1], [0, 1]]


def test_many_true_matches_all_tied():
    # goods at .7 (idx 0, 2) tie with a distractor (idx 1); a distractor .9 leads.
    gallery = gallery_with_scores([0.7, 0.7, 0.7, 0.9, 0.1])
    labels = [3, 8, 3, 8, 3]
    result = rank_gallery(unit_queries(1), gallery, [3], labels, topk=5, progress=False)
    assert result.good_ranks.tolist() == [[1, 2, 4]]
    assert result.topk_indices.tolist() == [[3, 0, 2, 1, 4]]


def test_topk_ties_broken_by_gallery_index_across_the_cut():
    # Five items tie at the top: the cut at k=2 must keep the two lowest indices.
    gallery = gallery_with_scores([0.5, 0.8, 0.8, 0.8, 0.8, 0.8])
    result = rank_gallery(unit_queries(1), gallery, topk=2, progress=False)
    assert result.topk_indices.tolist() == [[1, 2]]
    assert result.good_ranks.shape == (1, 0)
    # With labels, a tied true match jumps ahead of the other tied items.
    labels = [0, 1, 2, 3, 4, 5]
    result = rank_gallery(unit_queries(1), gallery, [4], labels, topk=2, progress=False)
    assert result.topk_indices.tolist() == [[4, 1]]
    assert result.good_ranks.tolist() == [[0]]


def test_chunking_and_device_argument_do_not_change_results():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(23, 8, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(57, 8, generator=gen), dim=1)
    ql = torch.randint(0, 6, (23,), generator=gen)
    gl = torch.randint(-1, 6, (57,), generator=gen)
    ref = rank_gallery(q, g, ql, gl, topk=7, chunk_size=23, progress=False)
    for chunk in (1, 4, 100, None):
        other = rank_gallery(q, g, ql, gl, topk=7, chunk_size=chunk, device="cpu", progress=False)
        for name in ("good_ranks", "n_good", "topk_indices"):
            assert torch.equal(getattr(ref, name), getattr(other, name)), (chunk, name)
        # BLAS picks other kernels for tiny chunks: scores may differ in the last bits only.
        assert torch.allclose(ref.topk_scores, other.topk_scores, rtol=0, atol=1e-6)


def test_half_precision_input_is_scored_in_fp32():
    gen = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(9, 16, generator=gen), dim=1).half()
    g = torch.nn.functional.normalize(torch.randn(40, 16, generator=gen), dim=1).half()
    a = rank_gallery(q, g, topk=5, progress=False)
    b = rank_gallery(q.float(), g.float(), topk=5, progress=False)
    assert torch.equal(a.topk_indices, b.topk_indices)
    assert a.topk_scores.dtype == torch.float32
    assert torch.equal(a.topk_scores, b.topk_scores)


def test_normalize_option_and_numpy_input():
    gen = np.random.default_rng(2)
    q, g = gen.normal(size=(5, 6)), gen.normal(size=(12, 6))
    with pytest.raises(FeatureError, match="not L2-normalised.*normalize=True"):
        rank_gallery(q, g, progress=False)
    a = rank_gallery(q, g, topk=4, normalize=True, progress=False)
    qn = torch.nn.functional.normalize(torch.from_numpy(q).float(), dim=1)
    gn = torch.nn.functional.normalize(torch.from_numpy(g).float(), dim=1)
    b = rank_gallery(qn, gn, topk=4, progress=False)
    assert torch.equal(a.topk_indices, b.topk_indices)


def test_topk_zero_skips_lists_and_auto_chunk_is_bounded():
    result = rank_gallery(unit_queries(3), gallery_with_scores([0.1, 0.2]), [0, 1, 1], [0, 1],
                          topk=0, progress=False)  # fmt: skip
    assert isinstance(result, RankResult)
    assert result.topk_indices.shape == (3, 0)
    assert result.good_ranks[:, 0].tolist() == [1, 0, 0]
    chunk = auto_chunk_size(168_437, multi_match=False, max_chunk_mb=512)
    assert chunk * 168_437 * 5 <= 512 * 2**20
    assert auto_chunk_size(10**9, multi_match=True) == 1


unit = unit_queries(2)
gal = gallery_with_scores([0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gallery": torch.ones(3, 3) / math.sqrt(3)}, "dimensions differ.*2-d.*3-d"),
        (
            {"gallery": torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])},
            "gallery.*NaN or Inf.*row 0",
        ),
        ({"query": torch.tensor([[1.0, 0.0], [float("inf"), 0.0]])}, "query.*NaN or Inf.*row 1"),
        ({"gallery": torch.zeros(0, 2)}, "gallery features: is empty"),
        ({"query": torch.zeros(0, 2)}, "query features: is empty"),
        ({"gallery": torch.ones(3)}, "2-D"),
        ({"gallery": torch.ones(3, 2, dtype=torch.int64)}, "floating-point"),
        ({"query_labels": [0, 1, 2], "gallery_labels": [0, 1, 2]}, "query_labels: has 3 labels.*2"),
        ({"query_labels": [0, 1], "gallery_labels": [0, 1]}, "gallery_labels: has 2 labels.*3"),
        ({"query_labels": [0, -1], "gallery_labels": [0, 1, 2]}, "row 1 is negative"),
        ({"query_labels": [0.5, 1.0], "gallery_labels": [0, 1, 2]}, "integer labels"),
        ({"query_labels": [0, 1]}, "both query_labels and gallery_labels"),
        ({"query_labels": [0, 1], "gallery_labels": [-1, -1, -1]}, "every gallery item is junk"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"topk": -1}, "topk"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, message):
    args = {"query": unit, "gallery": gal, "query_labels": None, "gallery_labels": None}
    args.update(kwargs)
    with pytest.raises(FeatureError, match=message) as info:
        rank_gallery(
            args.pop("query"),
            args.pop("gallery"),
            args.pop("query_labels"),
            args.pop("gallery_labels"),
            progress=False,
            **args,
        )
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(50, 32, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(300, 32, generator=gen), dim=1)
    ql = torch.randint(0, 20, (50,), generator=gen)
    gl = torch.randint(-1, 20, (300,), generator=gen)
    cpu = rank_gallery(q, g, ql, gl, topk=10, chunk_size=16, progress=False)
    gpu = rank_gallery(q, g, ql, gl, topk=10, chunk_size=16, device="cuda", progress=False)
    assert torch.equal(cpu.good_ranks, gpu.good_ranks)
    assert torch.equal(cpu.topk_indices, gpu.topk_indices)
