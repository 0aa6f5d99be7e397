"""Benchmarks (``geoloc bench ...``), beside the pipeline at the top layer.

- ``eval``     the retrieval evaluator against the bare matrix product and a naive evaluator
- ``train``    training throughput per model, fp32 vs bf16 autocast (the model step alone)
- ``fit``      end-to-end training throughput of real runs (data, weather, validation) and
  the speed-up of each lever
- ``weather``  weather synthesis throughput per condition
- ``gpu``      the paper configurations' GPU numbers in one prepared run
"""
