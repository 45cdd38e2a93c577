"""Which registered optimizer trains best: held-out loss per optimizer at its best learning rate.

Every (optimizer, learning rate, seed) is one ``deepseek train`` process on the embedded corpus
(the same model, data, step budget and cosine schedule for all), run ``--parallel`` at a time.
The learning rate of each optimizer is chosen on the **training** loss (the mean of its last
``--select-window`` step losses, averaged over the seeds), so the validation split is never used
to choose anything; the table then reports the validation loss (mean +- standard deviation over
the seeds) at that rate, and every other rate's too.

    python benchmarks/optimizer_quality.py --out /tmp/oq --model small --steps 600 --parallel 12
    python benchmarks/optimizer_quality.py --out /tmp/oq --model tiny --steps 60 --seeds 0 1 \
        --grid adamw=3e-3 lion=1e-3 --parallel 2          # a CPU smoke run

Writes ``OUT/results.json`` (every run's figures) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GRID = {
    "adamw": [3e-4, 6e-4, 1.2e-3, 2.4e-3],
    "lion": [5e-5, 1e-4, 2e-4, 4e-4],
    "sgd": [0.03, 0.1, 0.3, 1.0],
    "adafactor": [1e-3, 3e-3, 1e-2, 3e-2],
}
OWN = {"lion": ["--set", "optimizer.betas=[0.9, 0.99]"], "sgd": ["--set", "optimizer.nesterov=true"]}


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item in items:
        name, _, rates = item.partition("=")
        out[name] = [float(r) for r in rates.split(",")]
    return out


def command(args: argparse.Namespace, name: str, lr: float, seed: int, run_dir: Path) -> list[str]:
    sets = {"model.name": args.model, "data.seq_len": args.seq, "data.batch_size": args.batch,
            "data.eval_batches": args.eval_batches, "train.max_steps": args.steps, "train.lr": lr,
            "train.min_lr": lr / 10, "train.warmup_steps": max(1, args.steps // 10), "train.seed": seed,
            "train.eval_interval": args.steps, "optimizer.name": f'"{name}"', "checkpoint.interval": 0,
            "checkpoint.at_end": "false", "logging.plot": "false", "train.compile": str(args.compile).lower()}
    cmd = [sys.executable, "-m", "deepseek", "train", "--run-dir", str(run_dir), "--quiet"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + OWN.get(name, []) + args.extra


def figures(run_dir: Path, window: int) -> dict[str, float | None]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r and "val_loss" not in r]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    tail = losses[-window:]
    return {"train_tail": sum(tail) / len(tail) if tail else None, "val_loss": vals[-1] if vals else None,
            "steps": len(losses)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="small")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval-batches", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--grid", nargs="*", default=[], help="NAME=LR,LR,... (default: every optimizer's grid)")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--select-window", type=int, default=50)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--timeout", type=float, default=540, help="seconds for the whole study")
    p.add_argument("extra", nargs="*", help="further deepseek train arguments (after --)")
    args = p.parse_args()
    grid = parse_grid(args.grid) or GRID
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, lr, s) for n, rates in grid.items() for lr in rates for s in args.seeds]
    start, running, done = time.monotonic(), [], []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    while jobs or running:
        while jobs and len(running) < args.parallel:
            n, lr, s = jobs.pop(0)
            run_dir = args.out / f"{n}-lr{lr:g}-s{s}"
            log = (args.out / f"{run_dir.name}.log").open("w")
            running.append((n, lr, s, run_dir, subprocess.Popen(command(args, n, lr, s, run_dir), stdout=log,
                                                                stderr=subprocess.STDOUT, env=env)))
        time.sleep(1)
        for item in [r for r in running if r[4].poll() is not None]:
            running.remove(item)
            n, lr, s, run_dir, proc = item
            row = {"optimizer": n, "lr": lr, "seed": s, "rc": proc.returncode}
            if proc.returncode == 0:
                row.update(figures(run_dir, args.select_window))
            done.append(row)
            (args.out / "results.json").write_text(json.dumps(done, indent=1))
        if time.monotonic() - start > args.timeout:
            for *_, proc in running:
                proc.kill()
            print(f"stopped at the time limit; {len(jobs)} runs not started", file=sys.stderr)
            break
    print(table(done))


def table(rows: list[dict]) -> str:
    """Markdown: per optimizer and rate, train tail and val loss (mean +- std over seeds); the
    rate chosen on the train tail is marked."""
    def stat(values: list[float]) -> str:
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} +- {sd:.4f}"

    lines = ["| optimizer | lr | seeds | train loss, last steps | val loss |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["optimizer"] for r in rows):
        mine = [r for r in rows if r["optimizer"] == name and r.get("train_tail") is not None]
        rates = sorted({r["lr"] for r in mine})
        tails = {lr: statistics.mean(r["train_tail"] for r in mine if r["lr"] == lr) for lr in rates}
        best = min(tails, key=tails.get) if tails else None
        for lr in rates:
            runs = [r for r in mine if r["lr"] == lr]
            mark = " **(chosen)**" if lr == best else ""
            lines.append(f"| {name} | {lr:g}{mark} | {len(runs)} | {stat([r['train_tail'] for r in runs])} | "
                         f"{stat([r['val_loss'] for r in runs if r['val_loss'] is not None])} |")
        failed = [r for r in rows if r["optimizer"] == name and r.get("rc") != 0]
        if failed:
            which = ", ".join("lr {:g} seed {}".format(r["lr"], r["seed"]) for r in failed)
            lines.append(f"| {name} | failed: {which} | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
