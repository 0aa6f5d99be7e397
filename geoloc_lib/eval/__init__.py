"""Retrieval evaluation: ranking core, protocol metrics, submissions.

One call per protocol (features L2-normalised, or pass ``normalize=True``; metrics in percent)::

    from geoloc_lib.eval import evaluate_university1652, evaluate_pairs
    evaluate_university1652(qf, gf, q_labels, g_labels)  # R@1, R@5, R@10, AP; label -1 = junk
    evaluate_pairs(qf, gf, gallery_coords=utm)            # R@1/5/10/1% (+ meter-level metrics)

Per-query tables and breakdowns (e.g. by weather condition)::

    result = rank_gallery(qf, gf, q_labels, g_labels, topk=10)
    table = breakdown(university1652_per_query(result), weather)   # DataFrame
    result.topk_indices                                            # for figures

Intervals (95 % percentile bootstrap over queries; over seeds and queries for repeated runs)::

    from geoloc_lib.eval.uncertainty import bootstrap_interval, paired_interval, seed_effect
    lo, hi = bootstrap_interval(per_query["R@1"])          # one metric's interval
    effect, lo, hi = paired_interval(a["R@1"], b["R@1"])  # two methods on the same queries

Modules: ``ranking`` (chunked core), ``metrics`` (protocols), ``naive`` (per-query reference),
``uncertainty`` (intervals, verdicts), ``examples`` (seeded query draws for the top-k figures),
``restoration`` (how close MCGF's restorer brings a weathered query to the clean image),
``faiss_backend`` (optional), ``submit`` (``geoloc submit``). The benchmark (``geoloc bench
eval``) is :mod:`geoloc_lib.bench.eval`.
"""

from geoloc_lib.eval.metrics import (
    DEFAULT_KS,
    DEFAULT_THRESHOLDS_M,
    average_precision,
    breakdown,
    evaluate_pairs,
    evaluate_university1652,
    n_without_match,
    one_percent_k,
    pairs_per_query,
    recall_hits,
    summarize,
    university1652_per_query,
)
from geoloc_lib.eval.ranking import (
    DEFAULT_CHUNK_MB,
    FeatureError,
    RankResult,
    auto_chunk_size,
    rank_gallery,
)
from geoloc_lib.eval.submit import load_feature_file, make_submission, write_submission

__all__ = [
    "DEFAULT_CHUNK_MB",
    "DEFAULT_KS",
    "DEFAULT_THRESHOLDS_M",
    "FeatureError",
    "RankResult",
    "auto_chunk_size",
    "average_precision",
    "breakdown",
    "evaluate_pairs",
    "evaluate_university1652",
    "load_feature_file",
    "make_submission",
    "n_without_match",
    "one_percent_k",
    "pairs_per_query",
    "rank_gallery",
    "recall_hits",
    "summarize",
    "university1652_per_query",
    "write_submission",
]
