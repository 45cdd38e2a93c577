"""The search space of ``deepseek tune``: a TOML file, validated like a config.

.. code-block:: toml

    [space]
    "train.lr" = { type = "float", low = 1e-4, high = 3e-2, log = true }
    "train.warmup_steps" = { type = "int", low = 0, high = 100, step = 10 }
    "data.batch_size" = { choices = [8, 16, 32] }
    "strategy.name" = { choices = ["ddp", "deepspeed"] }
    "strategy.stage" = { choices = [1, 2], when = { "strategy.name" = "deepspeed" } }

    [tuner]            # options of the tuner (optional; docs/tune.md lists them)
    steps = 10

Every key of ``[space]`` is a config path (``SECTION.KEY`` or deeper, as ``--set`` takes it);
a parameter is a float or int range (``low``/``high``, optional ``log`` or ``step``) or a list of
``choices`` (strings, numbers, booleans), searched in every trial or only ``when`` parameters
listed before it took given values. Nested tables (``[space.train] lr = {...}``) are read
the same. Each parameter's end points and every choice are checked against the base config
before the first trial (:func:`check_against`), so a bad path or value fails the command at once
with the space entry named.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.config.foreign_keys import unknown_keys
from deepseek.config.validate import did_you_mean
from deepseek.errors import ConfigError, UsageError

KINDS = ("float", "int", "categorical")
_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}


@dataclass(frozen=True)
class Param:
    """One searched config value: a range (``float``/``int``) or ``categorical`` choices."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """Searched only in trials where each named earlier parameter took one of these values."""

    def applies(self, values: dict[str, Any]) -> bool:
        """Whether this trial's earlier values meet ``when``."""
        return all(path in values and any(_same(values[path], v) for v in allowed) for path, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """The value this trial takes (Optuna's ``suggest_*``, the path as the parameter name)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), step=self.step, log=self.log)

    def corners(self) -> list[Any]:
        """The values checked against the base config: both ends, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take."""
        if self.kind == "categorical":
            return any(_same(value, c) for c in self.choices)
        if not _number(value) or (self.kind == "int" and not isinstance(value, int)):
            return False
        if not self.low <= value <= self.high:  # type: ignore[operator]
            return False
        if self.step is None:
            return True
        grid = (value - self.low) / self.step  # type: ignore[operator]
        return math.isclose(grid, round(grid), abs_tol=1e-9)  # on the step's grid

    def describe(self) -> str:
        """``[1e-4, 3e-2] log`` / ``{8, 16, 32}``."""
        if self.kind == "categorical":
            return "{" + ", ".join(map(repr, self.choices)) + "}"
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"[{self.low}, {self.high}]{extra}"


@dataclass(frozen=True)
class SearchSpace:
    """The parameters and the ``[tuner]`` table of a space file."""

    params: tuple[Param, ...]
    tuner: dict[str, Any]
    source: str

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``{config path: value}`` for one trial (a parameter whose ``when`` is not met keeps
        the base config's value and is not part of the trial)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.applies(values):
                values[p.path] = p.suggest(trial)
        return values

    def fingerprint(self) -> str:
        """A stable description, stored with the study: resuming it with another space is refused."""
        return "; ".join(f"{p.path} {p.kind} {p.describe()}" + (f" when {dict(p.when)}" if p.when else "")
                         for p in self.params)


def _same(a: Any, b: Any) -> bool:
    """The same value and type; floats within rounding (a stepped range gives 0.30000000000000004 for 0.3)."""
    if type(a) is float and type(b) is float:
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return type(a) is type(b) and a == b


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(table: dict[str, Any], prefix: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: space.{path!r}: expected a table such as {{ type = \"float\", low = 1e-4, high = 1e-2 }} "
                f"or {{ choices = [...] }}, got {value!r}"
            )
        if _KEYS & set(value) or not value:
            out.append((path, value))
        else:
            out.extend(_leaves(value, path, where))
    return out


def _when(spec: dict[str, Any], at: str, earlier: dict[str, Param]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    when = spec.get("when", {})
    if not isinstance(when, dict):
        raise ConfigError(f"{at}: when must be a table of earlier parameters and their values, "
                          "e.g. when = { \"strategy.name\" = \"deepspeed\" }")
    out = []
    for other, allowed in when.items():
        if other not in earlier:
            raise ConfigError(f"{at}: when names {other!r}, which is not a parameter listed before this one"
                              f"{did_you_mean(other, list(earlier))}")
        if earlier[other].kind == "float" and earlier[other].step is None:  # a sampled float equals no given value
            raise ConfigError(f"{at}: when names {other}, a continuous float range: a trial's value is never exactly "
                              f"a given one, so this parameter would never be searched; condition on a choices "
                              f"parameter, an int range or a float range with step")
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if not values:
            raise ConfigError(f"{at}: when {other} = [] lists no value, so this parameter would never be searched; "
                              f"give the values of {other} it is searched for ({earlier[other].describe()})")
        for v in values:
            if not earlier[other].contains(v):
                raise ConfigError(f"{at}: when {other} = {v!r}, a value {other} never takes ({earlier[other].describe()})")
        out.append((other, values))
    return tuple(out)


def _param(path: str, spec: dict[str, Any], where: str, earlier: dict[str, Param]) -> Param:
    at = f"{where}: space.{path!r}"
    if path.count(".") < 1:
        raise ConfigError(f"{at}: a parameter is a config path SECTION.KEY, e.g. \"train.lr\"")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown_keys(f'space.{path!r}', unknown, sorted(_KEYS))}; "
                          f"a parameter takes {', '.join(sorted(_KEYS))}")
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind not in KINDS:
        raise ConfigError(f"{at}: type must be one of {', '.join(KINDS)}, got {kind!r}"
                          + (did_you_mean(kind, list(KINDS)) if isinstance(kind, str) else ""))
    if kind == "categorical":
        extra = sorted(set(spec) - {"type", "choices", "when"})
        if extra:
            raise ConfigError(f"{at}: {extra[0]} is for ranges; a categorical parameter takes only choices")
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list, e.g. choices = [8, 16, 32]")
        for c in choices:
            if not (isinstance(c, (str, bool)) or _number(c)):
                raise ConfigError(f"{at}: choice {c!r} is not a string, number or boolean")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{at}: choices repeat a value: {choices!r}")
        return Param(path, kind, choices=tuple(choices), when=_when(spec, at, earlier))
    if "choices" in spec:
        raise ConfigError(f"{at}: a {kind} range takes low/high, not choices (drop type for choices)")
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high)):
        if not _number(value):
            raise ConfigError(f"{at}: {name} must be a finite number, got {value!r}")
    if kind == "int" and not all(isinstance(v, int) for v in (low, high)):
        raise ConfigError(f"{at}: an int range needs whole low/high, got low={low!r}, high={high!r}")
    if low >= high:  # type: ignore[operator]
        raise ConfigError(f"{at}: low={low} must be below high={high}")
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    if log and low <= 0:  # type: ignore[operator]
        raise ConfigError(f"{at}: log = true needs low > 0, got low={low}")
    if step is not None:
        if not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise ConfigError(f"{at}: step must be a positive {'whole ' if kind == 'int' else ''}number, got {step!r}")
        if log:
            raise ConfigError(f"{at}: step and log = true cannot be combined; drop one")
        if step > high - low:  # Optuna narrows the range to [low, low]: the search has one value
            raise ConfigError(f"{at}: step {step} is larger than high - low = {high - low:g}, so the range holds one "
                              "value; use a smaller step or a wider range")
    return Param(path, kind, low=low, high=high, log=log, step=step, when=_when(spec, at, earlier))


def parse_space(data: dict[str, Any], where: str) -> SearchSpace:
    """Validate a space file's parsed TOML (``where`` names the file in messages)."""
    unknown = sorted(set(data) - {"space", "tuner"})
    if unknown:
        tables = ", ".join(f"{t!r}{did_you_mean(t, ['space', 'tuner'])}" for t in unknown)
        raise ConfigError(f"{where}: unknown table{'s' if len(unknown) > 1 else ''} {tables}; "
                          "a space file holds [space] and optionally [tuner]")
    table = data.get("space")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{where}: no [space] table; add one, e.g. [space] \"train.lr\" = "
                          "{ type = \"float\", low = 1e-4, high = 1e-2, log = true }")
    tuner = data.get("tuner", {})
    if not isinstance(tuner, dict):
        raise ConfigError(f"{where}: [tuner] must be a table of the tuner's options")
    earlier: dict[str, Param] = {}
    for path, spec in _leaves(table, "", where):
        if path in earlier:  # "train.lr" = {...} and [space.train] lr = {...}: the second replaced the first
            raise ConfigError(f"{where}: space.{path!r} is given twice (as a quoted key and as a nested table); "
                              "keep one of them")
        earlier[path] = _param(path, spec, where, earlier)
    params = tuple(earlier.values())
    return SearchSpace(params=params, tuner=dict(tuner), source=where)


