"""``fsdp`` and ``deepspeed`` killed once each under ``deepseek launch -n 2`` (the kill points and the
rule: ``test_kill_resume_launch.py``'s docstring)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _kill_launch import (
    DEEPSEEK,
    KILLS,
    STRATEGIES,
    TRAIN,
    env_for,
    launch_killed_at,
    losses,
    make_injected,
    tensor_files,
)


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_injected(tmp_path_factory)


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_killed_and_resumed_equals_a_run_never_killed(strategy: str, tmp_path: Path, injected: Path) -> None:
    from deepseek.training import checkpoint as ckpt

    args = [*TRAIN, *STRATEGIES[strategy]]
    straight = tmp_path / "straight"
    straight.mkdir()
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args], cwd=straight, env=env_for(straight, injected, ""),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    resume: list[str] = []
    for freeze, expected in KILLS[strategy]:
        launch_killed_at([*args, *resume], killed, injected, freeze)
        resume = ["--resume", "run"]
        latest = ckpt.resolve_checkpoint(killed / "run")
        assert ckpt.read_trainer_state(latest)["step"] == expected, (freeze, latest)
    done = subprocess.run([*DEEPSEEK, "launch", "-n", "2", "--", *args, *resume], cwd=killed,
                          env=env_for(killed, injected, ""), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resumed from run/checkpoints/step-4 at step 4" in done.stdout + done.stderr

    assert losses(killed / "run") == losses(straight / "run")  # exact float equality, steps 1..8
    assert [r[0] for r in losses(killed / "run")] == list(range(1, 9))
    last, same = killed / "run" / "checkpoints" / "step-8", straight / "run" / "checkpoints" / "step-8"
    assert tensor_files(last) == tensor_files(same)  # weights, optimizer state, generators: the same bytes
    assert len(tensor_files(last)) >= 3
    left = sorted(p.name for p in (killed / "run" / "checkpoints").iterdir())
    assert left == sorted(p.name for p in (straight / "run" / "checkpoints").iterdir())  # no leftovers
