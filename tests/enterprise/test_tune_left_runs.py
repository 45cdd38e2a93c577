"""``deepseek tune``'s end-of-run report lists each run folder a trial left to a live job
(``tune/left_runs.py``): still held (naming the holder), free now, or gone (not listed). The lines
themselves are tested on ``left_run_lines`` (test_tune_busy_run.py); this is the command printing
them, with a tuner that records ``left_run`` as the training tuner's re-run does."""

from __future__ import annotations

import json
import os
from pathlib import Path

from _tune_common import write

from deepseek import hookimpl
from deepseek.training.run_lock import LOCK_FILE, try_lock, unlock
from deepseek_enterprise.tune.left_runs import LEFT_RUN
from deepseek_enterprise.tune.tuner import TrialRun, Tuner

HELD: list[int] = []
"""Lock descriptors the tuner below holds (the test releases them)."""


class LeavesRuns(Tuner):
    """Each trial records a run folder it left: trial 0's held by this process, trial 1's free,
    trial 2's never made (gone by the report)."""

    objectives = ("value",)

    def direction(self, objective: str) -> str:  # type: ignore[override]
        return "minimize"

    def run(self, trial: TrialRun) -> float:
        left = trial.folder.parent.parent / f"left-{trial.number}"
        if trial.number < 2:
            left.mkdir()
        if trial.number == 0:
            fd = try_lock(left / LOCK_FILE)
            assert fd is not None
            HELD.append(fd)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": "node7", "since": "2026-01-02 03:04:05"}).encode())
        trial.attrs[LEFT_RUN] = str(left.absolute())
        return float(trial.number)


class LeavesRunsPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("leaves-runs", LeavesRuns, description="records a left run folder per trial")


def test_the_tune_report_lists_the_run_folders_trials_left(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from _hosts import enterprise_host

    from deepseek.cli.main import main

    write(tmp_path, space='[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n')
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        main(["tune", "base.toml", "--space", "space.toml", "--objective", "value", "--study", "s", "--trials", "3",
              "--out", "st", "--seed", "0"], host=enterprise_host((LeavesRunsPlugin(), "deepseek-leaves")))
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    finally:
        os.chdir(cwd)
        for fd in HELD:
            unlock(fd)
        HELD.clear()
    out = capsys.readouterr().out
    held, free = (tmp_path / "st" / f"left-{n}" for n in (0, 1))
    lines = [line for line in out.splitlines() if " left " in line]
    assert lines == [
        f"trial 0 left {held} to a live job and trained in its own folder; that folder is no trial's result and the "
        f"study never removes it; still in use by a live job (pid {os.getpid()} on host node7, since 2026-01-02 03:04:05)",
        f"trial 1 left {free} to a live job and trained in its own folder; that folder is no trial's result and the "
        "study never removes it; no job holds it now: remove it, or keep what that job trained there",
    ], out
