"""Whether a run folder proves its training finished, so that a command killed after the training
it started (while it tested the model, or before it recorded the result) takes the run up instead
of training it again: ``deepseek multimodal study`` (a run without its results line) and
``deepseek tune`` (the re-run of an interrupted trial)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError


def ended_early(state: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the trainer state ``state`` (a checkpoint's ``trainer.json``) of a run of ``config``
    (as ``Config.to_dict`` gives it) ended the training before ``train.max_steps``: early stopping
    ran out of patience, or a callback set ``trainer.should_stop``; a resume of it trains nothing
    (:func:`deepseek.training.monitor.refuse_finished`, whose monitor this one is)."""
    from deepseek.training.monitor import Monitor

    if state.get("should_stop") is True:
        return True
    train, saved = config.get("train") or {}, state.get("monitor")
    if not isinstance(saved, dict):
        return False
    monitor = Monitor(train.get("monitor", "val_loss"), train.get("monitor_mode", "min"),
                      train.get("early_stop_min_delta", 0.0), train.get("early_stop_patience", 0))
    try:
        monitor.load_state_dict(saved, "trainer.json")
    except UsageError:
        return False
    return monitor.exhausted


def unfinished(run_dir: Path, steps: int, config: dict[str, Any], metric: str) -> str | None:
    """Why ``run_dir`` does not prove a training of ``config`` (as ``Config.to_dict`` gives it) to
    ``steps`` finished, or None when it does: its newest complete checkpoint is at step ``steps``
    (or before, at the step its training ended early: :func:`ended_early`), records ``config``, and
    its ``metrics.jsonl`` holds ``metric`` at that step (the evaluation the trainer writes before it
    saves that checkpoint)."""
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
    from deepseek.training.metrics import read_metrics

    try:
        state = read_trainer_state(resolve_checkpoint(run_dir))
    except UsageError:
        return "no checkpoint to take up"
    step = state.get("step")
    if step != steps and not (isinstance(step, int) and 0 <= step < steps and ended_early(state, config)):
        return f"its newest checkpoint is at step {step}, not {steps}"
    if not records_config(state, config):
        return "its checkpoint records another config"
    try:
        evaluated = any(r["step"] == step and metric in r for r in read_metrics(run_dir / "metrics.jsonl"))
    except UsageError:
        evaluated = False
    return None if evaluated else f"its metrics.jsonl has no {metric} at step {step}"


def records_config(state: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the trainer state ``state`` (a checkpoint's ``trainer.json``) records ``config`` (as
    ``Config.to_dict`` gives it): the run was trained on the model and data ``config`` makes."""
    return state.get("config") == json.loads(json.dumps(config))
