"""Checks of the Python API's arguments (``deepseek.fit``, ``deepseek.evaluate``,
``deepseek.load_model``, a model's ``generate``): a value of the wrong kind or out of range is one
:class:`~deepseek.errors.UsageError` line naming the argument, raised before anything runs or is
written, instead of a ``TypeError`` or ``AttributeError`` from deep inside. What the CLI's click
types are to its options (:mod:`deepseek.cli.params`), these are to keyword arguments.
Imports torch only to check a device.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.errors import UsageError

if TYPE_CHECKING:
    import torch

    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost


def _shown(value: Any) -> str:
    return f"{value!r:.60}"


def whole(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` from ``minimum`` to ``maximum`` (``None``: no upper end): a Python
    or numpy integer (anything with ``__index__`` but a bool); a float, a string or ``None`` is
    refused, as is a bool. ``hint`` follows the message."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise UsageError(f"{name}: expected a whole number {whole_range(minimum, maximum)}, got {_shown(value)} "
                         f"({type(value).__name__}); pass an int")
    number = value.__index__()
    problem = whole_problem(number, minimum=minimum, maximum=maximum)
    if problem:
        raise UsageError(f"{name}: {problem}, got {number}{hint}")
    return number


def whole_range(minimum: int, maximum: int | None) -> str:
    """``>= 1`` or ``>= 1 and <= 10000``."""
    return f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")


def whole_problem(number: int, *, minimum: int = 0, maximum: int | None = None) -> str | None:
    """``must be >= 1 and <= 10000`` for a whole number outside its range, else ``None``: the words
    :func:`whole` raises after the name, and a config field check returns as they are."""
    if number < minimum or (maximum is not None and number > maximum):
        return f"must be {whole_range(minimum, maximum)}"
    return None


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None, open_low: bool = False,
         hint: str = "") -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``open_low``: above ``low``): an int,
    float or numpy number, not a bool, NaN or infinity. ``hint`` follows the message. The one
    wording of a number out of range, whoever names it (a keyword such as ``generate: top_p``, an
    option such as ``--top-p``: :class:`deepseek.cli.params.Ranged`):
    ``NAME: must be a finite number > 0 and <= 1, got 1.5; HINT``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(not_a_number(name, f"{_shown(value)} ({type(value).__name__})", hint))
    number = float(value)
    problem = real_problem(number, low=low, high=high, open_low=open_low)
    if problem:
        raise UsageError(f"{name}: {problem}, got {number!r}{hint}")
    return number


def not_a_number(name: str, shown: str, hint: str = "") -> str:
    """The line for a value of ``name`` that is not a number at all (``shown`` as the caller
    quotes it): ``NAME: expected a number, got SHOWN; HINT``."""
    return f"{name}: expected a number, got {shown}{hint}"


def real_problem(number: float, *, low: float | None = None, high: float | None = None,
                 open_low: bool = False) -> str | None:
    """``must be a finite number > 0 and <= 1`` for a number that is not finite or outside its
    range, else ``None``: the words :func:`real` raises after the name, and a config field check
    returns as they are."""
    below = low is not None and (number <= low if open_low else number < low)
    if math.isfinite(number) and not below and (high is None or number <= high):
        return None
    side = "" if low is None else f" {'>' if open_low else '>='} {_bound(low)}"
    side += "" if high is None else f"{' and' if side else ''} <= {_bound(high)}"
    return f"must be a finite number{side}"


def _bound(number: float) -> str:
    """A range's end as a person writes it: ``0``, ``0.5``, ``31536000`` (whole numbers in full)."""
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:g}"


