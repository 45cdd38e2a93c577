"""Training throughput of `deepseek train` (the default config) on the CPU by intra-op thread
count, on a quiet machine and on one whose cores are all busy with other processes.

    python benchmarks/cpu_threads.py [--steps 40] [--repeats 3] [--threads 1,2]

Each run is `python -m deepseek train` in a fresh process, with OMP_NUM_THREADS set (or, for
"default", left unset so deepseek chooses), evaluation, checkpoint and plot off; the figure is
the median `tokens_per_s` over the steps after the first 5. "quiet" runs the training at the highest
priority of its own session (other users' jobs on a shared machine then barely take its cores);
"loaded" at normal priority, with `--busy` busy-looping
Python processes (default 1: another job using one core) for the duration of the runs. Prints one row per run and a summary
table (medians over the repeats), plus the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(threads: str, steps: int, work: Path, boost: bool) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    env["DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # "quiet" on a shared machine: the run's own session at autogroup nice -20 (BENCHMARKS.md,
    # "How the runs were kept quiet"), so other users' jobs barely take its cores.
    prefix = ["setsid", "bash", "-c", 'echo -20 > /proc/$$/autogroup; exec nice -n -20 "$@"', "boost"] if boost else []
    subprocess.run(
        [*prefix, sys.executable, "-m", "deepseek", "train", "--max-steps", str(steps), "--run-dir", str(run_dir / "r"),
         "--quiet", "--set", "train.eval_interval=0", "--set", "checkpoint.at_end=false",
         "--set", "checkpoint.interval=0", "--set", "logging.plot=false", "--set", 'strategy.device="cpu"'],
        env=env, check=True, capture_output=True,
    )
    rates = [r["tokens_per_s"] for r in map(json.loads, (run_dir / "r" / "metrics.jsonl").read_text().splitlines())
             if "tokens_per_s" in r and r["step"] > 5]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2,default")
    parser.add_argument("--busy", type=int, default=1)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for load in ("quiet", "loaded"):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)] \
                if load == "loaded" else []
            try:
                for _ in range(args.repeats):
                    for threads in args.threads.split(","):
                        before = os.getloadavg()[0]
                        rate = run_once(threads, args.steps, Path(tmp), boost=load == "quiet")
                        results.setdefault((load, threads), []).append(rate)
                        print(f"{load:6} threads={threads:7} load1={before:4.1f} {rate:9,.0f} tokens/s", flush=True)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
    print("\n| machine | threads | median tokens/s | runs |\n|---|---|---|---|")
    for (load, threads), rates in results.items():
        print(f"| {load} | {threads} | {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")


if __name__ == "__main__":
    main()
