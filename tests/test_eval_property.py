"""Property test: the chunked core equals the naive per-query full-sort evaluator.

Two kinds of random data: sign vectors (entries +-1/4 in 16-d, so dot products are exact and
ties are everywhere) and continuous Gaussian features. Labels include junk (-1), queries without
a match, and many matches per query.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geoloc_lib.eval import evaluate_pairs, evaluate_university1652, rank_gallery
from geoloc_lib.eval.naive import naive_evaluate_pairs, naive_evaluate_university1652, naive_rank


def random_case(seed: int, n_queries: int, n_gallery: int, tied: bool, n_labels: int):
    rng = np.random.default_rng(seed)
    if tied:
        q = rng.choice([-0.25, 0.25], size=(n_queries, 16)).astype(np.float32)
        g = rng.choice([-0.25, 0.25], size=(n_gallery, 16)).astype(np.float32)
    else:
        q = rng.normal(size=(n_queries, 8)).astype(np.float32)
        g = rng.normal(size=(n_gallery, 8)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
    gl = rng.integers(-1, n_labels, size=n_gallery)
    ql = rng.integers(0, n_labels + 1, size=n_queries)  # label n_labels never matches
    coords = rng.normal(scale=500.0, size=(n_gallery, 2)) + [500_000.0, 6_000_000.0]
    return torch.from_numpy(q), torch.from_numpy(g), ql, gl, coords


cases = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(1, 25),  # queries
    st.integers(1, 120),  # gallery
    st.booleans(),  # tied sign vectors or continuous
    st.integers(1, 12),  # number of labels (few labels -> many matches per query)
    st.integers(1, 30),  # chunk size
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cases)
def test_university1652_matches_naive(case):
    seed, n_q, n_g, tied, n_labels, chunk = case
    q, g, ql, gl, _ = random_case(seed, n_q, n_g, tied, n_labels)
    if (gl < 0).all():
        gl[0] = 0
    core = evaluate_university1652(q, g, ql, gl, chunk_size=chunk, progress=False)
    naive = naive_evaluate_university1652(q, g, ql, gl)
    for name, value in naive.items():
        assert abs(core[name] - value) <= 1e-6, (name, core[name], value)
    assert core["n_queries"] == n_q  # queries without a true match count as misses

    for ties in ("favour", "against"):
        result = rank_gallery(q, g, ql, gl, topk=7, chunk_size=chunk, progress=False, ties=ties)
        naive_ranks, naive_top = naive_rank(q, g, ql, gl, topk=7, ties=ties)
        assert np.array_equal(result.topk_indices.numpy(), naive_top), ties
        for i, ranks in enumerate(naive_ranks):
            assert result.good_ranks[i, : int(result.n_good[i])].tolist() == ranks.tolist()


@pytest.mark.filterwarnings("ignore:evaluate_pairs. the true match")  # sign vectors tie a lot
@settings(max_examples=30, deadline=None, derandomize=True)
@given(cases)
def test_pairs_and_meter_level_match_naive(case):
    seed, n_q, n_g, tied, _, chunk = case
    n_q = min(n_q, n_g)
    q, g, _, _, coords = random_case(seed, n_q, n_g, tied, 1)
    core = evaluate_pairs(q, g, gallery_coords=coords, chunk_size=chunk, progress=False)
    naive = naive_evaluate_pairs(q, g, gallery_coords=coords)
    assert set(core) - {"n_queries", "n_skipped", "n_tied"} == set(naive)
    for name, value in naive.items():
        assert abs(core[name] - value) <= 1e-6, (name, core[name], value)


def test_satellite_to_drone_scale_many_matches_against_naive():
    # 54 true matches per query among a 2,000-item gallery with junk, like satellite->drone.
    rng = np.random.default_rng(7)
    n_buildings, per = 30, 54
    centers = rng.normal(size=(n_buildings, 32))
    g = np.repeat(centers, per, axis=0) + rng.normal(scale=1.5, size=(n_buildings * per, 32))
    g = np.concatenate([g, rng.normal(size=(380, 32))])  # distractor buildings
    gl = np.concatenate([np.repeat(np.arange(n_buildings), per), np.full(380, -1)])
    gl[rng.choice(len(gl), 40, replace=False)] = -1  # some junk among the true items
    q = centers[:24] + rng.normal(scale=0.5, size=(24, 32))
    q = torch.nn.functional.normalize(torch.from_numpy(q).float(), dim=1)
    g = torch.nn.functional.normalize(torch.from_numpy(g).float(), dim=1)
    ql = np.arange(24)
    core = evaluate_university1652(q, g, ql, gl, chunk_size=5, progress=False)
    naive = naive_evaluate_university1652(q, g, ql, gl)
    for name, value in naive.items():
        assert abs(core[name] - value) <= 1e-6, (name, core[name], value)
    assert 0 < core["AP"] < 100
