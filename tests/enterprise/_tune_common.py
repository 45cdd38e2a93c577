"""What the ``deepseek tune`` and ``deepseek compare`` tests share: a tiny GPT config, a search
space, and running the CLI in a subprocess or in the test's process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _inprocess import deepseek_run

DEEPSEEK = [sys.executable, "-m", "deepseek"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

TINY = """
[model]
name = "tiny"
d_model = 32
n_heads = 2
n_layers = 1
max_seq_len = 32
[data]
seq_len = 32
batch_size = 8
eval_batches = {eval_batches}
[train]
max_steps = {steps}
lr = {lr}
min_lr = 1e-6
warmup_steps = 5
eval_interval = {eval_interval}
[precision]
dtype = "fp32"
[strategy]
name = "single"
device = "cpu"
[checkpoint]
interval = 0
[logging]
plot = false
"""


def tiny_config(steps: int, *, lr: float = 3e-3, eval_batches: int = 2, eval_interval: int = 10) -> str:
    """A tiny GPT trained ``steps`` steps on the CPU in fp32, no checkpoints but the last, no plot."""
    return TINY.format(steps=steps, lr=lr, eval_batches=eval_batches, eval_interval=eval_interval)


SPACE = """
[space]
"train.lr" = { type = "float", low = 1e-5, high = 2e-2, log = true }
"train.warmup_steps" = { type = "int", low = 0, high = 10, step = 5 }
[tuner]
poll_s = 0.2
"""


def deepseek(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEEPSEEK, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def tune_here(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``deepseek ARGS`` in this process (no start-up of its own), for a tuner whose process is not
    what a test checks; the trials it starts get ``OMP_NUM_THREADS=1`` as under :func:`deepseek`."""
    return deepseek_run(*args, cwd=cwd, env={"OMP_NUM_THREADS": "1"})


def write(folder: Path, steps: int = 30, space: str = SPACE) -> None:
    (folder / "base.toml").write_text(tiny_config(steps))
    (folder / "space.toml").write_text(space)


def trials(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "trials.json").read_text())["trials"]
