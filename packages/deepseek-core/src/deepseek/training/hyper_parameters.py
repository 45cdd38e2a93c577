"""The types of an optimizer's hyper-parameters, declared: what each key of its parameter groups
holds (``lr`` a finite number >= 0, AdamW's ``betas`` two finite numbers, SGD's ``nesterov`` true
or false, a plugin's signed ``momentum`` a number in [-1, 1]), as a checkpoint saves them
(``sharded.json``'s ``param_groups``, the ``param_groups`` of ``optimizer.safetensors``' metadata).

An optimizer declares them on its class (``OptimizerBuilder.hyper_parameters``, a mapping of key
to :class:`HyperParameter`; the default, :data:`COMMON`, is what every torch optimizer's groups
hold). Every reader of saved groups (``checkpoint info``, ``checkpoint export``, a resume, under
core alone too) holds them to the declaration of the optimizer the checkpoint's ``trainer.json``
names (:func:`saved_hyper_parameters`: :data:`COMMON` where that optimizer is not installed here):
a value of another type is one line naming the file, the group and key, and what belongs there
(:func:`~deepseek.training.checkpoint_io.check_saved_groups`), before any optimizer is built; a
resume holds them again to the declaration of the optimizer it built
(:func:`live_hyper_parameters`, :func:`~deepseek.training.checkpoint_io.check_groups_fit`).
Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepseek.config.field_checks import EPS_MAX, GROUP_LR_MAX, WEIGHT_DECAY_MAX


@dataclass(frozen=True)
class HyperParameter:
    """The type of one key of an optimizer's parameter groups."""

    kind: Literal["number", "numbers", "flag", "text"] = "number"
    """``number``: a finite int or float (not a bool); ``numbers``: a list (or tuple) of them;
    ``flag``: true or false; ``text``: a string."""
    count: int | None = None
    """``numbers``: how many (``None``: any)."""
    non_negative: bool = False
    """``number`` / ``numbers``: never below 0."""
    optional: bool = False
    """``None`` (JSON null) is allowed too."""
    minimum: float | None = None
    """``number`` / ``numbers``: never below this (``None``: no bound but ``non_negative``'s)."""
    maximum: float | None = None
    """``number`` / ``numbers``: never above this (``None``: no bound)."""
    maximum_excluded: bool = False
    """``maximum`` itself is refused too (``betas`` in [0, 1): a beta of 1 divides by 0)."""

    def __post_init__(self) -> None:  # a plugin's declaration: wrong at its import, not at a checkpoint's read
        if self.kind not in _KINDS:
            raise ValueError(f"HyperParameter kind {self.kind!r}: expected one of {', '.join(_KINDS)}")
        bounds = [b for b in (self.minimum, self.maximum) if b is not None]
        if bounds and (self.kind not in ("number", "numbers") or not all(_finite(b) for b in bounds)
                       or (len(bounds) == 2 and bounds[0] > bounds[1])):
            raise ValueError(f"HyperParameter bounds [{self.minimum}, {self.maximum}]: finite numbers, minimum <= "
                             "maximum, of a number or numbers")
        if self.maximum_excluded and self.maximum is None:
            raise ValueError("HyperParameter maximum_excluded=True needs a maximum")
        if self.non_negative and any(b < 0 for b in bounds):  # 'below 0' would win over the bound declared
            raise ValueError(f"HyperParameter bounds [{self.minimum!r}, {self.maximum!r}] with non_negative=True: "
                             "a bound below 0 contradicts it; drop non_negative, or give bounds >= 0")

    def expected(self) -> str:
        """The type that belongs where this is declared, for a person: ``a finite number``,
        ``2 finite numbers``, ``true or false`` (``non_negative`` is said apart: ``below 0``)."""
        what = {"number": "a finite number", "flag": "true or false", "text": "a string",
                "numbers": "a list of finite numbers" if self.count is None else
                f"{self.count} finite number{'' if self.count == 1 else 's'}"}[self.kind]
        return what + (" or null" if self.optional else "")

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` where this is declared (``where a finite number belongs``,
        ``below 0``, ``above 1``), else ``None``: what every reader of saved groups says, and a
        check an ``Options`` field of the optimizer may take as its own (``metadata={"check":
        MOMENTUM.problem}``), so the config and the checkpoint are held to one rule."""
        if value is None and self.optional:
            return None
        if self.kind == "flag":
            return None if isinstance(value, bool) else f"where {self.expected()} belongs"
        if self.kind == "text":
            return None if isinstance(value, str) else f"where {self.expected()} belongs"
        plural = self.kind == "numbers" and self.count is not None and self.count != 1
        where = f"where {self.expected()} {'belong' if plural else 'belongs'}"
        if self.kind == "numbers" and not (isinstance(value, (list, tuple))
                                           and (self.count is None or len(value) == self.count)):
            return where
        values = [value] if self.kind == "number" else value
        if not all(_finite(v) for v in values):
            return where
        if self.non_negative and any(v < 0 for v in values):
            return "below 0"
        if self.minimum is not None and any(v < self.minimum for v in values):
            return f"below {self.minimum!r}"  # exactly: ':g' made 0.1234567 '0.123457'
        if self.maximum is None:
            return None
        if self.maximum_excluded:
            return f"at or above {self.maximum!r}" if any(v >= self.maximum for v in values) else None
        return f"above {self.maximum!r}" if any(v > self.maximum for v in values) else None


_KINDS = ("number", "numbers", "flag", "text")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


LR = HyperParameter(non_negative=True, maximum=GROUP_LR_MAX)
"""A saved group's ``lr`` / ``initial_lr``: at most ``train.lr``'s bound times ``lr_scale``'s (the
config's rules, :mod:`deepseek.config.field_checks`)."""
WEIGHT_DECAY = HyperParameter(non_negative=True, maximum=WEIGHT_DECAY_MAX)
"""A saved group's ``weight_decay``: ``optimizer.weight_decay``'s rule."""
EPS = HyperParameter(non_negative=True, maximum=EPS_MAX)
"""A saved group's ``eps``: ``optimizer.eps``'s bound."""
BETAS = HyperParameter("numbers", count=2, non_negative=True, maximum=1, maximum_excluded=True)
"""A saved group's ``betas``: ``optimizer.betas``' rule, two numbers in [0, 1)."""
MOMENTUM = HyperParameter(non_negative=True, maximum=1, maximum_excluded=True)
"""A saved group's ``momentum`` (SGD): ``optimizer.momentum``'s rule, in [0, 1)."""

COMMON: Mapping[str, HyperParameter] = {"lr": LR, "initial_lr": LR, "weight_decay": WEIGHT_DECAY}
"""What every torch optimizer's groups hold (the trainer's ``initial_lr`` too): the declaration
of an optimizer that declares nothing, and of one not installed where a checkpoint is read."""

FLAG = HyperParameter("flag")
NON_NEGATIVE = HyperParameter(non_negative=True)
PAIR = HyperParameter("numbers", count=2)


def hyper_parameters_problem(declared: Any) -> str | None:
    """What is wrong with an optimizer class's ``hyper_parameters`` (not a mapping of keys to
    :class:`HyperParameter`), else ``None``."""
    if isinstance(declared, Mapping) and all(isinstance(k, str) and isinstance(v, HyperParameter)
                                             for k, v in declared.items()):
        return None
    return (f"hyper_parameters is {type(declared).__name__}, not a mapping of group keys to "
            "deepseek.training.hyper_parameters.HyperParameter")


def declared_by(cls: Any, label: str) -> Mapping[str, HyperParameter]:
    """``cls.hyper_parameters`` of an optimizer class (``label``: the registered component, for the
    error); a declaration that is not one is its PluginError."""
    from deepseek.errors import PluginError

    declared = cls.hyper_parameters
    if (problem := hyper_parameters_problem(declared)) is not None:
        raise PluginError(f"{label}: {problem} (docs/plugins.md section 14)")
    return declared


def live_hyper_parameters(builder: Any) -> Mapping[str, HyperParameter]:
    """The declared hyper-parameters of the builder that made a live optimizer
    (:func:`~deepseek.training.optimizers.builder_of`), to which a resume holds the saved groups
    it loads into it (:func:`~deepseek.training.checkpoint_io.check_groups_fit`); :data:`COMMON`
    for an optimizer no builder made (``None``)."""
    return COMMON if builder is None else declared_by(type(builder), builder.label)


def saved_hyper_parameters(directory: str | os.PathLike[str], host: Any = None) -> Mapping[str, HyperParameter]:
    """The declared hyper-parameters of the optimizer checkpoint ``directory``'s ``trainer.json``
    names (``optimizer.name`` of its config), looked up on ``host`` (default: the process's);
    :data:`COMMON` where the name is not installed here, its plugin's class cannot be loaded (an
    import that fails: ``checkpoint info`` and ``export`` read weights without the optimizer, and a
    resume meets that error where it builds it), or the file does not say (its own reader names
    what is wrong with it). A plugin's declaration that is not one is its PluginError."""
    from deepseek.config.components import load_checked
    from deepseek.config.schema import OptimizerConfig
    from deepseek.errors import PluginError, UsageError
    from deepseek.parsing import loads_json, read_text
    from deepseek.plugins.host import get_host
    from deepseek.training.checkpoint_record import TRAINER_FILE

    try:  # the file's own reader (read_trainer_state) refuses a damaged one; here it only names the optimizer
        config = loads_json(read_text(Path(directory) / TRAINER_FILE)).get("config")
        table = config.get("optimizer", {}) if isinstance(config, dict) else {}
        name = table.get("name", OptimizerConfig.name) if isinstance(table, dict) else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return COMMON
    if not isinstance(name, str):
        return COMMON
    try:
        component = (host or get_host()).resolve("optimizer", name)
    except UsageError:  # not installed here (or several plugins register the name): what every group holds
        return COMMON
    try:
        cls = load_checked("optimizer", component)
    except PluginError:  # registered but not loadable here: its groups are read as an absent one's
        return COMMON
    return declared_by(cls, component.label)  # load_checked: an OptimizerBuilder subclass
