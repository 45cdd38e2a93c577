"""The config table ``deepseek train`` builds from its arguments: a config file's (or a
checkpoint's) table with ``--strategy``, ``--tracker``, ``--precision``, ``--max-steps`` and the
``--set`` overrides applied (:func:`train_config_data`), before it is validated. Used by
``train_cmd.build_train_config`` and by whatever checks a train command line without running it
(the job service, at submit).
"""

from __future__ import annotations

import json
from typing import Any


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _refuse_twice(overrides: tuple[str, ...], options: dict[str, tuple[str, Any]]) -> None:
    """An option given and a ``--set`` of the key it sets: the ``--set`` won silently (an invalid
    ``--max-steps 0`` was dropped without a word); refused, naming both."""
    for option, (key, value) in options.items():
        if value is None:
            continue
        for item in overrides:
            if item.partition("=")[0].strip() == key:
                from deepseek.errors import UsageError

                raise UsageError(f"{option} {value} and --set {item.strip()} both set {key}; give one of them")


def train_config_data(
    data: dict[str, Any],
    overrides: tuple[str, ...] = (),
    *,
    strategy: str | None = None,
    precision: str | None = None,
    max_steps: int | None = None,
    trackers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A config table (a file's, or a checkpoint's) with ``train``'s options and ``--set``
    overrides applied, in ``train_cmd.build_train_config``'s order; not yet validated."""
    from deepseek.config.overrides import apply_overrides

    if strategy is not None:
        table = data.get("strategy")
        current = table.get("name", "single") if isinstance(table, dict) else None
        # Options of another strategy do not carry over to the one picked on the command line.
        data["strategy"] = dict(table) if isinstance(table, dict) and current == strategy else {}
        data["strategy"]["name"] = strategy
    if trackers and isinstance(data.setdefault("logging", {}), dict):
        listed = data["logging"].get("trackers", [])
        listed = list(listed) if isinstance(listed, (list, tuple)) else [listed]
        data["logging"] = {**data["logging"], "trackers": [*listed, *(t for t in trackers if t not in listed)]}
    extra = []
    if precision is not None:
        extra.append(f"precision.dtype={_toml_string(precision)}")
    if max_steps is not None:
        extra.append(f"train.max_steps={max_steps}")
    _refuse_twice(overrides, {"--precision": ("precision.dtype", precision), "--max-steps": ("train.max_steps", max_steps),
                              "--strategy": ("strategy.name", strategy)})
    return apply_overrides(data, [*extra, *overrides])
