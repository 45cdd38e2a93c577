"""The launcher's parts without a cluster: argument splitting, worker environment, heartbeats and
the watchdog (against a real process), the failure report, and the pre-launch checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepseek.config.load import load_config
from deepseek.errors import ConfigError, UsageError
from deepseek_pro.launch import heartbeat
from deepseek_pro.launch.cli import split_command, validate_train
from deepseek_pro.launch.env import sanitize_arch_list, worker_env
from deepseek_pro.launch.heartbeat import Beat, Watchdog, beat, read_beats
from deepseek_pro.launch.runner import EXIT_HUNG, EXIT_PREEMPTED, failure_report


def test_split_command_skips_root_options() -> None:
    assert split_command(["--debug", "--plugins", "a,b", "train", "x.toml", "--set", "a.b=1"]) == (
        ["--debug", "--plugins", "a,b"], "train", ["x.toml", "--set", "a.b=1"])
    assert split_command(["--debug"]) == (["--debug"], None, [])


def test_worker_env_fills_in_only_what_is_missing() -> None:
    env = worker_env(2, cuda=False, heartbeat_dir="/hb", environ={})
    assert env["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert env["DS_ACCELERATOR"] == "cpu" and env[heartbeat.ENV_DIR] == "/hb"
    kept = worker_env(2, cuda=True, heartbeat_dir="/hb", environ={"OMP_NUM_THREADS": "7"})
    assert "OMP_NUM_THREADS" not in kept and "DS_ACCELERATOR" not in kept
    assert worker_env(1, cuda=True, heartbeat_dir="/hb", environ={"TORCH_CUDA_ARCH_LIST": "9.0;bogus;8.6+PTX"})[
        "TORCH_CUDA_ARCH_LIST"] == "9.0;8.6+PTX"
    assert worker_env(1, cuda=True, heartbeat_dir="/hb", environ={"TORCH_CUDA_ARCH_LIST": "x"})["TORCH_CUDA_ARCH_LIST"] is None
    assert sanitize_arch_list("8.0 9.0a") == "8.0;9.0a"


def test_beat_is_a_no_op_outside_the_launcher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(heartbeat.ENV_DIR, raising=False)
    beat("step", 3)
    monkeypatch.setenv(heartbeat.ENV_DIR, str(tmp_path))
    monkeypatch.setenv("RANK", "3")
    beat("step", 4)
    beat("step", 5)
    (got,) = read_beats(tmp_path).values()
    assert (got.rank, got.pid, got.phase, got.step) == (3, os.getpid(), "step", 5)
    assert got.seq >= 2 and abs(got.time - time.time()) < 5
    (tmp_path / "rank-9.json").write_text("{truncated")  # half-written files are skipped
    assert set(read_beats(tmp_path)) == {3}


def _write(directory: Path, rank: int, seq: int, phase: str, step: int, age: float, pid: int = 1) -> None:
    body = {"rank": rank, "pid": pid, "seq": seq, "phase": phase, "step": step, "time": time.time() - age}
    (directory / f"rank-{rank}.json").write_text(json.dumps(body))


def test_watchdog_blames_the_laggard(tmp_path: Path) -> None:
    dog = Watchdog(tmp_path, timeout=10, startup_timeout=100)
    _write(tmp_path, 0, seq=5, phase="step", step=3, age=11)
    _write(tmp_path, 1, seq=4, phase="step", step=2, age=12)
    assert [b.rank for b in dog.check()] == [1]  # both silent; rank 1 is behind
    _write(tmp_path, 1, seq=5, phase="step", step=3, age=1)
    assert [b.rank for b in dog.check()] == [0]
    _write(tmp_path, 0, seq=5, phase="step", step=3, age=1)
    assert dog.check() == []


def test_watchdog_start_up_limit_and_finished_ranks(tmp_path: Path) -> None:
    dog = Watchdog(tmp_path, timeout=10, startup_timeout=100)
    _write(tmp_path, 0, seq=1, phase="start", step=0, age=50)
    _write(tmp_path, 1, seq=2, phase="train", step=0, age=50)
    assert dog.check() == []  # still within the start-up limit
    _write(tmp_path, 0, seq=9, phase="end", step=9, age=500)
    _write(tmp_path, 1, seq=9, phase="end", step=9, age=500)
    assert dog.check() == []  # finished ranks are not watched


def test_watchdog_kills_a_hung_process(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write(tmp_path, 0, seq=6, phase="step", step=4, age=0, pid=os.getpid())
        _write(tmp_path, 1, seq=5, phase="step", step=3, age=2, pid=sleeper.pid)
        dog = Watchdog(tmp_path, timeout=1, startup_timeout=1, poll=0.1, dump_grace=0.1)
        dog.start()
        assert sleeper.wait(timeout=30) in (-signal.SIGUSR2, -signal.SIGKILL)
        dog.join(timeout=10)
        assert [b.rank for b in dog.stuck] == [1]
        assert dog.verdict.startswith("rank 1 made no progress for")
        assert "last heartbeat: step 3" in dog.verdict and "the other ranks reached step 4" in dog.verdict
        assert dog.verdict.endswith("the job was stopped (raise --timeout if it was only slow)")
    finally:
        sleeper.kill()


def _failure(rank: int, exitcode: int, ts: int = 100) -> SimpleNamespace:
    sig = {-9: "SIGKILL", -15: "SIGTERM"}.get(exitcode, "")
    return SimpleNamespace(local_rank=rank, pid=1000 + rank, exitcode=exitcode, timestamp=ts, signal_name=lambda: sig)


def test_failure_report_names_the_root_cause(tmp_path: Path) -> None:
    logs = {0: tmp_path / "0.log", 1: tmp_path / "1.log"}
    logs[0].write_text("step 1\nerror: rank 0 lost its connection to another rank (Read error: Connection reset by "
                       "peer); the launcher names the rank that failed\n")
    logs[1].write_text("Traceback ...\nerror: data.path: 'x' does not exist\n")
    # same second: rank 0 only lost its peer, rank 1 is the cause; its usage error keeps code 2
    report = failure_report({0: _failure(0, 1), 1: _failure(1, 2)}, None, logs.__getitem__)
    assert report.exit_code == 2
    assert report.message == "rank 1 (pid 1001) exited with code 2: data.path: 'x' does not exist; the other ranks were stopped"
    assert report.tail[-1].startswith("error: data.path") and report.log_path == str(logs[1])
    assert not report.shown  # rank 1's output is not on the console: the launcher says it
    killed = failure_report({0: _failure(0, -15, 101), 1: _failure(1, -9)}, None, logs.__getitem__)
    assert killed.exit_code == 1 and killed.message.startswith("rank 1 (pid 1001) was killed by signal SIGKILL")
    # an exception nothing named: core's "internal error:" line is quoted with its prefix (it was dropped)
    logs[1].write_text("internal error: RuntimeError: boom (run with --debug for the traceback)\n")
    report = failure_report({0: _failure(0, 1), 1: _failure(1, 1)}, None, logs.__getitem__)
    assert report.message == ("rank 1 (pid 1001) exited with code 1: internal error: RuntimeError: boom (run with "
                              "--debug for the traceback); the other ranks were stopped")


def test_a_rank_stopped_by_the_agent_after_another_failed_is_not_a_stop_request(tmp_path: Path) -> None:
    """Rank 0 refused its input (exit 2); the agent's SIGTERM then reached rank 1 in a `deepseek run`
    script outside fit, which ends a SIGTERM with 75: the job ended 75, "stopped: ..." (CI ci81)."""
    logs = {0: tmp_path / "0.log", 1: tmp_path / "1.log"}
    logs[0].write_text("error: strategy.sync_batchnorm: runs only on GPUs\n")
    logs[1].write_text("stopped: SIGTERM while the script ran outside deepseek.fit; nothing to save; run the same "
                       "command again\n")
    for later in (100, 101):  # the same second, or the next
        report = failure_report({0: _failure(0, 2), 1: _failure(1, EXIT_PREEMPTED, later)}, None, logs.__getitem__)
        assert report.exit_code == 2 and report.shown, report
        assert report.message.startswith("rank 0 (pid 1000) exited with code 2: strategy.sync_batchnorm")
    # every rank stopped on request: still the stop report
    logs[0].write_text("stopped: SIGTERM after step 7; checkpoint run/checkpoints/step-7; continue with --resume run\n")
    both = failure_report({0: _failure(0, EXIT_PREEMPTED), 1: _failure(1, EXIT_PREEMPTED)}, None, logs.__getitem__)
    assert both.exit_code == EXIT_PREEMPTED


def test_bad_input_the_console_already_shows_is_not_repeated(tmp_path: Path) -> None:
    """Both ranks refused the input (exit 2): local rank 0's line is on the console (the launcher
    tees it), and the launcher's own line repeated it."""
    logs = {0: tmp_path / "0.log", 1: tmp_path / "1.log"}
    for log in logs.values():
        log.write_text("error: --strategy hybrid: eval and generate do not run under hybrid\n")
    report = failure_report({0: _failure(0, 2), 1: _failure(1, 2)}, None, logs.__getitem__)
    assert report.exit_code == 2 and report.shown
    logs[0].write_text("step 1\n")  # rank 0 failed otherwise: the launcher's line is needed
    report = failure_report({0: _failure(0, 1, 101), 1: _failure(1, 2)}, None, logs.__getitem__)
    assert report.exit_code == 2 and not report.shown


