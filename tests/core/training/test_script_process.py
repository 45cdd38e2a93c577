"""``deepseek run SCRIPT`` as a process: the script's ``atexit`` handlers (run at the process's
exit, after the command put ``sys.path`` and ``sys.argv`` back) see them as the script left them,
as under ``python SCRIPT``; a stop signal outside ``deepseek.fit`` ends it with 75 and one line
(with a real signal to a real process; the rest in this process, conftest's ``deepseek_here``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from deepseek.training.preemption import EXIT_PREEMPTED, early_signals

ATEXIT_SCRIPT = """
import atexit, sys

def bye():
    import helper_of_job  # in the script's folder, imported by no one before
    print("at exit:", helper_of_job.WORD, sys.argv[1:], flush=True)

atexit.register(bye)
sys.path.append("added-by-the-script")
atexit.register(lambda: print("still there:", "added-by-the-script" in sys.path, flush=True))
print("script done", flush=True)
"""


def _run_job(tmp_path: Path, script: str) -> list[str]:
    """``deepseek run scripts/job.py --x`` in a process of its own, ``script`` as ``job.py`` beside
    a ``helper_of_job.py`` (``WORD = "found"``) that its exit handlers import: the lines it printed,
    once it ended with 0 and nothing on stderr."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent(script))
    (folder / "helper_of_job.py").write_text('WORD = "found"\n')
    done = subprocess.run([sys.executable, "-m", "deepseek", "--no-plugin-autoload", "run", str(folder / "job.py"), "--x"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


def test_atexit_handlers_of_the_script_import_from_its_folder(tmp_path: Path) -> None:
    """Was: ``ModuleNotFoundError: No module named 'helper_of_job'`` at exit (exit code 0 all the
    same), where ``python job.py`` printed the helper's word: the command took the script's folder
    off ``sys.path`` when the script returned, before Python ran the handlers."""
    assert _run_job(tmp_path, ATEXIT_SCRIPT) == ["script done", "still there: True", "at exit: found ['--x']"]


TAKES_OVER = """
import atexit, logging, sys
atexit.unregister(logging.shutdown)  # registered before the script (logging's import): it shuts logging down itself

def bye():
    import helper_of_job  # in the script's folder, imported by no one before
    logging.shutdown()
    print("at exit:", helper_of_job.WORD, sys.argv[1:], flush=True)

atexit.register(bye)
print("script done", "logging" in sys.modules, flush=True)
"""


def test_a_script_that_replaces_a_handler_keeps_its_view_at_exit(tmp_path: Path) -> None:
    """Was: ``ModuleNotFoundError: No module named 'helper_of_job'`` at exit: the command counted
    the process's ``atexit`` handlers (CPython's private ``atexit._ncallbacks()``), and a script
    that unregistered one registered before it and registered its own left the count as it was, so
    the command took its own pair of handlers off and the script's ran with the caller's
    ``sys.argv`` and ``sys.path``."""
    assert _run_job(tmp_path, TAKES_OVER) == ["script done True", "at exit: found ['--x']"]


EARLY_LIBRARY = """
from atexit import register  # taken when imported, before any script ran

def at_exit(function):
    register(function)
    return function
"""

THROUGH_A_LIBRARY = """
import sys, early_library

@early_library.at_exit
def bye():
    import helper_of_job  # in the script's folder, imported by no one before
    print("at exit:", helper_of_job.WORD, sys.argv[1:], flush=True)

print("script done", flush=True)
"""


def test_a_handler_registered_through_a_reference_taken_before_the_script_keeps_its_view(tmp_path: Path) -> None:
    """Was: ``ModuleNotFoundError: No module named 'helper_of_job'`` at exit: the command saw the
    script's handlers only through the ``atexit.register`` it put in the module while the script ran,
    so one registered through a library's ``from atexit import register`` (imported before the run)
    went unseen, the command took its pair of handlers off and the handler ran with the caller's
    ``sys.argv`` and ``sys.path``. An in-process caller (``main(["run", ...])``) whose process then
    ends, as a notebook's or a test runner's does."""
    folder, library = tmp_path / "scripts", tmp_path / "lib"
    folder.mkdir()
    library.mkdir()
    (library / "early_library.py").write_text(textwrap.dedent(EARLY_LIBRARY))
    (folder / "job.py").write_text(textwrap.dedent(THROUGH_A_LIBRARY))
    (folder / "helper_of_job.py").write_text('WORD = "found"\n')
    caller = (f"import sys; sys.path.insert(0, {str(library)!r}); import early_library\n"
              "from deepseek.cli.main import main\n"
              f"main(['--no-plugin-autoload', 'run', {str(folder / 'job.py')!r}, '--x'])\n")
    done = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == ["script done", "at exit: found ['--x']"], done.stdout


WAITS = """
import multiprocessing, time

def nap(started):
    started.set()
    time.sleep(60)

fork = multiprocessing.get_context("fork")
started = fork.Event()
child = fork.Process(target=nap, args=(started,))
child.start()
started.wait(60)  # in its target: a SIGTERM in the instant after the fork (CPython clears pending signals there) is lost
child.terminate()  # SIGTERM to a process the script forked: it ends by it, as under python SCRIPT
child.join()
try:
    print("ready", child.exitcode, flush=True)
    time.sleep(60)
    print("not stopped", flush=True)
finally:
    print("its finally ran", flush=True)
"""

OUTSIDE = "stopped: SIGTERM while the script ran outside deepseek.fit; nothing to save; run the same command again"


def test_sigterm_outside_fit_ends_deepseek_run_with_75_and_one_line(tmp_path: Path) -> None:
    """Was: SIGTERM to ``deepseek run`` while its script was outside ``deepseek.fit`` (loading
    data, before the first fit) killed it by the signal (exit -15, no line), so a requeue script
    waiting for 75 dropped the job. Now the script unwinds as on Ctrl-C (its ``finally`` runs) and
    the command ends with 75 and one line; a process the script forked still ends by a SIGTERM
    (``Process.terminate()``; it printed the ``StopRequested`` traceback and exited 1)."""
    (tmp_path / "waits.py").write_text(textwrap.dedent(WAITS))
    proc = subprocess.Popen([sys.executable, "-m", "deepseek", "--no-plugin-autoload", "run", "waits.py"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stdout.readline() == "ready -15\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PREEMPTED == 75, (proc.returncode, err)
    assert out == "its finally ran\n" and err.splitlines() == [OUTSIDE], (out, err)


FIT_JOB = """
import os, signal
import torch
from torch import nn
import deepseek
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

class TermAtStep2:
    @deepseek.hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 2)

    def forward(self, x, y):
        return nn.functional.cross_entropy(self.body(x), y)

host = PluginHost(PluginSettings(autoload=False))
host.register_plugin(TermAtStep2(), dist="term-at-step-2")
x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
config = {"train": {"max_steps": 4, "warmup_steps": 0}, "data": {"eval_batches": 0},
          "logging": {"progress": False, "plot": False}}
result = deepseek.fit(Net, data, names=("x", "y"), batch_size=8, config=config, run_dir="run", quiet=True, host=host)
print("fit returned:", result.stopped_by, result.step, result.checkpoint.name, flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)  # outside fit
    print("not stopped", flush=True)
finally:
    print("its finally ran", flush=True)
"""


def test_inside_fit_the_run_stops_with_a_checkpoint_outside_the_script_ends(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """In this process (conftest's ``deepseek_here``): a SIGTERM inside the script's ``fit`` stops
    the run after its step with a checkpoint and ``fit`` returns (the trainer holds the signals for
    its span); the next one, outside ``fit``, ends the script with 75 and one line; the handlers
    are the caller's again after."""
    (tmp_path / "job.py").write_text(textwrap.dedent(FIT_JOB))

    def death(number: int, frame: object) -> None:  # stands for SIG_DFL, which would end pytest
        raise RuntimeError("died by the signal")

    before = signal.signal(signal.SIGTERM, death)
    try:
        done = deepseek_here("run", "job.py", cwd=tmp_path)
        assert signal.getsignal(signal.SIGTERM) is death
    finally:
        signal.signal(signal.SIGTERM, before)
    assert done.returncode == EXIT_PREEMPTED, done
    assert done.stdout.splitlines() == ["fit returned: SIGTERM 2 step-2", "its finally ran"], done
    assert done.stderr.splitlines()[-1] == OUTSIDE, done.stderr
    assert (tmp_path / "run" / "checkpoints" / "step-2").is_dir()


def test_a_signal_before_the_command_starts_no_script(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """A SIGTERM the console entry recorded (its early scope, while click and the plugins load) is
    taken over by the command: the script does not start, 75 and one line."""
    (tmp_path / "job.py").write_text('print("the script ran")\n')
    with early_signals() as early:
        os.kill(os.getpid(), signal.SIGTERM)
        assert early.received == "SIGTERM"
        done = deepseek_here("run", "job.py", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (EXIT_PREEMPTED, ""), done
    assert done.stderr.splitlines() == [
        "stopped: SIGTERM before the script started; nothing to save; run the same command again"], done
