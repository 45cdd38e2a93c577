"""Issue 15's distillation figure on CPU: a tiny student distilled from a trained larger GPT
against the same tiny trained from scratch, same data, steps and seed, 3 seeds.

    python benchmarks/distill_cpu.py --teacher RUN --out /tmp/distill-cpu

The student is examples/configs/quick-cpu.toml's model (d_model 64, 2 layers, 200 steps). Per
seed: ``deepseek train`` of quick-cpu (scratch), and ``deepseek train`` of the ``distill`` model
with that student and ``--teacher`` (alpha 0.5, temperature 2), then ``deepseek compress
--method distill.student``; both students evaluated with ``deepseek eval --batches 32``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import tomllib
from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "examples" / "configs" / "quick-cpu.toml"




def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=2.0)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import tomli_w

    base = tomllib.loads(BASE.read_text())
    student = dict(base["model"])
    distill = {**base, "model": {"name": "distill", "teacher": str(Path(a.teacher).absolute()), "student": student,
                                 "alpha": a.alpha, "temperature": a.temperature}}
    (a.out / "distill.toml").write_text(tomli_w.dumps(distill))
    teacher_val = json.loads(deepseek("eval", "--checkpoint", a.teacher, "--batches", "32", "--json"))["val_loss"]
    rows: dict[str, list[float]] = {"scratch": [], "distilled": []}
    for seed in a.seeds:
        s = a.out / f"s{seed}"
        deepseek("train", str(BASE), "--set", f"train.seed={seed}", "--run-dir", str(s / "scratch"), "--quiet")
        deepseek("train", str(a.out / "distill.toml"), "--set", f"train.seed={seed}", "--run-dir", str(s / "distill"),
                 "--quiet")
        deepseek("compress", "--checkpoint", str(s / "distill"), "--method", "distill.student", "--out",
                 str(s / "distilled"), "--latency-runs", "0")
        for name in rows:
            rows[name].append(json.loads(deepseek("eval", "--checkpoint", str(s / name), "--batches", "32",
                                                  "--json"))["val_loss"])
    result = {"teacher": a.teacher, "teacher_val_loss": teacher_val, "alpha": a.alpha, "temperature": a.temperature,
              "seeds": a.seeds, "val_loss": rows}
    (a.out / "distill-cpu.json").write_text(json.dumps(result, indent=1))
    print(f"teacher {a.teacher}: val loss {teacher_val:.4f} (32 batches)")
    for name, values in rows.items():
        print(f"| {name} | {statistics.mean(values):.4f} +- {statistics.stdev(values):.4f} | "
              + ", ".join(f"{v:.4f}" for v in values) + " |")


if __name__ == "__main__":
    main()
