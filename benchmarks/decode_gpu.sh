#!/usr/bin/env bash
# Issue 20 on the device machine (one H200): static-cache CUDA-graph decoding against eager
# (tokens) and against torch.compile / reduce-overhead (step latency), in one process.
#   here first:        bash benchmarks/prepare_device.sh   (wheels in .whl/)
#   device machine:    bash benchmarks/decode_gpu.sh  -> $OUT/decode_gpu.json, $OUT/decode_gpu.log
set -uo pipefail
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
cd /tmp
timeout "${DECODE_GPU_TIMEOUT:-500}" python3 "$OLDPWD/benchmarks/decode_gpu.py" --out "$OUT/decode_gpu.json" "$@" \
  2>&1 | tee "$OUT/decode_gpu.log"
