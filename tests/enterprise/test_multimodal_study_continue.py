"""``deepseek multimodal study`` continues in its ``--out`` folder: stopped by SIGTERM mid-run it
exits 75 with the run's checkpoint, and the same command resumes that run and gives the results
of an uninterrupted study; models with results are not trained again; a results line cut short
is dropped; a folder of other settings, or a results.jsonl the study cannot take up (unreadable, a
seed given twice, a line of another recipe), is refused in one line, before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _inprocess import deepseek_here

ARGS = ["multimodal", "study", "--task", "redundant", "--seed", "0", "--config", "audio", "--steps", "24",
        "--batch", "8", "--eval-size", "16", "--device", "cpu"]


def _study(work: Path, out: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "deepseek", *ARGS, *extra, "--out", out], cwd=work, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stopped_study_continues_and_gives_the_uninterrupted_results(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the study stopped by SIGTERM is a process of its own; the others run in this one.
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--out", "whole")
    assert code == 0, err
    proc = _study(tmp_path, "cut")
    run = tmp_path / "cut" / "runs" / "redundant-audio-s0" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(run.glob("step-*")):  # a checkpoint every quarter (6 steps): stop after the first
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, err
    assert err.strip().splitlines()[-1].startswith("stopped: SIGTERM after step ")
    assert "run the same command again to continue the study in cut" in err
    assert not (tmp_path / "cut" / "results.jsonl").exists()  # no results for a model stopped half-way
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--out", "cut")
    assert code == 0, err
    assert "resuming cut/runs/redundant-audio-s0 from step " in err
    (cut,), (ref,) = _rows(tmp_path / "cut" / "results.jsonl"), _rows(tmp_path / "whole" / "results.jsonl")
    assert cut["test"] == ref["test"] and cut["val_curve"] == ref["val_curve"]  # bit for bit

    # Finished: the same command trains nothing; a second seed is added beside the first.
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--seed", "1", "--out", "cut")
    assert code == 0 and "1 model(s) already have results" in err, err
    rows = _rows(tmp_path / "cut" / "results.jsonl")
    assert [r["seed"] for r in rows] == [0, 1] and rows[0] == cut


def test_a_cut_results_line_is_dropped_and_its_model_tested_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    args = [a if a != "24" else "2" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    results = tmp_path / "st" / "results.jsonl"
    (row,) = _rows(results)
    results.write_text(results.read_text()[:60])  # killed as it wrote the line: no newline, not JSON
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    assert "st/results.jsonl:1: a results line cut short (the study was stopped as it wrote it) was dropped" in err
    assert "that model gets its results again" in err
    # its run finished training: only tested again (it was trained again from the start)
    assert "testing st/runs/redundant-audio-s0 again: its training finished (step 2)" in err
    (again,) = _rows(results)
    assert again["test"] == row["test"]


@pytest.mark.parametrize(("prepare", "extra", "message"), [
    (lambda st: ((st / "study.json").write_text(json.dumps({
        "steps": 24, "batch": 8, "lr": 0.002, "device": "cpu", "recipe": "joint", "eval_size": 16,
        "unimodal_runs": None})), (st / "results.jsonl").write_text("")), ["--steps", "48"],
     "--out st: holds a study made with --steps 24 (not 48); continue it with those, or pick a new --out"),
    (lambda st: (st / "results.jsonl").write_text(""), [],
     "--out st: holds a study's results.jsonl or runs/ but no study.json (a study of an older build, or files of "
     "something else), so it cannot be continued; pick a new --out"),
    (lambda st: (st / "study.json").write_text("[1]"), [],
     "--out st: st/study.json is not the settings file of a study; restore it, or pick a new --out"),
    # read back as it came: 'holds a study made with --lr nan (not 0.002); continue it with those', which no
    # command line can give, and '--steps 24 (not 24)' for the string "24"
    (lambda st: ((st / "study.json").write_text(json.dumps({
        "steps": 24, "batch": 8, "lr": float("nan"), "device": "cpu", "recipe": "joint", "eval_size": 16,
        "unimodal_runs": None})), (st / "results.jsonl").write_text("")), [],
     "--out st: st/study.json holds lr = nan, not a value --lr takes (a finite number > 0 and <= 1); restore it, "
     "or pick a new --out"),
    (lambda st: ((st / "study.json").write_text(json.dumps({
        "steps": "24", "batch": 8, "lr": 0.002, "device": "cpu", "recipe": "joint", "eval_size": 16,
        "unimodal_runs": None})), (st / "results.jsonl").write_text("")), [],
     "--out st: st/study.json holds steps = '24', not a value --steps takes (a whole number >= 1); restore it, or "
     "pick a new --out"),
])
def test_a_folder_of_another_study_is_refused_and_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  prepare, extra: list[str], message: str) -> None:  # noqa: ANN001
    st = tmp_path / "st"
    st.mkdir()
    prepare(st)
    before = {p.name: p.read_bytes() for p in st.iterdir()}
    args = [a for a in ARGS if a != "24"]
    args.remove("--steps")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, *(extra or ["--steps", "24"]), "--out", "st")
    assert code == 2 and err.strip().splitlines() == [f"error: {message}"], err
    assert {p.name: p.read_bytes() for p in st.iterdir()} == before


def test_a_study_settings_file_that_is_a_fifo_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading it blocked the study for good (no writer ever comes)."""
    st = tmp_path / "st"
    st.mkdir()
    os.mkfifo(st / "study.json")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--out", "st")
    assert code == 2 and err.strip().splitlines() == [
        "error: --out st: st/study.json cannot be read (not a regular file (a FIFO, device or socket)); restore it, "
        "or pick a new --out"], err
    assert [p.name for p in st.iterdir()] == ["study.json"] and (st / "study.json").is_fifo()


