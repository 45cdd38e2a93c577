"""Where a generated continuation ends: at the document separator the model writes, or before the
first of the caller's stop strings (``deepseek generate --stop``, Hugging Face's ``stop_strings``).

:class:`Stopping` watches the columns a model's ``generate`` hands ``on_token`` and ends the
decoding early (:class:`Stopped`) once every row of the batch has ended, checking every
:data:`CHECK_EVERY` tokens (one read from the device each time); :func:`cut_at_stop` then cuts
each text. The text is the same as decoding all ``max_new_tokens`` and cutting afterwards: only
the steps after every row has ended are skipped. A ``generate`` that does not call ``on_token``
decodes every step and is cut the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from deepseek.errors import UsageError

if TYPE_CHECKING:
    from deepseek.data.tokenizer import Tokenizer

CHECK_EVERY = 8
"""Tokens between two checks of whether every row has ended."""


class Stopped(Exception):  # noqa: N818 - a signal, not an error: it never leaves this package
    """Raised from ``on_token`` to end a decoding whose every row has ended."""


def check_stops(stops: Sequence[str]) -> tuple[str, ...]:
    """The stop strings as given (a list or tuple of strings), refusing an empty one (it would end
    every text at once)."""
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops):
        raise UsageError(f"stop: expected a list of stop strings such as ['\\n\\n'], got {stops!r:.60}")
    if any(not s for s in stops):
        raise UsageError("--stop: an empty stop string would end every sample before its first character; give "
                         "text such as --stop $'\\n\\n'")
    return tuple(stops)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (without) the earliest occurrence of any of ``stops``."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(ends)] if ends else text


class Stopping:
    """The ``on_token`` of one ``generate`` call over ``rows`` prompts (see the module docstring);
    ``then`` is called with each column first (another ``on_token``, such as a timer)."""

    def __init__(self, tokenizer: Tokenizer, stops: Sequence[str], *,
                 then: Callable[[torch.Tensor], None] | None = None) -> None:
        self.tokenizer, self.stops, self.then = tokenizer, tuple(stops), then
        self.columns: list[torch.Tensor] = []

    def __call__(self, column: torch.Tensor) -> None:
        if self.then is not None:
            self.then(column)
        self.columns.append(column)
        if len(self.columns) % CHECK_EVERY == 0 and self._all_ended():
            raise Stopped

    def _all_ended(self) -> bool:
        for row in torch.cat(self.columns, dim=1).cpu().tolist():
            if self.tokenizer.separator in row:
                continue
            if self.stops and any(stop in self.tokenizer.decode(row) for stop in self.stops):
                continue
            return False
        return True

    def generated(self) -> torch.Tensor:
        """The columns sampled before the decoding stopped, ``(B, n)``."""
        return torch.cat(self.columns, dim=1)