def test_a_rank_that_lost_its_peer_says_so_not_internal_error(tmp_path: Path) -> None:
    """Rank 0 printed "internal error: RuntimeError: [gloo ...] Connection reset by peer" above
    the launcher's line naming the rank that was killed."""
    import subprocess
    import sys

    from deepseek.training.launcher_env import peer_lost

    gone = RuntimeError("[gloo/transport/tcp/pair.cc:538] Read error [127.0.0.1]:1: Connection reset by peer")
    assert peer_lost(gone, {"WORLD_SIZE": "2"}) and not peer_lost(gone, {"WORLD_SIZE": "1"})
    assert not peer_lost(RuntimeError("shape mismatch"), {"WORLD_SIZE": "2"})
    script = ("import sys, click\nfrom deepseek.cli import main as m\n"
              "def boom(*a, **k):\n    raise RuntimeError('Read error [127.0.0.1]:1: Connection reset by peer')\n"
              "m.cli.main = boom\nm.main(['plugins', 'list'])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WORLD_SIZE": "2", "RANK": "0"})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: rank 0 lost its connection to another rank (Read error [127.0.0.1]:1: Connection reset by peer); "
        "the launcher names the rank that failed"], out.stderr


def test_failure_report_prefers_the_watchdog_verdict(tmp_path: Path) -> None:
    dog = Watchdog(tmp_path, timeout=1, startup_timeout=1)
    dog.verdict, dog.stuck = "rank 1 made no progress for 9 s", [Beat(1, 5, 3, "step", 2, 0.0)]
    (tmp_path / "1.log").write_text("Current thread (most recent call first):\n  File x.py\n")
    report = failure_report({1: _failure(1, -9), 0: _failure(0, -15)}, dog, lambda r: tmp_path / f"{r}.log")
    assert report.exit_code == EXIT_HUNG and report.message == dog.verdict and "File x.py" in report.tail[-1]
    # a deep stack: the dump from its top (where the rank waits), not its last lines (the entry point's
    # frames, the same for every hang, which pushed the waiting frame out of a 20-line tail)
    frames = [f'  File "/site/frame{i}.py", line {i} in f{i}' for i in range(40)]
    (tmp_path / "1.log").write_text("step 1\nThread 0x2 (most recent call first):\n  File \"heartbeat.py\"\n\n"
                                    "Current thread 0x1 (most recent call first):\n  File \"plugin.py\", line 11 in "
                                    "hook\n" + "\n".join(frames) + "\n")
    tail = failure_report({1: _failure(1, -9)}, dog, lambda r: tmp_path / f"{r}.log").tail
    assert tail[0] == "Current thread 0x1 (most recent call first):" and "plugin.py" in tail[1] and len(tail) == 20


