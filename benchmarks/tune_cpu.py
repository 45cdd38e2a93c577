"""Issue 16's CPU figure: a training study on the tiny GPT, then its best config against the base
config on fresh seeds.

    python benchmarks/tune_cpu.py --out /tmp/tune-cpu [--trials 30]

1. ``deepseek tune examples/configs/quick-cpu.toml --space examples/tune/training-space.toml``
   (the study's first trial is the base config itself; the others are TPE's, pruned by the median
   pruner on their evaluations at steps 50/100/150).
2. The base config and ``best.toml`` each trained again with ``train.seed`` = 1, 2, 3 (seeds the
   study never saw: other weights, other batch order), same 200 steps, then evaluated with
   ``deepseek eval --batches 32`` (32 validation batches, 8x the 4 each trial was judged on).
3. A table: the study's counts, and validation loss mean +- std over the 3 seeds for both.

Every trial and run happens in this call; nothing is read from earlier results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "examples" / "configs" / "quick-cpu.toml"
SPACE = REPO / "examples" / "tune" / "training-space.toml"




def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    a = parser.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    study = a.out / "study"
    start = time.monotonic()
    deepseek("tune", str(BASE), "--study", "quick-cpu", "--space", str(SPACE), "--trials", str(a.trials),
             "--out", str(study))
    tune_s = time.monotonic() - start
    summary = json.loads((study / "trials.json").read_text())["summary"]
    rows: dict[str, list[float]] = {"base": [], "best": []}
    for seed in a.seeds:
        for name, config in (("base", BASE), ("best", study / "best.toml")):
            run = a.out / f"{name}-s{seed}"
            deepseek("train", str(config), "--set", f"train.seed={seed}", "--run-dir", str(run), "--quiet")
            value = json.loads(deepseek("eval", "--checkpoint", str(run), "--batches", "32", "--json"))
            rows[name].append(value["val_loss"])
    result = {"trials": a.trials, "summary": summary, "tune_s": tune_s, "seeds": a.seeds, "val_loss": rows,
              "threads": os.environ.get("OMP_NUM_THREADS")}
    (a.out / "tune-cpu.json").write_text(json.dumps(result, indent=1))
    print(f"study: {a.trials} trials in {tune_s:.0f} s: " + ", ".join(f"{n} {k}" for k, n in summary.items() if n))
    print("| config | val loss, 32 batches, seeds " + " ".join(map(str, a.seeds)) + " (mean +- std) | per seed |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.mean(values):.4f} +- {statistics.stdev(values):.4f} | "
              + ", ".join(f"{v:.4f}" for v in values) + " |")


if __name__ == "__main__":
    main()
