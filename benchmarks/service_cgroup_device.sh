#!/usr/bin/env bash
# Issue 17 on the device machine: the job service's cgroup v2 path for real (this project's CI VM
# offers only hugetlb, so those tests skip there), and the per-process CUDA memory cap.
#   here first:        bash benchmarks/prepare_device.sh
#   device machine:    bash benchmarks/service_cgroup_device.sh   -> $OUT/service_cgroup.txt
# The device's container cgroup delegates `memory` (not `pids`). cgroup v2 lets only a cgroup
# without processes hand controllers to children, so this script does what a systemd unit with
# Delegate= or a container runtime does for a service: moves the call's own processes into a child
# `runner`, enables `memory` (and `cpu`/`pids` where offered) for children, and gives the tests a
# delegated folder `dstest` (DEEPSEEK_TEST_CGROUP).
set -u
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
echo /tmp/site > "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/deepseek-site.pth"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
  echo "== own cgroup: $(cat /proc/self/cgroup)"
  CG=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
  echo "controllers: $(cat "$CG/cgroup.controllers")  subtree: $(cat "$CG/cgroup.subtree_control")"
  echo "server auto-detection before delegation: $(python3 -c 'from deepseek_enterprise.service import cgroups; print(cgroups.detect("auto").summary())')"
  mkdir -p "$CG/runner"
  for p in $(cat "$CG/cgroup.procs"); do echo "$p" > "$CG/runner/cgroup.procs" 2>/dev/null || echo "could not move $p"; done
  for c in memory cpu pids; do grep -qw $c "$CG/cgroup.controllers" && echo "+$c" > "$CG/cgroup.subtree_control"; done
  mkdir -p "$CG/dstest"
  echo "dstest controllers: $(cat "$CG/dstest/cgroup.controllers")"
  DEEPSEEK_TEST_CGROUP="$CG/dstest" timeout 400 python3 -m pytest -v -p no:cacheprovider -rs \
    tests/enterprise/test_service_isolation.py -k "cgroup or cap or rlimits" 2>&1 | tail -25
  echo "pytest rc=${PIPESTATUS[0]}"
} 2>&1 | tee "$OUT/service_cgroup.txt"