def test_compression_rule_names_both_sides() -> None:
    from deepseek.training.grad_compression import compression_problem
    from deepseek_pro.strategies.fsdp import FSDPStrategy

    msg = compression_problem("fsdp", FSDPStrategy, "powersgd", ["ddp (fp16, bf16, powersgd)"])
    assert msg.startswith("strategy.compression: 'powersgd' cannot be used with strategy 'fsdp' (it supports 'fp16', 'bf16')")
    assert "PowerSGD is a DDP communication hook" in msg and "use ddp (fp16, bf16, powersgd)" in msg
    assert compression_problem("fsdp", FSDPStrategy, "bf16", []) is None
    assert compression_problem("fsdp", FSDPStrategy, "none", []) is None


@pytest.mark.parametrize(("name", "method", "has"), [
    ("pipeline", "bf16", "it compresses no gradients"),
    ("fsdp", "powersgd", "it supports 'fp16', 'bf16'"),
    ("zero3", "powersgd", "it supports 'fp16', 'bf16'"),
])
def test_deepseek_train_names_the_strategies_that_compress(name: str, method: str, has: str) -> None:
    """Outside the launcher too: compression on a strategy without it is the one rule's conflict,
    not an unknown key, naming the strategies that can."""
    with pytest.raises(ConfigError, match=rf"^strategy\.compression: '{method}' cannot be used with strategy "
                       rf"'{name}' \({has}\): .*; use ddp \(fp16, bf16, powersgd\) or fsdp \(fp16, bf16\), or remove"):
        load_config(overrides=[f"strategy.name='{name}'", f"strategy.compression='{method}'"])
    assert load_config(None, ['strategy.name="ddp"', 'strategy.compression="powersgd"']).strategy.name == "ddp"


