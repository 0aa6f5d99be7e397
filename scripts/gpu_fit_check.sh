#!/usr/bin/env bash
# End-to-end training on a lent GPU: `geoloc bench fit` (real `fit` runs: data loading, weather,
# augmentation and validation counted) on a freshly generated default GeoSynth, so the GPU figures
# can be set beside the CPU ones of the same command. ~5 min on one H200 with 16 cores.
# Run from the repository root; results go to $OUT (default ./gpu_out):
#   OUT=/some/dir bash scripts/gpu_fit_check.sh [extra bench fit options, e.g. --epochs 5]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
PROFILE="${PROFILE:-default}"
DATA="${DATA:-/tmp/geoloc_geosynth_$PROFILE}"
mkdir -p "$OUT"
nvidia-smi -L || true
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export PYTHONUNBUFFERED=1 GEOLOC_OFFLINE=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
python3 -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__, "cuda available", torch.cuda.is_available())'
start=$(date +%s.%N)
python3 -m geoloc_lib.pipeline.cli data generate geosynth --profile "$PROFILE" --out "$DATA" \
  --workers "$(nproc)" --quiet
echo "generated $PROFILE GeoSynth in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s with $(nproc) processes"
python3 -m geoloc_lib.pipeline.cli bench fit --root "$DATA" --csv "$OUT/gpu_fit.csv" "$@" \
  2>&1 | tee "$OUT/gpu_fit.log"
