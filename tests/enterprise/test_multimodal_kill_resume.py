"""A tri-modal run SIGKILLed from outside the trainer's control resumes to the weights of a run never
interrupted, bit for bit, through the public command (``deepseek train``, then ``--resume``): modality
dropout, the digits' random corruptions, gradient accumulation, a warm-up schedule and evaluations
all draw from state the checkpoint must carry. The first kill comes between the two micro-batches
of step 4 (after step 2's checkpoint), the second right after step 4's checkpoint was renamed into
place, before ``checkpoints/latest`` was replaced, the third half-way through step 6's checkpoint
(resumed from step 4 again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _inprocess import deepseek_here
from safetensors.torch import load_file

CONFIG = """
[model]
name = "multimodal.classifier"
modalities = ["vision", "audio", "text"]
fusion = "cross_attention"
aux_loss_weight = 0.5
modality_dropout = 0.3
[model.vision]
img_size = 8
patch_size = 2
window_size = 2
embed_dim = 16
depths = [1, 1]
num_heads = [2, 2]
[model.audio]
input = "features"
d_model = 32
n_layers = 1
[model.fusion_options]
d_model = 32
layers = 1
heads = 2
[data]
name = "multimodal.digits"
batch_size = 16
eval_batches = 2
eval_size = 32
[train]
max_steps = 6
warmup_steps = 3
eval_interval = 3
grad_accum = 2
[checkpoint]
interval = 2
keep_last = 1
[precision]
dtype = "fp32"
[logging]
plot = false
"""

# ``deepseek train ARGS`` in a process that SIGKILLs itself at a known point: before the Nth
# backward (argv[1] = "backward:N"), right before a rename onto a file named NAME inside a folder
# whose name holds PART ("before:NAME:PART"), or right after a rename onto a folder named argv[1] ("step-4").
KILLED = """
import os, signal, sys, torch
point = sys.argv[1]
if point.startswith("backward:"):
    real, seen = torch.Tensor.backward, [0]
    def backward(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] == int(point.split(":")[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)
    torch.Tensor.backward = backward
elif point.startswith("before:"):
    real_replace, (_, name, part) = os.replace, point.split(":")
    def replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == name and part in os.path.basename(os.path.dirname(os.fspath(dst))):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
    os.replace = replace
else:
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.path.basename(os.fspath(dst)) == point:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from deepseek.cli.main import main
main(sys.argv[2:])
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore"}
TIMING = {"samples_per_s", "step_time"}


def _killed(cwd: Path, kill_at: str, *args: str) -> None:
    """``deepseek train ARGS`` in a process killed at ``kill_at`` (the runs that end run in-process)."""
    done = subprocess.run([sys.executable, "-c", KILLED, kill_at, "train", *args, "--quiet"], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def _records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_sigkilled_mid_accumulation_and_after_a_commit_resumes_bit_exact(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mm.toml").write_text(CONFIG)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "mm.toml", "--run-dir", "straight", "--quiet")
    assert code == 0, err[-3000:]

    # step 4's second micro-batch: backward calls 1-6 were steps 1-3, 7 its first micro-batch
    _killed(tmp_path, "backward:8", "mm.toml", "--run-dir", "cut")
    root = tmp_path / "cut" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2"]
    _killed(tmp_path, "step-4", "--resume", "cut")
    assert (root / "latest").read_text() == "step-2\n"  # the kill came before the pointer's update
    # mid-way through step 6's checkpoint: its model file in the temporary folder, the optimizer's not yet
    _killed(tmp_path, "before:optimizer.safetensors:step-6.tmp-", "--resume", "cut")
    (half,) = root.glob("step-6.tmp-*")
    assert sorted(p.name for p in half.iterdir() if not p.name.startswith(".")) == ["model.safetensors"]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "--resume", "cut", "--quiet")
    assert code == 0, err[-3000:]
    assert "checkpoints/step-4 at step 4" in err

    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-6"]
    assert (root / "latest").read_text() == "step-6\n"
    for name in ("model.safetensors", "optimizer.safetensors"):
        want = load_file(tmp_path / "straight" / "checkpoints" / "step-6" / name)
        got = load_file(root / "step-6" / name)
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), name
    assert _records(tmp_path / "cut") == _records(tmp_path / "straight")  # every step and evaluation
    for name in ("confusion.json", "splits.json"):
        assert json.loads((tmp_path / "cut" / name).read_text()) == json.loads((tmp_path / "straight" / name).read_text())