def test_validate_train_sets_the_collective_timeout() -> None:
    common = {"world_size": 2, "nproc_per_node": 2, "cuda_devices": 0}
    assert validate_train(["--strategy", "ddp"], timeout=30, **common)[0][-2:] == ["--set", "strategy.timeout_s=60"]
    assert validate_train(["--strategy", "ddp"], timeout=300, **common) == (["--strategy", "ddp"], 120.0)  # defaults
    own = ["--strategy", "ddp", "--set", "strategy.timeout_s=45", "--set", "train.preempt_grace_s=7"]
    assert validate_train(own, timeout=30, **common) == (own, 7.0)  # the user's settings win
    with pytest.raises(ConfigError, match="-n 4 processes per node but only 2 CUDA device"):
        validate_train(["--strategy", "ddp"], timeout=30, world_size=4, nproc_per_node=4, cuda_devices=2)


def test_validate_train_names_the_command_line_options(tmp_path: Path) -> None:
    """``deepseek launch -- train --resume`` is checked before any process starts; its refusal
    says what to type on the command line (``--resume``), as ``deepseek train``'s does, not the
    Python keyword (``leave out resume=``)."""
    common = {"world_size": 2, "nproc_per_node": 2, "cuda_devices": 0, "timeout": 30}
    with pytest.raises(UsageError, match=r"nothing to resume .*; run the same command without --resume to start the "
                                         r"run, or pass a run folder"):
        validate_train(["--strategy", "ddp", "--resume", str(tmp_path / "gone")], **common)


