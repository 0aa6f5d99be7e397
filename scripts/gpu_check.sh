#!/usr/bin/env bash
# geoloc bench gpu on a lent GPU, in one go (~6.5 min of benchmark + start-up; see
# geoloc_lib/bench/gpu.py). Run from the repository root; results go to $OUT (default ./gpu_out):
#   OUT=/some/dir bash scripts/gpu_check.sh [extra bench gpu options, e.g. --budget-s 300]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
nvidia-smi || true
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export PYTHONUNBUFFERED=1 GEOLOC_OFFLINE=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
# A fresh machine compiles from scratch: keep inductor's cache off the repository copy.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/geoloc_inductor}"
python3 -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__)'
python3 -m geoloc_lib.pipeline.cli bench gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
