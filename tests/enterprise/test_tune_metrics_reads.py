"""The ``training`` tuner's reads of a trial's ``metrics.jsonl`` at every poll: only the lines
added since the last poll (it read the whole file each time), and a file that is no run's metrics
(a FIFO: the poll waited for a writer forever, and the study with it; a folder; a line past
1 MiB: read whole) stops the trial, which fails with one line naming the file. The re-run of an
interrupted trial reads that trial's ``trial.toml`` as bounded."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek_enterprise.tune.training import TrialEvaluations
from deepseek_enterprise.tune.tuner import TrialFailed, TrialRun


def _evaluations(tmp_path: Path, reports: list[tuple[int, float]]) -> TrialEvaluations:
    trial = TrialRun(number=0, config=None, config_path=tmp_path / "trial.toml", folder=tmp_path,
                     objective="val_loss", should_stop=lambda step, value: reports.append((step, value)) or step >= 4)
    return TrialEvaluations(trial, tmp_path / "run" / "metrics.jsonl")


def test_each_poll_reports_the_new_evaluations_and_the_pruner_stops_the_trial(tmp_path: Path) -> None:
    reports: list[tuple[int, float]] = []
    evaluations = _evaluations(tmp_path, reports)
    assert evaluations.poll() is False  # no run folder yet
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    rows = [{"step": 0, "val_loss": 5.0}, {"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0, "val_loss": 3.5}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "val_lo')
    assert evaluations.poll() is False and reports == [(2, 3.5)]  # step 0 is not reported; step 4 being written
    with metrics.open("a") as fh:
        fh.write('ss": 2.5}\n')
    assert evaluations.poll() is True and reports == [(2, 3.5), (4, 2.5)]
    assert str(evaluations.stop) == "stopped by the pruner at step 4 (2.5)" and evaluations.failure is None


@pytest.mark.parametrize("kind", ["fifo", "folder", "overlong"])
def test_a_metrics_file_that_is_no_runs_fails_the_trial_naming_it(tmp_path: Path, kind: str,
                                                                  past_fifo: Callable[..., Any]) -> None:
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(metrics)
    elif kind == "folder":
        metrics.mkdir()
    else:
        metrics.write_text(json.dumps({"step": 2, "val_loss": 1.5}) + "\n" + "9" * (2 << 20) + "\n")
    reports: list[tuple[int, float]] = []
    evaluations = _evaluations(tmp_path, reports)
    assert past_fifo(metrics, evaluations.poll) is True  # the trial is stopped
    with pytest.raises(TrialFailed) as info:
        evaluations.final_value()
    why = {"fifo": f"{metrics}: cannot read the run's metrics (not a regular file (a FIFO, device or socket)); make "
                   "it a readable file or start a new run",
           "folder": f"{metrics}: cannot read the run's metrics (Is a directory); make it a readable file or start a "
                     "new run",
           "overlong": f"{metrics}:2: longer than 1,048,576 bytes, not a metrics record; delete or repair that line "
                       "(every line is one JSON record), or start a new run"}[kind]
    assert str(info.value) == why and reports == []


def test_an_interrupted_trial_whose_trial_toml_is_a_fifo_is_no_earlier_run(tmp_path: Path,
                                                                          past_fifo: Callable[..., Any]) -> None:
    """The re-run compares the interrupted trial's ``trial.toml`` with its own: a FIFO there made
    that read wait for a writer forever; now it is not the same training (trained from the start)."""
    from deepseek_enterprise.tune.training import _earlier_run

    earlier = tmp_path / "0000"
    (earlier / "run").mkdir(parents=True)
    os.mkfifo(earlier / "trial.toml")
    (tmp_path / "trial.toml").write_text("[train]\nmax_steps = 2\n")
    trial = TrialRun(number=1, config=None, config_path=tmp_path / "trial.toml", folder=tmp_path / "0001",
                     objective="val_loss", earlier=earlier)

    def taken() -> Path | None:
        with _earlier_run(trial) as run:
            return run

    assert past_fifo(earlier / "trial.toml", taken) is None