def test_a_resume_with_another_model_is_refused_before_any_process_starts(tmp_path: Path) -> None:
    """The checkpoint's weights (names and shapes, from the file's header) are held to the model
    a config file given with ``--resume`` builds before the launcher starts a worker (without a
    file the checkpoint's own config is checked so already); the workers' trainer held them, so
    every rank started, then failed on that one line."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import CheckpointError
    from deepseek.training.trainer import Trainer

    tiny = {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16}
    config = config_from_dict({"model": tiny, "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 0},
                               "train": {"max_steps": 1}, "precision": {"dtype": "fp32"},
                               "logging": {"progress": False, "plot": False}})
    run = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit().run_dir
    common = {"world_size": 2, "nproc_per_node": 2, "cuda_devices": 0, "timeout": 30}
    (tmp_path / "run.toml").write_text('[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 1\n'
                                       'max_seq_len = 16\n[data]\nseq_len = 16\nbatch_size = 4\neval_batches = 0\n')
    args = [str(tmp_path / "run.toml"), "--strategy", "ddp", "--resume", str(run), "--max-steps", "2"]
    with pytest.raises(CheckpointError, match=r"checkpoints/step-1: weights do not fit this model \(shape mismatch "
                                              r"\['wte\.weight'"):
        validate_train([*args, "--set", "model.d_model=64"], **common)
    assert validate_train(args, **common)[0][:len(args)] == args  # its own model passes


def test_deepspeed_refuses_skipping_non_finite_steps() -> None:
    with pytest.raises(ConfigError, match=r"^train\.on_nonfinite: 'skip' cannot be used with strategy 'deepspeed'"):
        load_config(None, ['strategy.name="deepspeed"', 'train.on_nonfinite="skip"'])
    assert load_config(None, ['strategy.name="ddp"', 'train.on_nonfinite="skip"']).train.on_nonfinite == "skip"


def test_deepspeed_fp16_on_the_cpu_is_refused_before_any_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # was refused by every worker at set-up, after the launcher had started them
    import torch

    from deepseek.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = {"world_size": 2, "nproc_per_node": 2, "cuda_devices": 0}
    fp16 = ["--strategy", "deepspeed", "--set", 'model.name="tiny"', "--precision", "fp16"]
    with pytest.raises(UsageError, match=r"^precision\.dtype: DeepSpeed has no fp16 on the CPU; use precision\.dtype"):
        validate_train(fp16, timeout=30, **common)
    assert validate_train(fp16[:-1] + ["bf16"], timeout=30, **common)


def test_failure_report_of_a_stop_request(tmp_path: Path) -> None:
    """Ranks that saved and exited with 75 (or were stopped by the agent right after): the job
    ends with 75 and rank 0's ``stopped:`` line, no error and no log tail."""
    (tmp_path / "0.log").write_text("stopped: SIGTERM after step 7; checkpoint run/checkpoints/step-7; continue "
                                    "with --resume run\n")
    (tmp_path / "1.log").write_text("")
    report = failure_report({0: _failure(0, EXIT_PREEMPTED), 1: _failure(1, -15)}, None,
                            lambda r: tmp_path / f"{r}.log", stop_signal="SIGTERM")
    assert (report.exit_code, report.tail) == (EXIT_PREEMPTED, [])
    assert report.message == "stopped: SIGTERM after step 7; checkpoint run/checkpoints/step-7; continue with --resume run"
    early = failure_report({0: _failure(0, -15), 1: _failure(1, -15)}, None, lambda r: tmp_path / f"{r}.log",
                           stop_signal="SIGUSR1")
    assert early.exit_code == EXIT_PREEMPTED and "launcher received SIGUSR1" in early.message
    # a job stopped in set-up may have no checkpoint yet: --resume would refuse it, so say the other way too
    assert early.message.endswith("a run that has none yet starts again with the same command without --resume")


