"""``deepseek train`` (one process) SIGKILLed four times in a chain and resumed with ``--resume``
each time ends with the losses of a run never killed and the same bytes in every safetensors file
of its last checkpoint (weights, optimizer state, generators): killed between the two
micro-batches of step 3, before step 4's checkpoint is renamed into place, after that rename but
before ``latest`` names it, and half-way through step 6's checkpoint (its model file written, the
optimizer's not). test_checkpoint_crash.py covers each kill point of a save on its own (losses);
tests/pro/test_kill_resume_launch.py the same chain under ``deepseek launch``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# ``deepseek ARGS`` SIGKILLing itself at argv[1]: "backward:N" before the Nth backward,
# "before:NAME:PART" / "after:NAME:PART" at the os.replace onto a path named NAME holding PART.
KILLED = """
import os, signal, sys
point = sys.argv[1].split(":")
if point[0] == "backward":
    import torch
    real, seen = torch.Tensor.backward, [0]
    def backward(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] == int(point[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)
    torch.Tensor.backward = backward
else:
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        hit = os.path.basename(os.fspath(dst)) == point[1] and point[2] in os.fspath(dst)
        if hit and point[0] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from deepseek.cli.main import main
main(sys.argv[2:])
"""

CONFIG = """
[model]
name = "tiny"
d_model = 32
n_heads = 2
n_layers = 2
max_seq_len = 32
dropout = 0.1
[data]
seq_len = 32
batch_size = 8
eval_batches = 1
[train]
max_steps = 8
warmup_steps = 2
eval_interval = 4
grad_accum = 2
[precision]
dtype = "fp32"
[strategy]
name = "single"
device = "cpu"
[checkpoint]
interval = 2
keep_last = 2
[logging]
plot = false
"""

# backward calls 1-4 are steps 1-2, 5 step 3's first micro-batch
CHAIN = [("backward:6", 2), ("before:step-4:checkpoints", 2), ("after:step-4:checkpoints", 4),
         ("before:optimizer.safetensors:step-6.tmp-", 4)]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _train(cwd: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["-c", KILLED, kill_at] if kill_at else ["-m", "deepseek"]
    return subprocess.run([sys.executable, *prefix, "train", "run.toml", "--run-dir", "run", "--quiet", *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _tensor_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.safetensors"))}


def test_killed_four_times_and_resumed_equals_a_run_never_killed(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The run never killed trains in this process (tests/core/conftest.py's ``deepseek_here``, one
    intra-op thread as the killed processes have): nothing of it is about a process."""
    from deepseek.training import checkpoint as ckpt

    for name in ("straight", "killed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.toml").write_text(CONFIG)
    done = deepseek_here("train", "run.toml", "--run-dir", "run", "--quiet", cwd=tmp_path / "straight")
    assert done.returncode == 0, done.stderr[-3000:]

    killed, resume = tmp_path / "killed", []
    for point, newest in CHAIN:
        done = _train(killed, *resume, kill_at=point)
        assert done.returncode == -signal.SIGKILL, (point, done.stderr[-3000:])
        resume = ["--resume", "run"]
        assert ckpt.read_trainer_state(ckpt.resolve_checkpoint(killed / "run"))["step"] == newest, point
    (half,) = (killed / "run" / "checkpoints").glob("step-6.tmp-*")
    assert "model.safetensors" in {p.name for p in half.iterdir()}
    done = _train(killed, *resume)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from run/checkpoints/step-4 at step 4" in done.stdout + done.stderr

    assert _losses(killed / "run") == _losses(tmp_path / "straight" / "run")  # exact
    assert [s for s, _ in _losses(killed / "run")] == list(range(1, 9))
    last = _tensor_files(killed / "run" / "checkpoints" / "step-8")
    assert last == _tensor_files(tmp_path / "straight" / "run" / "checkpoints" / "step-8")
    assert {"model.safetensors", "optimizer.safetensors", "rng-0.safetensors"} <= set(last)
    assert sorted(p.name for p in (killed / "run" / "checkpoints").iterdir()) == ["latest", "step-6", "step-8"]
