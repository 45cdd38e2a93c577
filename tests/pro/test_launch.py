"""``deepseek launch`` end to end, with real worker processes (gloo, CPU, 2 ranks).

Faults are injected by a throwaway plugin distribution made in a temp dir (``deepseek-faulty``:
its step-end hook makes rank R exit or hang at step S when ``DEEPSEEK_TEST_FAULT=R:S:exit|hang``;
``R:end:linger`` makes rank R hang in an exit handler after its training ended)
and a ``sitecustomize`` on ``PYTHONPATH`` that runs first in every Python process: it records each
worker that starts (so a test can assert that none did) and, when asked, hides the plugin from
rank 1 only (a node with a different plugin set). Nothing of this is in production code.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _prohelpers import assert_no_temp_left, deepseek_here

DEEPSEEK = [sys.executable, "-m", "deepseek"]
TINY = [
    "--set", "model.d_model=64", "--set", "model.n_heads=4", "--set", "model.n_layers=2",
    "--set", "model.max_seq_len=32", "--set", "data.seq_len=32", "--set", "data.batch_size=8",
    "--set", "data.eval_batches=1", "--set", "train.eval_interval=0", "--set", "train.warmup_steps=1",
    "--set", "logging.plot=false", "--set", "checkpoint.interval=0", "--quiet",
]

FAULTY_PLUGIN = '''
import atexit, os, sys, time
from deepseek.hookspecs import hookimpl

def _fault():
    rank, at, what = os.environ.get("DEEPSEEK_TEST_FAULT", "-1:0:none").split(":")
    return (at, what) if int(os.environ["RANK"]) == int(rank) else (None, None)

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    at, what = _fault()
    if at == str(step):
        if what == "exit":
            print(f"deepseek_faulty: exit 17 at step {step}", file=sys.stderr, flush=True)  # its log's tail
            os._exit(17)
        time.sleep(3600)

def _linger():
    time.sleep(3600)

@hookimpl
def deepseek_train_end(trainer, metrics):
    if _fault() == ("end", "linger"):  # stuck in an exit handler, after the run is complete
        atexit.register(_linger)
'''

SITECUSTOMIZE = '''
import os, sys
if "RANK" in os.environ and os.environ.get("DEEPSEEK_TEST_MARKERS"):
    path = os.path.join(os.environ["DEEPSEEK_TEST_MARKERS"], f"worker-{os.environ['RANK']}-{os.getpid()}")
    open(path, "w").close()
if os.environ.get("RANK") == "1" and os.environ.get("DEEPSEEK_TEST_HIDE_ON_RANK1"):
    sys.path[:] = [p for p in sys.path if p != os.environ["DEEPSEEK_TEST_HIDE_ON_RANK1"]]
'''


@pytest.fixture(scope="module")
def plugin_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder holding the deepseek-faulty distribution, folder holding sitecustomize.py)."""
    root = tmp_path_factory.mktemp("faulty")
    plugins, site = root / "plugins", root / "site"
    info = plugins / "deepseek_faulty-0.1.dist-info"
    info.mkdir(parents=True)
    site.mkdir()
    (plugins / "deepseek_faulty.py").write_text(FAULTY_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-faulty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nfaulty = deepseek_faulty\n")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return plugins, site


def launch_env(cwd: Path, plugin_dirs: tuple[Path, Path], markers: Path, **env: str) -> dict[str, str]:
    """The environment of a test launch: the fault plugin, worker markers, and ``TMPDIR`` set to
    ``<cwd>/tmp`` (see :func:`assert_no_temp_left`)."""
    plugins, site = plugin_dirs
    markers.mkdir(exist_ok=True)
    (cwd / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(plugins), os.environ.get("PYTHONPATH", "")]),
        "DEEPSEEK_TEST_MARKERS": str(markers),
        "PYTHONWARNINGS": "ignore",
        "TMPDIR": str(cwd / "tmp"),
        **env,
    }


