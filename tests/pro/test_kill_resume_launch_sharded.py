"""``fsdp`` and ``deepspeed`` killed once each under ``deepseek launch -n 2`` (the kill points and the
rule: ``test_kill_resume_launch.py``'s docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _kill_launch import KILLS, STRATEGIES, TRAIN, check_killed_and_resumed

pytestmark = pytest.mark.schedule_first  # conftest.py: long tests, handed out first


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_killed_and_resumed_equals_a_run_never_killed(strategy: str, tmp_path: Path, injected: Path) -> None:
    check_killed_and_resumed([*TRAIN, *STRATEGIES[strategy]], KILLS[strategy], 8, tmp_path, injected)
