#!/usr/bin/env bash
# Issue 20 on the device machine: `deepseek generate` on CUDA through the CLI, --cuda-graphs (it was
# the default when these figures were taken; it is opt-in now) against --no-cuda-graphs: greedy and seeded sampling of one prompt (eager step in the
# graph), a prompts file (compiled step), a 32-position window so the cache is rebuilt often.
#   here first:        bash benchmarks/prepare_device.sh   (wheels in .whl/)
#   device machine:    bash benchmarks/generate_gpu_cli.sh  -> $OUT/generate_gpu_cli.txt
set -uo pipefail
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LOG="$OUT/generate_gpu_cli.txt"
cd "$(mktemp -d)"
ds() { python3 -m deepseek.cli.main "$@"; }
ds train --set model.name=tiny --set model.d_model=64 --set model.n_heads=2 --set model.n_layers=2 \
  --set model.max_seq_len=32 --set data.seq_len=16 --set data.batch_size=2 --set data.eval_batches=1 \
  --max-steps 5 --set logging.plot=false --set 'strategy.device="cpu"' --precision fp32 --quiet --run-dir run \
  >>"$LOG" 2>&1 || { echo "train failed" >>"$LOG"; exit 1; }
check() {  # name, then the generate arguments
  local name=$1; shift
  local t0=$(date +%s.%N)
  ds generate --checkpoint run --device cuda --cuda-graphs "$@" >graphs.out 2>graphs.err; local rc1=$?
  local t1=$(date +%s.%N)
  ds generate --checkpoint run --device cuda --no-cuda-graphs "$@" >eager.out 2>eager.err; local rc2=$?
  local t2=$(date +%s.%N)
  if cmp -s graphs.out eager.out; then same=same; else same=DIFFERENT; fi
  printf '%s: rc %s/%s, output %s (%s bytes), graphs %.1f s, eager %.1f s\n' "$name" $rc1 $rc2 $same \
    "$(wc -c <graphs.out)" "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t2 - $t1}")" >>"$LOG"
  sed 's/^/  graphs stderr: /' graphs.err | tail -3 >>"$LOG"
  sed 's/^/  eager stderr: /' eager.err | tail -3 >>"$LOG"
  head -c 300 graphs.out | sed 's/^/  | /' >>"$LOG"; echo >>"$LOG"
}
check greedy --temperature 0 --max-new-tokens 120 "def "
check sampled --temperature 0.8 --top-k 20 --seed 3 --max-new-tokens 120 "def "
printf 'def f(x):\nhello\nimport os\nhi\nclass A:\n' >prompts.txt
check prompts-greedy --prompts prompts.txt --batch-size 2 --temperature 0 --max-new-tokens 60
check prompts-sampled --prompts prompts.txt --batch-size 2 --temperature 0.9 --seed 5 --max-new-tokens 60
cat "$LOG"
