"""Issue 15's pruning figure on CPU: 50% of the MLP channels removed, then recovered by
fine-tuning from the pruned weights, against the original fine-tuned for the same extra steps.

    python benchmarks/prune_cpu.py --out /tmp/prune-cpu [--seeds 1 2 3] [--set model.d_model=256 ...]

Per seed: train the config (``examples/configs/quick-cpu.toml`` unless --config), prune it with
``deepseek compress --method prune.ffn --set ratio=0.5`` (magnitude), fine-tune the pruned model
and the original each for ``--extra`` steps (``train.init_from``, lr ``--ft-lr``), then evaluate
all four with ``deepseek eval --batches 32`` and time batch-1 eager latency through
``deepseek compare``'s method. Prints mean +- std over seeds; writes prune-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

REPO = Path(__file__).resolve().parents[1]




def val(run: Path) -> float:
    return json.loads(deepseek("eval", "--checkpoint", str(run), "--batches", "32", "--json"))["val_loss"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", default=str(REPO / "examples" / "configs" / "quick-cpu.toml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--extra", type=int, default=100)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--set", dest="sets", action="append", default=[])
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    sets = [x for s in a.sets for x in ("--set", s)]
    rows: dict[str, list[float]] = {k: [] for k in ("original", "pruned", "pruned_ft", "original_ft")}
    lat: dict[str, list[float]] = {"original": [], "pruned": []}
    params: dict[str, int] = {}
    for seed in a.seeds:
        base = a.out / f"s{seed}"
        deepseek("train", a.config, *sets, "--set", f"train.seed={seed}", "--run-dir", str(base / "original"), "--quiet")
        deepseek("compress", "--checkpoint", str(base / "original"), "--method", "prune.ffn", "--set", "ratio=0.5",
                 "--out", str(base / "pruned"), "--latency-runs", "50", "--json", str(base / "compress.json"))
        report = json.loads((base / "compress.json").read_text())
        params = {"original": report["original"]["parameters"], "pruned": report["compressed"]["parameters"]}
        lat["original"].append(report["original"]["p50_ms"])
        lat["pruned"].append(report["compressed"]["p50_ms"])
        ft = ["--max-steps", str(a.extra), "--set", f"train.lr={a.ft_lr}", "--set", f"train.min_lr={a.ft_lr / 10}",
              "--set", "train.warmup_steps=10", "--quiet"]
        for name, src in (("pruned_ft", base / "pruned"), ("original_ft", base / "original")):
            deepseek("train", str(src / "config.toml"), "--set", f'train.init_from="{src}"', *ft,
                     "--run-dir", str(base / name))
        for name in rows:
            rows[name].append(val(base / name))
    result = {"seeds": a.seeds, "extra_steps": a.extra, "ft_lr": a.ft_lr, "config": a.config, "sets": a.sets,
              "val_loss": rows, "p50_ms": lat, "parameters": params}
    (a.out / "prune-cpu.json").write_text(json.dumps(result, indent=1))
    print(f"parameters {params['original']:,} -> {params['pruned']:,}; "
          f"p50 batch 1 {statistics.mean(lat['original']):.2f} -> {statistics.mean(lat['pruned']):.2f} ms")
    ref = statistics.mean(rows["original"])
    for name, values in rows.items():
        m = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name} | {m:.4f} +- {sd:.4f} | {m / ref - 1:+.2%} | " + ", ".join(f"{v:.4f}" for v in values) + " |")


if __name__ == "__main__":
    main()
