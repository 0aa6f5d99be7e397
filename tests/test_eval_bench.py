"""``geoloc bench eval`` runs end to end at a tiny size and reports agreement with the naive run."""

from __future__ import annotations

import pytest
import torch

from geoloc_lib.bench.eval import N_TRUE_TILES, synthetic_features
from geoloc_lib.eval import faiss_backend
from geoloc_lib.pipeline.cli import main as cli_main


def test_synthetic_features_are_normalised_planted_queries():
    q, g, ql, gl = synthetic_features(50, 900, 16, noise=0.1, seed=3)
    assert torch.allclose(q.norm(dim=1), torch.ones(50), atol=1e-5)
    assert torch.allclose(g.norm(dim=1), torch.ones(900), atol=1e-5)
    assert int(ql.max()) < N_TRUE_TILES and torch.equal(gl, torch.arange(900))
    # low noise: every query is closest to its own tile
    assert torch.equal((q @ g.T).argmax(dim=1), ql)
    q, g, ql, gl = synthetic_features(20, 500, 16, noise=0.1, matches=54, seed=3)
    assert torch.equal(gl[:486], torch.arange(486) // 54)  # 9 buildings of 54 items
    assert torch.equal(gl[486:], 9 + torch.arange(14))
    assert torch.equal((q @ g.T).argmax(dim=1), ql * 54)


def test_bench_eval_many_matches(capsys):
    args = ["bench", "eval", "--queries", "30", "--gallery", "700", "--dim", "16", "--matches"]
    assert cli_main(args + ["54", "--naive-queries", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "identical for 10/10 queries" in out and "metrics equal to naive (1e-6): yes" in out


def test_bench_eval_prints_ratio_speedup_and_agreement(capsys):
    args = ["bench", "eval", "--queries", "60", "--gallery", "800", "--dim", "16"]
    args += ["--naive-queries", "20", "--chunk-size", "16", "--quiet"]
    if faiss_backend.faiss_available():
        args += ["--faiss", "--faiss-spec", "IVF4,Flat", "--nprobe", "1,4", "--faiss-queries", "30"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    for text in ("bare matmul", "whole evaluation", "ratio", "speed-up", "ru_maxrss"):
        assert text in out
    assert "identical for 20/20 queries" in out
    assert "metrics equal to naive (1e-6): yes" in out
    if faiss_backend.faiss_available():
        assert "top-10 identical to the core for 100.00% of queries" in out
        assert "nprobe    4" in out and "recall@10 vs exact 100.00%" in out


def test_bench_eval_rejects_bad_sizes(capsys):
    assert cli_main(["bench", "eval", "--queries", "0", "--quiet"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_bench_eval_rejects_bad_nprobe(capsys):
    if not faiss_backend.faiss_available():
        pytest.skip("faiss is not installed")
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it before any work
        cli_main(
            ["bench", "eval", "--queries", "8", "--gallery", "40", "--dim", "4", "--naive-queries",
             "2", "--faiss", "--faiss-spec", "IVF2,Flat", "--nprobe", "a,b", "--quiet"]
        )  # fmt: skip
    assert exit_.value.code == 2 and "--nprobe" in capsys.readouterr().err
