"""Exceptions with one-line messages: what was wrong, where, and how to fix it.

The CLI turns every :class:`UsageError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

from typing import Any

QUOTED_LIMIT = 120
"""Longest text an error quotes whole (:func:`clipped`)."""

WORD_LIMIT = 200
"""Longest run of non-blank characters an error's message keeps whole (:func:`clipped_words`):
above a quoted value's limit, so a path the message names stays whole."""


def clipped(text: str, limit: int = QUOTED_LIMIT) -> str:
    """``text`` as an error line quotes it: whole up to ``limit`` characters, else its first 60 and
    last 20 around ``...``, so the line stays readable."""
    return text if len(text) <= limit else f"{text[:60]}...{text[-20:]}"


def clipped_words(message: str) -> str:
    """``message`` with every run of non-blank characters longer than :data:`WORD_LIMIT` (a
    100,000-character key, section or component name echoed in it) :func:`clipped`."""
    import re  # here: the console entry imports this module before it takes stop signals

    return re.sub(rf"\S{{{WORD_LIMIT + 1},}}", lambda m: clipped(m.group(), WORD_LIMIT), message)


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""The characters ``str.splitlines`` ends a line at."""


def escape(ch: str) -> str:
    """The escape a character that does not print (a line break, a tab, ESC, ...: what a terminal
    acts on or hides) is written as, the same in Python's and bash's ``$'...'`` quoting: ``\\n``,
    ``\\t``, ``\\r``, ``\\x1b``, ``\\u2028``; a byte that was not UTF-8 (a lone surrogate, how
    Python hands it over) as that byte, ``\\xff``."""
    code = ord(ch)
    if ch in "\n\t\r":
        return repr(ch)[1:-1]
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(message: str) -> str:
    """``message`` with each character that does not print written as its :func:`escape`
    (``\\n``, ``\\x1b``): a path or name the user gave with a newline in it (``--checkpoint
    $'a\\nb'``) kept the error to two lines, and an ESC in one could recolour the terminal."""
    if message.isprintable():
        return message
    return "".join(ch if ch.isprintable() else escape(ch) for ch in message)


def shell_quoted(text: str) -> str:
    """``text`` as one word of a shell command a line suggests: ``shlex.quote``'s when every
    character prints, else bash's ``$'...'`` with each other character as its :func:`escape`,
    which the shell reads back as ``text`` (a run folder named with a line break, pasted)."""
    import shlex

    if text.isprintable():
        return shlex.quote(text)
    inner = "".join(ch if ch.isprintable() and ch not in "\\'" else "\\" + ch if ch in "\\'" else escape(ch)
                    for ch in text)
    return f"$'{inner}'"


def shown(path: object) -> str:
    """A path (or a name) as a line of output names it: as it is when every character prints, else
    :func:`shell_quoted` (``$'runs/a\\nb'``), so the line stays one line and says which path. The
    one rule for paths in what commands print; an error's message escapes them too
    (:func:`one_line`)."""
    text = str(path)
    return text if text.isprintable() else shell_quoted(text)


def shown_markup(value: object) -> str:
    """``value`` (a path or name the user gave) as :func:`shown` writes it, with rich's markup
    escaped, for text that rich reads as markup (a table's title, ``Console.print``): a run folder
    named ``a[bold]b`` or ``x[/]`` is printed as named, neither styling the line nor failing it
    with a ``MarkupError``. The one rule for a user's value in rich text. Plain text follows it
    where it is used (a title goes on ``" ("``, ``": "``): a trailing backslash is kept single, as
    that text renders it (rich's ``escape`` doubles it, for markup that would follow at once)."""
    from rich.markup import escape as markup_escape  # here: the console entry imports this module

    return markup_escape(shown(value) + " ")[:-1]


class DeepseekError(Exception):
    """Base class of every error the framework raises on purpose. Its message is kept to a
    readable line: a key, section or name of any length the user gave is :func:`clipped_words`
    wherever the message quotes it, and a line break in it is written as its escape
    (:func:`one_line`)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(one_line(clipped_words(a)) if isinstance(a, str) else a for a in args))


class UsageError(DeepseekError):
    """Bad input from the user (config, CLI argument, file). The CLI exits with code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value is unknown, of the wrong type or out of range."""


class PluginError(DeepseekError):
    """A plugin failed to load, registered something invalid, or conflicts with another."""


class ComponentNotFoundError(UsageError, LookupError):
    """No registered component has the requested kind and name."""


class ComponentConflictError(UsageError):
    """Several distributions registered the same component name and none was chosen: the
    component's ``kind`` and ``name`` (``""`` where not given), for a caller that says how to
    choose one where it was named (a checkpoint's config)."""

    def __init__(self, message: str, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind, self.name = kind, name


class TrainingDivergedError(DeepseekError):
    """Training produced a NaN or infinite loss, gradient norm or weight (``train.on_nonfinite``)."""


class RunComplete(UsageError):
    """``--resume`` of a run with nothing left to train: its checkpoint is at ``train.max_steps``,
    or it stopped early; nothing was written. ``deepseek train`` prints its line and exits 0, and
    ``deepseek.fit`` warns with the line and returns the finished run's result, as Lightning's and
    Hugging Face's trainers return when resumed at their last step, so a requeued job that finds
    its run done ends cleanly. ``Trainer.fit`` raises it; ``checkpoint``, ``step`` and
    ``ended_early`` say which checkpoint, at which step, and why a run stopped before its last step."""

    def __init__(self, message: str, *, checkpoint: Any = None, step: int | None = None,
                 ended_early: str | None = None) -> None:
        super().__init__(message)
        self.checkpoint, self.step, self.ended_early = checkpoint, step, ended_early


class RankError(RuntimeError):
    """An exception another rank of a distributed job raised that is not a :class:`DeepseekError`
    (a bug in model code), raised on this rank with its line so that every rank ends together: an
    internal error here as there (exit code 1; the CLI names it by ``type_name``, the class the other
    rank raised), blamed on no component (:func:`deepseek.plugins.calls.blamed_on`); the traceback
    is on the rank that raised it."""

    def __init__(self, line: str, type_name: str) -> None:
        super().__init__(line)
        self.type_name = type_name


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated, corrupt or incompatible."""


Described = tuple[str, str, str]
"""An error as the ranks of a distributed job exchange it: ``(line, kind, class name)``, kind
``usage``, ``plugin``, ``deepseek`` or ``other`` (:func:`described`, :func:`rebuilt`)."""


def described(exc: BaseException) -> Described:
    """``exc`` as :func:`rebuilt` makes it again on another rank."""
    kind = ("usage" if isinstance(exc, UsageError) else "plugin" if isinstance(exc, PluginError)
            else "deepseek" if isinstance(exc, DeepseekError) else "other")
    return str(exc), kind, type(exc).__name__


def rebuilt(error: Described) -> Exception:
    """Another rank's error on this rank, with its line, so that every rank ends alike:
    :class:`UsageError` (exit code 2), :class:`PluginError` (a component's bug, named in its line)
    or :class:`DeepseekError` for the framework's own errors, and for any other exception (a
    ``RuntimeError`` in model code, an ``OSError``) :class:`RankError` naming its class, an
    internal error on every rank (exit code 1) that blames no component."""
    line, kind, name = error
    if kind == "usage":
        return UsageError(line)
    if kind == "plugin":
        return PluginError(line)
    if kind == "deepseek":
        return DeepseekError(line)
    return RankError(line, name)


def clear_frames(error: BaseException) -> None:
    """Drop the locals of the finished frames ``error`` and the errors it chains (``__cause__``,
    ``__context__``) passed through, so that what they held (a model, its DDP wrapper) can be
    collected while ``error`` is still raised; the traceback names the same lines."""
    import traceback

    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            traceback.clear_frames(exc.__traceback__)
            todo += [exc.__cause__, exc.__context__]
