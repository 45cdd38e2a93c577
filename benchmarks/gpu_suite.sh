#!/usr/bin/env bash
# The GPU benchmark suite (issue 6), one call on the device machine (2 x H200):
#   bash benchmarks/gpu_suite.sh GROUP...      groups: env mm-lat mfu mfu2 mfu3 mfu4 mfu-final mfu-levers mfu-epilogue mfu-master mfu-multi mfu-tuning mfu-blas mfu-fa4 cuda-tests gpu2-tests mw-tests gpu-engine mm-engine train-mfu optim mfu-small scale scale2 scale3 scale4 scale5 scale6 scale-bf16 scale-static zero3-1gpu zero3-2gpu zero3-dc-train largest largest-offload mem mem-ds train-check lat comp fusion mm-lat tune
# Needs .whl/ prepared here by benchmarks/prepare_device.sh (our three editions as wheels plus
# DeepSpeed and the packages the GPU image lacks). Every result lands in $OUT/results.tgz (one
# file: the device tool returns at most 8) and a summary table is printed last.
set -u
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# NVLink multicast stays off on shared hosts (device README).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# RES: give each run of this script its own folder when one device call runs it more than once.
RES=${RES:-/tmp/res}; mkdir -p "$RES"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
REPO=$(pwd); cd /tmp
START=$(date +%s); BUDGET=${BUDGET:-575}  # seconds this call may use (the device tool stops at 600)
run() {  # run NAME TIMEOUT CMD...: skipped or cut short when the call's BUDGET runs out
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 45 ]; then echo "== $name skipped: ${left}s of the budget left"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" >"$RES/$name.log" 2>&1; echo "rc=$?" >>"$RES/$name.log"
  grep -E '│|rc=|error|Error' "$RES/$name.log" | tail -20
  tar czf "$OUT/results.tgz" -C "$RES" --exclude='*.safetensors' .  # what finished comes back even if cut
}
BT="python3 -m deepseek bench train --precision bf16"
# Clocks, power and temperature of every GPU once a second, for the whole call.
nvidia-smi --query-gpu=timestamp,index,clocks.sm,power.draw,power.limit,temperature.gpu,utilization.gpu \
  --format=csv,noheader -l 1 >"$RES/gpu-samples.csv" 2>/dev/null &
