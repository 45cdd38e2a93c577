"""Issue 20, CPU: deepseek.optimize's forward against its own GEMM ceiling, timed in one process.

The ceiling is the model's Linear layers alone: every ``nn.Linear`` of ``small`` called once on
a batch-1 x 128-token input of its shape, with its weight pre-packed for oneDNN exactly as the
optimizer's ``onednn`` stage packs it (``mkldnn._linear_pointwise``, no epilogue). Those GEMMs
are 97% of the forward's FLOPs; the rest (attention, LayerNorm, glue) is what the optimizer can
still fuse. The absolute times move with the VM's host (BENCHMARKS.md, "Graph optimizer (CPU)");
their ratio, taken call by call in one process, does not. The optimized model is checked
against eager (max relative error) before timing.

    python benchmarks/cpu_gemm_ceiling.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

import deepseek
from deepseek.graph.onednn import packed_weight

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=30)
parser.add_argument("--json", default=None)
args = parser.parse_args()

torch.manual_seed(0)
model = deepseek.create_model("small").eval()
tokens = torch.randint(0, 256, (1, 128))
rows = tokens.numel()
with torch.no_grad():
    reference = model(tokens).float()
    optimized = deepseek.optimize(model, (tokens,))
    out = optimized(tokens).float()
error = float((out - reference).abs().max() / reference.abs().max())

linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
gemms = [(torch.randn(rows, m.in_features), packed_weight(m.weight, rows),
          None if m.bias is None else m.bias.detach()) for m in linears]
flops = sum(2 * rows * m.in_features * m.out_features for m in linears)


def ceiling() -> None:
    for x, w, b in gemms:
        torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def forward() -> None:
    optimized(tokens)


times: dict[str, list[float]] = {"gemms alone": [], "deepseek.optimize": []}
with torch.no_grad():
    for _ in range(3):
        ceiling()
        forward()
    for _ in range(args.runs):  # interleaved call by call
        for name, fn in (("gemms alone", ceiling), ("deepseek.optimize", forward)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)

median = {k: statistics.median(v) for k, v in times.items()}
result = {
    "linears": len(linears), "gemm_gflop": flops / 1e9, "max_rel_err": error, "threads": torch.get_num_threads(),
    "median_ms": median,
    "p10_p90_ms": {k: (sorted(v)[len(v) // 10], sorted(v)[len(v) * 9 // 10]) for k, v in times.items()},
    "gemm_gflops_per_s": flops / 1e9 / (median["gemms alone"] / 1e3),
    "ratio_to_ceiling": median["deepseek.optimize"] / median["gemms alone"],
    "loadavg": list(__import__("os").getloadavg()),
}
print(json.dumps(result, indent=1))
if args.json:
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
