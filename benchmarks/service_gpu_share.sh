#!/usr/bin/env bash
# Issue 17 on the device machine (one H200): two tenants' jobs share GPU 0 through the job
# service; B, over its 0.4 share, fails out of GPU memory while A trains on and succeeds.
#   here first:        bash benchmarks/prepare_device.sh   (wheels in .whl/, the server stack too)
#   device machine:    bash benchmarks/service_gpu_share.sh  -> $OUT/service_gpu_share.json
# Jobs run as `python -I` (no PYTHONPATH), so the wheels' folder is also named by a .pth file in
# the image's site-packages, which -I still reads. Under 4 minutes: the script gives the jobs
# 200 s (then cancels them) and the whole call 280 s.
set -euo pipefail
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
echo /tmp/site > "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/deepseek-site.pth"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# NVLink multicast stays off on shared hosts (device README); the executor passes these to jobs.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
cd /tmp
timeout 280 python3 "$OLDPWD/benchmarks/service_gpu_share.py" --out "$OUT/service_gpu_share.json" "$@"
