"""The exit status of a command run in a test's process, as the interpreter gives it. Imports
nothing heavy (no torch): the service tests' helpers, which must leave a server process without
torch, use it too."""

from __future__ import annotations

import io


def exit_status(code: object, err: io.StringIO) -> int:
    """The exit status the interpreter gives ``sys.exit(code)``: ``None`` is 0, an int is itself,
    anything else (``sys.exit("message")``) is written to stderr (``err``) and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    print(code, file=err)
    return 1