def launch(
    args: list[str], cwd: Path, plugin_dirs: tuple[Path, Path], markers: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    full_env = launch_env(cwd, plugin_dirs, markers, **env)
    start = time.monotonic()
    with subprocess.Popen([*DEEPSEEK, "launch", *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            pytest.fail(hung_report(proc, cwd))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - start


def hung_report(proc: subprocess.Popen[str], cwd: Path) -> str:
    """A launch that outlived the test's limit: where it waits. SIGUSR2 makes the launcher dump its
    threads' stacks to its stderr and each worker its own to its log; then all are killed."""
    workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    for pid in [proc.pid, *workers]:
        os.kill(pid, signal.SIGUSR2)
    time.sleep(3)
    proc.kill()
    out, err = proc.communicate()
    logs = sorted((cwd / "tmp").glob("deepseek-job-*/logs/*/attempt_0/*/stderr.log"))
    tails = "".join(f"\n--- {log}:\n" + "\n".join(log.read_text().splitlines()[-60:]) for log in logs)
    return f"the launch outlived 600 s (workers {workers});\nstdout:\n{out[-3000:]}\nstderr:\n{err[-8000:]}{tails}"


def error_lines(stderr: str) -> list[str]:
    """The error lines, the launcher's or those of the rank whose output it shows ("[rank0] error:
    ...": bad input all ranks refused is said once, by it)."""
    lines = [re.sub(r"^\[rank\d+\] ", "", line) for line in stderr.splitlines()]
    return [line for line in lines if line.startswith("error:")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "2", "--", "train", "--strategy", "fsdp", "--set", 'strategy.compression="powersgd"'],
         ["strategy.compression", "'powersgd'", "'fsdp'", "use ddp"]),
        (["-n", "2", "--", "train", "--strategy", "pipeline", "--set", 'strategy.compression="powersgd"'],
         ["strategy.compression", "'pipeline'", "compresses no gradients"]),
        (["-n", "2", "--", "train", "--strategy", "single"], ["'single' trains in one process", "launch -n 1"]),
        (["-n", "3", "--", "train", "--strategy", "pipeline", "--set", "model.n_layers=2"],
         ["2 blocks for 3 stages"]),
        (["-n", "2", "--", "train", "--strategy", "hybrid", "--set", "strategy.pp_size=3"],
         ["strategy.pp_size", "do not divide 2 processes"]),
        (["-n", "2", "--", "train", "--strategy", "ddp", "--set", "train.lr=-1"], ["train.lr"]),
    ],
    ids=["fsdp-powersgd", "pipeline-powersgd", "single-on-2", "pipeline-too-few-layers", "hybrid-pp-size", "bad-value"],
)
def test_impossible_combination_fails_before_any_process(
    args: list[str], expected: list[str], tmp_path: Path, plugin_dirs: tuple[Path, Path]
) -> None:
    # The launcher in this process (its workers, had it started any, would be processes with the
    # marker-writing sitecustomize on their PYTHONPATH): the verdict is what is tested.
    proc = deepseek_here("launch", *args, cwd=tmp_path, env=launch_env(tmp_path, plugin_dirs, tmp_path / "markers"))
    assert proc.returncode == 2, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    for part in expected:
        assert part in errors[0]
    assert "Traceback" not in proc.stderr
    assert list((tmp_path / "markers").iterdir()) == []  # no worker process ever started


