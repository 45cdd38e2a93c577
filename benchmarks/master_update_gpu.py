"""The master-weight AdamW update (deepseek.training.master_kernel) over the 1.3b model's
parameters on one GPU: time per optimizer step and achieved bandwidth for each (BLOCK, num_warps)
launch configuration, against torch's fused AdamW over fp32 parameters (the same 28 bytes per
parameter moved) in the same process. Issue 20: is the update at the card's bandwidth?

    python benchmarks/master_update_gpu.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from _cuda_timing import time_ms


def shapes_1p3b() -> list[tuple[int, ...]]:
    """The 1.3b GPT's parameter shapes (24 x 2048, d_ff 8192, vocab 256, biases, LayerNorms)."""
    d, ff, layers = 2048, 8192, 24
    block = [(3 * d, d), (3 * d,), (d, d), (d,), (ff, d), (ff,), (d, ff), (d,), (d,), (d,), (d,), (d,)]
    return [(256, d), (2048, d), *block * layers, (d,), (d,)]



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--configs", default="2048x4,1024x4,2048x8,4096x4,4096x8,8192x8,8192x16",
                        help="BLOCKxWARPS launch configurations, comma-separated")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton

    from deepseek.training import master_kernel

    dev = torch.device("cuda")
    shapes = shapes_1p3b()
    params = [torch.randn(s, device=dev).to(torch.bfloat16) for s in shapes]
    grads = [torch.randn(s, device=dev).to(torch.bfloat16) for s in shapes]
    masters = [p.float() for p in params]
    m = [torch.zeros_like(w) for w in masters]
    v = [torch.zeros_like(w) for w in masters]
    n = sum(p.numel() for p in params)
    moved = 28 * n  # bf16 gradient read, bf16 parameter written, fp32 master and moments read and written

    def ours(block: int, warps: int):
        def step() -> None:
            for p, g, w, mm, vv in zip(params, grads, masters, m, v, strict=True):
                k = p.numel()
                master_kernel._adamw_master_kernel[(triton.cdiv(k, block),)](
                    p, g, w, mm, vv, w, k, 1e-4, 1.0 - 1e-5, 1e-4, 1.0, 0.9, 0.95, 1e-8,
                    HAS_SCALE=False, BLOCK=block, num_warps=warps)
        return step

    rows = []
    for block, warps in (tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")):
        ms = time_ms(ours(block, warps), args.repeats, warmup=1)
        rows.append({"variant": f"master kernel BLOCK={block} warps={warps}", "ms": ms, "tb_per_s": moved / ms / 1e9})
    fp32 = [w.clone().requires_grad_() for w in masters]
    for p, g in zip(fp32, grads, strict=True):
        p.grad = g.float()
    opt = torch.optim.AdamW(fp32, lr=1e-4, fused=True)
    ms = time_ms(opt.step, args.repeats, warmup=1)
    rows.append({"variant": "torch AdamW fused=True, fp32 parameters", "ms": ms, "tb_per_s": moved / ms / 1e9})
    for r in rows:
        print(f"{r['variant']:<45} {r['ms']:8.2f} ms {r['tb_per_s']:6.2f} TB/s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"parameters": n, "bytes_per_step": moved, "device": torch.cuda.get_device_name(), "rows": rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
