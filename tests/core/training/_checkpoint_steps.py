"""What the checkpoint-folder tests share (test_checkpoint_leftovers.py, test_checkpoint_replace.py):
checkpoints committed as a save commits them (a ``trainer.json`` is all each holds), a tiny run
trained through the CLI with checkpoints at steps 2 and 4, and a byte snapshot of a folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.training import checkpoint as ckpt

TINY_TOML = ('[model]\nname = "tiny"\nd_model = 16\nn_heads = 2\nn_layers = 1\nmax_seq_len = 16\n'
             '[data]\nbatch_size = 2\nseq_len = 16\neval_batches = 1\n[train]\neval_interval = 0\nmax_steps = 4\n'
             '[checkpoint]\ninterval = 2\n[strategy]\ndevice = "cpu"\n')
"""A 4-step run of a tiny GPT on the CPU, a checkpoint every 2 steps."""


def commit_step(root: Path, step: int) -> None:
    """Commit a checkpoint of ``step`` under ``root`` as a save does (a ``trainer.json`` is all it holds)."""
    tmp = ckpt.new_temp_dir(root, step)
    (tmp / ckpt.TRAINER_FILE).write_text(json.dumps({"step": step}), encoding="utf-8")
    ckpt.commit_checkpoint(tmp, root / ckpt.step_dir_name(step))


def run_with_steps(folder: Path, *steps: int) -> tuple[Path, Path]:
    """``(run, its checkpoints folder)``: ``folder/run`` with a committed checkpoint of each of ``steps``."""
    run, root = folder / "run", folder / "run" / "checkpoints"
    root.mkdir(parents=True)
    for step in steps:
        commit_step(root, step)
    return run, root


def trained_run(deepseek_here: Callable[..., Any], folder: Path) -> Path:
    """``deepseek train`` of :data:`TINY_TOML` (``folder/c.toml``) into ``folder/r``, in process; its
    checkpoints folder (steps 2 and 4)."""
    (folder / "c.toml").write_text(TINY_TOML)
    proc = deepseek_here("train", "c.toml", "--run-dir", "r", "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "r" / "checkpoints"


def tree(folder: Path, *, but: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, but those named in ``but``."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name not in but}
