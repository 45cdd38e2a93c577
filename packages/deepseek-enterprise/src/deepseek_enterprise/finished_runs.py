"""Whether a run folder proves its training finished, so that a command killed after the training
it started (while it tested the model, or before it recorded the result) takes the run up instead
of training it again: ``deepseek multimodal study`` (a run without its results line) and
``deepseek tune`` (the re-run of an interrupted trial)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError


def unfinished(run_dir: Path, steps: int, config: dict[str, Any], metric: str) -> str | None:
    """Why ``run_dir`` does not prove a training of ``config`` (as ``Config.to_dict`` gives it) to
    ``steps`` finished, or None when it does: its newest complete checkpoint is at step ``steps``,
    records ``config``, and its ``metrics.jsonl`` holds ``metric`` at that step (the evaluation the
    trainer writes before it saves that checkpoint)."""
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
    from deepseek.training.metrics import read_metrics

    try:
        state = read_trainer_state(resolve_checkpoint(run_dir))
    except UsageError:
        return "no checkpoint to take up"
    if state.get("step") != steps:
        return f"its newest checkpoint is at step {state.get('step')}, not {steps}"
    if state.get("config") != json.loads(json.dumps(config)):
        return "its checkpoint records another config"
    try:
        evaluated = any(r["step"] == steps and metric in r for r in read_metrics(run_dir / "metrics.jsonl"))
    except UsageError:
        evaluated = False
    return None if evaluated else f"its metrics.jsonl has no {metric} at step {steps}"
