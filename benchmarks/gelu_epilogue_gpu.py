"""Issue 20's "cuBLASLt epilogues through what torch exposes" lever, measured on one layer of the
1.3b model's MLP (tokens 8 x 2048, d 2048 -> d_ff 8192, bf16) on one GPU.

torch exposes one GEMM + bias + GELU(tanh) epilogue, ``torch._addmm_activation(bias, x, w.t(),
use_gelu=True)`` (cuBLASLt ``GELU_BIAS``). It returns the activation only, not the
pre-activation, which GELU's backward needs (the ``GELU_AUX_BIAS`` / ``DGELU`` epilogues that keep
or consume it are not exposed). So a training step can use it only by recomputing the
pre-activation in the backward pass. This script times, in one process:

- ``unfused``: ``addmm`` then GELU, eager (two kernels: the pre-activation is written and read);
- ``compiled``: the same under ``torch.compile`` (what the training step runs: inductor's GEMM then
  one bias+GELU kernel; the pre-activation is kept for backward);
- ``epilogue``: ``_addmm_activation`` (one kernel, the pre-activation never written);
- ``recompute``: the extra ``addmm`` a backward would run to get the pre-activation back;

and checks the epilogue's output against the eager one. The forward saving per layer is
``compiled - epilogue``; used in training it costs ``recompute`` more per layer in backward.

    python benchmarks/gelu_epilogue_gpu.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from _cuda_timing import time_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8 * 2048)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--ff", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=24, help="to scale per-layer times to the model")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of all variants")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    dev, dt = torch.device("cuda"), torch.bfloat16
    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.d, device=dev, dtype=dt)
    w = torch.randn(args.ff, args.d, device=dev, dtype=dt) / args.d**0.5
    b = torch.randn(args.ff, device=dev, dtype=dt) * 0.1

    def unfused() -> torch.Tensor:
        return torch.nn.functional.gelu(torch.addmm(b, x, w.t()), approximate="tanh")

    compiled = torch.compile(unfused)

    def epilogue() -> torch.Tensor:
        return torch._addmm_activation(b, x, w.t(), use_gelu=True)

    def recompute() -> torch.Tensor:
        return torch.addmm(b, x, w.t())

    reference = unfused().float()
    err = ((epilogue().float() - reference).abs().max() / reference.abs().max()).item()
    err_compiled = ((compiled().float() - reference).abs().max() / reference.abs().max()).item()
    variants = {"unfused": unfused, "compiled": compiled, "epilogue": epilogue, "recompute": recompute}
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        rounds.append({name: time_ms(fn, args.repeats) for name, fn in variants.items()})
    best = {name: min(r[name] for r in rounds) for name in variants}
    flops = 2 * args.tokens * args.d * args.ff
    out = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "shape": {"tokens": args.tokens, "d": args.d, "ff": args.ff},
        "ms_per_layer_rounds": rounds,
        "ms_per_layer_best": best,
        "gemm_tflops_recompute": flops / best["recompute"] / 1e9,
        "max_rel_error_epilogue_vs_eager": err,
        "max_rel_error_compiled_vs_eager": err_compiled,
        "forward_saving_ms_model": (best["compiled"] - best["epilogue"]) * args.layers,
        "backward_recompute_cost_ms_model": best["recompute"] * args.layers,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
