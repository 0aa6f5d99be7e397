"""Optional faiss backend: exact search equals the core; IVF recall; clear error without faiss."""

from __future__ import annotations

import sys

import pytest
import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.eval import faiss_backend as fb
from geoloc_lib.eval import rank_gallery

needs_faiss = pytest.mark.skipif(not fb.faiss_available(), reason="faiss is not installed")


def features(seed: int = 0, n_q: int = 40, n_g: int = 600, dim: int = 16):
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n_q, dim, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(n_g, dim, generator=gen), dim=1)
    return q, g


@needs_faiss
def test_flat_index_gives_the_core_topk_and_ranks():
    q, g = features()
    gl = torch.arange(600) % 50
    gl[::7] = -1  # junk is skipped when positions are counted
    ql = torch.arange(40) % 50
    index = fb.build_index(g.numpy(), "Flat", block=128, progress=False)
    scores, top = fb.faiss_topk(index, q, 20, chunk_size=16, progress=False)
    core = rank_gallery(q, g, topk=20, progress=False)
    assert torch.equal(top, core.topk_indices)
    assert torch.allclose(scores, core.topk_scores, atol=1e-5)
    first = fb.first_match_position(top, ql, gl)
    labelled = rank_gallery(q, g, ql, gl, topk=1, progress=False).first_rank
    for k in (1, 5, 10):  # exact while the list holds >= k non-junk items
        assert torch.equal(first < k, labelled < k)


@needs_faiss
def test_ivf_recall_against_exact():
    q, g = features(1)
    exact = fb.faiss_topk(fb.build_index(g, "Flat", progress=False), q, 10, progress=False)[1]
    ivf = fb.build_index(g, "IVF8,Flat", nprobe=8, seed=0, progress=False)
    approx = fb.faiss_topk(ivf, q, 10, progress=False)[1]
    assert fb.topk_overlap(approx, exact) == 1.0  # visiting every list is exhaustive
    fb.faiss_ivf(ivf).nprobe = 1
    partial = fb.topk_overlap(fb.faiss_topk(ivf, q, 10, progress=False)[1], exact)
    assert 0.0 < partial < 1.0


def test_topk_overlap_and_first_match_position_by_hand():
    approx = torch.tensor([[1, 2, 3], [4, 5, -1]])
    exact = torch.tensor([[3, 2, 9], [4, 6, 7]])
    assert fb.topk_overlap(approx, exact) == pytest.approx(3 / 6)
    # row 0: item 1 is junk, item 2 is the match -> position 0 among non-junk; row 1: none
    first = fb.first_match_position(approx, [7, 8], [0, -1, 7, 0, 0, 0, 0, 0, 0, 0])
    assert first.tolist() == [0, 3]


@needs_faiss
def test_index_errors():
    q, g = features(2, n_q=3, n_g=20)
    with pytest.raises(ConfigError, match="spec 'Nonsense' is invalid"):
        fb.build_index(g, "Nonsense", progress=False)
    with pytest.raises(ConfigError, match="not L2-normalised.*row 0"):
        fb.build_index(g * 2, "Flat", progress=False)
    with pytest.raises(ConfigError, match="nprobe applies to IVF"):
        fb.build_index(g, "Flat", nprobe=4, progress=False)
    index = fb.build_index(g, "Flat", progress=False)
    with pytest.raises(ConfigError, match="dimensions differ"):
        fb.faiss_topk(index, torch.ones(2, 3) / 3**0.5, 5, progress=False)


def test_missing_faiss_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    assert not fb.faiss_available()
    with pytest.raises(ConfigError, match=r"pip install faiss-cpu"):
        fb.build_index(torch.eye(3), "Flat", progress=False)
