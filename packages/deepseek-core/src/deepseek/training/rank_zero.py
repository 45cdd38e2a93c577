"""Start-up work that rank 0 alone does for every rank (the run folder's lock, the leftovers of a
killed save, ``metrics.jsonl``, the copies and ``config.toml``, the trackers), ended alike on
every rank when it fails (:func:`rank_zero_outcome`).

Without this, an error there (a moved-aside checkpoint that cannot be renamed back, a damaged
``metrics.jsonl``) was one line on rank 0 alone: the other ranks went on to their next
collective and failed there with a lost connection, or waited for rank 0 until a timeout.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from deepseek.errors import described, rebuilt

if TYPE_CHECKING:
    from collections.abc import Iterator

    from deepseek.training.strategy import Strategy


@contextmanager
def rank_zero_outcome(strategy: Strategy) -> Iterator[None]:
    """Every rank enters; the work in the block is rank 0's (the other ranks do nothing there
    that can fail, and no collective), and its outcome is every rank's: an error it raises is
    raised on every rank, rank 0's own exception there (its traceback kept), on the others one
    with its line and exit code (:func:`~deepseek.errors.rebuilt`); when it succeeds every rank
    goes on. One ``strategy.broadcast_object`` at the block's end, for which the other ranks
    wait while rank 0 works (nothing for one process)."""
    problem: Exception | None = None
    try:
        yield
    except Exception as exc:
        if not strategy.is_global_zero:
            raise
        problem = exc
    told = strategy.broadcast_object(None if problem is None else described(problem))
    if problem is not None:
        raise problem
    if told is not None:
        raise rebuilt(told)
