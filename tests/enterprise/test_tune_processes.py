"""``deepseek tune`` across processes: resume after SIGKILL, two workers on one SQLite study, a
failing trial recorded while the study goes on, the advisor skipping a trial that cannot fit
without running it, and trials of a launcher strategy under ``deepseek launch`` (apart from
test_tune.py and the other test_tune_*.py files so that pytest-xdist spreads them over its two
workers). The tuners of the failing-trial, advisor and launcher tests, and those continuing or
matching a study in the last two tests, run in the test's process (``tune_here``; their trials
are still processes); a tuner killed, stopped or run beside another is a process of its own."""

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
from _tune_common import DEEPSEEK, ENV, SPACE, deepseek, tiny_config, trials, tune_here, write


def _running_trial(folder: Path, number: int, timeout: float = 120) -> None:
    metrics = folder / "trials" / f"{number:04d}" / "run" / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and metrics.stat().st_size > 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"trial {number} never started")


def _pids_running(marker: str) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


def _state(pid: int) -> str:
    """The process's state letter from /proc (``Z``: dead, not yet reaped); ``""`` when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children before their own children)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the kill test is Linux-only")
def test_resume_after_sigkill_keeps_finished_trials_and_reruns_the_interrupted(tmp_path: Path) -> None:
    # The tuner is killed once trial 1 writes metrics; the trial then stops within 3-30 steps (seen
    # here), so 200 steps leave it unfinished with room to spare, and the three trials that run to
    # the end stay short.
    write(tmp_path, steps=200, space=SPACE)
    args = [*DEEPSEEK, "tune", "base.toml", "--study", "k", "--space", "space.toml", "--trials", "3", "--out", "st",
            "--pruner", "none"]
    tuner = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _running_trial(tmp_path / "st", 1)
    finally:
        tuner.send_signal(signal.SIGKILL)
        tuner.wait()
    trial_dir = str(tmp_path / "st" / "trials" / "0001")
    deadline = time.monotonic() + 60  # the trial's training dies with its tuner (SIGTERM, then it exits)
    while _pids_running(trial_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pids_running(trial_dir), "the killed tuner's trial kept training"
    out = deepseek("tune", "base.toml", "--study", "k", "--space", "space.toml", "--trials", "3", "--out", "st",
                   "--pruner", "none", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "trial 1: interrupted" in out.stdout
    rows = {r["number"]: r for r in trials(tmp_path / "st")}
    assert rows[0]["state"] == "complete" and rows[0]["baseline"]
    assert rows[1]["state"] == "fail" and rows[1]["interrupted"]
    rerun = [r for r in rows.values() if r.get("retry_of") == 1]
    assert len(rerun) == 1 and rerun[0]["params"] == rows[1]["params"] and rerun[0]["state"] == "complete"
    counted = [r for r in rows.values() if r["state"] in ("complete", "pruned", "fail") and not r.get("interrupted")
               and not r.get("skipped")]
    assert len(counted) == 3
    # The resumed sampler does not replay the fresh study's first proposals (seed offset by the trials held).
    assert not any(r.get("copied_from") for r in rows.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the kill test is Linux-only")
def test_sigterm_stops_the_study_with_75_and_the_same_command_continues_it(tmp_path: Path) -> None:
    """It ended by the signal (-15, no message); Slurm's requeue script looks for 75."""
    write(tmp_path, steps=200, space=SPACE)
    args = [*DEEPSEEK, "tune", "base.toml", "--study", "t", "--space", "space.toml", "--trials", "3", "--out", "st",
            "--pruner", "none"]
    tuner = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _running_trial(tmp_path / "st", 1)
        tuner.send_signal(signal.SIGTERM)
        _, err = tuner.communicate(timeout=120)
    finally:
        if tuner.poll() is None:
            tuner.kill()
    assert tuner.returncode == 75, err[-2000:]
    assert err.strip().splitlines()[-1] == ("stopped: SIGTERM; the trial in progress is queued to run again and "
                                            "finished trials are kept: run the same command to continue the study")
    assert not _pids_running(str(tmp_path / "st" / "trials" / "0001")), "the stopped study's trial kept training"
    out = deepseek("tune", "base.toml", "--study", "t", "--space", "space.toml", "--trials", "3", "--out", "st",
                   "--pruner", "none", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {r["number"]: r for r in trials(tmp_path / "st")}
    assert rows[0]["state"] == "complete" and rows[0]["baseline"]
    assert rows[1]["state"] == "fail" and rows[1]["interrupted"] and rows[1]["note"] == "interrupted (SIGTERM)"
    rerun = [r for r in rows.values() if r.get("retry_of") == 1]
    assert len(rerun) == 1 and rerun[0]["params"] == rows[1]["params"] and rerun[0]["state"] == "complete"


def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    write(tmp_path)
    args = [*DEEPSEEK, "tune", "base.toml", "--study", "w", "--space", "space.toml", "--trials", "4", "--out", "st",
            "--no-baseline"]
    (tmp_path / "st").mkdir()
    workers = [subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    rows = trials(tmp_path / "st")
    assert len({r["number"] for r in rows}) == len(rows) >= 4
    assert len({r["worker"] for r in rows}) == 2  # both processes ran trials of the one study
    assert len(list((tmp_path / "st" / "trials").iterdir())) == len(rows)


def test_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    space = f"""
[space]
"data.path" = {{ choices = ["", {json.dumps(str(empty))}] }}
"""
    write(tmp_path, steps=10, space=space)
    out = tune_here("tune", "base.toml", "--study", "f", "--space", "space.toml", "--trials", "4", "--out", "st",
                    "--sampler", "random", "--seed", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = trials(tmp_path / "st")
    failed = [r for r in rows if r["state"] == "fail"]
    assert failed and all("has no files matching" in r["note"] and r["params"]["data.path"] for r in failed)
    assert any(r["state"] == "complete" for r in rows)


def test_advisor_skips_a_trial_that_cannot_fit_without_running_it(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("""
[model]
name = "small"
n_layers = 1
[data]
seq_len = 512
batch_size = 16
[precision]
dtype = "fp32"
[strategy]
name = "single"
device = "cpu"
""")
    (tmp_path / "space.toml").write_text("""
[space]
"train.grad_accum" = { choices = [1, 16] }
[tuner]
steps = 2
warmup = 1
device_memory = "1GiB"
headroom = 0.0
""")
    out = tune_here("tune", "base.toml", "--study", "a", "--space", "space.toml", "--trials", "1", "--out", "st",
                    "--objective", "tokens_per_s", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = trials(tmp_path / "st")
    skipped = [r for r in rows if r.get("skipped")]
    assert skipped and all(r["params"]["train.grad_accum"] == 1 for r in skipped)
    assert all(r["note"].startswith("advisor: single needs ") and "GiB per device, 1.00 GiB usable" in r["note"]
               for r in skipped)
    for r in skipped:  # never run: no trial folder, no bench process
        assert not (tmp_path / "st" / "trials" / f"{r['number']:04d}").exists()
    done = [r for r in rows if r["state"] == "complete"]
    assert len(done) == 1 and done[0]["params"]["train.grad_accum"] == 16 and done[0]["value"] > 0
    bench = json.loads((tmp_path / "st" / "trials" / f"{done[0]['number']:04d}" / "bench.json").read_text())
    assert bench["settings"]["batch"] == 1 and bench["settings"]["grad_accum"] == 16
    assert done[0]["value"] == pytest.approx(bench["rows"][0]["tokens_per_s"])


def test_trials_of_a_launcher_strategy_run_under_deepseek_launch(tmp_path: Path) -> None:
    """A ddp config: the training trial runs as `deepseek launch -n 2 -- train` (2 gloo processes)
    and the system trial as `launch -n 2 -- bench train`, whose tokens/s counts both ranks."""
    base = tiny_config(10).replace('name = "single"\ndevice = "cpu"', 'name = "ddp"')
    (tmp_path / "base.toml").write_text(base)
    (tmp_path / "space.toml").write_text(SPACE + "nproc = 2\n")
    out = tune_here("tune", "base.toml", "--study", "d", "--space", "space.toml", "--trials", "1", "--out", "st",
                    cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (row,) = trials(tmp_path / "st")
    assert row["state"] == "complete" and row["value"] > 0
    log = (tmp_path / "st" / "trials" / "0000" / "train.log").read_text()
    assert "[rank0] 10 steps, 2,560 tokens" in log  # deepseek launch's rank prefix; 10 x 8 rows x 32 tokens

    (tmp_path / "space.toml").write_text('[space]\n"train.grad_accum" = { choices = [1, 2] }\n'
                                         "[tuner]\nnproc = 2\nsteps = 2\nwarmup = 1\n")
    out = tune_here("tune", "base.toml", "--study", "e", "--space", "space.toml", "--trials", "1", "--out", "se",
                    "--objective", "tokens_per_s", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (row,) = trials(tmp_path / "se")
    bench = json.loads((tmp_path / "se" / "trials" / "0000" / "bench.json").read_text())
    assert bench["device"]["world_size"] == 2 and bench["settings"]["strategy"] == "ddp"
    assert bench["settings"]["batch"] == 4  # global 8 over 2 ranks, no accumulation
    assert row["value"] == pytest.approx(2 * bench["rows"][0]["tokens_per_s"])


# ``deepseek ARGS`` SIGKILLed right after the training process of trial argv[1] ended: the tuner
# dies before it recorded the trial's value.
KILLED_AFTER_TRAINING = """
import os, signal, sys
from deepseek_enterprise.tune import training
real = training.run_child
def run_child(argv, log, **kwargs):
    done = real(argv, log, **kwargs)
    if os.path.basename(os.path.dirname(str(log))) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return done
training.run_child = run_child
from deepseek.cli.main import main
main(sys.argv[2:])
"""


def test_a_trial_whose_training_finished_before_the_kill_is_taken_up_not_run_again(tmp_path: Path) -> None:
    """Killed after trial 1's training ended, before its value was recorded, the tuner's re-run of
    the trial trained it again from the start. Now the re-run takes the finished run's value (its
    trial.toml, checkpoint and last evaluation prove it) without starting a training."""
    write(tmp_path, steps=20, space=SPACE)
    # 2 trials: the baseline, then trial 1, killed and taken up (a third adds a training, not a check)
    args = ["tune", "base.toml", "--study", "k", "--space", "space.toml", "--trials", "2", "--out", "st",
            "--pruner", "none"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_TRAINING, "0001", *args], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    finished = tmp_path / "st" / "trials" / "0001" / "run"
    value = [json.loads(x)["val_loss"] for x in (finished / "metrics.jsonl").read_text().splitlines() if "val_loss" in x]
    out = tune_here(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {r["number"]: r for r in trials(tmp_path / "st")}
    assert rows[1]["state"] == "fail" and rows[1]["interrupted"]
    (rerun,) = [r for r in rows.values() if r.get("retry_of") == 1]
    assert rerun["state"] == "complete" and rerun["params"] == rows[1]["params"]
    assert rerun["value"] == value[-1] and rerun["run_dir"] == str(finished)
    assert rerun["note"] == "the finished training of trial 1 taken up, not run again"
    rerun_folder = tmp_path / "st" / "trials" / f"{rerun['number']:04d}"
    assert not (rerun_folder / "run").exists() and not (rerun_folder / "train.log").exists()  # nothing trained


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the kill test is Linux-only")
def test_a_trial_killed_mid_training_is_resumed_from_its_checkpoint_to_the_same_value(tmp_path: Path) -> None:
    """The tuner and the trial's training SIGKILLed together after the training's first checkpoint:
    the re-run of the trial trained again from step 0. Now it continues the interrupted run from
    its newest complete checkpoint (the run folder moved into the re-run's trial folder) and ends
    with the value, and every loss, of a study never interrupted."""
    base = tiny_config(60).replace("interval = 0", "interval = 10")
    args = ["tune", "base.toml", "--study", "k", "--space", "space.toml", "--trials", "1", "--out", "st",
            "--pruner", "none"]
    for folder in ("straight", "killed"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "base.toml").write_text(base)
        (tmp_path / folder / "space.toml").write_text(SPACE)
    straight = tune_here(*args, cwd=tmp_path / "straight")
    assert straight.returncode == 0, straight.stdout[-2000:] + straight.stderr[-2000:]

    run = tmp_path / "killed" / "st" / "trials" / "0000" / "run"
    tuner = subprocess.Popen([*DEEPSEEK, *args], cwd=tmp_path / "killed", env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints" / "step-10").is_dir():
            assert tuner.poll() is None and time.monotonic() < deadline, "trial 0 saved no checkpoint"
            time.sleep(0.01)
    finally:
        # the tuner's training process first (no SIGTERM save), found as its child: the trial's
        # paths on its command line are relative to the tuner's folder, not this test's
        training = _descendants(tuner.pid)
        for pid in [*training, tuner.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tuner.wait()
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in training):
            assert time.monotonic() < deadline, "the trial's training outlived SIGKILL"
            time.sleep(0.05)
    from deepseek.training import checkpoint as ckpt

    saved = ckpt.read_trainer_state(ckpt.resolve_checkpoint(run))["step"]
    assert 10 <= saved < 60

    out = tune_here(*args, cwd=tmp_path / "killed")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {r["number"]: r for r in trials(tmp_path / "killed" / "st")}
    assert rows[0]["state"] == "fail" and rows[0]["interrupted"]
    (rerun,) = [r for r in rows.values() if r.get("retry_of") == 0]
    assert rerun["state"] == "complete" and rerun["baseline"]
    assert rerun["note"] == f"the training of trial 0 resumed from its step {saved}"
    resumed = tmp_path / "killed" / "st" / "trials" / f"{rerun['number']:04d}" / "run"
    assert rerun["run_dir"] == str(resumed) and not run.exists()
    log = (resumed.parent / "train.log").read_text()
    assert f"resumed from st/trials/{rerun['number']:04d}/run/checkpoints/step-{saved} at step {saved}" in log
    (uninterrupted,) = trials(tmp_path / "straight" / "st")
    assert rerun["value"] == uninterrupted["value"]  # exact

    def losses(folder: Path) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    assert losses(resumed) == losses(tmp_path / "straight" / "st" / "trials" / "0000" / "run")
    assert len(losses(resumed)) == 60
