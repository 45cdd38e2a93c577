"""Calls into an executor (a plugin's code) checked against its contract
(:mod:`deepseek_enterprise.service.executor_base`): what a method raises beyond the exceptions
its contract names, or returns outside :data:`~deepseek_enterprise.service.executor_base.RETURNS`,
comes out as one :class:`ExecutorBroke` naming the executor and the method, so the scheduler
fails that job alone (:mod:`deepseek_enterprise.service.scheduler`).
"""

from __future__ import annotations

from deepseek.plugins.records import describe_error
from deepseek_enterprise.service.executor import Executor, Unavailable
from deepseek_enterprise.service.executor_base import RETURNS
from deepseek_enterprise.service.models import Job

REF_MAX = Job.__table__.c.pid_start.type.length
"""The longest ``Executor.reserve`` answer (and ``Started.pid_start``) the database keeps."""


def checked_ref(origin: str, ref: object) -> str:
    """``reserve``'s answer, OSError (the job fails with it) when it is not a string of at most
    :data:`REF_MAX` printable characters: the same on every database, never a failed commit."""
    if not isinstance(ref, str) or len(ref) > REF_MAX or not ref.isprintable():
        raise OSError(f"{origin}: reserve() returned {str(ref)[:80]!r}, not a string of "
                      f"at most {REF_MAX} printable characters (Executor.reserve)")
    return ref


class ExecutorBroke(Exception):
    """An executor method raised what its contract does not name, or returned what it does not
    allow; the message is one line naming the executor (and its distribution) and the method
    (module docstring)."""


def call_executor(executor: Executor, origin: str, method: str, *args: object,
                  allowed: tuple[type[BaseException], ...] = (Unavailable,)) -> object:
    """``executor.method(*args)``; what it raises beyond ``allowed``, or returns outside its
    :data:`RETURNS`, comes out as :class:`ExecutorBroke` (``origin`` names the executor)."""
    try:
        value = getattr(executor, method)(*args)
    except allowed:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug: that job fails, named (module docstring)
        raise ExecutorBroke(f"{origin}: {method}() raised {describe_error(exc)}") from exc
    fits, expected = RETURNS.get(method, (lambda _: True, ""))
    if not fits(value):  # a plugin's bug too: acting on it failed the whole pass, unnamed
        shown = " ".join(repr(value).split())
        raise ExecutorBroke(f"{origin}: {method}() returned {shown[:80]} ({type(value).__name__}), "
                            f"not {expected}")
    return value