SAMPLER=$!
LAUNCH="python3 -m deepseek launch -n 2 --"
for group in "$@"; do
  case $group in
  env)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RES/env.txt"
    python3 -c "import torch,deepseek;print(torch.__version__, torch.cuda.device_count(), deepseek.__version__)" >>"$RES/env.txt" 2>&1
    python3 -m deepseek plugins list >>"$RES/env.txt" 2>&1; cat "$RES/env.txt";;
  mfu)  # 1.3b at batch 8 x 2048 on one H200: our path vs a plain loop, both compiled
    run mfu-1.3b 420 env CUDA_VISIBLE_DEVICES=0 $BT --model 1.3b --batch 8 --seq 2048 --steps 20 --warmup 6 \
      --compile --compile-scope model --attention "${ATTN:-auto}" --baseline --baseline-variants compile \
      --json "$RES/mfu-1.3b.json";;
  mfu2)  # issue 6 MFU levers, two chains at once (GPU 0 and GPU 1), each a separate process
    M="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn"
    ( run mfu-ours 420 env CUDA_VISIBLE_DEVICES=0 $BT $M --steps 20 --warmup 6 --profile --baseline \
        --baseline-variants compile --json "$RES/mfu-ours.json"
      run mfu-bf16res 300 env CUDA_VISIBLE_DEVICES=0 $BT $M --steps 20 --warmup 6 --no-fp32-residual --profile \
        --json "$RES/mfu-bf16res.json" ) > "$RES/chain0.txt" 2>&1 &
    ( run mfu-bf16res-accum4 300 env CUDA_VISIBLE_DEVICES=1 $BT $M --steps 10 --warmup 4 --no-fp32-residual \
        --grad-accum 4 --json "$RES/mfu-bf16res-accum4.json"
      run mfu-autotune 330 env CUDA_VISIBLE_DEVICES=1 $BT $M --steps 20 --warmup 4 --no-fp32-residual \
        --compile-mode max-autotune-no-cudagraphs --json "$RES/mfu-autotune.json" ) > "$RES/chain1.txt" 2>&1 &
    wait; cat "$RES/chain0.txt" "$RES/chain1.txt";;
  mfu3)  # CUDA graphs (reduce-overhead) for the bf16-residual path, with and without accumulation, vs plain
    M="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual"
    ( run mfu-graphs 280 env CUDA_VISIBLE_DEVICES=0 $BT $M --steps 20 --warmup 6 --compile-mode reduce-overhead \
        --baseline --baseline-variants compile --json "$RES/mfu-graphs.json" ) > "$RES/chain0.txt" 2>&1 &
    ( run mfu-accum4 280 env CUDA_VISIBLE_DEVICES=1 $BT $M --steps 8 --warmup 3 --grad-accum 4 \
        --baseline --baseline-variants compile --json "$RES/mfu-accum4.json" ) > "$RES/chain1.txt" 2>&1 &
    wait; cat "$RES/chain0.txt" "$RES/chain1.txt";;
  mfu4)  # session 3: batched loss reads (--log-every) and accumulation, two chains at once (GPU 0 and GPU 1)
    M="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual"
    ( run mfu4-read1 300 env CUDA_VISIBLE_DEVICES=0 $BT $M --steps 20 --warmup 6 --log-every 1 --profile \
        --json "$RES/mfu4-read1.json"
      run mfu4-read10 300 env CUDA_VISIBLE_DEVICES=0 $BT $M --steps 20 --warmup 6 --log-every 10 --profile \
        --baseline --baseline-variants compile --json "$RES/mfu4-read10.json" ) > "$RES/chain0.txt" 2>&1 &
    ( run mfu4-accum4 300 env CUDA_VISIBLE_DEVICES=1 $BT $M --steps 10 --warmup 3 --grad-accum 4 --log-every 10 \
        --baseline --baseline-variants compile --json "$RES/mfu4-accum4.json"
      run mfu4-accum8 240 env CUDA_VISIBLE_DEVICES=1 $BT $M --steps 6 --warmup 2 --grad-accum 8 --log-every 10 \
        --json "$RES/mfu4-accum8.json" ) > "$RES/chain1.txt" 2>&1 &
    wait; cat "$RES/chain0.txt" "$RES/chain1.txt";;
  scale3)  # session 3: ddp without a Python comm hook, NCCL stream priority and channel count, a profiled ddp
    # step (exposed communication), fsdp; loss read every 10 steps; weights made on the GPU
    S="--model 1.3b --batch 8 --seq 2048 --steps 10 --warmup 3 --log-every 10 --init-device device"
    run s3-single 120 env CUDA_VISIBLE_DEVICES=0 $BT $S --profile --json "$RES/s3-single.json"
    run s3-ddp 120 $LAUNCH bench train $S --precision bf16 --strategy ddp --profile --json "$RES/s3-ddp.json"
    run s3-ddp-hipri 120 env TORCH_NCCL_HIGH_PRIORITY=1 $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --json "$RES/s3-ddp-hipri.json"
    run s3-ddp-ch8 120 env NCCL_MAX_NCHANNELS=8 $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --json "$RES/s3-ddp-ch8.json"
    run s3-fsdp 120 $LAUNCH bench train $S --precision bf16 --strategy fsdp --profile --json "$RES/s3-fsdp.json"
    A="--model 1.3b --batch 8 --seq 2048 --steps 4 --warmup 2 --grad-accum 4 --log-every 10 --init-device device"
    run s3-single-accum4 120 env CUDA_VISIBLE_DEVICES=0 $BT $A --json "$RES/s3-single-accum4.json"
    run s3-ddp-accum4 120 $LAUNCH bench train $A --precision bf16 --strategy ddp --json "$RES/s3-ddp-accum4.json"
    C="$S --compile --compile-scope blocks --attention cudnn --no-fp32-residual"  # the trainer's train.compile
    run s3c-single 200 env CUDA_VISIBLE_DEVICES=0 $BT $C --json "$RES/s3c-single.json"
    run s3c-ddp 200 $LAUNCH bench train $C --precision bf16 --strategy ddp --json "$RES/s3c-ddp.json";;
  scale4)  # session 3: NCCL picked its LL protocol for DDP's buckets (2x the bytes on the wire, and the GPUs
    # run at their 700 W cap): Simple and LL128 side by side; then the trainer's compiled blocks, with and
    # without accumulation, under the best protocol
    S="--model 1.3b --batch 8 --seq 2048 --steps 10 --warmup 3 --log-every 10 --init-device device"
    run s4-single 120 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/s4-single.json"
    run s4-ddp-simple 120 env NCCL_PROTO=Simple $LAUNCH bench train $S --precision bf16 --strategy ddp --profile \
      --json "$RES/s4-ddp-simple.json"
    run s4-ddp-ll128 120 env NCCL_PROTO=LL128 $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --json "$RES/s4-ddp-ll128.json"
    run s4-ddp-simple-b100 120 env NCCL_PROTO=Simple $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --strategy-option bucket_cap_mb=100 --json "$RES/s4-ddp-simple-b100.json"
    run s4-fsdp-simple 120 env NCCL_PROTO=Simple $LAUNCH bench train $S --precision bf16 --strategy fsdp \
      --json "$RES/s4-fsdp-simple.json"
    C="$S --compile --compile-scope blocks --attention cudnn --no-fp32-residual"
    run s4c-single 150 env CUDA_VISIBLE_DEVICES=0 $BT $C --json "$RES/s4c-single.json"
    run s4c-ddp-simple 150 env NCCL_PROTO=Simple $LAUNCH bench train $C --precision bf16 --strategy ddp \
      --json "$RES/s4c-ddp-simple.json"
    A="--model 1.3b --batch 8 --seq 2048 --steps 4 --warmup 2 --grad-accum 4 --log-every 10 --init-device device"
    A="$A --compile --compile-scope blocks --attention cudnn --no-fp32-residual"
    run s4c-single-accum4 150 env CUDA_VISIBLE_DEVICES=0 $BT $A --json "$RES/s4c-single-accum4.json"
    run s4c-ddp-accum4 150 env NCCL_PROTO=Simple $LAUNCH bench train $A --precision bf16 --strategy ddp \
      --json "$RES/s4c-ddp-accum4.json";;
  scale5)  # session 3: does overlapping cost more than it hides? one 10 GB bucket (all-reduce after the
    # backward, no overlap) against the default, eager and compiled
    S="--model 1.3b --batch 8 --seq 2048 --steps 10 --warmup 3 --log-every 10 --init-device device"
    run s5-single 120 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/s5-single.json"
    run s5-ddp 120 $LAUNCH bench train $S --precision bf16 --strategy ddp --json "$RES/s5-ddp.json"
    run s5-ddp-serial 120 $LAUNCH bench train $S --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=10000 \
      --profile --json "$RES/s5-ddp-serial.json"
    run s5-ddp-serial-simple 120 env NCCL_PROTO=Simple $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --strategy-option bucket_cap_mb=10000 --json "$RES/s5-ddp-serial-simple.json"
    run s5-ddp-fp16 120 $LAUNCH bench train $S --precision bf16 --strategy ddp --strategy-option 'compression="fp16"' \
      --json "$RES/s5-ddp-fp16.json"
    C="$S --compile --compile-scope blocks --attention cudnn --no-fp32-residual"
    run s5c-single 150 env CUDA_VISIBLE_DEVICES=0 $BT $C --json "$RES/s5c-single.json"
    run s5c-ddp 150 $LAUNCH bench train $C --precision bf16 --strategy ddp --json "$RES/s5c-ddp.json"
    run s5c-ddp-serial 150 $LAUNCH bench train $C --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=10000 \
      --json "$RES/s5c-ddp-serial.json";;
  scale6)  # session 3: the serial all-reduce (one bucket) ran at ~230 GB/s; more NCCL channels and the
    # Simple protocol for it, NCCL's own choice logged; compiled blocks and eager
    S="--model 1.3b --batch 8 --seq 2048 --steps 10 --warmup 3 --log-every 10 --init-device device"
    C="$S --compile --compile-scope blocks --attention cudnn --no-fp32-residual"
    N="env NCCL_PROTO=Simple NCCL_MIN_NCHANNELS=32"
    run s6c-single 150 env CUDA_VISIBLE_DEVICES=0 $BT $C --json "$RES/s6c-single.json"
    run s6c-ddp-serial-ch32 150 $N NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,TUNING $LAUNCH bench train $C \
      --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=10000 --profile --json "$RES/s6c-ddp-serial-ch32.json"
    run s6c-ddp-serial 150 $LAUNCH bench train $C --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=10000 \
      --json "$RES/s6c-ddp-serial.json"
    run s6-single 120 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/s6-single.json"
    run s6-ddp-serial-ch32 120 $N $LAUNCH bench train $S --precision bf16 --strategy ddp \
      --strategy-option bucket_cap_mb=10000 --json "$RES/s6-ddp-serial-ch32.json";;
  scale2)  # tokens/s per GPU, 1 GPU single vs 2 GPUs, eager, with the tuning options measured side by side
    S="--model 1.3b --batch 8 --seq 2048 --steps 8 --warmup 3"
    run scale-single 240 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/scale-single.json"
    run scale-ddp 240 $LAUNCH bench train $S --precision bf16 --strategy ddp --json "$RES/scale-ddp.json"
    run scale-ddp-b100 240 $LAUNCH bench train $S --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=100 \
      --json "$RES/scale-ddp-b100.json"
    run scale-fsdp 240 $LAUNCH bench train $S --precision bf16 --strategy fsdp --json "$RES/scale-fsdp.json"
    run scale-ds3-tuned 300 $LAUNCH bench train $S --precision bf16 --strategy deepspeed --strategy-option stage=3 \
      --strategy-option prefetch_bucket_size=200000000 --strategy-option reduce_bucket_size=200000000 \
      --strategy-option param_persistence_threshold=1000000 --json "$RES/scale-ds3-tuned.json";;
  zero3-1gpu)  # issue 20: ZeRO-3's own overhead, one H200 (the 2-GPU kind withheld): world size 1 under
    # `deepseek launch -n 1`, so nothing is communicated and what ZeRO-3 and FSDP2 lose against single is their
    # bookkeeping (DeepSpeed's per-submodule hooks). DeepCompile (strategy.deepcompile) moves ZeRO-3's gathers and
    # releases into the compiled graph; its passes profile 5 steps, then recompile with prefetch, hence warmup 8.
    # Z3_PLAN picks runs in order (default all): single single-c fsdp fsdp-c ds3 ds3-block ds3-c ds3-dc
    S="--model 1.3b --batch 8 --seq 2048 --steps ${Z3_STEPS:-8} --warmup 8 --precision bf16"
    L1="python3 -m deepseek launch -n 1 -- bench train"
    export TORCH_CUDA_ARCH_LIST=9.0  # DeepCompile's op JIT-builds; DeepSpeed's builder cannot parse 9.0a
    for r in ${Z3_PLAN:-single single-c fsdp fsdp-c ds3 ds3-dc}; do
      case $r in
      single) run z3-single 200 $BT $S --json "$RES/z3-single.json";;
      single-c) run z3-single-c 300 $BT $S --compile --compile-scope model --json "$RES/z3-single-c.json";;
      fsdp) run z3-fsdp 200 $L1 $S --strategy fsdp --json "$RES/z3-fsdp.json";;
      fsdp-c) run z3-fsdp-c 300 $L1 $S --strategy fsdp --compile --json "$RES/z3-fsdp-c.json";;
      ds3) run z3-ds3 240 $L1 $S --strategy deepspeed --strategy-option stage=3 --strategy-option gather_unit=module \
        --json "$RES/z3-ds3.json";;
      ds3-block) run z3-ds3-block 240 $L1 $S --strategy deepspeed --strategy-option stage=3 \
        --strategy-option gather_unit=block --json "$RES/z3-ds3-block.json";;
      ds3-c) run z3-ds3-c 300 $L1 $S --strategy deepspeed --strategy-option stage=3 --compile \
        --json "$RES/z3-ds3-c.json";;
      ds3-dc) run z3-ds3-dc 420 $L1 $S --strategy deepspeed --strategy-option stage=3 --strategy-option deepcompile=true \
        --compile --compile-scope model --json "$RES/z3-ds3-dc.json";;
      esac
    done;;
  zero3-2gpu)  # issue 20: DeepSpeed ZeRO-3 against FSDP2 on two H200s, eager, tokens/s per GPU against one GPU's
    # `single` in the same call. ZeRO-3 variants: DeepSpeed's per-submodule default (gather_unit = module), each
    # block gathered whole (gather_unit = block: the blocks as DeepSpeed leaf modules, FSDP2's units), and that with
    # one-block reduce buckets (5e7 elements) or a two-block prefetch (1e8; ds3-block-pfN: N elements;
    # ds3-block-pf-rbN: 1e8 with N-element reduce buckets); ds3-auto is the strategy's default. Z2_PLAN picks runs in
    # order; a name may repeat with a suffix (fsdp2, ds3-auto2) for alternating runs.
    S="--model 1.3b --batch 8 --seq 2048 --steps ${Z2_STEPS:-8} --warmup ${Z2_WARMUP:-5} --precision bf16"
    L2="$LAUNCH bench train"; D3="--strategy deepspeed --strategy-option stage=3"
    for r in ${Z2_PLAN:-single fsdp ds3 ds3-block ds3-block-rb ds3-block-pf}; do
      case $r in
      single) run z2-single 200 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/z2-single.json";;
      fsdp) run z2-fsdp 200 $L2 $S --strategy fsdp --json "$RES/z2-fsdp.json";;
      ds3) run z2-ds3 200 $L2 $S $D3 --strategy-option gather_unit=module --json "$RES/z2-ds3.json";;
      ds3-auto*) run z2-$r 200 $L2 $S $D3 --json "$RES/z2-$r.json";;  # the default: gather_unit = auto
      fsdp*) run z2-$r 200 $L2 $S --strategy fsdp --json "$RES/z2-$r.json";;
      single*) run z2-$r 200 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/z2-$r.json";;
      ds3-block) run z2-ds3-block 200 $L2 $S $D3 --strategy-option gather_unit=block --json "$RES/z2-ds3-block.json";;
      ds3-block-rb) run z2-ds3-block-rb 200 $L2 $S $D3 --strategy-option gather_unit=block \
        --strategy-option reduce_bucket_size=50000000 --json "$RES/z2-ds3-block-rb.json";;
      ds3-block-pf-rb*) rb=${r#ds3-block-pf-rb}; run z2-$r 200 $L2 $S $D3 --strategy-option gather_unit=block \
        --strategy-option prefetch_bucket_size=100000000 --strategy-option reduce_bucket_size=$rb --json "$RES/z2-$r.json";;
      ds3-block-pf*) pf=${r#ds3-block-pf}; run z2-$r 200 $L2 $S $D3 --strategy-option gather_unit=block \
        --strategy-option prefetch_bucket_size=${pf:-100000000} --json "$RES/z2-$r.json";;
      esac
    done;;
  zero3-dc-train)  # DeepCompile through `deepseek train` (small, fp32, ZeRO-3, world size 1): losses against eager
    # ZeRO-3, and a resume at step 10 whose steps 11-20 must equal the uninterrupted run's
    T="--strategy deepspeed --set strategy.stage=3 --set model.name=small --set data.seq_len=256 --set data.batch_size=16"
    T="$T --set precision.dtype=fp32 --set train.compile=true --set train.compile_scope=model --set train.decay_steps=20"
    T="$T --set checkpoint.interval=10 --set train.eval_interval=10 --quiet"
    L1="python3 -m deepseek launch -n 1 -- train"
    export TORCH_CUDA_ARCH_LIST=9.0
    [ -n "${DC_ONLY_FULL:-}" ] || run dc-eager 200 $L1 $T --set train.max_steps=20 --run-dir "$RES/dc-eager"
    run dc-full 300 $L1 $T --set strategy.deepcompile=true --set train.max_steps=20 --run-dir "$RES/dc-full"
    [ -n "${DC_ONLY_FULL:-}" ] || run dc-half 240 $L1 $T --set strategy.deepcompile=true --set train.max_steps=10 --run-dir "$RES/dc-half"
    [ -n "${DC_ONLY_FULL:-}" ] || run dc-resumed 240 $L1 $T --set strategy.deepcompile=true --set train.max_steps=20 --resume "$RES/dc-half"
    python3 -c "import json,sys