_SETTINGS = {"steps": 24, "batch": 8, "lr": 0.002, "device": "cpu", "recipe": "joint", "eval_size": 16,
             "unimodal_runs": None}
_ROW = '{"task": "redundant", "config": "audio", "seed": 0, "test": {"test_accuracy": 0.5}}\n'


@pytest.mark.parametrize(("results", "message"), [
    # taken as one model: the study skipped it and printed its tables; 'multimodal table' refused the file
    (_ROW * 2, "st/results.jsonl:2: repeats the results of audio on the redundant task, seed 0 "
               "(st/results.jsonl:1): a seed counted twice would weigh the mean"),
    # a line of another study stood for this study's audio model: it was never trained
    (_ROW.replace("}}", '}, "train_sources": "fit"}'),
     "st/results.jsonl:1: holds the results of audio (fit) on the redundant task, seed 0, where this study "
     "(--recipe joint) trains audio"),
    # internal errors (UnicodeDecodeError, IsADirectoryError)
    (b"\xff" + _ROW.encode(), "st/results.jsonl: not UTF-8 text (byte 0)"),
    (None, "st/results.jsonl: not a regular file (a folder, device, FIFO or socket)"),
], ids=["repeated", "other-recipe", "not-utf8", "folder"])
def test_results_the_study_cannot_take_up_are_refused_and_left_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results: str | bytes | None, message: str) -> None:
    st = tmp_path / "st"
    st.mkdir()
    (st / "study.json").write_text(json.dumps(_SETTINGS))
    if results is None:
        (st / "results.jsonl").mkdir()
    else:
        (st / "results.jsonl").write_bytes(results if isinstance(results, bytes) else results.encode())
    before = sorted((p.name, p.is_dir() or p.read_bytes()) for p in st.iterdir())
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--out", "st")
    assert (code, err.strip().splitlines()) == (2, [f"error: {message}; restore the file, or pick a new --out"])
    assert sorted((p.name, p.is_dir() or p.read_bytes()) for p in st.iterdir()) == before


def test_a_study_that_made_no_model_is_taken_up_with_other_settings(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A study refused after it wrote study.json but before its first run (a bad --unimodal-runs
    source, say) binds nothing: the next command, with other settings, starts there and records them."""
    st = tmp_path / "st"
    st.mkdir()
    (st / "study.json").write_text(json.dumps({**_SETTINGS, "steps": 48}))
    args = [a if a != "24" else "2" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    assert json.loads((st / "study.json").read_text())["steps"] == 2
    assert [r["config"] for r in _rows(st / "results.jsonl")] == ["audio"]


def test_a_stopped_run_whose_metrics_were_edited_is_refused_not_written(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The results line of a resumed run takes its validation curve from the run's metrics.jsonl:
    an evaluation edited there to a non-number was written into results.jsonl, which the study
    then refused as its own file when continued; now the resumed run is refused in one line."""
    proc = _study(tmp_path, "cut")
    run = tmp_path / "cut" / "runs" / "redundant-audio-s0"
    deadline = time.monotonic() + 300
    while not list((run / "checkpoints").glob("step-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, err
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "val_accuracy" in line)
    lines[first] = json.dumps({**json.loads(lines[first]), "val_accuracy": "x"})
    metrics.write_text("\n".join(lines) + "\n")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *ARGS, "--out", "cut")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: {metrics.relative_to(tmp_path)}: its evaluations give a results line the study could not read back "
        "(val_curve must be a list of [step from 0 to 10^12, accuracy in [0, 1] or null] pairs); remove "
        "cut/runs/redundant-audio-s0 "
        "to train that model again"), err
    assert not (tmp_path / "cut" / "results.jsonl").exists()


