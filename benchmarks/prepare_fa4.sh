#!/usr/bin/env bash
# Prepares FlashAttention-4's wheels for `gpu_suite.sh mfu-fa4` (issue 20). With the CUTLASS DSL runtime
# they are ~100 MB, over the 64 MiB one device call carries, so they travel in two calls:
#   1. carry .fa4a:         mkdir -p /tmp/fa4 && cp .fa4a/* /tmp/fa4/
#   2. at once (the machine stays warm ~30 s), carry .whl and .fa4b:
#                           cp .fa4b/* /tmp/fa4/ && bash benchmarks/gpu_suite.sh mfu-fa4
# (.whl without DeepSpeed, Optuna and SQLAlchemy keeps call 2 under the limit.) Run from the repo root.
set -euo pipefail
grep -q '^/.fa4a/$' .git/info/exclude || printf '/.fa4a/\n/.fa4b/\n' >>.git/info/exclude
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
P="--no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64"
# The image has torch, einops, protobuf and cuda-bindings; these are what it lacks.
python3 -m pip download -q $P -d "$D" flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 \
  nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 \
  quack-kernels==0.6.5 apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5
rm -rf .fa4a .fa4b; mkdir -p .fa4a .fa4b
RT=nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
(cd "$D" && sha256sum $RT) >.fa4b/cu13.sha256
split -b 58500000 -d "$D/$RT" .fa4a/cu13.part
mv .fa4a/cu13.part0[1-9] .fa4b/
rm "$D/$RT"; mv "$D"/*.whl .fa4b/
du -sh .fa4a .fa4b
