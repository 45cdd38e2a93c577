"""The requeue script of docs/distributed.md ("Preemption"), its RESUME line run as written: a job
SIGKILLed after its first checkpoint's commit, before ``checkpoints/latest`` was written, was started
again without ``--resume`` (the line tested for ``latest``) and refused (``already holds a run``,
exit code 2), which ended the requeue loop with the run half done. The line now asks ``deepseek
checkpoint info``, which finds a complete checkpoint by the rule ``--resume`` uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from _prohelpers import deepseek_cli, tiny_config

from deepseek.training import checkpoint as ckpt

PAGE = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"

# Trains in a child that SIGKILLs itself at an os.replace onto the base name argv[3], before
# (argv[4] == "before") or after it: the real trainer, killed at a known point of its first save.
KILLED_AT = """
import json, os, signal, sys
from pathlib import Path
real = os.replace
def replace(src, dst, *args, **kwargs):
    hit = os.path.basename(os.fspath(dst)) == sys.argv[3] and "step-2" in os.fspath(dst)
    if hit and sys.argv[4] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *args, **kwargs)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from deepseek.config.load import config_from_dict
from deepseek.training.trainer import Trainer
Trainer(config_from_dict(json.loads(sys.argv[1])), run_dir=Path(sys.argv[2]), quiet=True).fit()
"""


def _killed_at(run: Path, name: str, when: str) -> None:
    config = tiny_config(steps=4, checkpoint={"interval": 2, "keep_last": 2})
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_AT, json.dumps(config), str(run), name, when], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def test_the_resume_line_resumes_a_run_killed_before_its_first_latest(tmp_path: Path) -> None:
    (line,) = [x for x in PAGE.read_text(encoding="utf-8").splitlines() if x.startswith("RESUME=")]
    shim = tmp_path / "bin" / "deepseek"  # the command the script calls, as the installed entry point
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m deepseek "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "DS_ACCELERATOR": "cpu"}

    def resume_args(run: Path) -> str:
        out = subprocess.run(["bash", "-c", f'RUN={run}\n{line}\necho "$RESUME"'], env=env, capture_output=True,
                             text=True, timeout=120)
        return out.stdout.strip()

    run = tmp_path / "run"
    assert resume_args(run) == ""  # no folder yet
    _killed_at(run, ckpt.OPTIMIZER_FILE, "before")  # while its first checkpoint is written
    assert resume_args(run) == ""  # nothing to resume: the command without --resume starts it afresh
    _killed_at(run, "step-2", "after")  # first checkpoint committed, latest not written yet
    root = run / "checkpoints"
    assert not (root / ckpt.LATEST_FILE).exists() and [s for s, _ in ckpt.list_checkpoints(root)] == [2]
    assert resume_args(run) == f"--resume {run}"
    done = deepseek_cli("train", "--resume", str(run), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]
