"""``trainer.should_stop`` set by a callback on one rank only (rank 1), under 2 processes, at a step
whose checkpoint the interval writes: every rank stops at that step, the checkpoint records the
stop, and ``launch -- train --resume`` (a requeued job) finds the run complete: it trained on to
``train.max_steps`` before, the checkpoint not saying that a callback had ended the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = """
from deepseek.hookspecs import hookimpl

@hookimpl
def deepseek_evaluate(trainer, step, metrics):
    if step == 2 and not trainer.is_global_zero:
        trainer.should_stop = True
"""


def test_a_stop_one_rank_asked_for_is_recorded_and_a_resume_finds_the_run_complete(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    info = plugins / "deepseek_stopper-0.1.dist-info"
    info.mkdir(parents=True)
    (plugins / "deepseek_stopper.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-stopper\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nstopper = deepseek_stopper\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    sets = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "data.seq_len=16", "data.batch_size=4",
            "data.eval_batches=1", "data.shuffle_buffer=16", "train.warmup_steps=1", "train.eval_interval=2",
            "checkpoint.interval=2", "logging.plot=false"]
    args = [a for s in sets for a in ("--set", s)]
    launch = [sys.executable, "-m", "deepseek", "launch", "-n", "2", "--", "train"]
    first = subprocess.run([*launch, "--strategy", "ddp", "--max-steps", "8", "--run-dir", str(run), "--quiet", *args],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2]
    assert json.loads((run / "checkpoints" / "step-2" / "trainer.json").read_text())["should_stop"] is True
    again = subprocess.run([*launch, "--resume", str(run), "--quiet"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "the run is complete, a callback ended it at step 2 (trainer.should_stop was set by a callback)" in again.stderr
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2]