SPACE_HINT = "give a search space TOML file (docs/tune.md)"
"""The fix a missing space file's message offers."""


def load_space(path: Path, read: Callable[..., dict[str, Any]] | None = None) -> SearchSpace:
    """Read and validate a space file (one ConfigError line for anything wrong). ``read(path,
    missing_hint=..., what=...)`` reads the TOML: :func:`deepseek.config.load.read_toml` by default; the
    job service's submit check reads the job's workspace as it will be when the job starts."""
    from deepseek.config.load import read_toml

    return parse_space((read or read_toml)(path, missing_hint=SPACE_HINT, what="search space file"), str(path))


def trial_data(base: dict[str, Any], values: dict[str, Any], base_source: str = "the base config") -> dict[str, Any]:
    """The base config's data with the trial's values set at their paths; a path the base
    cannot take is named with ``base_source`` (the config file's name)."""
    import copy

    out = copy.deepcopy(base)
    from deepseek.config.load import COMPONENT_SECTIONS
    from deepseek.config.overrides import parent_table
    from deepseek.config.schema import SHARED_KEYS

    # A component chosen by the trial first (strategy, optimizer, ...): its own keys, searched
    # too, then go into its table.
    ordered = sorted(values.items(), key=lambda kv: not _names_component(kv[0], COMPONENT_SECTIONS))
    for path, value in ordered:
        parts = path.split(".")
        try:  # a list of tables by index: optimizer.groups.0.lr_scale
            node = parent_table(out, parts)
        except ValueError as exc:
            raise ConfigError(f"space.{path!r}: in {base_source}, {exc}") from None
        if _names_component(path, COMPONENT_SECTIONS) and node.get("name") != value:
            # Options of another component do not carry over to the one this trial picks; the
            # keys every component of the kind takes (optimizer.weight_decay, ...) do.
            for key in [k for k in node if k not in SHARED_KEYS.get(parts[0], ())]:
                del node[key]
        node[parts[-1]] = value
    return out


