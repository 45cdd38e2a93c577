"""What the kill-and-resume launch tests share (``test_kill_resume_launch*.py``): the tiny
run's options, the freeze points (a ``sitecustomize`` and a throwaway plugin made in a temp
dir, nothing of which is in production code), a launch killed at a point, and the files
compared. The tests are split over three files so that ``--dist loadfile`` spreads their
launches over both workers."""


from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _prohelpers import _descendants, assert_no_temp_left

DEEPSEEK = [sys.executable, "-m", "deepseek"]
OPTIONS = [
    "--run-dir", "run", "--quiet",
    "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=2",
    "--set", "model.max_seq_len=16", "--set", "data.seq_len=16", "--set", "data.batch_size=4",
    "--set", "data.eval_batches=1", "--set", "train.eval_interval=4", "--set", "train.warmup_steps=2",
    "--set", "train.grad_accum=2", "--set", "model.dropout=0.1", "--set", "logging.plot=false",
    "--set", "checkpoint.interval=2", "--set", "checkpoint.keep_last=2",
]
TRAIN = ["train", "--max-steps", "8", *OPTIONS]

# DEEPSEEK_TEST_FREEZE = "RANK:before|after:BASENAME:PATH-PART": that rank stops at the os.replace
# onto a path of that base name containing PATH-PART, before or after it; "RANK:step:N": at the
# end of step N (the plugin).
SITECUSTOMIZE = '''
import os, signal
def freeze(where):
    open(os.path.join(os.environ["DEEPSEEK_TEST_MARKERS"], where.replace("/", "_")), "w").close()
    os.kill(os.getpid(), signal.SIGSTOP)
spec = os.environ.get("DEEPSEEK_TEST_FREEZE", "")
if spec and os.environ.get("RANK") == spec.split(":")[0] and spec.split(":")[1] in ("before", "after"):
    rank, when, name, part = spec.split(":")
    real = os.replace
    def replace(src, dst, *args, **kwargs):
        hit = os.path.basename(os.fspath(dst)) == name and part in os.fspath(dst)
        if hit and when == "before":
            freeze(spec)
        real(src, dst, *args, **kwargs)
        if hit:
            freeze(spec)
    os.replace = replace
'''

PLUGIN = '''
import os, signal
from deepseek.hookspecs import hookimpl

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    spec = os.environ.get("DEEPSEEK_TEST_FREEZE", "")
    if spec and os.environ.get("RANK") == spec.split(":")[0] and spec.split(":")[1:] == ["step", str(step)]:
        open(os.path.join(os.environ["DEEPSEEK_TEST_MARKERS"], spec.replace("/", "_")), "w").close()
        os.kill(os.getpid(), signal.SIGSTOP)
'''

# (kill point, the checkpoint the next resume starts from: the newest complete one)
CHAIN = [("1:step:3", 2), ("0:before:step-4:checkpoints", 2), ("0:after:step-4:checkpoints", 4),
         ("1:before:rng-1.safetensors:step-6.tmp-", 4)]
KILLS = {"ddp": CHAIN, "fsdp": [CHAIN[2]], "deepspeed": [CHAIN[3]]}

STRATEGIES = {
    "ddp": ["--strategy", "ddp"],
    "fsdp": ["--strategy", "fsdp"],
    "deepspeed": ["--strategy", "deepspeed", "--set", "strategy.stage=2"],
}


# One kill each: a 4-step run, rank 1 stopped after step 3, resumed from step 2's checkpoint.
ONE_KILL = {
    "pipeline": ["--strategy", "pipeline"],
    "hybrid": ["--strategy", "hybrid"],  # 2 stages x 1 FSDP replica on two processes
    "tp": ["--strategy", "tp"],
}


