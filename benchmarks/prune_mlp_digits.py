"""Issue 15 on the tri-modal model: ``prune.mlp`` (Torch-Pruning) of the digits classifier's Swin,
audio and text MLPs, with fine-tuning recovery, against the original fine-tuned the same way.

    python benchmarks/prune_mlp_digits.py --out $OUT/prune-mlp [--seeds 1 2 3] [--device cuda]

Per seed: ``deepseek train examples/multimodal/digits.toml`` (1,200 steps, redundant task);
``deepseek compress --method prune.mlp --set ratio=0.5`` (magnitude; parameters and batch-1 p50
in the compress call); then ``--recover-steps`` of fine-tuning from each model's weights
(``train.init_from``, lr ``--lr``); all four scored with ``deepseek multimodal eval --split test``
(the held-out test split, read only here). Writes prune-mlp-digits.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "multimodal" / "digits.toml"


def test_accuracy(run: Path, device: str) -> float:
    report = json.loads(deepseek("multimodal", "eval", "--checkpoint", str(run), "--split", "test", "--json",
                                 "--device", device))
    return float(report["accuracy"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--device", default="cuda")
    p.add_argument("--recover-steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--steps", type=int, default=1200)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    dev = ["--set", f'strategy.device="{a.device}"']
    rows: dict[str, list[float]] = {k: [] for k in ("original", "pruned", "pruned_ft", "original_ft")}
    lat: dict[str, list[float]] = {"original": [], "pruned": []}
    params: dict[str, int] = {}
    for seed in a.seeds:
        s = a.out / f"s{seed}"
        deepseek("train", str(CONFIG), *dev, "--set", f"train.seed={seed}", "--max-steps", str(a.steps),
                 "--run-dir", str(s / "original"), "--quiet")
        deepseek("compress", "--checkpoint", str(s / "original"), "--method", "prune.mlp", "--set", "ratio=0.5",
                 "--out", str(s / "pruned"), "--device", a.device, "--latency-runs", "50",
                 "--json", str(s / "compress.json"))
        report = json.loads((s / "compress.json").read_text())
        params = {"original": report["original"]["parameters"], "pruned": report["compressed"]["parameters"]}
        lat["original"].append(report["original"]["p50_ms"])
        lat["pruned"].append(report["compressed"]["p50_ms"])
        ft = ["--max-steps", str(a.recover_steps), "--set", f"train.lr={a.lr}", "--set", f"train.min_lr={a.lr / 10}",
              "--set", "train.warmup_steps=10", "--set", "train.eval_interval=0", "--quiet", *dev]
        for name, src in (("pruned_ft", s / "pruned"), ("original_ft", s / "original")):
            deepseek("train", str(src / "config.toml"), "--set", f'train.init_from="{src}"', *ft,
                     "--run-dir", str(s / name))
        for name in rows:
            rows[name].append(test_accuracy(s / name, a.device))
        (a.out / "prune-mlp-digits.json").write_text(json.dumps(
            {"seeds": a.seeds[: len(rows["original"])], "steps": a.steps, "recover_steps": a.recover_steps,
             "lr": a.lr, "device": a.device, "test_accuracy": rows, "p50_ms": lat, "parameters": params}, indent=1))
    print(f"parameters {params['original']:,} -> {params['pruned']:,}; p50 batch 1 "
          f"{statistics.mean(lat['original']):.2f} -> {statistics.mean(lat['pruned']):.2f} ms")
    for name, values in rows.items():
        m = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name} | {100 * m:.2f} +- {100 * sd:.2f} | " + ", ".join(f"{100 * v:.2f}" for v in values) + " |")


if __name__ == "__main__":
    main()
