"""The hostile-input tests' tools: run ``deepseek ARGV`` in this process, snapshot folders, and
the one verdict every refused input must get.

A refused input: exit code 2, exactly one line on stderr starting with ``error: `` (no
traceback, no ``internal error``), the expected words in it, and every watched folder exactly as
before (same names, same bytes, same modification times).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.cli.main import main

TINY = [
    "--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
    "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16",
    "--set", "data.batch_size=2", "--set", "data.eval_batches=1", "--max-steps", "1",
    "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--precision", "fp32", "--quiet",
]
"""``deepseek train`` arguments of a one-step run of a very small GPT on the CPU."""


@dataclass(frozen=True)
class Outcome:
    """What one ``deepseek`` invocation returned and printed."""

    code: int
    stdout: str
    stderr: str


def invoke(argv: Sequence[str], host: Any) -> Outcome:
    """``deepseek ARGV`` run in this process on plugin host ``host``."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv), host=host)
        except SystemExit as exc:
            code = exc.code
    return Outcome(0 if code is None else code, out.getvalue(), err.getvalue())


def snapshot(roots: Iterable[Path]) -> dict[str, tuple[Any, ...]]:
    """Every file and folder under ``roots``: kind, content hash and modification time."""
    seen: dict[str, tuple[Any, ...]] = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]) if root.exists() else []:
            if path.is_symlink():
                seen[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[str(path)] = ("folder",)
            elif not path.is_file():  # a FIFO: reading it would block
                seen[str(path)] = ("special", path.stat().st_mode)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[str(path)] = ("file", digest, path.stat().st_mtime_ns)
    return seen


def assert_refused(outcome: Outcome, expected: Sequence[str] = ()) -> str:
    """The verdict on the output of a refused input (see the module docstring); returns the line."""
    lines = outcome.stderr.strip().splitlines()
    shown = f"exit {outcome.code}\nstdout: {outcome.stdout[-800:]}\nstderr: {outcome.stderr[-1500:]}"
    assert outcome.code == 2, shown
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, shown
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


class Hostile:
    """Runs ``deepseek`` in a working folder and checks that watched folders stay unchanged."""

    def __init__(self, host: Any, work: Path, watched: Sequence[Path] = ()) -> None:
        self.host, self.work, self.watched = host, work, [work, *watched]

    def run(self, *argv: str) -> Outcome:
        """``deepseek ARGV`` with no verdict."""
        return invoke(argv, self.host)

    def refused(self, *argv: str, expect: Sequence[str] = ()) -> str:
        """``deepseek ARGV`` must be refused (:func:`assert_refused`) and write nothing."""
        before = snapshot(self.watched)
        line = assert_refused(self.run(*argv), expect)
        after = snapshot(self.watched)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, (line, changed)
        return line
