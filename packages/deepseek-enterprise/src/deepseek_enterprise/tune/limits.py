"""The ranges of ``deepseek tune``'s numbers: one table, :data:`TUNE_NUMBERS`, read by the
command's options (``--trials``, ``--timeout``: :class:`deepseek.cli.params.Ranged`), by
:class:`~deepseek_enterprise.tune.study_open.StudySettings` (a study started from Python:
:func:`check_settings`) and by the built-in tuners' ``[tuner]`` keys (``nproc``,
``trial_timeout_s``, ``poll_s``, ``steps``, ``warmup``: :func:`field_check`). A value outside is
one line naming the option, argument or key, with the range (the words of
:mod:`deepseek.api_args`), before a folder or a storage is created. Why each bound is where it
is: docs/tune.md, "Limits".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepseek.api_args import real, real_problem, whole, whole_problem

YEAR_S = 365 * 24 * 3600
"""A year in seconds: the longest wait a timeout takes (a longer one is no limit at all)."""

TUNE_NUMBERS: dict[str, dict[str, Any]] = {
    "trials": {"minimum": 1, "maximum": 10_000,
               "hint": "; the finished trials the study should hold, each a whole training run: 10000 is far "
                       "past where a search stops improving (docs/tune.md, 'Limits')"},
    "timeout": {"low": 0.0, "open_low": True, "high": float(YEAR_S),
                "hint": "; seconds, at most a year: leave --timeout out for no limit"},
    "trial_timeout_s": {"low": 0.0, "high": float(YEAR_S)},
    "poll_s": {"low": 0.0, "open_low": True, "high": 60.0},
    "nproc": {"minimum": 1, "maximum": 256},
    "steps": {"minimum": 1, "maximum": 10_000},
    "warmup": {"minimum": 0, "maximum": 10_000},
}
"""Each number's range: :func:`deepseek.api_args.whole`'s keywords (``minimum``, ``maximum``)
for a count, :func:`~deepseek.api_args.real`'s (``low``, ``high``, ``open_low``) for seconds;
``hint`` follows the line of an option or argument."""


def field_check(name: str) -> Callable[[Any], str | None]:
    """The ``field(metadata={"check": ...})`` of the ``[tuner]`` key ``name``: its range from
    :data:`TUNE_NUMBERS`, refused as ``tuner.NAME: must be >= 1 and <= 256, got ...``."""
    bounds = {key: value for key, value in TUNE_NUMBERS[name].items() if key != "hint"}
    if "minimum" in bounds:
        return lambda value: whole_problem(value, **bounds)
    return lambda value: real_problem(value, **bounds)


def check_settings(trials: Any, timeout: Any) -> None:
    """A study's ``trials`` and ``timeout`` (``None``: no limit) as given from Python, refused in
    the command line's words with the argument's name (``trials: must be >= 1 and <= 10000, got
    ...``)."""
    whole(trials, "trials", **TUNE_NUMBERS["trials"])
    if timeout is not None:
        real(timeout, "timeout", **TUNE_NUMBERS["timeout"])