def losses(r): return {x['step']: x['loss'] for x in map(json.loads, open(r + '/metrics.jsonl')) if 'loss' in x}
e, f, h = (losses(sys.argv[1] + '/' + n) for n in ('dc-eager', 'dc-full', 'dc-half'))
print('eager vs deepcompile, max |dloss| over', len(f), 'steps:', max(abs(e[k] - f[k]) for k in f))
print('resumed vs uninterrupted, steps 11-20, max |dloss|:', max(abs(h[k] - f[k]) for k in range(11, 21)))
print('losses', [(k, round(e[k], 5), round(f[k], 5), round(h[k], 5)) for k in sorted(f)])" "$RES" || true;;
  scale-bf16)  # ddp with bf16 gradient all-reduce (half the bytes) against one GPU, same call
    S="--model 1.3b --batch 8 --seq 2048 --steps 8 --warmup 3"
    run scale-single 120 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/scale-single.json"
    run scale-ddp-bf16 120 $LAUNCH bench train $S --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=100 \
      --strategy-option 'compression="bf16"' --json "$RES/scale-ddp-bf16.json";;
  scale-static)  # ddp with static_graph (no per-step hook bookkeeping) and 100 MB buckets, vs one GPU
    S="--model 1.3b --batch 8 --seq 2048 --steps 8 --warmup 3"
    run scale-single 60 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/scale-single.json"
    run scale-ddp-static 60 $LAUNCH bench train $S --precision bf16 --strategy ddp --strategy-option bucket_cap_mb=100 \
      --strategy-option static_graph=true --json "$RES/scale-ddp-static.json";;
  largest)  # largest model per strategy on 2 GPUs (8 x 2048 per GPU, checkpointing): the advisor's last fit and
    # the next size up, weights created on the GPU (train.init_device = "device")
    L="--batch 8 --seq 2048 --steps 2 --warmup 1 --activation-checkpointing --init-device device --precision bf16"
    for n in 36 38; do run "largest-ddp-$n" 150 $LAUNCH bench train --model 1.3b --model-option d_model=4096 \
      --model-option n_heads=32 --model-option n_layers=$n $L --strategy ddp --json "$RES/largest-ddp-$n.json"; done
    for n in 46 48; do run "largest-fsdp-$n" 180 $LAUNCH bench train --model 1.3b --model-option d_model=5120 \
      --model-option n_heads=40 --model-option n_layers=$n $L --strategy fsdp --json "$RES/largest-fsdp-$n.json"; done;;
  largest-offload)  # fsdp + CPU offload: its ceiling is host memory (sharded fp32 states live there)
    L="--batch 8 --seq 2048 --steps 1 --warmup 1 --activation-checkpointing --init-device device --precision bf16"
    for n in 40 48; do run "largest-offload-$n" 260 $LAUNCH bench train --model 1.3b --model-option d_model=5120 \
      --model-option n_heads=40 --model-option n_layers=$n $L --strategy fsdp --strategy-option cpu_offload=true \
      --json "$RES/largest-offload-$n.json"; free -g | sed -n 2p; done;;
  mfu-final)  # the bf16-residual path vs the plain loop, same process, both compiled
    run mfu-final 300 env CUDA_VISIBLE_DEVICES=0 $BT --model 1.3b --batch 8 --seq 2048 --compile --compile-scope model \
      --attention cudnn --no-fp32-residual --steps 20 --warmup 6 --baseline --baseline-variants compile \
      --json "$RES/mfu-final.json";;
  mfu-levers)  # issue 20: bf16 parameters with fp32 master weights against the autocast path, alternating
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --steps 20 --warmup 6"
    run lever-autocast-1 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --json "$RES/lever-autocast-1.json"
    run lever-master-1 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --master-weights --json "$RES/lever-master-1.json"
    run lever-autocast-2 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --json "$RES/lever-autocast-2.json"
    run lever-master-2 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --master-weights --profile --json "$RES/lever-master-2.json";;
  mfu-epilogue)  # issue 20: bias + GELU into the GEMM epilogues (inductor's Triton GEMM templates, max-autotune)
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --steps 20 --warmup 6"
    run lever-master-3 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --master-weights --json "$RES/lever-master-3.json"
    run lever-epilogue 480 env CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS=ATEN,TRITON \
      $BT $L --master-weights --compile-mode max-autotune-no-cudagraphs --profile --json "$RES/lever-epilogue.json";;
  mfu-master)  # issue 20: the master-weight lever with its Triton update, alternating with autocast, and under accumulation
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --warmup 6"
    run master-autocast 150 env CUDA_VISIBLE_DEVICES=0 $BT $L --steps 20 --json "$RES/master-autocast.json"
    run master-triton 150 env CUDA_VISIBLE_DEVICES=0 $BT $L --steps 20 --master-weights --json "$RES/master-triton.json"
    run master-autocast-acc4 150 env CUDA_VISIBLE_DEVICES=0 $BT $L --steps 10 --grad-accum 4 --json "$RES/master-autocast-acc4.json"
    run master-triton-acc4 150 env CUDA_VISIBLE_DEVICES=0 $BT $L --steps 10 --grad-accum 4 --master-weights \
      --json "$RES/master-triton-acc4.json";;
  mfu-multi)  # issue 20: the master-weight update as one Triton launch per group against one per parameter: the
    # kernels side by side (with the bit-identity check and the gradient norm's kernel count), then the 1.3b step, alternating
    run master-update-kernels 150 env CUDA_VISIBLE_DEVICES=0 python3 "$REPO/benchmarks/master_update_gpu.py" --repeats 20 \
      --configs 2048x4,1024x4,1024x8,4096x8 --json "$RES/master-update-kernels.json"
    cat "$RES/master-update-kernels.log"
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --warmup 6 --steps 20 --master-weights"
    for i in 1 2; do  # the second pair also profiles 3 steps (GPU time per kernel category: the update's ms)
      P=""; [ $i = 2 ] && P="--profile"
      run multi-per-parameter-$i 150 env CUDA_VISIBLE_DEVICES=0 $BT $L $P --optimizer-option master_update=per_parameter \
        --json "$RES/multi-per-parameter-$i.json"
      run multi-multi-tensor-$i 150 env CUDA_VISIBLE_DEVICES=0 $BT $L $P --optimizer-option master_update=multi_tensor \
        --json "$RES/multi-multi-tensor-$i.json"
    done;;
  mfu-tuning)  # issue 20: inductor's coordinate-descent tuning of its Triton kernels (elementwise, LayerNorm, the update)
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --warmup 6 --steps 20 --master-weights"
    run tuning-master-1 170 env CUDA_VISIBLE_DEVICES=0 $BT $L --json "$RES/tuning-master-1.json"
    run tuning-cdt-1 330 env CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 \
      $BT $L --profile --json "$RES/tuning-cdt-1.json"
    run tuning-master-2 170 env CUDA_VISIBLE_DEVICES=0 $BT $L --json "$RES/tuning-master-2.json"
    run tuning-cdt-2 330 env CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 \
      $BT $L --json "$RES/tuning-cdt-2.json";;
  mfu-blas)  # issue 20: every GEMM through cuBLASLt (TORCH_BLAS_PREFER_CUBLASLT=1, torch's switch; cuBLAS is its
    # default for plain matmuls) against cuBLAS, alternating in one call; BLAS_PLAN orders the rows
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --warmup 6 --steps 20 --master-weights"
    for lt in 0 1; do TORCH_BLAS_PREFER_CUBLASLT=$lt python3 -c \
      "import torch; print('TORCH_BLAS_PREFER_CUBLASLT=$lt ->', torch.backends.cuda.preferred_blas_library())"; done
    i=0
    for v in ${BLAS_PLAN:-cublas cublaslt cublas cublaslt}; do
      i=$((i + 1)); lt=0; [ "$v" = cublaslt ] && lt=1
      run "blas-$i-$v" 170 env CUDA_VISIBLE_DEVICES=0 TORCH_BLAS_PREFER_CUBLASLT=$lt $BT $L --json "$RES/blas-$i-$v.json"
    done
    python3 - "$RES" <<'PY' | tee "$RES/blas-summary.txt"
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("blas-*.json")):
    r = json.loads(f.read_text())["rows"][0]
    print(f"{f.stem:16s} mean step {r['mean_step_s']*1e3:7.1f} ms  MFU {100*(r['mfu'] or 0):5.2f}%  loss {r.get('loss_last')}")
