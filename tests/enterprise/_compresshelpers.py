"""Shared by the compression tests: a tiny config trained in this process, the CLI in a subprocess,
deepseek-core alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _inprocess import deepseek_run

CONFIG = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32, "d_ff": 64},
    "data": {"seq_len": 32, "batch_size": 8, "eval_batches": 2},
    "train": {"max_steps": 30, "warmup_steps": 3, "eval_interval": 0, "lr": 3e-3, "min_lr": 1e-4},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0},
    "logging": {"plot": False, "progress": False},
}

# deepseek-core alone: the editions' plugins disabled and their modules made unimportable.
CORE_ONLY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("deepseek_pro", "deepseek_enterprise", "deepspeed", "timm", "torchaudio", "torchao"):
            raise ImportError(f"{name} is not importable here")
sys.meta_path.insert(0, Block())
from deepseek.cli.main import main
main(sys.argv[1:])
"""
CORE_ONLY_ENV = {"DEEPSEEK_DISABLE_PLUGINS": "deepseek-pro,deepseek-enterprise"}


def deepseek_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def core_only_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``deepseek ARGS`` with deepseek-core alone importable."""
    return subprocess.run([sys.executable, "-c", CORE_ONLY, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **CORE_ONLY_ENV}, timeout=300)


def train_tiny(work: Path, config: dict | None = None) -> Path:
    """Train the tiny config (30 steps, CPU) into ``work/run`` with ``deepseek train`` run in this
    process (no process start: the tests that use it read the run, they do not test a process);
    returns ``work``."""
    import tomli_w

    (work / "c.toml").write_text(tomli_w.dumps(config or CONFIG))
    out = deepseek_run("train", "c.toml", "--run-dir", "run", "--quiet", cwd=work)
    assert out.returncode == 0, out.stderr
    return work
