"""The master-weight AdamW update (deepseek.training.master_kernel) over the 1.3b model's
parameters on one GPU: time per optimizer step and achieved bandwidth for each (BLOCK, num_warps)
launch configuration, one launch per parameter and one multi-tensor launch over all of them, side
by side, against torch's fused AdamW over fp32 parameters (the same 28 bytes per parameter
moved) and a plain device copy of as many bytes, in the same process. Also the gradient norm that
clipping reads first (deepseek.training.clip.total_norm over the bf16 gradients) with its kernel
count. Issue 20: is the update at the card's bandwidth?

Before timing, one step of each form from the same state must give bit-identical parameters,
masters and moments (else it exits 1).

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



def same_numbers(params, grads, masters, m, v, master_kernel) -> bool:  # noqa: ANN001
    """One step per parameter on the tensors given and one multi-tensor step on a copy of them
    (with a clip scale): every parameter, master and moment bit for bit the same."""
    ours = [params, masters, m, v]
    copy = [[t.clone() for t in ts] for ts in ours]
    scale = torch.tensor(1.3, device=params[0].device)
    args = (1e-3, scale, 1 - 0.9**2, (1 - 0.95**2) ** 0.5, 0.9, 0.95, 1e-8, 0.1)
    for p, g, w, mm, vv in zip(params, grads, masters, m, v, strict=True):
        master_kernel.fused_update(p, g, w, mm, vv, *args)
    master_kernel.MultiTensorUpdate()(copy[0], grads, *copy[1:], *args)
    return all(torch.equal(a, b) for xs, ys in zip(ours, copy, strict=True) for a, b in zip(xs, ys, strict=True))


def copy_row(moved: int, repeats: int, size: int = 2**32) -> dict:
    """A device-to-device copy of ``size`` bytes: the card's bandwidth for a plain read and write,
    and the time the update's ``moved`` bytes would take at it."""
    src = torch.empty(size, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), repeats, warmup=1)
    tb_per_s = 2 * size / ms / 1e9
    return {"variant": "device copy (the update's bytes at its rate)", "ms": moved / tb_per_s / 1e9,
            "tb_per_s": tb_per_s}


def norm_row(grads: list[torch.Tensor], repeats: int) -> dict:
    """clip.total_norm over the bf16 gradients: time, bandwidth (2 bytes read per parameter) and
    how many kernels one call launches (torch.profiler)."""
    from deepseek.training.clip import total_norm

    ms = time_ms(lambda: total_norm(grads), repeats, warmup=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        total_norm(grads)
        torch.cuda.synchronize()
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    n = sum(g.numel() for g in grads)
    return {"variant": "clip.total_norm, bf16 gradients (read once)", "ms": ms, "tb_per_s": 2 * n / ms / 1e9,
            "kernels": len(kernels), "kernel_names": sorted(set(kernels)), "note": f"  {len(kernels)} kernels"}


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
    import triton.language as tl

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

    def multi(block: int, warps: int):
        which, start = (t.to(dev) for t in master_kernel.block_table([p.numel() for p in params], block))
        table = torch.tensor([a for p, g, w, mm, vv in zip(params, grads, masters, m, v, strict=True)
                              for a in (p.data_ptr(), g.data_ptr(), w.data_ptr(), mm.data_ptr(), vv.data_ptr(),
                                        p.numel())], dtype=torch.int64, device=dev)

        def step() -> None:
            master_kernel._adamw_multi_kernel[(which.numel(),)](
                table, which, start, masters[0], 1.0 - 1e-5, 1e-4, 1.0, 0.9, 0.95, 1e-8, PARAM=tl.bfloat16,
                GRAD=tl.bfloat16, HAS_SCALE=False, BLOCK=block, num_warps=warps)
        return step

    update = master_kernel.MultiTensorUpdate()

    def as_the_optimizer_calls_it() -> None:  # addresses gathered and looked up on the host every step
        update(params, grads, masters, m, v, 1e-4, None, 1.0, 1.0, 0.9, 0.95, 1e-8, 0.1)

    if not same_numbers(params, grads, masters, m, v, master_kernel):
        print("error: the multi-tensor update differs from the per-parameter one", file=sys.stderr)
        return 1
    rows = []
    for block, warps in (tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")):
        for form, make in (("per-parameter", ours), ("multi-tensor", multi)):
            ms = time_ms(make(block, warps), args.repeats, warmup=1)
            rows.append({"variant": f"{form} BLOCK={block} warps={warps}", "ms": ms, "tb_per_s": moved / ms / 1e9})
    ms = time_ms(as_the_optimizer_calls_it, args.repeats, warmup=1)
    rows.append({"variant": "multi-tensor, MultiTensorUpdate (host side included)", "ms": ms,
                 "tb_per_s": moved / ms / 1e9})
    rows.append(copy_row(moved, args.repeats))
    rows.append(norm_row(grads, args.repeats))
    fp32 = [w.clone().requires_grad_() for w in masters]
    for p, g in zip(fp32, grads, strict=True):
        p.grad = g.float()
    opt = torch.optim.AdamW(fp32, lr=1e-4, fused=True)
    ms = time_ms(opt.step, args.repeats, warmup=1)
    rows.append({"variant": "torch AdamW fused=True, fp32 parameters", "ms": ms, "tb_per_s": moved / ms / 1e9})
    for r in rows:
        print(f"{r['variant']:<55} {r['ms']:8.2f} ms {r['tb_per_s']:6.2f} TB/s{r.get('note', '')}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"parameters": n, "bytes_per_step": moved, "device": torch.cuda.get_device_name(), "rows": rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
