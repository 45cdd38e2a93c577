"""Step records: what the trainer logs per optimizer step, read from the device in windows.

A step leaves its loss, gradient norm and the model's metrics on the device; a
:class:`StepWindow` keeps them until the trainer reads the window (one host sync for all its
steps, ``logging.every_n_steps``). A record holds ``step``, ``loss``, ``lr``, ``grad_norm``,
``samples`` (rows seen so far) and ``samples_per_s``, ``tokens`` and ``tokens_per_s`` when the data
has tokens, ``step_time`` (the window's wall time shared evenly by its steps), ``skipped``
(1 when fp16 skipped the step), ``loss_scale`` under fp16, the model's metrics under their own
names (none of them one of these keys: ``split_output`` refuses those; one that no part of the
step's batch measured, NaN, is left out: :class:`~deepseek.training.step.MetricSums`), and the
strategy's step metrics (``comm_bytes`` ...).
"""

from __future__ import annotations

import math
import time
from typing import Any

from deepseek.training.metrics import read_scalars
from deepseek.training.strategy import StepResult


class StepWindow:
    """Steps not yet read from the device."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._started = 0.0
        self.metric_names: list[str] = []
        """The model's metric names, as of the last step added."""

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        step: int,
        result: StepResult,
        *,
        lr: float,
        rows: int,
        samples: int,
        tokens: int | None,
        tokens_seen: int | None,
        extra: dict[str, Any],
        started: float,
    ) -> None:
        """Keep step ``step``'s ``result`` (device values) with what the host knows of it:
        ``rows``/``tokens`` of this step, ``samples``/``tokens_seen`` so far, and when it
        ``started`` (``time.perf_counter()``; the window's time runs from its first step's)."""
        if not self._pending:
            self._started = started
        self.metric_names = sorted(result.metrics)
        self._pending.append({
            "step": step, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
            "rows": rows, "samples": samples, "tokens": tokens, "tokens_seen": tokens_seen,
            "skipped": int(not result.stepped), "metrics": dict(result.metrics), "extra": dict(extra),
        })

    def take_records(self) -> list[dict[str, Any]]:
        """The finished records of every pending step (one read of the device values), oldest
        first; the window is empty afterwards."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        names = [sorted(e["metrics"]) for e in pending]
        values = read_scalars([
            v for e, keys in zip(pending, names, strict=True)
            for v in (e["loss"], e["grad_norm"], *(e["metrics"][k] for k in keys))
        ])
        seconds = (time.perf_counter() - self._started) / len(pending)
        records, i = [], 0
        for e, keys in zip(pending, names, strict=True):
            loss, norm, metrics = values[i], values[i + 1], values[i + 2 : i + 2 + len(keys)]
            i += 2 + len(keys)
            record: dict[str, Any] = {"step": e["step"], "loss": loss, "lr": e["lr"], "grad_norm": norm,
                                      "samples": e["samples"], "samples_per_s": _rate(e["rows"], seconds)}
            if e["tokens"] is not None:
                record["tokens"] = e["tokens_seen"]
                record["tokens_per_s"] = _rate(e["tokens"], seconds)
            record["step_time"] = seconds
            record["skipped"] = e["skipped"]
            # NaN: no part of the step's batch measured it (MetricSums); left out, as an evaluation
            # leaves out what no evaluated row measured
            record.update((k, v) for k, v in zip(keys, metrics, strict=True) if not math.isnan(v))
            record.update(e["extra"])
            records.append(record)
        return records


def _rate(amount: int, seconds: float) -> float:
    return amount / seconds if seconds > 0 else 0.0
