"""What ``trainer.json`` may hold: every field the trainer reads back is checked here, so a
corrupt or hand-edited file is one :class:`~deepseek.errors.CheckpointError` naming the file and
the field, never a crash or a silently wrong resume (a negative step would train with negative
learning rates and drop the run's earlier metrics).

Required: ``format``, ``format_version``, ``step``, ``data`` (the dataset's position, an object
the dataset checks itself on resume) and ``config`` (the run's config table). Optional, checked
when present: the counters ``tokens_seen`` / ``samples_seen``, the tables ``schedule``,
``precision`` and ``metrics``, ``should_stop`` (``true``: a callback ended the run, which is
complete), and the record fields ``strategy``, ``world_size``, ``layout``, ``torch``,
``exported_from``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepseek.config.field_checks import LR_MAX
from deepseek.errors import CheckpointError
from deepseek.training.checkpoint_io import HINT
from deepseek.training.checkpoint_names import checkpoint_step
from deepseek.training.provenance import check_components

FORMAT = "deepseek-checkpoint"
FORMAT_VERSION = 1
COUNTER_LIMIT = 2**63
"""Bound of the counters ``step``, ``tokens_seen``, ``samples_seen`` (signed 64-bit)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def check_trainer_state(state: Any, path: Path) -> dict[str, Any]:
    """``state`` (parsed ``trainer.json`` at ``path``) if every field is well-formed; otherwise
    a CheckpointError naming ``path``, the field, what it holds and what it should hold."""

    def bad(field: str, expected: str, value: Any) -> CheckpointError:
        return CheckpointError(
            f"{path}: {field} is {_kind(value)} ({value!r:.60}), expected {expected}; the file is "
            f"corrupt or was edited: {HINT}"
        )

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        why = ("not a JSON object" if not isinstance(state, dict) else "format field missing" if "format" not in state
               else f"format is {state['format']!r:.60}, not {FORMAT!r}")
        raise CheckpointError(f"{path}: not a deepseek checkpoint ({why}); {HINT}")
    version = state.get("format_version")
    if not _is_int(version) or version < 1:
        raise bad("format_version", "a whole number >= 1", version)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {version} is newer than this deepseek-core understands "
            f"({FORMAT_VERSION}); upgrade deepseek-core"
        )
    for field in ("step", "data", "config"):
        if field not in state:
            raise CheckpointError(f"{path}: has no {field!r} field; the file is incomplete: {HINT}")
    counters = ("step", "tokens_seen", "samples_seen")
    for field in counters:  # counted in 64 bits (tensors, rates in floats): larger is damage
        if field in state and not (_is_int(state[field]) and 0 <= state[field] < COUNTER_LIMIT):
            raise bad(field, "a whole number >= 0 and < 2**63", state[field])
    for field in ("data", "config", "schedule", "precision", "metrics"):
        if field in state and not isinstance(state[field], dict):
            raise bad(field, "an object", state[field])
    _check_step_fits(state, path)
    for key, value in state.get("metrics", {}).items():
        if value is not None and not _is_number(value):
            raise bad(f"metrics.{key}", "a number", value)
    schedule = state.get("schedule", {})  # the record of the rates (a schedule's options may be any JSON)
    for key in ("lr", "min_lr"):  # train.lr's bound (config.field_checks)
        if key in schedule and not (_is_number(schedule[key]) and 0 <= schedule[key] <= LR_MAX):
            raise bad(f"schedule.{key}", f"a number from 0 to {LR_MAX:g}", schedule[key])
    for key in ("warmup_steps", "decay_steps"):
        if key in schedule and not (_is_int(schedule[key]) and 0 <= schedule[key] < COUNTER_LIMIT):
            raise bad(f"schedule.{key}", "a whole number >= 0", schedule[key])
    scaler = state.get("precision", {}).get("scaler")
    if scaler is not None:
        _check_scaler(scaler, bad)
    if "world_size" in state and not (_is_int(state["world_size"]) and state["world_size"] >= 1):
        raise bad("world_size", "a whole number >= 1", state["world_size"])
    if "components" in state and (expected := check_components(state["components"])) is not None:
        raise bad("components", expected, state["components"])
    for field in ("should_stop", "text_codec"):  # written only when true
        if field in state and state[field] is not True:
            raise bad(field, "true (or no field)", state[field])
    for field in ("strategy", "layout", "torch", "exported_from"):
        if field in state and not isinstance(state[field], str):
            raise bad(field, "a string", state[field])
    return state


SCALER_FIELDS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
"""What torch's ``GradScaler.state_dict()`` holds (every field its ``load_state_dict`` reads)."""


def _check_scaler(scaler: Any, bad: Any) -> None:
    """``precision.scaler``, the fp16 loss scaler's state (``{}``: a disabled scaler's): every field
    of :data:`SCALER_FIELDS` and no other, held to what torch's ``GradScaler`` takes when built (the
    config's rules where the config sets it: ``precision.init_scale``, ``growth_interval``). torch
    loads any number: a negative scale trained on and was saved again, a growth factor below 1
    shrank the scale at every growth, a tracker below 0 or a fraction was taken."""
    from deepseek.config.field_checks import GROWTH_INTERVAL_MAX, growth_interval, loss_scale

    if not isinstance(scaler, Mapping) or (scaler and set(scaler) != set(SCALER_FIELDS)):
        raise bad("precision.scaler", f"{{}} or an object of {', '.join(SCALER_FIELDS)}", scaler)
    if not scaler:
        return
    finite = {k: _is_number(v) and math.isfinite(v) for k, v in scaler.items()}
    rules = {
        "scale": ("a number > 0 and at most the largest float32", finite["scale"] and loss_scale(scaler["scale"]) is None),
        "growth_factor": ("a finite number > 1", finite["growth_factor"] and scaler["growth_factor"] > 1),
        "backoff_factor": ("a number > 0 and < 1", finite["backoff_factor"] and 0 < scaler["backoff_factor"] < 1),
        "growth_interval": (f"a whole number from 1 to {GROWTH_INTERVAL_MAX}", _is_int(scaler["growth_interval"])
                            and growth_interval(scaler["growth_interval"]) is None),
    }
    for field, (expected, ok) in rules.items():
        if not ok:
            raise bad(f"precision.scaler.{field}", expected, scaler[field])
    tracker = scaler["_growth_tracker"]
    if not (_is_int(tracker) and 0 <= tracker < scaler["growth_interval"]):
        raise bad("precision.scaler._growth_tracker", f"a whole number from 0 to {scaler['growth_interval'] - 1} "
                  "(below growth_interval)", tracker)


def _check_step_fits(state: dict[str, Any], path: Path) -> None:
    """The recorded ``step`` must be the one the folder is named for (``step-N``) and at most the
    run's ``train.max_steps``: a larger or other step is a hand-edited file or a folder of
    another run, which would resume or evaluate as a step it is not."""
    step = state["step"]
    named = checkpoint_step(path.parent.name)
    if named is not None and named != step:
        raise CheckpointError(
            f"{path}: step is {step}, but the folder is {path.parent.name}; the file was edited or the "
            f"folder belongs to another run: {HINT}"
        )
    train = state["config"].get("train")
    max_steps = train.get("max_steps") if isinstance(train, dict) else None
    if _is_int(max_steps) and step > max_steps:
        raise CheckpointError(
            f"{path}: step is {step}, more than the run's train.max_steps ({max_steps}); the file is "
            f"corrupt or was edited: {HINT}"
        )
