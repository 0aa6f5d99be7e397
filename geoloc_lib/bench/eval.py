"""``geoloc bench eval``: the evaluator against the bare matrix product and a naive evaluator.

On random L2-normalised features (queries are noisy copies of their true gallery tile, so the
metrics are not trivially zero) it prints:

- the time of the bare matrix product over the same query chunks (the floor),
- the time of the whole evaluation (validation, ranking, metrics) and the ratio of the two,
- peak memory: the process's ``ru_maxrss`` and the resident set sampled during the evaluation
  (every 20 ms from ``/proc/self/status``); on CUDA also ``torch.cuda.max_memory_allocated``,
- the naive per-query full-sort evaluator's time on a subset, extrapolated to all queries, the
  speed-up, and whether both give identical ranks and metrics on that subset,
- with ``--faiss``: exact faiss search against the core, and an IVF index's recall@10 against
  exact search.

Defaults are the University160k-WX scale (37,855 x 168,437 x 512); ``--quick`` runs 2,000 x 20,000;
``--queries 701 --gallery 51355 --matches 54`` is University-1652 satellite->drone.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.runtime import terminal_progress
from geoloc_lib.eval.metrics import (
    evaluate_university1652,
    n_without_match,
    summarize,
    university1652_per_query,
)
from geoloc_lib.eval.naive import naive_rank, naive_university1652_metrics
from geoloc_lib.eval.ranking import auto_chunk_size, rank_gallery

U160K_QUERIES, U160K_GALLERY, U160K_DIM = 37_855, 168_437, 512
N_TRUE_TILES = 701  # University-1652 test buildings; the rest of the gallery are distractors


def synthetic_features(
    n_queries: int,
    n_gallery: int,
    dim: int,
    *,
    noise: float = 4.0,
    matches: int = 1,
    seed: int = 0,
    block: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random unit gallery vectors and queries that are noisy unit copies of true tiles.

    Up to 701 buildings own ``matches`` consecutive gallery items each (1 for drone->satellite,
    54 for satellite->drone); the rest of the gallery are distractors with labels of their own.
    A query is a noisy copy of its building's first item. Returns ``(query, gallery,
    query_labels, gallery_labels)``, built in blocks so generation does not set the peak memory.
    """
    gen = torch.Generator().manual_seed(seed)
    gallery = torch.empty(n_gallery, dim)
    for start in range(0, n_gallery, block):
        rows = min(block, n_gallery - start)
        gallery[start : start + rows] = torch.nn.functional.normalize(
            torch.randn(rows, dim, generator=gen), dim=1
        )
    n_true = max(1, min(N_TRUE_TILES, n_gallery // matches))
    gallery_labels = torch.arange(n_gallery)
    owned = min(n_true * matches, n_gallery)
    gallery_labels[:owned] = torch.arange(owned) // matches
    gallery_labels[owned:] = n_true + torch.arange(n_gallery - owned)
    query_labels = torch.randint(0, n_true, (n_queries,), generator=gen)
    query = torch.empty(n_queries, dim)
    for start in range(0, n_queries, block):
        labels = query_labels[start : start + block]
        jitter = torch.randn(labels.numel(), dim, generator=gen) * (noise / math.sqrt(dim))
        query[start : start + labels.numel()] = torch.nn.functional.normalize(
            gallery[labels * matches] + jitter, dim=1
        )
    return query, gallery, query_labels, gallery_labels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_bare_matmul(
    query: torch.Tensor,
    gallery: torch.Tensor,
    chunk_size: int,
    device: torch.device,
    progress: bool = True,
) -> float:
    """Seconds for the chunked fp32 product alone (same chunks and output buffer as the core)."""
    gal = gallery.to(device=device, dtype=torch.float32)
    buf = torch.empty((min(chunk_size, query.shape[0]), gal.shape[0]), device=device)
    _sync(device)
    start_time = time.perf_counter()
    with torch.inference_mode():
        starts = range(0, query.shape[0], chunk_size)
        for start in tqdm(starts, desc="bare matmul", disable=not progress, leave=False):
            q = query[start : start + chunk_size].to(device=device, dtype=torch.float32)
            torch.mm(q, gal.T, out=buf[: q.shape[0]])
    _sync(device)
    return time.perf_counter() - start_time


class RssSampler:
    """Peak resident set size (bytes) while active, sampled from ``/proc/self/status``."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self.start_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        status = Path("/proc/self/status")
        if not status.exists():
            return 0
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def max_rss_bytes() -> int:
    """The process's lifetime peak resident set (``ru_maxrss``; 0 where unavailable)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def naive_agreement(
    query: torch.Tensor,
    gallery: torch.Tensor,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    n_queries: int,
    chunk: int,
    device: torch.device,
    progress: bool = False,
) -> dict[str, float]:
    """The naive per-query evaluator (CPU) against the core (on ``device``) on the first
    ``n_queries`` queries: ``naive_s_per_query``, ``max_metric_diff`` (University-1652 metrics),
    ``same_ranks`` (queries with identical rank lists), ``max_rank_shift`` and ``n_queries``."""
    n_sub = min(n_queries, query.shape[0])
    sub = slice(0, n_sub)
    t0 = time.perf_counter()
    naive_ranks, _ = naive_rank(
        query[sub], gallery, q_labels[sub], g_labels, topk=1, progress=progress, ties="against"
    )
    naive_metrics = naive_university1652_metrics(naive_ranks)
    t_naive = time.perf_counter() - t0
    core = rank_gallery(
        query[sub],
        gallery,
        q_labels[sub],
        g_labels,
        topk=1,
        chunk_size=chunk,
        device=device,
        progress=False,
        ties="against",  # the University-1652 protocol's rule (evaluate_university1652)
    )
    core_metrics = summarize(university1652_per_query(core), n_skipped=n_without_match(core))
    same_ranks, max_shift = 0, 0
    for i in range(n_sub):
        core_ranks = core.good_ranks[i, : int(core.n_good[i])].numpy()
        same_ranks += int(np.array_equal(core_ranks, naive_ranks[i]))
        if len(core_ranks) == len(naive_ranks[i]) and len(core_ranks):
            max_shift = max(max_shift, int(np.abs(core_ranks - naive_ranks[i]).max()))
    diff = max(abs(core_metrics[k] - naive_metrics[k]) for k in naive_metrics)
    return {
        "n_queries": n_sub,
        "naive_s_per_query": t_naive / n_sub,
        "max_metric_diff": float(diff),
        "same_ranks": same_ranks,
        "max_rank_shift": max_shift,
    }


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GB"


def main(args: argparse.Namespace) -> int:
    if args.queries is None:
        args.queries = 2000 if args.quick else U160K_QUERIES
    if args.gallery is None:
        args.gallery = 20000 if args.quick else U160K_GALLERY
    n_queries, n_gallery = args.queries, args.gallery
    if min(n_queries, n_gallery, args.dim, args.naive_queries, args.matches) < 1:
        raise ConfigError(
            "--queries, --gallery, --dim, --naive-queries and --matches must be positive"
        )
    device = torch.device(args.device)
    progress = terminal_progress(args.quiet)
    chunk = args.chunk_size or auto_chunk_size(n_gallery, args.matches > 1, args.max_chunk_mb)
    chunk = min(chunk, n_queries)
    gflop = 2.0 * n_queries * n_gallery * args.dim / 1e9

    print(
        f"geoloc bench eval: {n_queries} queries x {n_gallery} gallery x {args.dim}-d, "
        f"{args.matches} true match(es) per query, "
        f"device {device}, {torch.get_num_threads()} torch threads, chunk {chunk} queries "
        f"({chunk * n_gallery * 4 / 2**20:.0f} MB of scores)"
    )
    query, gallery, q_labels, g_labels = synthetic_features(
        n_queries, n_gallery, args.dim, noise=args.noise, matches=args.matches, seed=args.seed
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # The bare product is timed before and after the evaluation: on a shared machine the mean
    # of the two brackets the evaluation's conditions better than either alone.
    t_before = time_bare_matmul(query, gallery, chunk, device, progress)
    print(f"bare matmul (same chunks):   {t_before:8.2f} s   ({gflop / t_before:.1f} GFLOP/s)")

    with RssSampler() as rss:
        _sync(device)
        t0 = time.perf_counter()
        metrics = evaluate_university1652(
            query, gallery, q_labels, g_labels, chunk_size=chunk, device=device, progress=progress
        )
        _sync(device)
        t_eval = time.perf_counter() - t0
    print(f"whole evaluation:            {t_eval:8.2f} s   ({gflop / t_eval:.1f} GFLOP/s)")
    t_after = time_bare_matmul(query, gallery, chunk, device, progress)
    print(f"bare matmul again:           {t_after:8.2f} s   ({gflop / t_after:.1f} GFLOP/s)")
    t_matmul = (t_before + t_after) / 2
    ratio = t_eval / t_matmul
    print(f"ratio evaluation / bare matmul (mean of both): {ratio:.2f}x")
    peak_process = max_rss_bytes()
    print(
        f"peak memory: process ru_maxrss {_gb(peak_process)}; resident during evaluation "
        f"{_gb(rss.peak)} (+{_gb(rss.peak - rss.start_rss)} over {_gb(rss.start_rss)} before)"
    )
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {_gb(torch.cuda.max_memory_allocated(device))}")
    shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not k.startswith("n_"))
    print(f"metrics (percent, synthetic data): {shown}")

    # Naive per-query evaluator on a subset, extrapolated; it must agree exactly.
    check = naive_agreement(
        query, gallery, q_labels, g_labels, args.naive_queries, chunk, device, progress
    )
    n_sub, diff = check["n_queries"], check["max_metric_diff"]
    extrapolated = check["naive_s_per_query"] * n_queries
    print(
        f"naive per-query evaluator:   {check['naive_s_per_query'] * 1e3:8.2f} ms/query on "
        f"{n_sub} queries -> {extrapolated:.1f} s extrapolated; speed-up "
        f"{extrapolated / t_eval:.1f}x"
    )
    # The naive run scores with a matrix-vector product, the core with a matrix product: BLAS
    # rounds them differently in the last bit, which can swap two items whose scores agree to
    # ~1e-7. Metrics must agree to 1e-6; rank shifts are reported.
    print(
        f"agreement on the {n_sub}-query subset: max |metric difference| {diff:.3g}; rank lists "
        f"identical for {check['same_ranks']}/{n_sub} queries (largest rank shift "
        f"{check['max_rank_shift']}, from fp32 rounding of near-equal scores)"
    )
    ok = diff <= 1e-6

    if args.faiss:
        ok = _bench_faiss(args, query, gallery, q_labels, g_labels, chunk, device, progress) and ok
    print(
        f"summary: eval {t_eval:.2f} s, matmul {t_matmul:.2f} s, ratio {ratio:.2f}x "
        f"(target <= 1.5), speed-up {extrapolated / t_eval:.1f}x (target >= 20), peak "
        f"{_gb(max_rss_bytes())} (target <= 3 GB), metrics equal to naive (1e-6): {'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


def _bench_faiss(
    args: argparse.Namespace,
    query: torch.Tensor,
    gallery: torch.Tensor,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    chunk: int,
    device: torch.device,
    progress: bool,
) -> bool:
    from geoloc_lib.eval.faiss_backend import (
        build_index,
        faiss_ivf,
        faiss_topk,
        first_match_position,
        topk_overlap,
    )

    n_sub = min(args.faiss_queries, query.shape[0])
    q = query[:n_sub]
    exact = rank_gallery(
        q,
        gallery,
        q_labels[:n_sub],
        g_labels,
        topk=10,
        chunk_size=chunk,
        device=device,
        progress=False,
    )
    t0 = time.perf_counter()
    flat = build_index(gallery, "Flat", progress=progress)
    _, flat_idx = faiss_topk(flat, q, 10, progress=progress)
    t_flat = time.perf_counter() - t0
    del flat
    same = float((flat_idx == exact.topk_indices).all(dim=1).to(torch.float64).mean())
    print(
        f"faiss Flat (exact) on {n_sub} queries: {t_flat:.2f} s; top-10 identical to the core "
        f"for {100 * same:.2f}% of queries"
    )
    nprobes = [int(v) for v in args.nprobe]
    if not nprobes or min(nprobes) < 1:
        raise ConfigError(f"--nprobe: expected integers >= 1, got {args.nprobe!r}")
    t0 = time.perf_counter()
    ivf = build_index(gallery, args.faiss_spec, seed=args.seed, progress=progress)
    print(f"faiss {args.faiss_spec}: build {time.perf_counter() - t0:.2f} s")
    r1_exact = float((exact.first_rank < 1).double().mean())
    ivf_struct = faiss_ivf(ivf)
    for nprobe in nprobes:
        if ivf_struct is not None:
            ivf_struct.nprobe = nprobe
        t0 = time.perf_counter()
        _, ivf_idx = faiss_topk(ivf, q, 10, progress=progress)
        t_search = time.perf_counter() - t0
        recall = topk_overlap(ivf_idx, flat_idx)
        first = first_match_position(ivf_idx, q_labels[:n_sub], g_labels)
        r1_ivf = float((first < 1).double().mean())
        print(
            f"  nprobe {nprobe:4d}: search {t_search:.2f} s; recall@10 vs exact "
            f"{100 * recall:.2f}%; R@1 {100 * r1_ivf:.2f} (exact {100 * r1_exact:.2f})"
        )
    return same == 1.0
