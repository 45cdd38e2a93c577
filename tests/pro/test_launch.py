"""``deepseek launch`` end to end, with real worker processes (gloo, CPU, 2 ranks).

Faults are injected by a throwaway plugin distribution made in a temp dir (``deepseek-faulty``:
its step-end hook makes rank R exit or hang at step S when ``DEEPSEEK_TEST_FAULT=R:S:exit|hang``)
and a ``sitecustomize`` on ``PYTHONPATH`` that runs first in every Python process: it records each
worker that starts (so a test can assert that none did) and, when asked, hides the plugin from
rank 1 only (a node with a different plugin set). Nothing of this is in production code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEEPSEEK = [sys.executable, "-m", "deepseek"]
TINY = [
    "--set", "model.d_model=64", "--set", "model.n_heads=4", "--set", "model.n_layers=2",
    "--set", "model.max_seq_len=32", "--set", "data.seq_len=32", "--set", "data.batch_size=8",
    "--set", "data.eval_batches=1", "--set", "train.eval_interval=0", "--set", "train.warmup_steps=1",
    "--set", "logging.plot=false", "--set", "checkpoint.interval=0", "--quiet",
]

FAULTY_PLUGIN = '''
import os, time
from deepseek.hookspecs import hookimpl

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    rank, at, what = os.environ.get("DEEPSEEK_TEST_FAULT", "-1:0:none").split(":")
    if int(os.environ["RANK"]) == int(rank) and step == int(at):
        if what == "exit":
            os._exit(17)
        time.sleep(3600)
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


def launch(
    args: list[str], cwd: Path, plugin_dirs: tuple[Path, Path], markers: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    plugins, site = plugin_dirs
    markers.mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(plugins), os.environ.get("PYTHONPATH", "")]),
        "DEEPSEEK_TEST_MARKERS": str(markers),
        "PYTHONWARNINGS": "ignore",
        **env,
    }
    start = time.monotonic()
    proc = subprocess.run([*DEEPSEEK, "launch", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)
    return proc, time.monotonic() - start


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


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
    proc, _ = launch(args, tmp_path, plugin_dirs, tmp_path / "markers")
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


def test_hung_rank_ends_within_timeout(tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--timeout", "8", "--", "train", "--strategy", "pipeline", "--max-steps", "50", *TINY]
    proc, seconds = launch(args, tmp_path, plugin_dirs, tmp_path / "markers", DEEPSEEK_TEST_FAULT="1:2:hang")
    assert proc.returncode == 124, proc.stderr
    last = error_lines(proc.stderr)[-1]
    assert "rank 1 made no progress for" in last and "last heartbeat: step 1" in last, proc.stderr
    assert "the other ranks reached step 2" in last
    # the hung rank's stack, dumped on the watchdog's request, is in the log tail
    assert "deepseek_faulty.py" in proc.stderr
    assert seconds < 600


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed", "pipeline", "hybrid"])
def test_launch_runs_each_strategy(strategy: str, tmp_path: Path, plugin_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--", "train", "--strategy", strategy, "--max-steps", "2", "--run-dir", "run", *TINY]
    proc, _ = launch(args, tmp_path, plugin_dirs, tmp_path / "markers")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)
    assert (tmp_path / "run" / "checkpoints" / "step-2" / "model.safetensors").is_file()
    assert "[rank0]" in proc.stdout  # rank 0's output is shown, prefixed


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