DECODE_NUMBERS: dict[str, dict[str, Any]] = {
    "temperature": {"low": 0.0, "hint": "; 0 is greedy, 1.0 samples the model's distribution"},
    "top_p": {"low": 0.0, "high": 1.0, "open_low": True,
              "hint": "; 0.9 keeps the likeliest tokens that together hold 90% of the probability; leave it unset for off"},
    "repetition_penalty": {"low": 0.0, "open_low": True,
                           "hint": "; 1.0 is off, 1.2 makes tokens already in the prompt or the output less likely"},
}
"""The range of each real-valued decode argument, the one rule behind :func:`decode_number` (a
model's ``generate``, ``deepseek.sample``) and the options of ``deepseek generate``
(:class:`deepseek.cli.params.Ranged`), both worded by :func:`real`."""


DECODE_WHOLE: dict[str, tuple[int, int]] = {"max_new_tokens": (0, 1_000_000), "top_k": (1, 1_000_000)}
"""The range of each whole-number decode argument, ``(least, most)``: a million new tokens is past
any model's context, a million likeliest tokens past any vocabulary (``top_k`` 10**30 was taken and
kept every token). The one rule behind :func:`decode_whole` and ``deepseek generate``'s options."""


def decode_whole(value: Any, name: str) -> int:
    """``value`` of the whole-number decode argument ``name`` (a key of :data:`DECODE_WHOLE`) in its
    range, or one line ``generate: NAME: must be >= 1 and <= 1000000, got ...``."""
    least, most = DECODE_WHOLE[name]
    return whole(value, f"generate: {name}", minimum=least, maximum=most)


def decode_number(value: Any, name: str) -> float:
    """``value`` of the decode argument ``name`` (a key of :data:`DECODE_NUMBERS`) checked by
    :func:`real` against its range, or one line ``generate: NAME: ...``."""
    return real(value, f"generate: {name}", **DECODE_NUMBERS[name])


def flag(value: Any, name: str) -> bool:
    """``value`` as a ``bool``: ``True`` or ``False`` (numpy's too); a string such as ``"no"``,
    which Python would take as true, or ``None`` is refused."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise UsageError(f"{name}: expected True or False, got {_shown(value)} ({type(value).__name__})")


def choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value``, one of the strings ``choices`` (an option's ``click.Choice``, from Python)."""
    if isinstance(value, str) and value in choices:
        return value
    raise UsageError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {_shown(value)}")


def path(value: Any, name: str) -> Path:
    """``value`` as a :class:`~pathlib.Path`: a ``str`` (not empty) or an ``os.PathLike``."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return Path(value)
    got = "an empty path" if isinstance(value, str) else f"{_shown(value)} ({type(value).__name__})"
    raise UsageError(f"{name}: expected a path (a str or pathlib.Path), got {got}")


def device(value: Any, name: str) -> torch.device:
    """``value`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device`` of those)
    as a device this machine has (:func:`deepseek.devices.resolve_device`, the one check)."""
    import torch

    from deepseek.devices import resolve_device

    if isinstance(value, torch.device):
        value = str(value)
    if not isinstance(value, str):
        raise UsageError(f"{name}: expected a device name such as 'cpu' or 'cuda:0', got {_shown(value)} "
                         f"({type(value).__name__})")
    return resolve_device(value, where=name)


def host(value: Any, name: str = "host") -> PluginHost | None:
    """``value``: ``None`` (the process's host) or a :class:`~deepseek.plugins.host.PluginHost`."""
    from deepseek.plugins.host import PluginHost

    if value is None or isinstance(value, PluginHost):
        return value
    raise UsageError(f"{name}: expected a deepseek.plugins.host.PluginHost or None, got {_shown(value)} "
                     f"({type(value).__name__})")


def config(value: Any, name: str = "config") -> Config:
    """A :class:`~deepseek.config.schema.Config` (what ``Trainer`` takes), else one line saying how to make one."""
    from deepseek.config.schema import Config

    if not isinstance(value, Config):
        raise UsageError(f"{name}: expected a deepseek.config.schema.Config, got {type(value).__name__}; build one "
                         "with deepseek.config.load.config_from_dict(mapping, host=host) or load_config(path, host=host)")
    return value
