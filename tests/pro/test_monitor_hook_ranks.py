"""``train.monitor`` on a value a plugin's ``deepseek_evaluate`` hook adds, under 2 processes: the
hook runs on every rank, and rank 0's value (the one ``metrics.jsonl`` records) decides the best
checkpoint and early stopping on every rank. A hook computing its score from each rank's own view
had the ranks disagree: under fsdp one rank gathered the weights for a best checkpoint while the
other went on training, and the run died as 'training diverged: the model's weights are not
finite'; a hook adding it on rank 0 only was refused on rank 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
from deepseek.hookspecs import hookimpl

SCORES = {0: 1.0, 2: 5.0, 4: 3.0, 6: 2.0, 8: 4.0}   # rank 0: best at step 2, stale at 4 and 6

@hookimpl
def deepseek_evaluate(trainer, step, metrics):
    if trainer.is_global_zero:
        metrics["val_score"] = SCORES[step]
    elif MODE == "opposite":                        # rank 1's own view: best at step 0, stale at 2 and 4
        metrics["val_score"] = -SCORES[step]
"""


@pytest.mark.parametrize("mode", ["opposite", "rank0-only"])
def test_rank_zeros_hook_value_decides_on_every_rank(tmp_path: Path, mode: str) -> None:
    plugins = tmp_path / "plugins"
    info = plugins / "deepseek_ranked-0.1.dist-info"
    info.mkdir(parents=True)
    (plugins / "deepseek_ranked.py").write_text(f"MODE = {mode!r}\n" + PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-ranked\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nranked = deepseek_ranked\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    sets = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "data.seq_len=16", "data.batch_size=4",
            "data.eval_batches=1", "data.shuffle_buffer=16", "train.warmup_steps=1", "train.eval_interval=2",
            "train.monitor=val_score", "train.monitor_mode=max", "train.early_stop_patience=2",
            "checkpoint.keep_best=true", "checkpoint.keep_last=1", "logging.plot=false"]
    proc = subprocess.run(
        [sys.executable, "-m", "deepseek", "launch", "-n", "2", "--", "train", "--strategy", "fsdp", "--max-steps", "8",
         "--run-dir", str(run), "--quiet", *(a for s in sets for a in ("--set", s))],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "best").read_text().strip() == "step-2"
    evaluated = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val_score" in r]
    assert evaluated == [0, 2, 4, 6]  # stopped after 2 evaluations without beating step 2's 5.0, as rank 0 saw
    assert (run / "checkpoints" / "step-6").is_dir()
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text().split())
    assert "rank 0's value (what `metrics.jsonl` records) decides on every rank" in doc
