"""Click parameter types shared by every command: one rule per kind of value.

- :class:`FiniteFloat`: a finite number, optionally bounded (``nan``, ``inf`` and numbers too
  large for a float are refused, whatever the bounds);
- :class:`Ranged`: a number whose range a table shares with a Python-side check (the decode
  numbers of ``deepseek generate``, ``deepseek tune``'s limits), refused in the words the Python
  check uses (:func:`deepseek.api_args.real` / :func:`~deepseek.api_args.whole`), naming the option;
- :data:`SEED`, :func:`count`: whole numbers in range (``click.IntRange`` underneath);
- :class:`NameList`: ``A,B,C`` with no empty item (:func:`deepseek.names.split_names`);
- :class:`Device`: ``auto`` / ``cpu`` / ``cuda[:N]``, checked against the devices this machine has
  (:func:`deepseek.devices.resolve_device`) and returned as the resolved device's name; only
  the name is checked while a line is parsed to run elsewhere (:data:`RUNS_ELSEWHERE`);
- :data:`PATH`: a file or folder path, not empty (``Path("")`` is the current folder: an empty
  ``--run-dir`` would make the working folder the run, an empty ``--checkpoint`` read it).

A bad value is a ``click.BadParameter`` (a :class:`~deepseek.errors.UsageError` for
:class:`Ranged`), which ``deepseek.cli.main`` prints as one line naming the option and exits with
code 2. Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from typing import Any

import click

RUNS_ELSEWHERE = "deepseek.params.runs_elsewhere"
"""``ctx.meta`` key, true while a command line is parsed to be run later on another machine or
with other devices (the job service checks a job's line at submit): the parameter types check
the value itself, not what this machine has (:class:`Device` reads no device and imports no torch)."""


class WholeRange(click.IntRange):
    """``click.IntRange`` named ``integer``: a bad value reads "'1.5' is not a valid integer" and
    ``--help`` shows ``INTEGER`` with the range, not click's "integer range"."""

    name = "integer"


SEED = WholeRange(0, 2**32 - 1)

MAX_REPEATS = 1_000_000
"""The most timed calls, steps or warm-ups a benchmark option takes (``bench latency --runs``,
``bench train --steps``): more never ends in any time a benchmark is read in (10**30 ran until killed)."""

MAX_THREADS = 4096
"""The most CPU threads ``--threads`` takes: more than any machine's cores (10**30 was an overflow
inside torch, an internal error)."""
"""A random seed: a whole number from 0 to 2**32 - 1 (what every generator involved accepts)."""


def count(minimum: int = 1, maximum: int | None = None) -> click.IntRange:
    """A whole number of things, at least ``minimum`` (and at most ``maximum``)."""
    return WholeRange(min=minimum, max=maximum)


class FiniteFloat(click.ParamType):
    """A finite float, with optional bounds; ``min_open``/``max_open`` exclude the bound."""

    name = "number"

    def __init__(
        self,
        min: float | None = None,  # noqa: A002 - click's own spelling (FloatRange)
        max: float | None = None,  # noqa: A002
        *,
        min_open: bool = False,
        max_open: bool = False,
    ) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def expected(self) -> str:
        """What a valid value looks like, for the error message."""
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max:g}")
        return "give a finite number" + (f" {' and '.join(parts)}" if parts else "")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number; {self.expected()}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; {self.expected()}", param, ctx)
        low = self.min is not None and (number < self.min or (self.min_open and number == self.min))
        high = self.max is not None and (number > self.max or (self.max_open and number == self.max))
        if low or high:
            self.fail(f"{value!r} is out of range; {self.expected()}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"FiniteFloat({self.min!r}, {self.max!r})"


class Ranged(click.ParamType):
    """A number checked against ``bounds``, the keywords of :func:`deepseek.api_args.whole`
    (``whole``: ``minimum``, ``maximum``, ``hint``) or :func:`~deepseek.api_args.real` (``low``,
    ``high``, ``open_low``, ``hint``), taken from the table the Python-side check reads, so the
    option and the Python argument share one range and one wording: ``--top-p: must be a finite
    number > 0 and <= 1, got 1.5; HINT`` beside ``generate: top_p: ...`` (exit code 2)."""

    def __init__(self, bounds: dict[str, Any], *, whole: bool = False) -> None:
        self.bounds, self.whole = bounds, whole
        self.name = "integer" if whole else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from deepseek import api_args
        from deepseek.errors import UsageError

        where = param.opts[0] if param is not None and param.opts else "value"
        if self.whole:
            try:
                number: Any = int(value)
            except (TypeError, ValueError):
                raise UsageError(f"{where}: expected a whole number "
                                 f"{api_args.whole_range(self.bounds.get('minimum', 0), self.bounds.get('maximum'))}, "
                                 f"got {str(value)!r}{self.bounds.get('hint', '')}") from None
            return api_args.whole(number, where, **self.bounds)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(api_args.not_a_number(where, repr(str(value)), self.bounds.get("hint", ""))) from None
        return api_args.real(number, where, **self.bounds)

    def __repr__(self) -> str:
        return f"Ranged({self.bounds!r})"


class NameList(click.ParamType):
    """``A,B,C`` -> ``("A", "B", "C")`` (:func:`deepseek.names.split_names`)."""

    name = "A,B"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        from deepseek.errors import UsageError
        from deepseek.names import split_names

        if isinstance(value, tuple):
            return value
        try:
            return split_names(value, where="")
        except UsageError as exc:
            self.fail(str(exc).removeprefix(": "), param, ctx)


class Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has -> the device's name
    (``cpu``, ``cuda:0``); ``allow_auto=False`` refuses ``auto``."""

    name = "device"

    def __init__(self, *, allow_auto: bool = True) -> None:
        self.allow_auto = allow_auto

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from deepseek.devices import device_problem, resolve_device
        from deepseek.errors import ConfigError

        problem = device_problem(str(value), allow_auto=self.allow_auto)
        if problem:
            self.fail(f"{value!r} {problem}", param, ctx)
        if ctx is not None and ctx.meta.get(RUNS_ELSEWHERE):
            return str(value)  # the devices the line will run with are not this process's
        where = f"--{param.name.replace('_', '-')}" if param is not None and param.name else "--device"
        try:
            return str(resolve_device(str(value), where=where))
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix(f"{where}: "), ctx, param) from None


class PathText(click.ParamType):
    """A path as given (a string), refused when empty or only blanks; the command checks what is
    there (:mod:`deepseek.paths`)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip():
            self.fail(f"{value!r} is an empty path; give a file or folder path ('.' for the current folder)",
                      param, ctx)
        return text


PATH = PathText()
"""The type of every option and argument that names a file or folder."""
