"""Training callback: ``losses.csv`` on rank 0, and a clear stop on a NaN or infinite loss.

Standard library only, so that importing the plugin stays cheap.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

from deepseek import durable
from deepseek.errors import DeepseekError

FILENAME = "losses.csv"
HEADER = ("step", "loss", "lr")


class NonFiniteLossError(DeepseekError):
    """The training loss became NaN or infinite; training stops."""


def csv_path(trainer: Any) -> Path | None:
    """``<run_dir>/losses.csv``, or ``None`` when the trainer has no run folder."""
    run_dir = getattr(trainer, "run_dir", None)
    return None if run_dir is None else Path(run_dir) / FILENAME


def _is_global_zero(trainer: Any) -> bool:
    return bool(getattr(trainer, "is_global_zero", True))


def _write_atomic(path: Path, rows: list[list[str]]) -> None:
    # deepseek.durable: a temporary name beside it, fsynced, renamed, the folder fsynced (no torch)
    with durable.staged(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def start(trainer: Any) -> None:
    """Create ``losses.csv`` with its header; on resume keep only rows up to the resumed step."""
    path = csv_path(trainer)
    if path is None or not _is_global_zero(trainer):
        if path is None and _is_global_zero(trainer):
            warnings.warn("deepseek-tidy: trainer has no run_dir; losses.csv is not written", stacklevel=2)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    first_step = int(getattr(trainer, "step", 0) or 0)
    rows: list[list[str]] = [list(HEADER)]
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            old = list(csv.reader(f))
        rows += [r for r in old[1:] if r and r[0].isdigit() and int(r[0]) <= first_step]
    _write_atomic(path, rows)


def step_end(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """Check the loss (every rank) and append ``step,loss,lr`` to ``losses.csv`` (rank 0)."""
    if "loss" not in metrics:
        return
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"deepseek-tidy: training loss is {loss} at step {step}; stopping. Lower train.lr, "
            "enable gradient clipping, or train in bf16 instead of fp16"
        )
    path = csv_path(trainer)
    if path is None or not _is_global_zero(trainer):
        return
    lr = metrics.get("lr")
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        if new:
            csv.writer(f).writerow(HEADER)
        csv.writer(f).writerow([step, repr(loss), "" if lr is None else repr(float(lr))])
