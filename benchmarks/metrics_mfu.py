"""Tokens/s and MFU of a `deepseek train` run from its metrics.jsonl, over the steps after a warm-up.

    python benchmarks/metrics_mfu.py RUN/metrics.jsonl [--after 10] [--flops-per-token F] [--peak-tflops P]

The trainer records every step's cumulative ``tokens`` and its ``step_time``; the rate is the tokens of
steps ``after+1 .. last`` over the sum of their step times. FLOPs per token default to the 1.3b model's
(PaLM's 6N + 12 L d T, as ``deepseek bench train`` reports it) and the peak to an H200's dense bf16.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("--after", type=int, default=10)
    ap.add_argument("--flops-per-token", type=float, default=8462721024.0)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    with open(a.metrics, encoding="utf-8") as f:
        steps = {r["step"]: r for r in map(json.loads, f) if "loss" in r}
    last = max(steps)
    measured = [steps[k] for k in range(a.after + 1, last + 1)]
    seconds = sum(r["step_time"] for r in measured)
    tps = (steps[last]["tokens"] - steps[a.after]["tokens"]) / seconds
    print(f"{a.metrics}: steps {a.after + 1}-{last}, {1000 * seconds / len(measured):.1f} ms/step, {tps:,.0f} tokens/s, "
          f"MFU {100 * tps * a.flops_per_token / (a.peak_tflops * 1e12):.2f}%, loss at step {last} {steps[last]['loss']:.5f}")


if __name__ == "__main__":
    main()
