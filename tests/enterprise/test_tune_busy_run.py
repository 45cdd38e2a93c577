"""The re-run of an interrupted trial leaves the interrupted trial's run folder alone while a live
job holds it (its ``.lock``, the rule of ``deepseek train --resume``): the training the dead tuner
started may still be running there (saving after SIGTERM, or stopped by hand). The tuner used to
move the folder into the re-run's trial folder from under that job. Now the re-run trains from the
start in its own folder and its note names the holder; once the job has ended, a later re-run
takes up what it finished. A holder that is the interrupted trial's training, running (saving its
checkpoint on the SIGTERM its dying tuner sent), is waited for, and the re-run resumes from the
checkpoint it wrote; a stopped one (SIGSTOP) is not waited for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from _tune_common import DEEPSEEK, ENV, tiny_config

from deepseek.config.load import config_from_dict
from deepseek_enterprise.tune.left_runs import left_run_lines
from deepseek_enterprise.tune.training import TrainingTuner, TrainingTunerOptions
from deepseek_enterprise.tune.tuner import TrialRun

# 12 steps: the interrupted trial's training is stopped (SIGSTOP) once its step-2 checkpoint is
# there, before its end, holding the run folder's lock
TRIAL = tiny_config(12, eval_interval=4).replace("interval = 0", "interval = 2")


def _trial(study: Path, number: int, earlier: int) -> TrialRun:
    folder = study / "trials" / f"{number:04d}"
    folder.mkdir(parents=True)
    (folder / "trial.toml").write_text(TRIAL)
    return TrialRun(number=number, config=config_from_dict(tomllib.loads(TRIAL)), config_path=folder / "trial.toml",
                    folder=folder, objective="val_loss", earlier=study / "trials" / f"{earlier:04d}")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _training_past_step_2(interrupted: Path, config: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``deepseek train`` of the interrupted trial (``config`` written as its ``trial.toml``) in
    its ``run`` folder, once its step-2 checkpoint is complete: (the process, the run folder)."""
    interrupted.mkdir(parents=True)
    (interrupted / "trial.toml").write_text(config)
    run = interrupted / "run"
    job = subprocess.Popen([*DEEPSEEK, "train", str(interrupted / "trial.toml"), "--run-dir", str(run), "--quiet"],
                           env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step-2").is_dir():
        if job.poll() is not None or time.monotonic() >= deadline:
            job.kill()
            job.wait()
            pytest.fail("the training saved no checkpoint")
        time.sleep(0.01)
    return job, run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP/SIGCONT and flock: Linux")
def test_a_run_folder_a_live_job_holds_is_not_taken_and_the_rerun_trains_from_the_start(tmp_path: Path) -> None:
    study = tmp_path / "st"
    job, run = _training_past_step_2(study / "trials" / "0000", TRIAL)
    try:
        os.kill(job.pid, signal.SIGSTOP)  # alive, holding the lock, its step-2 checkpoint complete
        before = _files(run)

        tuner = TrainingTuner(TrainingTunerOptions(poll_s=0.2))
        first = _trial(study, 1, earlier=0)
        value = tuner.run(first)
        assert _files(run) == before and job.poll() is None  # the live job's folder as it was
        assert first.attrs["run_dir"] == str((first.folder / "run").absolute())
        note = first.attrs["note"]
        assert note.startswith(f"the run folder of trial 0 ({run}) is in use by another live job (pid {job.pid} "
                               "on host "), note
        assert note.endswith("); left to it, trained from the start"), note
        assert "resumed from" not in (first.folder / "train.log").read_text()
        records = [json.loads(line) for line in (first.folder / "run" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "loss" in r] == list(range(1, 13))  # from the start, to the end
        # the folder left to the job is no trial's result: the study's report lists it (it used to
        # be forgotten there), naming the job while it holds it
        assert first.attrs["left_run"] == str(run.absolute())
        [line] = left_run_lines([(1, first.attrs)])
        assert line.startswith(f"trial 1 left {run.absolute()} to a live job and trained in its own folder; that "
                               f"folder is no trial's result and the study never removes it; still in use by a live "
                               f"job (pid {job.pid} on host "), line

        os.kill(job.pid, signal.SIGCONT)
        assert job.wait(timeout=300) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.pid, signal.SIGKILL)
        job.wait()
    assert left_run_lines([(1, first.attrs)]) == [
        f"trial 1 left {run.absolute()} to a live job and trained in its own folder; that folder is no trial's result "
        "and the study never removes it; no job holds it now: remove it, or keep what that job trained there"]
    # the job ended: a later re-run takes up its finished training, the same value (a run is
    # deterministic in its config), and trains nothing
    second = _trial(study, 2, earlier=0)
    assert TrainingTuner(TrainingTunerOptions(poll_s=0.2)).run(second) == value
    assert second.attrs["note"] == "the finished training of trial 0 taken up, not run again"
    assert second.attrs["run_dir"] == str(run.absolute()) and not (second.folder / "run").exists()
    assert left_run_lines([(1, first.attrs), (2, second.attrs)]) == []  # trial 2's result now


# long enough that the training is still mid-way when it gets SIGTERM after its step-2 checkpoint
DYING = tiny_config(200, eval_interval=50).replace("interval = 0", "interval = 2")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and /proc: Linux")
def test_the_rerun_waits_for_the_interrupted_trainings_save_and_resumes_from_it(tmp_path: Path) -> None:
    # a tuner killed with SIGKILL: its training gets SIGTERM (PR_SET_PDEATHSIG), writes a
    # checkpoint and exits, holding the run folder until then. The restarted tuner used to find it
    # locked and train the trial from the start; it now waits for that training and resumes
    study = tmp_path / "st"
    interrupted = study / "trials" / "0000"
    job, run = _training_past_step_2(interrupted, DYING)
    try:
        lines: list[str] = []
        folder = study / "trials" / "0001"
        folder.mkdir(parents=True)
        (folder / "trial.toml").write_text(DYING)
        trial = TrialRun(number=1, config=config_from_dict(tomllib.loads(DYING)), config_path=folder / "trial.toml",
                         folder=folder, objective="val_loss", earlier=interrupted, echo=lines.append)
        tuner = TrainingTuner(TrainingTunerOptions(poll_s=0.2))
        os.kill(job.pid, signal.SIGTERM)  # what the kernel sends when its tuner dies; it saves and exits
        tuner.run(trial)  # at once, as a restarted tuner would: the training still holds its folder
        assert job.wait(timeout=60) == 75  # it stopped on SIGTERM, having saved (EXIT_PREEMPTED)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.pid, signal.SIGKILL)
        job.wait()
    assert lines == [f"trial 1: waiting up to 130 s for pid {job.pid}, the training of interrupted trial 0 saving its "
                     f"checkpoint in {run}, to end"]
    note = trial.attrs["note"]
    assert note.startswith("the training of trial 0 resumed from its step "), note
    resumed = int(note.rsplit(" ", 1)[1])
    assert 2 <= resumed < 200
    assert trial.attrs["run_dir"] == str((folder / "run").absolute()) and not run.exists()
    assert "resumed from" in (folder / "train.log").read_text()
    records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps[-1] == 200 and steps[steps.index(resumed) + 1:] == list(range(resumed + 1, 201))


def test_a_left_run_folder_named_with_a_line_break_is_listed_on_one_line(tmp_path: Path) -> None:
    # the study's --out is the user's path: a line break or an ESC in it went to the terminal raw,
    # splitting the report's line (the rule for paths in output: deepseek.errors.shown)
    run = tmp_path / "st\nx\x1b[31m" / "trials" / "0000" / "run"
    run.mkdir(parents=True)
    [line] = left_run_lines([(1, {"left_run": str(run)})])
    assert line == (f"trial 1 left $'{tmp_path}/st\\nx\\x1b[31m/trials/0000/run' to a live job and trained in its own "
                    "folder; that folder is no trial's result and the study never removes it; no job holds it now: "
                    "remove it, or keep what that job trained there")
