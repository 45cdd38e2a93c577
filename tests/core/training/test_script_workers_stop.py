"""A stop signal sent to every process of a job (Slurm signals the whole job step; ``kill -TERM
-PGID`` a process group) stops a ``deepseek.fit`` run that reads its data in DataLoader workers
like any other run: after the step, with a checkpoint. The workers got the SIGTERM too and died by
it, so the next batch raised "DataLoader worker ... exited unexpectedly": a traceback, exit code 1,
no checkpoint of the stop. Real processes and a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys, time
import torch
from torch import nn
import deepseek

class Points(torch.utils.data.Dataset):
    def __len__(self):
        return 256

    def __getitem__(self, i):
        time.sleep(0.005)  # a slow read: the run lasts while the test signals it
        x = torch.full((4,), float(i % 7))
        return {"x": x, "y": x.sum(0, keepdim=True)}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x, y):
        return nn.functional.mse_loss(self.lin(x), y)

r = deepseek.fit(Net, Points(), batch_size=16, num_workers=2, run_dir=sys.argv[1],
                 config={"train": {"max_steps": 200}, "checkpoint": {"interval": 0}, "data": {"eval_batches": 0},
                         "logging": {"progress": False, "plot": False}})
print(r.step, r.stopped_by)
sys.exit(75 if r.stopped_by else 0)
"""


def test_sigterm_to_the_process_group_stops_a_run_reading_in_workers(tmp_path: Path) -> None:
    script, run = tmp_path / "fit_workers.py", tmp_path / "run"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepseek", "run", str(script), str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        metrics = run / "metrics.jsonl"
        while proc.poll() is None and not (metrics.exists() and '"step": 2,' in metrics.read_text(encoding="utf-8")):
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGTERM)  # the script and its DataLoader workers
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err, err
    assert proc.returncode == 75, (out, err)
    step, stopped_by = out.split()[-2:]
    assert stopped_by == "SIGTERM" and 2 <= int(step) < 200
    assert (run / "checkpoints" / f"step-{step}" / "trainer.json").is_file()
    steps = [json.loads(line)["step"] for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert steps[-1] == int(step)
