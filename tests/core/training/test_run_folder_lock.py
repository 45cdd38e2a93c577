"""The run-folder lock, with real processes: a second job on a live run folder is refused with
one line and exit code 2 (nothing in the folder written or changed), and accepted once the
holder died; a process forked while the run is locked does not keep the folder locked. The
stop signals: test_preemption.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _preemption_run import CLI_ARGS, RUN

from deepseek.training.run_lock import LOCK_FILE, RunFolderBusy
from deepseek.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")

HOLDER = """
import sys, time
from deepseek.training.run_lock import try_lock
assert try_lock(sys.argv[1]) is not None
print("locked", flush=True)
time.sleep(600)
"""


def test_live_job_holds_the_run_folder(config_under: Any, tmp_path: Path,
                                       deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The live job is another process (the holder); the refused commands run in this one
    (``deepseek_here``): the lock is the holder's either way."""
    config = config_under(tmp_path, **RUN)
    run = tmp_path / "run"
    Trainer(config_under(tmp_path, **{**RUN, "train": {"max_steps": 2, "decay_steps": 6}}), run_dir=run,
            quiet=True).fit()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        (run / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": "h", "since": "2026-01-02 03:04:05"}))
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}

        proc = deepseek_here("train", "--resume", str(run), "--max-steps", "6", "--quiet", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert errors == [f"error: run folder {run} is in use by another live job (pid {holder.pid} on host h, "
                          "since 2026-01-02 03:04:05); wait for it to end or stop it, or pick another --run-dir / logging.name"]
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            Trainer(config, resume=run, quiet=True).fit()
        # a checkpoint the live job pruned (or is writing) as it was read: busy, not 'no such checkpoint'
        # or 'damaged'
        gone = run / "checkpoints" / "step-99"
        proc = deepseek_here("train", "--resume", str(gone), "--quiet", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == errors, proc.stderr[-3000:]
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written or changed
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything: the kernel dropped its lock
    assert Trainer(config, resume=run, quiet=True).fit().step == 6


def test_a_fresh_run_into_a_live_jobs_folder_is_only_refused(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """A second job started on the folder of a live job that has no checkpoint yet said "starting it
    afresh, its metrics replaced" before it was refused as busy. (The live job is the holder's
    process; the trainings run in this one: ``deepseek_here``.)"""
    import shutil

    def _train(cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return deepseek_here("train", *CLI_ARGS, *extra, cwd=cwd)

    assert _train(tmp_path, "--max-steps", "2").returncode == 0
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoints")  # as a live job leaves it before its first checkpoint
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        proc = _train(tmp_path, "--max-steps", "2")
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "is in use by another live job" in lines[0], proc.stderr
    finally:
        holder.kill()
        holder.wait()
    proc = _train(tmp_path, "--max-steps", "2")  # the job gone: started afresh, and said
    assert proc.returncode == 0 and "starting it afresh, its metrics replaced" in proc.stderr, proc.stderr


def test_a_forked_child_does_not_keep_the_run_folder_locked(tmp_path: Path) -> None:
    """A process forked while the run is locked (a DataLoader worker, a compile worker) must not
    hold the lock after its parent let go, or died: a flock belongs to the open file, which the
    child's copy of the descriptor shares, and an orphaned child kept the folder "in use"."""
    import os
    import signal
    import time

    from deepseek.training.run_lock import is_held, try_lock, unlock

    path = tmp_path / ".lock"
    fd = try_lock(path)
    assert fd is not None and is_held(path)
    ready, told = os.pipe()
    child = os.fork()
    if child == 0:  # the child outlives the parent's lock
        os.write(told, b"x")  # running: the fork's handlers are done
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        unlock(fd)
        assert not is_held(path)  # the child's copy was closed when it was forked
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
