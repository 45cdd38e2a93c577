"""Issue 15's int8 figure on CPU: a trained ``small`` quantized with torchao, against itself in
fp32, both under ``deepseek.optimize`` at batch 1 x 128, in one ``deepseek compress`` call.

    python benchmarks/quantize_cpu.py --run RUN --out /tmp/quantize-cpu [--methods quantize.int8 ...]

``RUN`` is a trained run folder (for the figure: ``small`` trained on the embedded corpus with
seq_len 128; see BENCHMARKS.md for the command). Per method: ``deepseek compress --method M
--optimize --batches B --latency-runs R --json`` (validation loss on B batches, Linear weights as
stored, p50 eager and under deepseek.optimize, fp32 and compressed side by side in the same
process), then ``deepseek compare RUN OUT`` (paired per-example losses, bootstrap 95% CI).
Writes quantize-cpu.json and prints a Markdown row per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=["quantize.int8", "quantize.int8-weight"])
    p.add_argument("--batches", type=int, default=32)
    p.add_argument("--latency-runs", type=int, default=30)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for method in a.methods:
        out = a.out / method.replace(".", "_")
        report_path = a.out / f"{out.name}.json"
        deepseek("compress", "--checkpoint", str(a.run), "--method", method, "--out", str(out), "--optimize",
                 "--batches", str(a.batches), "--latency-runs", str(a.latency_runs), "--json", str(report_path))
        report = json.loads(report_path.read_text())
        compare = json.loads(deepseek("compare", str(a.run), str(out), "--batches", str(a.batches),
                                      "--latency-runs", "0", "--json", "-"))
        results[method] = {"compress": report, "compare": compare}
        o, c = report["original"], report["compressed"]
        print(f"| {method} | {report['record']['quantized_weight_ratio']:.2f}x | "
              f"{o['linear_weight_bytes'] / c['linear_weight_bytes']:.2f}x | "
              f"{o['p50_optimized_ms']:.1f} -> {c['p50_optimized_ms']:.1f} ms "
              f"({o['p50_optimized_ms'] / c['p50_optimized_ms']:.2f}x) | {o['p50_ms']:.1f} -> {c['p50_ms']:.1f} ms | "
              f"{o['val_loss']:.4f} -> {c['val_loss']:.4f} ({c['val_loss'] / o['val_loss'] - 1:+.2%}) |")
    (a.out / "quantize-cpu.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
