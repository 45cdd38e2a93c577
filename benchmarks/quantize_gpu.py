"""Issue 15's GPU figure: a trained ``1.3b`` quantized with torchao (int4 weight-only, float8,
int8, int8 weight-only) against itself in bf16: validation loss on the same held-out batches and
decode latency (one KV-cached token, batch 1, after a 128-token prompt), eager and with CUDA
graphs (``torch.compile`` mode reduce-overhead), in one process.

    python benchmarks/quantize_gpu.py --out $OUT/quantize [--steps 150] [--run DIR]

Trains ``1.3b`` on the embedded corpus first (``deepseek train``, bf16, batch 8 x 1024) unless
``--run`` names a trained run. Writes quantize-gpu.json and prints a Markdown row per variant.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

CONFIG = """
[model]
name = "1.3b"
max_seq_len = 1024
[data]
seq_len = 1024
batch_size = 8
eval_batches = 16
[train]
max_steps = {steps}
warmup_steps = 20
eval_interval = 0
lr = 3e-4
min_lr = 3e-5
[precision]
dtype = "bf16"
[strategy]
name = "single"
device = "cuda"
[checkpoint]
interval = 0
[logging]
plot = false
progress = false
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--run", type=Path)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--schemes", nargs="+", default=["int4-weight", "float8", "float8-tensor", "int8", "int8-weight"])
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    run = a.run
    if run is None:
        run = a.out / "run-1.3b"
        (a.out / "train.toml").write_text(CONFIG.format(steps=a.steps))
        print(deepseek("train", str(a.out / "train.toml"), "--run-dir", str(run), "--quiet"), flush=True)

    import torch

    from deepseek.bench.latency import run_latency
    from deepseek.plugins.host import get_host
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import evaluate_batch, summarize
    from deepseek.training.inference import load_trained
    from deepseek_enterprise.compress.compressor import linear_weight_bytes
    from deepseek_enterprise.compress.quantize import quantize_model

    model, config, _ = load_trained(run, "cuda", need_data=True)
    val = build_dataset(config, get_host()).validation_batches(16)
    device = torch.device("cuda")
    rows = {}
    ids = [b["input_ids"][:2].to(device) for b in val[:4]]  # logits of 4 x 2 held-out rows vs bf16
    reference = None
    for variant in ["bf16", *a.schemes]:
        work = copy.deepcopy(model).to(torch.bfloat16)
        try:
            if variant != "bf16":
                quantize_model(work, variant.removesuffix("-tensor"), ["lm_head"], 128,
                               "tensor" if variant.endswith("-tensor") else "row")
            loss = summarize([evaluate_batch(work, b, device=device) for b in val])["val_loss"]
            with torch.no_grad():
                logits = [work(x).float() for x in ids]
            if reference is None:
                reference = logits
            err = max(((q - r).abs().max() / r.abs().max()).item() for q, r in zip(logits, reference, strict=True))
            top1 = sum((q.argmax(-1) == r.argmax(-1)).float().mean().item() for q, r in zip(logits, reference, strict=True)) / len(ids)
            lat = run_latency(work, batch=1, seq=128, device=device, dtype="bfloat16", mode="decode", runs=a.runs,
                              warmup=5, only=["torch.compile reduce-overhead"],
                              progress=lambda msg, v=variant: print(v, msg, flush=True))
            times = {r.name: r.median_ms for r in lat.rows}
            linear = sum(linear_weight_bytes(m) for m in work.modules() if isinstance(m, torch.nn.Linear))
            rows[variant] = {"val_loss": loss, "logits_max_rel_error_vs_bf16": err, "top1_agreement_vs_bf16": top1,
                             "decode_ms": times, "linear_weight_bytes": linear,
                             "max_rel_error_vs_eager": {r.name: r.max_rel_error for r in lat.rows}}
        except Exception as exc:  # a scheme this GPU or torchao cannot run: recorded, the others go on
            rows[variant] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(variant, rows[variant], flush=True)
        del work
        torch.cuda.empty_cache()
    result = {"run": str(run), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    (a.out / "quantize-gpu.json").write_text(json.dumps(result, indent=1))
    base = rows["bf16"]
    for name, r in rows.items():
        if "error" in r:
            print(f"| {name} | error: {r['error'][:120]} |")
            continue
        d = r["decode_ms"]
        print(f"| {name} | {base['linear_weight_bytes'] / r['linear_weight_bytes']:.2f}x | "
              f"{d.get('eager', float('nan')):.2f} ms | {d.get('torch.compile reduce-overhead', float('nan')):.3f} ms | "
              f"{r['val_loss']:.4f} ({r['val_loss'] / base['val_loss'] - 1:+.3%}) | {r['logits_max_rel_error_vs_bf16']:.1e} | "
              f"{r['top1_agreement_vs_bf16']:.1%} |")


if __name__ == "__main__":
    main()
