"""Benchmarks (``geoloc bench ...``), beside the pipeline at the top layer.

- ``eval``     the retrieval evaluator against the bare matrix product and a naive evaluator
- ``train``    training throughput per model, fp32 vs bf16 autocast
- ``weather``  weather synthesis throughput per condition
- ``gpu``      the paper configurations' GPU numbers in one prepared run
"""
