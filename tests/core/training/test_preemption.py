"""Stopping on SIGTERM / SIGUSR1, with real processes and real signals.

``deepseek train`` runs in a subprocess and is signalled from outside mid-run: it exits with
code 75 after a whole checkpoint of the step reached, and the same command with ``--resume``
says where it resumed and continues bit-exactly (dropout on). In-process runs get their signal
from a plugin hook, so the step is known. The run-folder lock a live job holds:
test_run_folder_lock.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _preemption_run import CLI_ARGS, RUN, STEPS

from deepseek.hookspecs import hookimpl
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.preemption import EXIT_PREEMPTED, StopSignals
from deepseek.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def _signal_mid_run(cwd: Path, sig: int, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Start the CLI run, send ``sig`` once two steps are logged; (the finished process,
    seconds from the signal to its exit). Output goes to files: a pipe nobody reads could stall it."""
    with open(cwd / "out.log", "w") as out, open(cwd / "err.log", "w") as err:
        # The default SIGINT disposition in the child: a test session started in the background by a
        # non-interactive shell ignores SIGINT, and Python then installs no KeyboardInterrupt handler.
        proc = subprocess.Popen([sys.executable, "-m", "deepseek", "train", *CLI_ARGS, *extra], cwd=cwd, env=_env(),
                                stdout=out, stderr=err, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = cwd / "run" / "metrics.jsonl"
    try:
        while proc.poll() is None and not (metrics.exists() and len(_losses(cwd / "run")) >= 2):
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, (cwd / "out.log").read_text(),
                                       (cwd / "err.log").read_text())
    return done, time.monotonic() - sent


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory,
             deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> list[tuple[int, float]]:
    """``(step, loss)`` of the uninterrupted CLI run, in this process (tests/core/conftest.py's
    ``deepseek_here``, one intra-op thread as the signalled processes have)."""
    work = tmp_path_factory.mktemp("straight")
    proc = deepseek_here("train", *CLI_ARGS, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _losses(work / "run")


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_signal_stops_after_the_step_and_resume_is_bit_exact(
        name: str, tmp_path: Path, straight: list, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """The signal stops a real process; the resume runs in this process (``deepseek_here``)."""
    proc, _ = _signal_mid_run(tmp_path, getattr(signal, name))
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    step = _losses(tmp_path / "run")[-1][0]
    assert 2 <= step < STEPS
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"stopped: {name} after step {step}; checkpoint run/checkpoints/step-{step}; continue with --resume run"
    assert "Traceback" not in proc.stderr
    root = tmp_path / "run" / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [step]  # whole: its commit record checks out
    assert ckpt.read_trainer_state(root / f"step-{step}")["step"] == step
    assert sorted(p.name for p in root.iterdir()) == ["latest", f"step-{step}"]

    resumed = deepseek_here("train", *CLI_ARGS, "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from run/checkpoints/step-{step} at step {step}" in resumed.stderr
    assert _losses(tmp_path / "run") == straight  # every step once, losses bit-identical


def test_ctrl_c_stops_at_once_and_leaves_only_complete_checkpoints(tmp_path: Path) -> None:
    proc, seconds = _signal_mid_run(tmp_path, signal.SIGINT, "--set", "checkpoint.interval=1")
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert seconds < 30 and "Traceback" not in proc.stderr
    root = tmp_path / "run" / "checkpoints"
    names = sorted(p.name for p in root.iterdir())
    assert all(n == "latest" or n.startswith("step-") and "." not in n for n in names), names
    assert len(ckpt.list_checkpoints(root)) == len(names) - 1  # every step-N folder is complete


class _SignalAt:
    """A plugin sending ``sig`` to this very process when step ``step`` has been logged."""

    def __init__(self, step: int, sig: int = signal.SIGTERM) -> None:
        self.step, self.sig = step, sig

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            os.kill(os.getpid(), self.sig)

    @hookimpl
    def deepseek_train_start(self, trainer: Any) -> None:
        if self.step == 0:
            os.kill(os.getpid(), self.sig)


def _host(plugin: Any) -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(plugin, dist="signal-at")
    return host


def test_in_process_stop_at_a_known_step_and_handlers_restored(config_under: Any, tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    straight = Trainer(config_under(tmp_path / "a", **RUN), run_dir=tmp_path / "a" / "run", quiet=True).fit()

    config = config_under(tmp_path, **RUN)
    stopped = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=_host(_SignalAt(3, signal.SIGUSR1))).fit()
    assert (stopped.stopped_by, stopped.step) == ("SIGUSR1", 3)
    assert stopped.checkpoint == tmp_path / "run" / "checkpoints" / "step-3"
    assert {s: signal.getsignal(s) for s in before} == before  # the trainer's handlers are gone again

    # stopped again during set-up of the resumed run: no step, nothing new to save
    again = Trainer(config, resume=tmp_path / "run", quiet=True, host=_host(_SignalAt(0))).fit()
    assert (again.stopped_by, again.step, again.checkpoint, again.losses) == ("SIGTERM", 3, None, [])

    resumed = Trainer(config, resume=tmp_path / "run", quiet=True).fit()
    assert stopped.losses + resumed.losses == straight.losses


def test_stopped_before_the_first_step_says_to_run_the_command_again(config_under: Any, tmp_path: Path) -> None:
    """A fresh run stopped before its first step holds no checkpoint: --resume cannot continue it,
    and the same command starts it again in the same folder (a requeued job's second start)."""
    from deepseek.training.preemption import stopped_line

    config = config_under(tmp_path, **RUN)
    stopped = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=_host(_SignalAt(0))).fit()
    assert (stopped.stopped_by, stopped.step, stopped.checkpoint) == ("SIGTERM", 0, None)
    line = stopped_line("SIGTERM", 0, None, "run")
    assert line == ("stopped: SIGTERM before the first step; nothing to save; run the same command again "
                    "(without --resume: run holds no checkpoint)")
    again = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()  # the folder held only step 0's evaluation
    assert again.step == RUN["train"]["max_steps"] and again.stopped_by is None


def test_grace_runs_out_exits_with_the_preempted_code(tmp_path: Path) -> None:
    """A stop that takes longer than the grace ends the process anyway, with one line."""
    script = (
        "import os, signal, time\n"
        "from deepseek.training.preemption import StopSignals\n"
        "with StopSignals(0.5):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(60)\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_PREEMPTED
    assert time.monotonic() - started < 30
    assert proc.stderr.strip() == (
        "error: stopping on SIGTERM took longer than train.preempt_grace_s = 0.5 s; exiting without a new "
        "checkpoint (--resume continues from the last complete one)"
    )


def test_repeated_signals_are_one_request() -> None:
    with StopSignals(60) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert stop.received == "SIGUSR1"


def test_a_stop_signal_after_the_last_step_ends_the_run_as_done(tmp_path: Path) -> None:
    """SIGTERM while the finished run writes its plot (after its last step and checkpoint): the run
    is complete, so it ends with exit 0 and its summary (it used to die by the signal, -15, which a
    requeue script takes for a failure)."""
    script = (
        "import os, signal, sys\n"
        "import deepseek.training.trainer as trainer\n"
        "real = trainer.plot_run\n"
        "def plot(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "trainer.plot_run = plot\n"
        "from deepseek.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = [a for a in CLI_ARGS if a != "logging.plot=false"]
    args = [a for i, a in enumerate(args) if not (a == "--set" and i + 1 < len(args) and args[i + 1] == "--set")]
    proc = subprocess.run([sys.executable, "-c", script, "train", *args, "--max-steps", "3"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 steps" in proc.stdout and (tmp_path / "run" / "checkpoints" / "step-3").is_dir()


def test_a_signal_before_the_trainer_takes_the_signals_stops_before_the_first_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM to ``deepseek train`` while it imported torch and read the config (its first
    seconds) killed it by the signal (exit -15, no line), so a requeue script that tests for 75
    dropped the job. The command records it from its start; the trainer takes it over and stops
    before the first step with 75 and its line."""
    from deepseek.cli import train_cmd
    from deepseek.cli.main import main

    built = train_cmd.build_train_config

    def signalled_while_loading(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the config is read
        return built(*args, **kwargs)

    def default_death(number: int, frame: object) -> None:  # stands for SIG_DFL, which would end pytest
        raise RuntimeError("train died by the signal")

    monkeypatch.setattr(train_cmd, "build_train_config", signalled_while_loading)
    monkeypatch.chdir(tmp_path)
    before = signal.signal(signal.SIGTERM, default_death)
    try:
        with pytest.raises(SystemExit) as ended:
            main(["train", *CLI_ARGS])
        assert signal.getsignal(signal.SIGTERM) is default_death  # the command's handler is gone with it
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert ended.value.code == EXIT_PREEMPTED, err
    assert err.strip().splitlines()[-1] == (
        "stopped: SIGTERM before the first step; nothing to save; run the same command again (without --resume: "
        "run holds no checkpoint)")


def test_a_signal_taken_over_keeps_its_grace_from_when_it_came() -> None:
    """``deepseek train``'s early scope records a SIGTERM during the imports and the config; the
    trainer's StopSignals takes it over when it starts. Its grace counted from that takeover, so
    the process could outlive ``train.preempt_grace_s`` after the signal by the whole early
    window and be SIGKILLed by the scheduler instead of exiting with 75: it counts from the signal."""
    from deepseek.training.preemption import SignalScope

    expired: list[float] = []
    with SignalScope(3600.0) as early:
        os.kill(os.getpid(), signal.SIGTERM)
        assert early.received == "SIGTERM" and early.received_at is not None
        early.received_at -= 10.0  # the signal came 10 s ago, before the trainer took the signals
        started = time.monotonic()
        with StopSignals(5.0, on_expire=lambda message: expired.append(time.monotonic() - started)) as stop:
            deadline = time.monotonic() + 5.0
            while not expired and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stop.received == "SIGTERM"
    assert expired and expired[0] < 2.0, expired  # at once: 5 s of grace from 10 s ago are spent


SIGNAL_ON_IMPORT = """
import os, runpy, signal, sys

class SignalOnImport:  # a SIGTERM while the command's modules load, before any command code runs
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["deepseek", *sys.argv[1:]]
runpy.run_module("deepseek", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["click", "deepseek.plugins.host", "torch"])
def test_a_signal_while_the_command_loads_stops_before_the_first_step(tmp_path: Path, module: str) -> None:
    """A SIGTERM while ``deepseek train`` imported click and the plugin host (its first tenth of a
    second, before any command code) ended it by the signal (exit -15, no line): the console entry
    takes the stop signals before it imports them now, and the command takes the signal over."""
    done = subprocess.run([sys.executable, "-c", SIGNAL_ON_IMPORT.format(module=module), "train", *CLI_ARGS],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == EXIT_PREEMPTED, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().splitlines()[-1] == (
        "stopped: SIGTERM before the first step; nothing to save; run the same command again (without --resume: "
        "run holds no checkpoint)")


def test_the_entry_takes_the_signals_only_for_the_commands_that_stop_on_them() -> None:
    from deepseek.cli.main import SIGNALLED_COMMANDS, command_name

    assert SIGNALLED_COMMANDS == ("train", "launch", "run")
    assert command_name(["train", "cfg.toml"]) == "train"
    assert command_name(["--no-plugin-autoload", "run", "train.py", "--steps", "3"]) == "run"
    assert command_name(["--debug", "--plugins", "train", "eval", "--checkpoint", "x"]) == "eval"
    assert command_name(["--plugins=a,b", "--no-plugin-autoload", "launch", "-n", "2"]) == "launch"
    assert command_name(["--version"]) is None and command_name(["--", "train"]) is None