def _names_component(path: str, sections: Any) -> bool:
    """``path`` is a component section's ``name`` (``strategy.name``, ``optimizer.name``, ...)."""
    parts = path.split(".")
    return len(parts) == 2 and parts[1] == "name" and parts[0] in sections


def check_against(space: SearchSpace, base: dict[str, Any], build: Any, check_model: Any = None,
                  base_source: str = "the base config", check_config: Any = None) -> None:
    """Build the config with each parameter at each end point / choice (others at the base),
    so a wrong path or an impossible value fails before any trial, naming the entry. For a
    ``model.*`` or ``optimizer.groups.*`` parameter ``check_model(config)`` builds the model too
    (on the meta device): the tables a model's components check as it is built
    (``model.fusion_options``, an encoder's ``model.vision``) and the groups' ``match`` patterns
    against its parameter names are held to their rules here as well. ``check_config(config)``:
    the tuner's own rule for a trial's config, held at every corner (a space reaching
    ``data.eval_batches = 0``, a run without validation, is refused as the base config would be)."""
    for param in space.params:
        condition = {other: allowed[0] for other, allowed in param.when}  # where it applies
        for value in param.corners():
            try:  # a path the base config cannot take is the path's fault, whatever the value
                data = trial_data(base, {**condition, param.path: value}, base_source)
            except ConfigError as exc:
                raise ConfigError(f"{space.source}: {exc}") from None
            try:
                config = build(data)
                if check_config is not None:
                    check_config(config)
                if check_model is not None and param.path.startswith(("model.", "optimizer.groups.")):
                    check_model(config)
            except UsageError as exc:  # a bad value, or a component no plugin registers
                raise ConfigError(f"{space.source}: space.{param.path!r} = {value!r}: {exc}") from None


def values_at(space: SearchSpace, data: dict[str, Any]) -> dict[str, Any]:
    """The value config ``data`` (a config's ``to_dict()``) holds at every searched path it has."""
    out = {}
    for param in space.params:
        node: Any = data
        for part in param.path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[param.path] = node
    return out


def check_baseline(space: SearchSpace, values: dict[str, Any]) -> None:
    """The baseline trial takes the base config's ``values``; Optuna records a range's value
    outside its range, but never a value that is not one of a categorical's choices (the study
    stopped with an internal error at its first trial, the baseline queued in its storage).
    One :class:`ConfigError` line naming the parameter."""
    for p in space.params:
        if p.kind == "categorical" and p.path in values and p.applies(values) and not p.contains(values[p.path]):
            raise ConfigError(f"{space.source}: space.{p.path!r}: the base config's value {values[p.path]!r} is not "
                              f"one of the choices {p.describe()}, and the baseline trial (the base config's own "
                              f"values) can take only a choice; add {values[p.path]!r} to the choices, or pass "
                              "--no-baseline")
