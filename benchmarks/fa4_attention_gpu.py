"""Issue 20's "an attention kernel faster than cuDNN's for head size 128" lever: FlashAttention-4
(the ``flash-attn-4`` package's CuTe-DSL kernels, which have a Hopper forward and backward),
plugged into ``scaled_dot_product_attention`` through torch 2.11's own switch
``torch.nn.attention.activate_flash_attention_impl("FA4")``, against cuDNN's flash attention and
torch's built-in FlashAttention-2, on the 1.3b model's attention (batch 8, 16 heads, 2048 tokens,
head size 128, causal, bf16).

In one process, alternating rounds: forward, and forward + backward, of each backend (CUDA events,
``--repeats`` calls per round); then each backend's output and q/k/v gradients against an fp32
math reference on one sequence. FA4 replaces the flash backend process-wide once activated, so the
built-in FA2 rows are measured before it is activated.

    python benchmarks/fa4_attention_gpu.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from _cuda_timing import time_ms
from torch.nn.attention import SDPBackend, sdpa_kernel


def attention_flops(b: int, h: int, s: int, d: int) -> float:
    """Forward FLOPs of causal attention (two matmuls, half the score matrix)."""
    return 4 * b * h * s * s * d / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=24, help="to scale per-call times to the model")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    dev, dt = torch.device("cuda"), torch.bfloat16
    b, h, s, d = args.batch, args.heads, args.seq, args.head_dim
    torch.manual_seed(0)
    # The model's layout: one (B, S, 3, H, D) projection viewed as (B, H, S, D) per tensor.
    qkv = torch.randn(b, s, 3, h, d, device=dev, dtype=dt).requires_grad_(True)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    grad = torch.randn(b, h, s, d, device=dev, dtype=dt)

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def fwd_bwd():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(grad)
        qkv.grad = None

    outputs: dict[str, torch.Tensor] = {}

    def reference_check(name: str) -> dict[str, float]:
        # One sequence against fp32 math attention: relative max and mean error of out, dq, dk, dv.
        # The max of a bf16 output is set by its own rounding, so two accurate kernels can print the
        # same max; the mean error and the output kept per kernel (compared below) tell them apart.
        x = qkv[:1].detach().clone().requires_grad_(True)
        xr = x.detach().float().requires_grad_(True)
        g = grad[:1]
        out = F.scaled_dot_product_attention(*(x[:, :, i].transpose(1, 2) for i in range(3)), is_causal=True)
        out.backward(g)
        with sdpa_kernel([SDPBackend.MATH]):
            ref = F.scaled_dot_product_attention(*(xr[:, :, i].transpose(1, 2) for i in range(3)), is_causal=True)
            ref.backward(g.float())
        outputs[name] = out.detach().float()
        errs = {"out": (out.float() - ref).abs().max() / ref.abs().max(),
                "out_mean": (out.float() - ref).abs().mean() / ref.abs().mean()}
        for i, grad_name in enumerate(("dq", "dk", "dv")):
            g_ref = xr.grad[:, :, i]
            diff = (x.grad[:, :, i].float() - g_ref).abs()
            errs[grad_name] = diff.max() / g_ref.abs().max()
            errs[grad_name + "_mean"] = diff.mean() / g_ref.abs().mean()
        return {key: float(val) for key, val in errs.items()}

    def compiled_kernels() -> list[str]:
        # Which attention kernels a torch.compile'd forward + backward launches (the training path).
        torch._dynamo.reset()
        fn = torch.compile(lambda a, b_, c: F.scaled_dot_product_attention(a, b_, c, is_causal=True))
        fn(q, k, v).backward(grad)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn(q, k, v).backward(grad)
            torch.cuda.synchronize()
        qkv.grad = None
        names = {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}
        return sorted(n[:90] for n in names if any(w in n.lower() for w in ("flash", "fmha", "attn", "sdpa", "cudnn")))

    backends = {"cudnn": [SDPBackend.CUDNN_ATTENTION], "fa2 (torch built-in flash)": [SDPBackend.FLASH_ATTENTION]}
    results: dict[str, dict] = {}
    rows: dict[str, dict[str, list[float]]] = {}

    def measure(name: str, kernels: list) -> None:
        with sdpa_kernel(kernels):
            rows.setdefault(name, {"forward_ms": [], "forward_backward_ms": []})
            rows[name]["forward_ms"].append(time_ms(fwd, args.repeats))
            rows[name]["forward_backward_ms"].append(time_ms(fwd_bwd, args.repeats))

    for name, kernels in backends.items():
        with sdpa_kernel(kernels):
            results[name] = {"error_vs_fp32_math": reference_check(name),
                             "kernels_under_torch_compile": compiled_kernels()}
    for _ in range(args.rounds):
        for name, kernels in backends.items():
            measure(name, kernels)
    fa4 = "fa4 (flash-attn-4, CuTe DSL)"
    try:
        from importlib.metadata import version

        from deepseek.training.fa4 import activate

        started = time.perf_counter()
        activate()
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fwd_bwd()
            torch.cuda.synchronize()
            first_call_s = time.perf_counter() - started
            results[fa4] = {"error_vs_fp32_math": reference_check(fa4), "first_call_s": first_call_s,
                            "version": version("flash-attn-4"),
                            "kernels_under_torch_compile": compiled_kernels()}
        fa2_out = outputs["fa2 (torch built-in flash)"]
        results[fa4]["outputs_differing_from_fa2"] = int((outputs[fa4] != fa2_out).sum())
        results[fa4]["outputs_compared"] = fa2_out.numel()
        backends[fa4] = [SDPBackend.FLASH_ATTENTION]
        del backends["fa2 (torch built-in flash)"]  # the flash backend is FA4 from here on
        for _ in range(args.rounds):
            for name, kernels in backends.items():
                measure(name, kernels)
    except Exception as exc:  # reported, so the cuDNN/FA2 rows still come back
        results[fa4] = {"error": f"{type(exc).__name__}: {exc}"}
    fl = attention_flops(b, h, s, d)
    for name, r in rows.items():
        fwd_ms, fb_ms = min(r["forward_ms"]), min(r["forward_backward_ms"])
        results.setdefault(name, {}).update({
            **r, "best_forward_ms": fwd_ms, "best_forward_backward_ms": fb_ms,
            "backward_ms": fb_ms - fwd_ms,
            "forward_tflops": fl / fwd_ms / 1e9, "backward_tflops": 2.5 * fl / (fb_ms - fwd_ms) / 1e9,
            "per_step_ms_over_layers": fb_ms * args.layers,
        })
    out = {"shape": {"batch": b, "heads": h, "seq": s, "head_dim": d, "causal": True, "dtype": "bf16"},
           "device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
