"""The training callback: losses.csv on rank 0, a clear stop on NaN/inf."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from deepseek.errors import DeepseekError

from deepseek_tidy import plugin
from deepseek_tidy.losses import NonFiniteLossError


def _trainer(tmp_path: Path, rank0: bool = True, step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(run_dir=tmp_path, is_global_zero=rank0, step=step)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_rank0_writes_one_row_per_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    plugin.deepseek_train_start(trainer=trainer)
    for step, loss in enumerate([3.5, 2.25, 1.125], start=1):
        plugin.deepseek_train_step_end(trainer=trainer, step=step, metrics={"loss": loss, "lr": 1e-3})
    rows = _rows(tmp_path / "losses.csv")
    assert rows[0] == ["step", "loss", "lr"]
    assert [(int(r[0]), float(r[1]), float(r[2])) for r in rows[1:]] == [
        (1, 3.5, 1e-3), (2, 2.25, 1e-3), (3, 1.125, 1e-3),
    ]


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, rank0=False)
    plugin.deepseek_train_start(trainer=trainer)
    plugin.deepseek_train_step_end(trainer=trainer, step=1, metrics={"loss": 1.0})
    assert not (tmp_path / "losses.csv").exists()


def test_resume_drops_rows_after_the_resumed_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    plugin.deepseek_train_start(trainer=trainer)
    for step in range(1, 6):
        plugin.deepseek_train_step_end(trainer=trainer, step=step, metrics={"loss": float(step)})
    resumed = _trainer(tmp_path, step=3)
    plugin.deepseek_train_start(trainer=resumed)
    plugin.deepseek_train_step_end(trainer=resumed, step=4, metrics={"loss": 40.0})
    rows = _rows(tmp_path / "losses.csv")
    assert [(r[0], r[1]) for r in rows[1:]] == [("1", "1.0"), ("2", "2.0"), ("3", "3.0"), ("4", "40.0")]
    assert not list(tmp_path.glob(".losses.csv.*")), "temp file left behind"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_training_on_every_rank(tmp_path: Path, bad: float) -> None:
    for rank0 in (True, False):
        trainer = _trainer(tmp_path, rank0=rank0)
        with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf|-inf) at step 7; stopping"):
            plugin.deepseek_train_step_end(trainer=trainer, step=7, metrics={"loss": bad})
    assert issubclass(NonFiniteLossError, DeepseekError)  # the CLI prints it as one line
