"""Run folders of interrupted trials that their re-runs left to another live job.

The re-run of an interrupted trial does not take that trial's run folder while another live job
holds it (:func:`deepseek_enterprise.tune.training._earlier_run`): it trains in its own folder and
records the one it left (the ``left_run`` attribute). That folder is then no trial's result, and
nothing in the study uses or removes it: as Optuna and Ray Tune do with what a trial wrote, the
study keeps it (it may hold a training someone started there by hand) and says so. Every report
of the study lists each such folder that still exists, with whether a job still holds it, so
that it is not forgotten on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LEFT_RUN = "left_run"
"""The trial attribute naming the interrupted trial's run folder that its re-run left to a live job."""


def left_run_lines(trials: Iterable[tuple[int, Mapping[str, Any]]]) -> list[str]:
    """One line per existing run folder a trial left to a live job, from ``(number, user
    attributes)`` of the study's trials: still held (naming the holder), or free now (to remove,
    or to keep). A folder a later trial took up (its ``run_dir``) is that trial's result: not listed."""
    from deepseek.errors import shown
    from deepseek.training.run_lock import LOCK_FILE, describe_holder, is_held

    trials = list(trials)
    results = {attrs.get("run_dir") for _, attrs in trials}
    lines = []
    for number, attrs in trials:
        left = attrs.get(LEFT_RUN)
        if not isinstance(left, str) or left in results or not Path(left).is_dir():
            continue
        run = Path(left)
        lock = run / LOCK_FILE
        if is_held(lock):
            state = f"still in use by a live job ({describe_holder(lock)})"
        else:
            state = "no job holds it now: remove it, or keep what that job trained there"
        lines.append(f"trial {number} left {shown(run)} to a live job and trained in its own folder; that folder is no "
                     f"trial's result and the study never removes it; {state}")
    return lines
