"""``deepseek launch -n 2 -- train --strategy ddp|fsdp|deepspeed`` SIGKILLed again and again (the
launcher and both ranks at once, as a scheduler or a power cut does) and resumed with ``--resume``
each time ends where a run never interrupted ends: the same loss at every step and the same bytes
in every safetensors file of the last checkpoint.

The kill points, in one chain (each resumed launch is killed at the next one):

1. rank 1 after step 3 (rank 0 is then inside step 4, waiting for it);
2. step 4's checkpoint written by both ranks, rank 0 about to rename it into place (resumes from step 2);
3. step 4's checkpoint renamed into place, ``latest`` still naming step 2 (resumes from step 4);
4. step 6's checkpoint half written: rank 1 about to put its ``rng-1.safetensors`` in the
   temporary folder (resumes from step 4), then the run goes to its end (step 8).

``ddp`` goes through the whole chain. ``fsdp`` and ``deepspeed`` are killed once each, at a
point that leaves step 4 the newest complete checkpoint (3 and 4 respectively): what differs
between strategies is what they save and load, which the one resume from step 4 and the byte
comparison of step 8 check; the kinds of kill are the launcher's and the checkpoint writer's,
the same for every strategy (three launches each instead of six).

The ``fsdp`` and ``deepspeed`` cases are in ``test_kill_resume_launch_sharded.py`` and ``pipeline``,
``hybrid`` and ``tp`` (one kill each, rank 1 after step 3 of a 4-step run, resuming from step 2) in
``test_kill_resume_launch_stages.py``: three files, so that ``--dist loadfile`` spreads the launches
over both workers; what they share is ``_kill_launch.py``.

A rank reaching its point writes a marker file and stops itself (SIGSTOP); the test then SIGKILLs
the launcher and every process under it. Markers and the stop come from a ``sitecustomize`` (the
``os.replace`` points) and a throwaway plugin (the step point) made in a temp dir, nothing of which
is in production code; a point never reached fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from _kill_launch import KILLS, STRATEGIES, TRAIN, check_killed_and_resumed

pytestmark = pytest.mark.schedule_first  # conftest.py: long tests, handed out first


@pytest.mark.parametrize("strategy", ["ddp"])
def test_killed_and_resumed_equals_a_run_never_killed(strategy: str, tmp_path: Path, injected: Path) -> None:
    check_killed_and_resumed([*TRAIN, *STRATEGIES[strategy]], KILLS[strategy], 8, tmp_path, injected)