def test_the_stop_line_rank_0_showed_is_not_repeated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a SIGTERM the console showed the ``stopped:`` line twice: as rank 0's (``[rank0]
    stopped: ...``, the launcher tees its local rank 0's output) and again as the launcher's own.
    docs/distributed.md: the job ends with rank 0's line, once. The launcher still says it where
    its console showed no rank's line."""
    from deepseek_pro.launch.cli import echo_result

    line = "stopped: SIGTERM after step 7; checkpoint run/checkpoints/step-7; continue with --resume run"
    logs = {rank: tmp_path / f"{rank}.log" for rank in range(4)}
    logs[0].write_text(f"step 7\n{line}\n")
    for rank in (1, 2, 3):
        logs[rank].write_text("step 7\n")
    report = failure_report({0: _failure(0, EXIT_PREEMPTED), 1: _failure(1, -15)}, None, logs.__getitem__,
                            stop_signal="SIGTERM")
    assert (report.exit_code, report.message, report.shown) == (EXIT_PREEMPTED, line, True)
    echo_result(report)
    assert capsys.readouterr().err == ""  # rank 0's line is the one on the console
    # node 1 of two (ranks 2 and 3, local ranks 0 and 1): rank 0's line is on node 0's console only
    node1 = {rank: SimpleNamespace(**{**vars(_failure(rank, EXIT_PREEMPTED)), "local_rank": rank - 2}) for rank in (2, 3)}
    report = failure_report(node1, None, logs.__getitem__, stop_signal="SIGTERM")
    assert (report.message, report.shown) == ("stopped: rank 2 stopped on request", False)
    echo_result(report)
    assert capsys.readouterr().err.splitlines() == ["stopped: rank 2 stopped on request"]
    # a line only a local rank other than 0 wrote (its log, not the console): the launcher says it, once
    logs[0].write_text("step 7\n")
    logs[1].write_text(f"step 7\n{line}\n")
    report = failure_report({0: _failure(0, EXIT_PREEMPTED), 1: _failure(1, EXIT_PREEMPTED)}, None,
                            logs.__getitem__, stop_signal="SIGTERM")
    assert (report.message, report.shown) == (line, False)
    echo_result(report)
    assert capsys.readouterr().err.splitlines() == [line]


def test_job_dirs_of_dead_launchers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    from deepseek_pro.launch.jobdir import create_job_dir, remove_abandoned

    live, dead = create_job_dir(tmp_path), create_job_dir(tmp_path)
    assert live.heartbeats.is_dir() and live.logs.is_dir()
    assert dead.fd is not None
    os.close(dead.fd)  # what the kernel does when a launcher dies without cleaning up
    dead.fd = None
    (tmp_path / "deepseek-job-legacy").mkdir()  # no lock file: not ours to judge
    assert remove_abandoned(tmp_path) == [dead.path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.path.name, "deepseek-job-legacy"])
    live.remove()
    assert not live.path.exists()


def test_stop_forwarder_passes_the_signal_on_then_kills_at_the_deadline(tmp_path: Path) -> None:
    """A worker that handles SIGTERM but does not exit gets it forwarded, then SIGKILL once its
    grace and the margin are over; a heartbeat naming a process that is not our child (pid 1)
    is never signalled."""
    from deepseek_pro.launch.stop import StopForwarder

    script = "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: print('asked', flush=True))\ntime.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # its handler is installed
        _write(tmp_path, 0, seq=1, phase="step", step=1, age=0, pid=worker.pid)
        _write(tmp_path, 1, seq=1, phase="step", step=1, age=0, pid=1)
        with StopForwarder(tmp_path, grace_s=0.5, margin_s=0.5) as stop:
            assert stop.workers() == [worker.pid]
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends the launcher
            assert worker.wait(timeout=30) == -signal.SIGKILL
        assert stop.received == "SIGTERM" and stop.killed == [worker.pid]
        assert worker.stdout is not None and worker.stdout.read() == "asked\n"
    finally:
        worker.kill()