def test_a_batch_beyond_the_machines_memory_is_refused_as_the_option_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was the dataset's refusal worded as ``data.batch_size``, when the first run built its
    dataset: after ``--out`` and its study.json were written."""
    args = [a if a != "8" else str(2**50) for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert (code, err.strip().splitlines()) == (2, [
        f"error: --batch {2**50:,} samples of 5,592 bytes (image, padded frames and text) = {2**50 * 5592 / 2**30:,.0f} "
        f"GiB a batch: more than this machine's {memory / 2**30:,.0f} GiB of memory; lower --batch"])
    assert not (tmp_path / "st").exists()


# ``deepseek ARGS`` in a process that SIGKILLs itself at argv[1]: "testing" (the study's first test
# evaluation, after the run's training) or "committed:NAME" (right after a rename onto a folder NAME).
KILLED = """
import os, signal, sys
point = sys.argv[1]
if point == "testing":
    from deepseek_enterprise import study
    study.split_metrics = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
else:
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.path.basename(os.fspath(dst)) == point.partition(":")[2]:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from deepseek.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("point", ["testing", "committed:step-8"])
def test_a_study_killed_after_a_run_trained_only_tests_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                point: str) -> None:
    """Killed after its run's training (while testing it, or right after its last checkpoint's
    rename, before ``latest`` and the prune), the study trained the model again from the start.
    Now the same command tests the finished run: its checkpoint and metrics stay as they were, the
    folder is tidied (``latest``, the checkpoint beyond keep_last), and the results equal a study
    never killed."""
    args = [a if a != "24" else "8" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "whole")
    assert code == 0, err
    killed = subprocess.run([sys.executable, "-c", KILLED, point, *args, "--out", "cut"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "cut" / "runs" / "redundant-audio-s0"
    assert not (tmp_path / "cut" / "results.jsonl").exists()
    trained = {p.relative_to(run): p.read_bytes() for p in [run / "metrics.jsonl", *run.glob("checkpoints/step-8/*")]}
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "cut")
    assert code == 0, err
    assert "testing cut/runs/redundant-audio-s0 again: its training finished (step 8), its results were not " \
           "written" in err, err
    assert "again from the start" not in err and "resuming" not in err
    assert {p.relative_to(run): p.read_bytes() for p in [run / "metrics.jsonl", *run.glob("checkpoints/step-8/*")]} \
        == trained  # not trained again
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-8"]
    assert (run / "checkpoints" / "latest").read_text() == "step-8\n"
    (cut,), (ref,) = _rows(tmp_path / "cut" / "results.jsonl"), _rows(tmp_path / "whole" / "results.jsonl")
    assert {k: v for k, v in cut.items() if k != "seconds"} == {k: v for k, v in ref.items() if k != "seconds"}


def test_a_finished_run_its_folder_does_not_prove_is_trained_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Only tested again when the run's metrics.jsonl holds the evaluation the trainer makes at the
    last step before saving it; without it the checkpoint proves nothing the row needs."""
    args = [a if a != "24" else "2" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    (row,) = _rows(tmp_path / "st" / "results.jsonl")
    (tmp_path / "st" / "results.jsonl").unlink()
    metrics = tmp_path / "st" / "runs" / "redundant-audio-s0" / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines()
                               if not (json.loads(line)["step"] == 2 and "val_accuracy" in line)))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    assert "training st/runs/redundant-audio-s0 again from the start (its metrics.jsonl has no val_accuracy at " \
           "step 2)" in err, err
    (again,) = _rows(tmp_path / "st" / "results.jsonl")
    assert again["test"] == row["test"] and again["val_curve"] == row["val_curve"]


def test_a_resumed_run_another_study_holds_is_refused_in_the_studys_terms(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The study runs its trainers from Python: a run it resumed while another live study (the same
    command twice) held it was refused with 'pick another run_dir= / logging.name', Trainer's
    keyword, which the study's user never typed and cannot give; the line names --out."""
    import shutil

    from deepseek.config.load import config_from_dict
    from deepseek.training.run_lock import try_lock, unlock
    from deepseek.training.trainer import Trainer

    args = [a if a != "24" else "4" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    # the run as a study stopped half-way leaves it: a checkpoint at step 2 of 4, no results line
    run = tmp_path / "st" / "runs" / "redundant-audio-s0"
    table = json.loads((run / "checkpoints" / "step-4" / "trainer.json").read_text())["config"]
    shutil.rmtree(run)
    (tmp_path / "st" / "results.jsonl").unlink()
    Trainer(config_from_dict({**table, "train": {**table["train"], "max_steps": 2}}), quiet=True).fit()
    held = try_lock(run / ".lock")  # the other study, training the run on
    assert held is not None
    try:
        code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    finally:
        unlock(held)
    assert "resuming st/runs/redundant-audio-s0 from step 2" in err, err
    line = err.splitlines()[-1]
    assert code == 2 and line.startswith(f"error: run folder {run} is in use by another live job ("), err
    assert line.endswith("; wait for it to end or stop it, or pick another --out"), line
    # let go, the same command resumes it
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0 and "resuming st/runs/redundant-audio-s0 from step 2" in err, err


def test_a_run_early_stopping_ended_is_tested_again_not_resumed(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that early stopping (CONFIG.toml's train.early_stop_patience) ended before its last
    step, the study killed before its results line: the same command resumed it, the trainer
    refused ('the run is complete, it stopped early'), exit 2, and the study could not go on.
    Now it is tested again, with the results of the study never killed."""
    (tmp_path / "base.toml").write_text("[train]\nearly_stop_patience = 1\neval_interval = 1\n")
    args = [*ARGS[:2], "base.toml", *ARGS[2:], "--lr", "1", "--out", "st"]  # lr 1: no better after step 0
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args)
    assert code == 0, err
    (row,) = _rows(tmp_path / "st" / "results.jsonl")
    (last,) = (tmp_path / "st" / "runs" / "redundant-audio-s0" / "checkpoints").glob("step-*")
    step = int(last.name.removeprefix("step-"))
    assert step < 24 and row["val_curve"][-1][0] == step  # it stopped early
    assert row["steps"] == step  # the step it reached, not --steps 24
    (tmp_path / "st" / "results.jsonl").unlink()  # killed as it tested the run
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args)
    assert code == 0, err
    assert f"testing st/runs/redundant-audio-s0 again: its training finished (step {step})" in err, err
    (again,) = _rows(tmp_path / "st" / "results.jsonl")
    assert again["test"] == row["test"] and again["val_curve"] == row["val_curve"] and again["steps"] == step


def test_a_finished_run_is_tested_on_the_data_its_checkpoint_records(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``finished_model`` (the study's re-test of a finished run) built the dataset, and held it to
    the run's tokenizer check, from the config the study makes, never from what the checkpoint it
    read records: a checkpoint of another config (replaced after ``take_up`` judged its folder) was
    tested on the study's data, its row labelled with the study's task. Now the one read is held to
    the study's config: the same data, or one line."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import UsageError
    from deepseek.plugins.host import get_host
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
    from deepseek_enterprise.study import finished_model

    args = [a if a != "24" else "2" for a in ARGS]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    run = Path("st", "runs", "redundant-audio-s0")  # from tmp_path, the study's folder (deepseek_here's chdir)
    saved = read_trainer_state(resolve_checkpoint(run))["config"]
    _, data, _ = finished_model(run, config_from_dict(saved, host=get_host()), get_host())
    assert data.options.task == "redundant"
    other = config_from_dict({**saved, "data": {**saved["data"], "task": "complementary"}}, host=get_host())
    with pytest.raises(UsageError, match=r"step-2: records another config than the study's run st/runs/redundant-"
                                         r"audio-s0 \(replaced since the study took it up\); run the same command"):
        finished_model(run, other, get_host())


def test_a_second_study_of_a_held_folder_is_refused_and_a_dead_holder_blocks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two studies of one --out trained the same run folders and appended to one results.jsonl.
    A live study holds st/.study.lock (here a child process holds it as the study does): a second
    is refused in one line naming it, leaving the folder as it was; once the holder is killed
    (SIGKILL: its lock file stays), the next study takes the folder."""
    import socket

    from deepseek.training.run_lock import describe_holder

    st = tmp_path / "st"
    st.mkdir()
    hold = ("import sys, time\nfrom deepseek.training.run_lock import try_lock, write_holder\n"
            "write_holder(try_lock('st/.study.lock'))\nprint('held', flush=True)\ntime.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", hold], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        before = {p.name: p.read_bytes() for p in st.iterdir()}
        args = [a if a != "24" else "2" for a in ARGS]
        code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
        holder = f"pid {child.pid} on host {socket.gethostname()}, since "
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: --out st: another study is running in this folder ({holder}"), err
        assert err.strip().endswith("); wait for it to end or stop it, or pick a new --out"), err
        assert {p.name: p.read_bytes() for p in st.iterdir()} == before  # only the holder's lock file
    finally:
        child.kill()
        child.communicate()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *args, "--out", "st")
    assert code == 0, err
    assert [r["config"] for r in _rows(st / "results.jsonl")] == ["audio"]
    assert describe_holder(st / ".study.lock").startswith(f"pid {os.getpid()} on host ")  # the last study's
