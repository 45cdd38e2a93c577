"""``pipeline``, ``hybrid`` (2 stages x 1 FSDP replica) and ``tp`` killed once each under ``deepseek
launch -n 2`` (rank 1 after step 3 of a 4-step run, resumed from step 2) end where a run never killed
ends: the same losses and the same bytes in every safetensors file of step 4 (the rule:
``test_kill_resume_launch.py``'s docstring)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _kill_launch import (
    DEEPSEEK,
    ONE_KILL,
    OPTIONS,
    env_for,
    launch_killed_at,
    losses,
    tensor_files,
)


@pytest.mark.parametrize("strategy", list(ONE_KILL))
def test_killed_after_a_checkpoint_and_resumed_equals_a_run_never_killed(strategy: str, tmp_path: Path,
                                                                          injected: Path) -> None:
    from deepseek.training import checkpoint as ckpt

    args = ["train", "--max-steps", "4", *OPTIONS, *ONE_KILL[strategy]]
    straight = tmp_path / "straight"
    straight.mkdir()
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args], cwd=straight, env=env_for(straight, injected, ""),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    launch_killed_at(args, killed, injected, "1:step:3")
    assert ckpt.read_trainer_state(ckpt.resolve_checkpoint(killed / "run"))["step"] == 2
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args, "--resume", "run"], cwd=killed,
                          env=env_for(killed, injected, ""), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resumed from run/checkpoints/step-2 at step 2" in done.stdout + done.stderr

    assert losses(killed / "run") == losses(straight / "run")  # exact float equality, steps 1..4
    assert [r[0] for r in losses(killed / "run")] == [1, 2, 3, 4]
    last, same = killed / "run" / "checkpoints" / "step-4", straight / "run" / "checkpoints" / "step-4"
    assert tensor_files(last) == tensor_files(same)  # weights, optimizer state, generators: the same bytes
    assert len(tensor_files(last)) >= 3
    left = sorted(p.name for p in (killed / "run" / "checkpoints").iterdir())
    assert left == sorted(p.name for p in (straight / "run" / "checkpoints").iterdir())  # no leftovers