def test_stop_forwarder_signals_a_worker_whose_heartbeat_comes_after_the_signal(tmp_path: Path) -> None:
    """SIGTERM to the launcher just after the agent spawned its workers, before they wrote their
    first heartbeat, was forwarded to nobody: the job trained on to its end and exited 0 (seen with
    `launch -n 2 -- train`: 12 of 12 steps, exit 0, after a SIGTERM at the workers' start). The
    signal now reaches each worker as soon as its heartbeat appears."""
    from deepseek_pro.launch.stop import StopForwarder

    script = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\n"
              "print('ready', flush=True)\ntime.sleep(60)")
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"  # its handler is installed
        with StopForwarder(tmp_path, grace_s=60) as stop:
            assert stop.workers() == []  # still starting: no heartbeat
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends the launcher
            time.sleep(0.3)  # the forwarder had no one to send it to
            assert worker.poll() is None
            _write(tmp_path, 0, seq=1, phase="start", step=0, age=0, pid=worker.pid)  # its first heartbeat
            assert worker.wait(timeout=30) == 75
        assert stop.received == "SIGTERM" and stop.killed == []
    finally:
        worker.kill()


def test_a_launch_inside_a_launched_job_is_refused() -> None:
    """`launch -n 2 -- launch -n 2 -- train` started a launcher in every worker."""
    from _prohelpers import deepseek_here

    out = deepseek_here("launch", "-n", "2", "--", "train", cwd=Path.cwd(), env={"DEEPSEEK_LAUNCHER_PID": "1", "RANK": "1"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: launch: this process is rank 1 of a job 'deepseek launch' started already; run the command itself "
        "here (deepseek train ...), not another launch"], out.stderr


def test_deepseek_here_reads_a_message_exit_as_python_does(tmp_path: Path) -> None:
    """``sys.exit("message")`` is exit 1 and the message on stderr; pro's ``deepseek_here``
    returned the string as the exit code (core's rule now: tests/core/_exitcode.py)."""
    from _prohelpers import deepseek_here

    (tmp_path / "bye.py").write_text('import sys\nsys.exit("bye: nothing to do")\n')
    out = deepseek_here("run", "bye.py", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == ["bye: nothing to do"], out


def test_a_stop_signal_before_the_workers_start_ends_the_job_with_75(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to the launcher while it imported torch or checked the config (its first seconds)
    killed it by the signal (exit -15, no line) where docs/distributed.md promises 75: a requeue
    script that tests for 75 then dropped the job. The launch command records it from its start,
    starts no worker, and says so."""
    import torch.distributed.launcher.api as launcher_api
    from click.testing import CliRunner

    from deepseek.cli.main import cli
    from deepseek_pro.launch import cli as launch_cli

    def checks_then_signalled(rest: list[str], **_: object) -> tuple[list[str], float]:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives during the pre-launch checks
        return rest, 120.0

    def no_worker(*_: object, **__: object) -> None:
        raise AssertionError("a worker was started after the stop request")

    monkeypatch.setattr(launch_cli, "validate_train", checks_then_signalled)
    monkeypatch.setattr(launcher_api, "elastic_launch", no_worker)
    def default_death(number: int, frame: object) -> None:  # stands for SIG_DFL, which would end pytest
        raise RuntimeError("the launcher died by the signal")

    before = signal.signal(signal.SIGTERM, default_death)
    try:
        result = CliRunner().invoke(cli, ["launch", "-n", "1", "--", "train", "--max-steps", "1"])
        assert signal.getsignal(signal.SIGTERM) is default_death  # the command's handler is gone with it
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == EXIT_PREEMPTED, (result.output, result.exception)
    assert result.output.strip().splitlines()[-1] == ("stopped: the launcher received SIGTERM before it started the "
                                                      "workers; nothing was written; run the same command again")