PY
    ;;
  mfu-fa4)  # issue 20: FlashAttention-4 (flash-attn-4's CuTe-DSL kernels) through torch's activate_flash_attention_impl,
    # against cuDNN's attention. Its wheels (~100 MB, over one call's 64 MiB) travel in two calls (benchmarks/prepare_fa4.sh
    # says how): FA4_PARTS names the folder holding all of them, the CUTLASS DSL runtime wheel in parts cu13.part00, ...
    P=${FA4_PARTS:-/tmp/fa4}; W=/tmp/fa4-wheels; mkdir -p $W; cp "$P"/*.whl $W/
    cat "$P"/cu13.part* >$W/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
    (cd $W && sha256sum -c "$P/cu13.sha256") || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $W/*.whl || exit 1
    export PYTHONPATH=/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH  # what its .pth adds in a site dir
    python3 -c "import flash_attn.cute.interface" || exit 1
    # Inductor's FX-graph and AOTAutograd caches are keyed without the SDPA backend flags: a graph
    # compiled under cuDNN would be reused by the FA4 run (its kernels stay cuDNN's), so they are off.
    export TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
    [ "${FA4_MICRO:-1}" = 0 ] || run fa4-micro 150 env CUDA_VISIBLE_DEVICES=0 python3 "$REPO/benchmarks/fa4_attention_gpu.py" --json "$RES/fa4-micro.json"
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --no-fp32-residual --warmup 6 --steps 20 --master-weights"
    if [ -n "${FA4_PLAN:-}" ]; then
      # FA4_PLAN: runs in call order, each ATTENTION[-tuned] (cudnn, fa4, fa4-tuned, ...). "-tuned" adds inductor's
      # coordinate-descent tuning of its Triton kernels (section 1d); its per-kernel results are cached on disk
      # (inductor's autotune cache, which the FX-graph switch above leaves on), so a second tuned run compiles faster.
      i=0
      for r in $FA4_PLAN; do
        i=$((i + 1)); a=${r%-tuned}; t=0; [ "$a" != "$r" ] && t=1
        run fa4-$i-$r 300 env CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=$t $BT $L --attention $a \
          --json "$RES/fa4-$i-$r.json"
      done
    else
      for i in ${FA4_ROUNDS:-1 2}; do
        run fa4-cudnn-$i 150 env CUDA_VISIBLE_DEVICES=0 $BT $L --attention cudnn --json "$RES/fa4-cudnn-$i.json"
        run fa4-fa4-$i 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --attention fa4 $([ $i = 1 ] && [ -z "${FA4_NO_PROFILE:-}" ] && echo --profile) \
          --json "$RES/fa4-fa4-$i.json"
      done
    fi
    # FA4_TRAIN: `deepseek train` runs (the product path, train.attention) in call order, e.g. "fa4 cudnn": 1.3b as
    # above for 40 steps, the whole model compiled; MFU over steps 11-40 from metrics.jsonl (FA4_PLAN=" " skips the bench rows)
    T="--set model.name=1.3b --set data.seq_len=2048 --set data.batch_size=8 --set train.max_steps=40"
    T="$T --set train.compile=true --set train.compile_scope=model --set precision.dtype=bf16 --set precision.master_weights=true"
    T="$T --set precision.fp32_residual=false --set train.init_device=device --set train.eval_interval=0"
    T="$T --set data.eval_batches=2 --set checkpoint.at_end=false --set checkpoint.interval=0 --set logging.plot=false --quiet"
    for a in ${FA4_TRAIN:-}; do
      run "fa4-train-$a" 240 env CUDA_VISIBLE_DEVICES=0 python3 -m deepseek train $T --set train.attention=$a \
        --run-dir "$RES/fa4-train-$a"
      python3 "$REPO/benchmarks/metrics_mfu.py" "$RES/fa4-train-$a/metrics.jsonl" --after 10 | tee -a "$RES/fa4-train-summary.txt"
    done;;
  cuda-tests)  # the tests whose CUDA paths CI (no GPU) skips or cannot reach: master weights' Triton update, static
    # decoding under CUDA graphs, generate's graphs, GPU latency rows, torchao on CUDA, the trainer loop on the GPU
    run cuda-tests 420 env CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider -rs -o addopts= \
      "$REPO/tests/core/training/test_master_weights.py" "$REPO/tests/core/training/test_master_multi_tensor.py" \
      "$REPO/tests/core/models/test_static_decoding.py" \
      "$REPO/tests/core/cli/test_generate_cuda_graphs.py" "$REPO/tests/core/bench/test_latency.py" \
      "$REPO/tests/core/training/test_trainer_loop.py" "$REPO/tests/enterprise/test_quantize.py" \
      "$REPO/tests/core/models/test_repetition_penalty.py" \
      "$REPO/tests/enterprise/test_service_isolation.py::test_the_gpu_memory_cap_stops_an_allocation_over_the_share";;
  gpu2-tests)  # the tests that need two CUDA devices (a 2-GPU kind): SyncBatchNorm under ddp and fsdp on
    # two GPUs trains as one device does (torch's SyncBatchNorm is GPU-only; CI and one-GPU kinds skip them)
    run gpu2-tests 300 python3 -m pytest -q -p no:cacheprovider -rs -o addopts= "$REPO/tests/pro/test_sync_batchnorm.py";;
  mw-tests)  # the CUDA-only tests of the master-weight optimizer (Triton step = eager step; multi-tensor = per-parameter)
    run mw-tests 200 env CUDA_VISIBLE_DEVICES=0 python3 -m pytest -q -p no:cacheprovider -rs \
      "$REPO/tests/core/training/test_master_weights.py" "$REPO/tests/core/training/test_master_multi_tensor.py";;
  mfu-small)
    run mfu-small 300 env CUDA_VISIBLE_DEVICES=0 $BT --model small --batch 16 --seq 1024 --steps 30 --warmup 6 \
      --compile --compile-scope model --baseline --baseline-variants compile --json "$RES/mfu-small.json";;
  scale)  # tokens/s per GPU, same micro-batch per GPU: 1 GPU single vs 2 GPUs per strategy (eager)
    S="--model 1.3b --batch 8 --seq 2048 --steps 10 --warmup 3"
    run scale-single 240 env CUDA_VISIBLE_DEVICES=0 $BT $S --json "$RES/scale-single.json"
    run scale-ddp 300 $LAUNCH bench train $S --precision bf16 --strategy ddp --json "$RES/scale-ddp.json"
    run scale-fsdp 300 $LAUNCH bench train $S --precision bf16 --strategy fsdp --json "$RES/scale-fsdp.json"
    run scale-ds3 360 $LAUNCH bench train $S --precision bf16 --strategy deepspeed --strategy-option stage=3 \
      --json "$RES/scale-ds3.json";;
  mem)  # peak memory per GPU, 1.3b, same micro-batch, activation checkpointing on for all
    S="--model 1.3b --batch 8 --seq 2048 --steps 3 --warmup 1 --activation-checkpointing"
    [ -n "${ONLY_OFFLOAD:-}" ] || run mem-ddp 240 $LAUNCH bench train $S --precision bf16 --strategy ddp --json "$RES/mem-ddp.json"
    [ -n "${ONLY_OFFLOAD:-}" ] || run mem-fsdp 240 $LAUNCH bench train $S --precision bf16 --strategy fsdp --json "$RES/mem-fsdp.json"
    run mem-fsdp-offload 300 $LAUNCH bench train $S --precision bf16 --strategy fsdp \
      --strategy-option cpu_offload=true --json "$RES/mem-fsdp-offload.json";;
  mem-ds)  # session 3: DeepSpeed's rows of `deepseek advise` against measurement (same settings as mem)
    S="--model 1.3b --batch 8 --seq 2048 --steps 3 --warmup 1 --activation-checkpointing --init-device device"
    for st in 1 2 3; do run "mem-ds$st" 150 $LAUNCH bench train $S --precision bf16 --strategy deepspeed \
      --strategy-option stage=$st --json "$RES/mem-ds$st.json"; done
    run mem-ds2-offload 240 $LAUNCH bench train $S --precision bf16 --strategy deepspeed --strategy-option stage=2 \
      --strategy-option offload_optimizer=true --json "$RES/mem-ds2-offload.json";;
  train-check)  # session 3: `deepseek train` on CUDA with batched loss reads (logging.every_n_steps default 10):
    # every step must be in metrics.jsonl, single and ddp
    T="--set model.name=small --set data.seq_len=256 --set data.batch_size=16 --set train.max_steps=45"
    T="$T --set train.eval_interval=20 --set checkpoint.interval=20 --quiet"
    run train-single 150 python3 -m deepseek train $T --run-dir "$RES/train-single"
    run train-ddp 150 $LAUNCH train --strategy ddp $T --run-dir "$RES/train-ddp"
    for r in train-single train-ddp; do python3 -c "import json,sys; rs=[json.loads(l) for l in open(sys.argv[1])]; \
      s=[r['step'] for r in rs if 'loss' in r]; print(sys.argv[1], 'steps', s[0], '..', s[-1], len(s), 'records; val', \
      [(r['step'], round(r['val_loss'], 3)) for r in rs if 'val_loss' in r])" "$RES/$r/metrics.jsonl"; done;;
  gpu-engine)  # session 4: the step engine on CUDA with one GPU: `deepseek train` single, and fsdp and
    # DeepSpeed ZeRO-2 under `deepseek launch -n 1`; every step must be in metrics.jsonl
    T="--set model.name=small --set data.seq_len=256 --set data.batch_size=16 --set train.eval_interval=20"
    T="$T --set checkpoint.interval=20 --quiet"
    run engine-single 150 python3 -m deepseek train $T --set train.max_steps=45 --run-dir "$RES/engine-single"
    run engine-fsdp 150 python3 -m deepseek launch -n 1 -- train --strategy fsdp $T --set train.max_steps=25 \
      --run-dir "$RES/engine-fsdp"
    run engine-ds2 150 python3 -m deepseek launch -n 1 -- train --strategy deepspeed --set strategy.stage=2 $T \
      --set train.max_steps=25 --run-dir "$RES/engine-ds2"
    for r in engine-single engine-fsdp engine-ds2; do python3 -c "import json,sys; rs=[json.loads(l) for l in open(sys.argv[1])]; \
      s=[r['step'] for r in rs if 'loss' in r]; print(sys.argv[1], 'steps', s[0], '..', s[-1], len(s), 'records; val', \
      [(r['step'], round(r['val_loss'], 3)) for r in rs if 'val_loss' in r])" "$RES/$r/metrics.jsonl"; done;;
  mm-engine)  # the tri-modal classifier (float image and audio inputs) in bf16 on CUDA through every one-GPU
    # engine: single (autocast), fsdp (mixed-precision policy) and DeepSpeed ZeRO-2 and -3 (its own bf16, inputs cast
    # by the strategy) under `deepseek launch -n 1`; same data, seed and steps; every step in metrics.jsonl
    M="$REPO/examples/multimodal/digits.toml --set precision.dtype=bf16 --set train.max_steps=300"
    M="$M --set train.eval_interval=100 --set checkpoint.interval=100 --quiet"
    run mm-single 150 python3 -m deepseek train $M --run-dir "$RES/mm-single"
    run mm-fsdp 150 python3 -m deepseek launch -n 1 -- train --strategy fsdp $M --run-dir "$RES/mm-fsdp"
    run mm-ds2 150 python3 -m deepseek launch -n 1 -- train --strategy deepspeed --set strategy.stage=2 $M \
      --run-dir "$RES/mm-ds2"
    run mm-ds3 150 python3 -m deepseek launch -n 1 -- train --strategy deepspeed --set strategy.stage=3 $M \
      --run-dir "$RES/mm-ds3"
    for r in mm-single mm-fsdp mm-ds2 mm-ds3; do python3 -c "import json,sys; rs=[json.loads(l) for l in open(sys.argv[1])]; \
      s=[r['step'] for r in rs if 'loss' in r]; print(sys.argv[1], 'steps', s[0], '..', s[-1], len(s), 'records; val', \
      [(r['step'], {k: round(v, 4) for k, v in r.items() if k.startswith('val_')}) for r in rs if 'val_loss' in r])" \
      "$RES/$r/metrics.jsonl"; done;;
  lat)  # GPU latency: decode step at batch 1, prefill 8 x 512 (small model)
    run lat-decode 240 python3 -m deepseek bench latency --model small --device cuda --mode decode \
      --batch 1 --seq 128 --runs 50 --json "$RES/lat-decode.json"
    run lat-prefill 300 python3 -m deepseek bench latency --model small --device cuda --batch 8 --seq 512 \
      --runs 30 --json "$RES/lat-prefill.json";;
  fusion)  # issue 19: the multimodal fusion study on one H200, one process per (task, seed, model):
    # 36 processes side by side, same steps and recipe for every model. FUSION_RECIPE
    # (joint|aux|pretrained|frozen|stacked|stacked-residual|calibrated|balanced|pretrained-balanced),
    # FUSION_TASKS, FUSION_SEEDS and FUSION_CONFIGS (space-separated) pick a subset, e.g. the fused models only:
    #   FUSION_CONFIGS="concat cross_attention" bash benchmarks/gpu_suite.sh fusion
    # FUSION_RECIPE=pretrained|frozen|stacked|stacked-residual|calibrated|pretrained-balanced on the redundant task: two phases, so
    # that the fused models start from exactly the unimodal models whose rows are reported (one
    # process per seed trains vision, audio, text into fusion-redundant-s<seed>-uni, with stacked*
    # on the fit part of the training split; then late, concat and cross_attention start from those
    # runs with --unimodal-runs, stacked* training on the blend part; with frozen and stacked*, late
    # is their ensemble, not trained).
    # FUSION_EVAL_WEIGHTS="fused=1,vision=1,audio=1,text=1": the fused models (late, concat,
    # cross_attention) are also evaluated with these logit_weights, fixed in advance
    # (--eval-logit-weights; their rows' "weighted", a table of its own).
    STEPS=${FUSION_STEPS:-1200}; RECIPE=${FUSION_RECIPE:-joint}
    EW=(); [ -n "${FUSION_EVAL_WEIGHTS:-}" ] && EW=(--eval-logit-weights "$FUSION_EVAL_WEIGHTS")
    fusion_run() {  # fusion_run NAME ARGS...: one study process in the background
      local name=$1; shift
      OMP_NUM_THREADS=1 timeout $((BUDGET - 30 - ($(date +%s) - START))) python3 -m deepseek multimodal study "$@" \
        --steps "$STEPS" --device cuda --recipe "$RECIPE" --out "$RES/$name" >"$RES/$name.log" 2>&1 &
    }
    for task in ${FUSION_TASKS:-redundant complementary}; do
      CONFIGS=${FUSION_CONFIGS:-vision audio text late concat cross_attention}
      if [ "$task" = redundant ] && case $RECIPE in pretrained|frozen|stacked|stacked-residual|calibrated|pretrained-balanced) true;; *) false;; esac; then
        UNI=""
        for seed in ${FUSION_SEEDS:-0 1 2}; do
          fusion_run "fusion-$task-s$seed-uni" --task $task --seed $seed --config vision --config audio --config text
          UNI="$UNI $!"
        done
        wait $UNI
        for seed in ${FUSION_SEEDS:-0 1 2}; do for c in $CONFIGS; do case $c in late|concat|cross_attention)
          fusion_run "fusion-$task-s$seed-$c" --task $task --seed $seed --config $c ${EW[@]+"${EW[@]}"} \
            --unimodal-runs "$RES/fusion-$task-s$seed-uni/runs";; esac; done; done
        continue
      fi
      for seed in ${FUSION_SEEDS:-0 1 2}; do for c in $CONFIGS; do case $c in
        late|concat|cross_attention) fusion_run "fusion-$task-s$seed-$c" --task $task --seed $seed --config $c \
          ${EW[@]+"${EW[@]}"};;
        *) fusion_run "fusion-$task-s$seed-$c" --task $task --seed $seed --config $c;; esac
      done; done
    done
    # What has finished comes back even when the call is cut short.
    ( while sleep 15; do cat "$RES"/fusion-*/results.jsonl >"$OUT/fusion-results.jsonl" 2>/dev/null; done ) &
    COPIER=$!
    wait $(jobs -p | grep -v "^$COPIER$" | grep -v "^$SAMPLER$")
    kill $COPIER
    cat "$RES"/fusion-*/results.jsonl >"$RES/fusion-results.jsonl" 2>/dev/null
    cp "$RES/fusion-results.jsonl" "$OUT/" 2>/dev/null
    python3 -m deepseek multimodal table "$RES/fusion-results.jsonl" | tee "$RES/fusion-table.md";;
  mm-lat)  # issue 19: batch-1 latency and peak memory of the tri-modal example model, eager vs compiled
    for dt in float32 bfloat16; do
      run "mm-lat-$dt" 300 python3 -m deepseek bench latency --config "$REPO/examples/multimodal/digits.toml" \
        --device cuda --dtype $dt --runs 200 --json "$RES/mm-lat-$dt.json"
    done;;
  tune)  # issue 16: a system study of 1.3b at a fixed global batch (64 x 2048) on one H200 and, in the
    # same call, BENCHMARKS.md's hand-tuned flags at that batch (compile the whole model, cuDNN attention,
    # bf16 residual, 8 micro-batches of 8): the study's best against the base config and the hand tuning
    run tune-system 400 env CUDA_VISIBLE_DEVICES=0 python3 -m deepseek tune "$REPO/examples/tune/system-1.3b.toml" \
      --study sys13b --space "$REPO/examples/tune/system-space.toml" --objective tokens_per_s --trials 12 \
      --timeout "${TUNE_TIMEOUT:-280}" --out "$RES/tune-sys"
    cp "$RES/tune-sys/trials.json" "$OUT/tune-trials.json" 2>/dev/null
    run tune-hand 150 env CUDA_VISIBLE_DEVICES=0 $BT --model 1.3b --batch 8 --seq 2048 --grad-accum 8 --steps 5 \
      --warmup 2 --compile --compile-scope model --attention cudnn --no-fp32-residual --init-device device \
      --json "$RES/tune-hand.json";;
  train-mfu)  # eleventh session: the product path, `deepseek train`, against `bench train` in the same call: 1.3b
    # at 8 x 2048, bf16 with master weights and a bf16 residual, cuDNN attention, the whole model compiled
    # (train.compile_scope = model), then per block; MFU over steps 11-40 from metrics.jsonl (PaLM FLOPs per token)
    run trainmfu-bench 200 env CUDA_VISIBLE_DEVICES=0 $BT --model 1.3b --batch 8 --seq 2048 --compile --compile-scope model \
      --attention cudnn --no-fp32-residual --master-weights --init-device device --warmup 6 --steps 20 \
      --json "$RES/trainmfu-bench.json"
    T="--set model.name=1.3b --set data.seq_len=2048 --set data.batch_size=8 --set train.max_steps=40"
    T="$T --set train.compile=true --set train.attention=cudnn --set precision.dtype=bf16 --set precision.master_weights=true"
    T="$T --set precision.fp32_residual=false --set train.init_device=device --set train.eval_interval=0"
    T="$T --set data.eval_batches=2 --set checkpoint.at_end=false --set checkpoint.interval=0 --set logging.plot=false --quiet"
    for scope in model blocks; do
      run "trainmfu-$scope" 200 env CUDA_VISIBLE_DEVICES=0 python3 -m deepseek train $T --set train.compile_scope=$scope \
        --run-dir "$RES/trainmfu-$scope"
      python3 "$REPO/benchmarks/metrics_mfu.py" "$RES/trainmfu-$scope/metrics.jsonl" --after 10 | tee -a "$RES/trainmfu-summary.txt"
    done;;
  optim)  # twelfth session: peak memory and step time of each registered optimizer on 1.3b at 8 x 2048, bf16 autocast
    # (fp32 parameters and gradients), whole model compiled, cuDNN attention; same settings, one process per optimizer
    L="--model 1.3b --batch 8 --seq 2048 --compile --compile-scope model --attention cudnn --no-fp32-residual --init-device device --warmup 6 --steps 20"
    for o in ${OPTIMIZERS:-adamw adafactor lion sgd}; do
      run "optim-$o" 200 env CUDA_VISIBLE_DEVICES=0 $BT $L --optimizer $o --json "$RES/optim-$o.json"
    done
    python3 - "$RES" <<'PY' | tee "$RES/optim-summary.txt"
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("optim-*.json")):
    r = json.loads(f.read_text())["rows"][0]
    print(f"{f.stem:16s} mean step {r['mean_step_s']*1e3:7.1f} ms  MFU {100*(r['mfu'] or 0):5.2f}%  "
          f"peak {r['peak_memory_bytes']/2**30:6.2f} GiB  loss {r.get('loss_first')} -> {r.get('loss_last')}")
PY
    ;;
  comp)  # gradient compression on 2 GPUs: bytes per step and final loss after a fixed budget
    for c in none bf16 powersgd-4 powersgd-16; do
      kind=${c%%-*}; rank=${c#*-}; [ "$rank" = "$c" ] && rank=1
      run "comp-$c" 300 $LAUNCH train --strategy ddp --set model.name=small --set data.seq_len=256 \
        --set data.batch_size=32 --set train.max_steps=300 --set train.eval_interval=100 \
        --set strategy.compression="\"$kind\"" --set strategy.powersgd_rank=$rank \
        --set checkpoint.at_end=false --set checkpoint.interval=0 --run-dir "$RES/comp-$c" --quiet
    done;;
  *) echo "unknown group $group";;
  esac
done
kill "$SAMPLER" 2>/dev/null
find "$RES" -name '*.safetensors' -delete
tar czf "$OUT/results.tgz" -C "$RES" .
echo "== done $(date +%T)"
