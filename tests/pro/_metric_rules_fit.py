"""What the metric-rule probes share (``_dp_metric_rules.py``, ``_pipeline_metric_rules.py``): a
3-step ``deepseek.fit`` of one model under one strategy, recorded as what it raised or as its step
records and last evaluation, and the probe's loop over its arguments under torchrun (test helper).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import deepseek
from deepseek.errors import RankError
from deepseek.training.metrics import read_metrics

FIT_CONFIG: dict[str, Any] = {
    "train": {"max_steps": 3, "grad_accum": 2, "lr": 0.1, "warmup_steps": 0, "eval_interval": 2},
    "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"}, "checkpoint": {"interval": 0},
    "logging": {"progress": False, "plot": False}}
"""The settings of :func:`fit_record`'s runs (its ``lr`` and strategy given)."""


def fit_record(model: type, train: torch.utils.data.Dataset, val: torch.utils.data.Dataset, run_dir: Path,
               strategy: str, lr: float) -> dict[str, Any]:
    """``deepseek.fit`` of ``model`` for 3 steps of 8 rows (2 micro-batches each), evaluating 2
    batches every 2 steps, into ``run_dir``: ``{type, message, steps, val}`` with ``type`` None and
    each step's record without its timings and the last evaluation, or the error raised (``type``,
    ``message``, ``raised_in``: the function its traceback ends in, and a RankError's ``type_name``)."""
    config = {**FIT_CONFIG, "train": {**FIT_CONFIG["train"], "lr": lr}, "strategy": {"name": strategy}}
    try:
        result = deepseek.fit(model, train, val_data=val, names=("x", "label"), batch_size=8, shuffle=False,
                              run_dir=run_dir, config=config, quiet=True)
    except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
        frames = traceback.extract_tb(exc.__traceback__)
        seen = {"type": type(exc).__name__, "message": str(exc), "steps": [], "val": {}, "raised_in": frames[-1].name}
        if isinstance(exc, RankError):
            seen["type_name"] = exc.type_name
        return seen
    timings = {"step_time", "samples_per_s"}
    steps = [{k: v for k, v in r.items() if k not in timings} for r in read_metrics(run_dir / "metrics.jsonl")
             if "loss" in r]
    return {"type": None, "message": "", "steps": steps, "val": result.val_metrics}


def probe_main(prefix: str, attempt: Callable[[Path, str], dict[str, Any]], default: list[str]) -> None:
    """Under torchrun, ``python PROBE OUT [NAME ...]`` (``default`` without names): ``attempt(OUT,
    NAME)`` for each name in turn, rank r rewriting ``OUT/PREFIX-r.json`` (``{name: record}``) after
    each, so that what got this far is on disk; then the process exits at once."""
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    seen = {}
    for name in sys.argv[2:] or default:
        seen[name] = attempt(out, name)
        (out / f"{prefix}-{rank}.json").write_text(json.dumps(seen, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
