"""``_inprocess.deepseek_here`` reads a command's ``SystemExit`` as the interpreter does at exit
(``sys.exit(None)`` is 0, an int is that code, anything else is printed to stderr and the code is
1). ``int(exc.code)`` raised ``ValueError`` for ``sys.exit("message")`` and lost the message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from _inprocess import deepseek_here

from deepseek import hookimpl
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

CODE = {"none": None, "int": 3, "text": "the command gave up: no such thing", "zero": 0}


@click.command()
@click.argument("how", type=click.Choice(sorted(CODE)))
def leave(how: str) -> None:
    sys.exit(CODE[how])


class LeavePlugin:
    @hookimpl
    def deepseek_register_commands(self, register):  # type: ignore[no-untyped-def]
        register("leave", leave, description="test only: sys.exit with the given code")


@pytest.mark.parametrize(("how", "code", "err"), [("none", 0, ""), ("zero", 0, ""), ("int", 3, ""),
                                                  ("text", 1, CODE["text"])])
def test_a_commands_exit_reads_as_the_interpreters(how: str, code: int, err: str, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(LeavePlugin(), dist="deepseek-leave").status == "ok"
    assert deepseek_here(monkeypatch, tmp_path, "leave", how, host=host) == (code, err, "")
    # what Python itself does with the same code at exit
    python = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({CODE[how]!r})"], capture_output=True,
                            text=True)
    assert (python.returncode, python.stderr.strip()) == (code, err)