def env_for(cwd: Path, injected: Path, freeze: str) -> dict[str, str]:
    """The freeze points on ``PYTHONPATH``, markers in ``<cwd>/markers`` and ``TMPDIR`` set to
    ``<cwd>/tmp`` (``_prohelpers.assert_no_temp_left``)."""
    (cwd / "markers").mkdir(exist_ok=True)
    (cwd / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(injected), os.environ.get("PYTHONPATH", "")]),
            "DEEPSEEK_TEST_MARKERS": str(cwd / "markers"), "DEEPSEEK_TEST_FREEZE": freeze,
            "PYTHONWARNINGS": "ignore", "TMPDIR": str(cwd / "tmp")}


def launch_killed_at(args: list[str], cwd: Path, injected: Path, freeze: str) -> str:
    """Launch; when a rank reached ``freeze``, SIGKILL the launcher and everything under it."""
    marker = cwd / "markers" / freeze.replace("/", "_")
    with open(cwd / "launch.err", "w") as err:
        proc = subprocess.Popen([*DEEPSEEK, "launch", "-n", "2", "--", *args], cwd=cwd, env=env_for(cwd, injected, freeze),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 400
        while not marker.exists():
            assert proc.poll() is None, f"exited with {proc.returncode} before {freeze}: {(cwd / 'launch.err').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{freeze} not reached"
            time.sleep(0.02)
    finally:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    return (cwd / "launch.err").read_text()


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def tensor_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.safetensors"))}


def make_injected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for ``PYTHONPATH`` holding the ``sitecustomize`` and the freeze plugin."""
    root = tmp_path_factory.mktemp("freeze")
    info = root / "deepseek_freeze-0.1.dist-info"
    info.mkdir()
    (root / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (root / "deepseek_freeze.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-freeze\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nfreeze = deepseek_freeze\n")
    return root


def check_killed_and_resumed(args: list[str], kills: list[tuple[str, int]], steps: int, tmp_path: Path,
                             injected: Path) -> None:
    """Launch ``deepseek launch -n 2 -- ARGS`` straight to step ``steps`` (the strategy runs under
    the launcher: rank 0's output shown, prefixed, losses in range, nothing left in its temp
    folder), then killed at each of ``kills``' points in turn (each resumed launch killed at the
    next, each leaving its checkpoint the newest complete one) and resumed to the end: the same
    loss at every step, the same bytes in every safetensors file of the last step, no leftovers."""
    from deepseek.training import checkpoint as ckpt

    straight = tmp_path / "straight"
    straight.mkdir()
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args], cwd=straight, env=env_for(straight, injected, ""),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "[rank0]" in done.stdout  # rank 0's output is shown, prefixed
    assert all(0 < loss < 10 for _, loss in losses(straight / "run"))
    assert_no_temp_left(straight)

    killed = tmp_path / "killed"
    killed.mkdir()
    resume: list[str] = []
    for freeze, expected in kills:
        launch_killed_at([*args, *resume], killed, injected, freeze)
        resume = ["--resume", "run"]
        latest = ckpt.resolve_checkpoint(killed / "run")
        assert ckpt.read_trainer_state(latest)["step"] == expected, (freeze, latest)
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args, *resume], cwd=killed,
                          env=env_for(killed, injected, ""), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    start = kills[-1][1]
    assert f"resumed from run/checkpoints/step-{start} at step {start}" in done.stdout + done.stderr

    assert losses(killed / "run") == losses(straight / "run")  # exact float equality, every step
    assert [r[0] for r in losses(killed / "run")] == list(range(1, steps + 1))
    last = killed / "run" / "checkpoints" / f"step-{steps}"
    same = straight / "run" / "checkpoints" / f"step-{steps}"
    assert tensor_files(last) == tensor_files(same)  # weights, optimizer state, generators: the same bytes
    assert len(tensor_files(last)) >= 3
    left = sorted(p.name for p in (killed / "run" / "checkpoints").iterdir())
    assert left == sorted(p.name for p in (straight / "run" / "checkpoints").iterdir())  # no leftovers