def test_mismatched_plugin_set_fails_clearly(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--", "train", "--strategy", "ddp", "--max-steps", "2", *TINY]
    proc, _ = launch(args, tmp_path, plugin_dirs, tmp_path / "markers",
                     DEEPSEEK_TEST_HIDE_ON_RANK1=str(plugin_dirs[0]))
    assert proc.returncode == 2, proc.stderr
    last = error_lines(proc.stderr)[-1]
    assert "cluster mismatch: rank 1 has deepseek-faulty not installed but rank 0 has deepseek-faulty 0.1" in last
    assert len(list((tmp_path / "markers").iterdir())) == 2  # both workers started, then stopped


def test_killed_rank_ends_the_job(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--timeout", "300", "--", "train", "--strategy", "ddp", "--max-steps", "50", *TINY]
    proc, seconds = launch(args, tmp_path, plugin_dirs, tmp_path / "markers", DEEPSEEK_TEST_FAULT="1:2:exit")
    assert proc.returncode == 1, proc.stderr
    last = error_lines(proc.stderr)[-1]
    assert last.startswith("error: rank 1 (pid ") and "exited with code 17" in last, proc.stderr
    assert "the other ranks were stopped" in last
    assert seconds < 300  # found by the agent at once, not by the 300 s watchdog
    assert_no_temp_left(tmp_path)  # also after a failure


def test_hung_rank_ends_within_timeout(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--timeout", "8", "--", "train", "--strategy", "pipeline", "--max-steps", "50", *TINY]
    proc, seconds = launch(args, tmp_path, plugin_dirs, tmp_path / "markers", DEEPSEEK_TEST_FAULT="1:2:hang")
    assert proc.returncode == 124, proc.stderr
    last = error_lines(proc.stderr)[-1]
    assert "rank 1 made no progress for" in last and "last heartbeat: step 1" in last, proc.stderr
    assert "the other ranks reached step 2" in last
    # the hung rank's stack, dumped on the watchdog's request, is in the log tail
    assert "deepseek_faulty.py" in proc.stderr
    assert "last lines of its log (removed with the launcher's temp folder; keep logs with --log-dir):" in proc.stderr
    assert seconds < 600
    assert_no_temp_left(tmp_path)


def test_a_rank_stuck_on_its_way_out_ends_the_job_after_timeout(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    """Rank 1 hangs in an exit handler after the run is complete: the launcher waited for it for
    ever; now the watchdog stops it --timeout seconds after its end, with its stack."""
    args = ["-n", "2", "--timeout", "8", "--", "train", "--strategy", "ddp", "--max-steps", "2", "--run-dir", "run",
            *TINY]
    proc, seconds = launch(args, tmp_path, plugin_dirs, tmp_path / "markers", DEEPSEEK_TEST_FAULT="1:end:linger")
    assert proc.returncode == 124, proc.stderr
    last = error_lines(proc.stderr)[-1]
    assert "rank 1 ended training at step 2 but was still running" in last, proc.stderr
    assert "_linger" in proc.stderr and "deepseek_faulty.py" in proc.stderr  # where it waited
    assert step_records(tmp_path / "run")[-1]["step"] == 2  # the run itself is complete
    assert seconds < 600
    assert_no_temp_left(tmp_path)


# That each strategy runs under the launcher (rank 0's output shown, prefixed; its losses and last
# checkpoint written; nothing left in the temp folder) is checked on the uninterrupted launch of
# every strategy in tests/pro/test_kill_resume_launch*.py (_kill_launch.check_killed_and_resumed).


def test_two_nodes_on_one_machine(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    """The multi-node path (static rendezvous at node 0's endpoint): two launchers, one each."""
    from _prohelpers import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    train = ["train", "--strategy", "ddp", "--max-steps", "2", "--run-dir", "run", *TINY]
    plugins, site = plugin_dirs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(plugins)]), "PYTHONWARNINGS": "ignore"}
    node = [*DEEPSEEK, "launch", "-n", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint, "--node-rank"]
    other = subprocess.Popen([*node, "1", "--", *train], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        first = subprocess.run([*node, "0", "--", *train], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=600)
        _, other_err = other.communicate(timeout=120)
    finally:
        other.kill()
    assert first.returncode == 0 and other.returncode == 0, first.stderr[-3000:] + other_err[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-2" / "trainer.json").read_text())["world_size"] == 2


# ----------------------------------------------------------------------------- stop requests, lock


def start_launch(args: list[str], cwd: Path, plugin_dirs: tuple[Path, Path], markers: Path,
                 **env: str) -> subprocess.Popen[str]:
    """The launcher in the background, its output in ``<cwd>/<markers name>.out|.err`` (a pipe
    nobody reads could fill up and stall it); :func:`stderr_of` reads it."""
    with open(cwd / f"{markers.name}.out", "w") as out, open(cwd / f"{markers.name}.err", "w") as err:
        return subprocess.Popen([*DEEPSEEK, "launch", *args], cwd=cwd, env=launch_env(cwd, plugin_dirs, markers, **env),
                                stdout=out, stderr=err, text=True)


def stderr_of(cwd: Path, markers: Path) -> str:
    """What a :func:`start_launch` process wrote to stderr so far."""
    return (cwd / f"{markers.name}.err").read_text()


def step_records(run: Path) -> list[dict]:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return [r for r in map(json.loads, lines) if "loss" in r]


def wait_for(check, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def worker_pids(markers: Path) -> list[int]:
    return sorted(int(p.name.rsplit("-", 1)[1]) for p in markers.iterdir())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not reaped it yet


STOPPABLE = ["train", "--strategy", "ddp", "--max-steps", "30", "--run-dir", "run", *TINY,
             "--set", "model.dropout=0.1", "--set", "checkpoint.interval=0"]


def test_sigterm_to_the_launcher_stops_every_rank_after_one_step(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    """The launcher forwards SIGTERM; the ranks agree on the step, save it whole, exit with 75;
    the same command with --resume continues bit-exactly."""
    proc = start_launch(["-n", "2", "--", *STOPPABLE], tmp_path, plugin_dirs, tmp_path / "markers")
    try:
        wait_for(lambda: len(step_records(tmp_path / "run")) >= 2, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
        err = stderr_of(tmp_path, tmp_path / "markers")
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-4000:]
    step = step_records(tmp_path / "run")[-1]["step"]
    # rank 0's line ends the output, once: the launcher does not repeat it (its console shows rank 0's)
    line = f"stopped: SIGTERM after step {step}; checkpoint run/checkpoints/step-{step}; continue with --resume run"
    assert err.strip().splitlines()[-1] == f"[rank0] {line}", err[-4000:]
    assert sum("stopped:" in shown for shown in err.splitlines()) == 1, err[-4000:]
    assert "error:" not in err and "Traceback" not in err
    saved = tmp_path / "run" / "checkpoints" / f"step-{step}"
    from deepseek.training import checkpoint as ckpt

    assert [s for s, _ in ckpt.list_checkpoints(saved.parent)] == [step]  # whole
    assert sorted(p.name for p in saved.glob("rng-*")) == ["rng-0.safetensors", "rng-1.safetensors"]  # both ranks
    state = ckpt.read_trainer_state(saved)
    assert (state["step"], state["world_size"]) == (step, 2)
    assert_no_temp_left(tmp_path)

    resumed, _ = launch(["-n", "2", "--", *STOPPABLE, "--resume", "run"], tmp_path, plugin_dirs, tmp_path / "markers")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resumed from run/checkpoints/step-{step} at step {step}" in resumed.stdout + resumed.stderr
    straight, _ = launch(["-n", "2", "--", *STOPPABLE, "--run-dir", "straight"], tmp_path, plugin_dirs,
                         tmp_path / "markers")
    assert straight.returncode == 0, straight.stderr[-4000:]
    got = [(r["step"], r["loss"]) for r in step_records(tmp_path / "run")]
    assert got == [(r["step"], r["loss"]) for r in step_records(tmp_path / "straight")]  # bit-identical
    assert_no_temp_left(tmp_path)


def test_sigkill_of_the_launcher_kills_its_workers_and_frees_the_run_folder(
    tmp_path: Path, plugin_dirs: tuple[Path, Path]
) -> None:
    """While the first job lives, a second job on its run folder is refused (exit 2, one line
    naming the folder and the live process), and SIGUSR2 makes its launcher dump its stacks. SIGKILL of the first launcher takes its workers
    with it; then the second job is accepted, and it also removes the first launcher's temp folder.
    The first job's rank 0 hangs after step 3 (its step 2 checkpoint written), so that the live
    job waits instead of training on both cores while the second launch starts beside it."""
    first_args = ["-n", "2", "--", *STOPPABLE, "--max-steps", "100000", "--set", "checkpoint.interval=2"]
    first = start_launch(first_args, tmp_path, plugin_dirs, tmp_path / "first", DEEPSEEK_TEST_FAULT="0:3:hang")
    try:
        wait_for(lambda: (tmp_path / "run" / "checkpoints" / "latest").exists(), first)
        workers = worker_pids(tmp_path / "first")
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        holder = json.loads((tmp_path / "run" / ".lock").read_text())["pid"]
        assert holder in workers  # rank 0 holds the lock

        second = ["-n", "2", "--", *STOPPABLE, "--resume", "run", "--max-steps", "100000"]
        refused, _ = launch(second, tmp_path, plugin_dirs, tmp_path / "second")
        assert refused.returncode == 2, refused.stderr[-4000:]
        last = error_lines(refused.stderr)[-1]
        assert f"run folder {tmp_path / 'run'} is in use by another live job (pid {holder} on host" in last, last
        assert "last lines of" not in refused.stderr  # a usage error is its one line

        os.kill(first.pid, signal.SIGUSR2)  # the launcher dumps its threads' stacks to its stderr, lives on
        deadline = time.monotonic() + 30
        while "deepseek_pro/launch/runner.py" not in stderr_of(tmp_path, tmp_path / "first"):
            assert time.monotonic() < deadline and first.poll() is None, stderr_of(tmp_path, tmp_path / "first")
            time.sleep(0.1)
        first.kill()  # SIGKILL: the launcher cannot clean up or stop anyone
        first.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers)
    finally:
        first.kill()
    assert [p.name for p in (tmp_path / "tmp").glob("deepseek-job-*")] != []  # abandoned

    from deepseek.training import checkpoint as ckpt

    step = ckpt.read_trainer_state(ckpt.resolve_checkpoint(tmp_path / "run"))["step"]
    accepted, _ = launch(["-n", "2", "--", *STOPPABLE, "--resume", "run", "--max-steps", str(step + 1)],
                         tmp_path, plugin_dirs, tmp_path / "third")
    assert accepted.returncode == 0, accepted.stderr[-4000:]
    assert step_records(tmp_path / "run")[-1]["step"] == step + 1
    assert_no_temp_left(tmp_path)


def test_the_launchers_plugin_options_reach_its_workers(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    """``deepseek --disable-plugins X launch ...``: the launcher checked the job without X while its
    workers loaded X again (they start from the environment, not the launcher's options); now
    the launcher hands its plugin settings to them as DEEPSEEK_* variables."""
    env = launch_env(tmp_path, plugin_dirs, tmp_path / "markers")
    proc = subprocess.run([*DEEPSEEK, "--disable-plugins", "faulty", "launch", "-n", "2", "--", "plugins", "list"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in (proc.stdout + proc.stderr).splitlines() if "deepseek-faulty" in line]
    assert rows and all("disabled" in row for row in rows), rows


def test_a_log_dir_with_a_line_break_and_an_escape_is_named_escaped(tmp_path: Path,
                                                                    plugin_dirs: tuple[Path, Path]) -> None:
    """'last lines of LOG:' printed the --log-dir path raw: a line break split the line, an ESC
    sequence reached the terminal. (A rank that exits: its log is named as a hung rank's is, without
    the watchdog's wait.)"""
    logs = "l\nx\x1b[2J"
    args = ["-n", "2", "--log-dir", logs, "--", "train", "--strategy", "ddp", "--max-steps", "50", *TINY]
    proc, _ = launch(args, tmp_path, plugin_dirs, tmp_path / "markers", DEEPSEEK_TEST_FAULT="1:2:exit")
    assert proc.returncode == 1, proc.stderr
    heading = [line for line in proc.stderr.splitlines() if line.startswith("last lines of ")]
    assert len(heading) == 1 and re.fullmatch(r"last lines of \$'l\\nx\\x1b\[2J/\S+/1/stderr\.log':", heading[0]), \
        proc.stderr
    assert "\x1b[2J" not in proc.stderr
