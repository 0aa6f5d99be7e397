"""Analysis layer: results computed from trained runs beyond the retrieval tables.

- ``ablations``  the ablation grids of both papers (trains through ``training.runs``)
- ``explain``    channel-mean feature heatmaps and Grad-CAM
- ``cost``       parameters, FLOPs and latency per model (GeoViewMatch Table 4)
"""
