"""``pipeline``, ``hybrid`` (2 stages x 1 FSDP replica) and ``tp`` killed once each under ``deepseek
launch -n 2`` (rank 1 after step 3 of a 4-step run, resumed from step 2) end where a run never killed
ends: the same losses and the same bytes in every safetensors file of step 4 (the rule:
``test_kill_resume_launch.py``'s docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _kill_launch import ONE_KILL, OPTIONS, check_killed_and_resumed

pytestmark = pytest.mark.schedule_first  # conftest.py: long tests, handed out first


@pytest.mark.parametrize("strategy", list(ONE_KILL))
def test_killed_after_a_checkpoint_and_resumed_equals_a_run_never_killed(strategy: str, tmp_path: Path,
                                                                          injected: Path) -> None:
    args = ["train", "--max-steps", "4", *OPTIONS, *ONE_KILL[strategy]]
    check_killed_and_resumed(args, [("1:step:3", 2)], 4, tmp_path, injected)
