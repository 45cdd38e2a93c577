"""The ``deepseek`` root command: --version, --help, and one-line errors with exit code 2."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

HAS_PRO = importlib.util.find_spec("deepseek_pro") is not None


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    return subprocess.run(
        [sys.executable, "-m", "deepseek", *args], capture_output=True, text=True,
        env={**base, **env}, timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_version_lists_core_and_plugin_distributions() -> None:
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "deepseek-core 0.1.0"
    if HAS_PRO:
        assert "deepseek-pro 0.1.0 (pro (V2))" in lines
    only_core = run("--version", DEEPSEEK_PLUGINS="deepseek-core").stdout.splitlines()
    assert only_core[0] == "deepseek-core 0.1.0"
    assert all(line.endswith("[disabled]") for line in only_core[1:])
    assert run("--version", "--plugins", "deepseek-core").stdout.splitlines() == only_core  # any order


def test_help_lists_plugin_options_and_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for text in ("--version", "--strict-plugins", "--plugins A,B", "--disable-plugins A,B", "--no-plugin-autoload", "--debug"):
        assert text in proc.stdout
    commands = proc.stdout.split("Commands:")[1]
    assert "plugins" in commands and "inspect and scaffold plugins" in commands
    assert run().stdout == proc.stdout  # no arguments: the same help, exit 0
    assert run().returncode == 0


def test_unknown_command_is_one_line_with_a_suggestion() -> None:
    proc = run("plguins")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: no such command 'plguins'; did you mean 'plugins'? (see 'deepseek --help')"


def test_bad_options_are_one_line() -> None:
    proc = run("--bogus")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: No such option '--bogus'. (see 'deepseek --help')"
    proc = run("plugins", "list", "--jsn")
    assert proc.returncode == 2
    assert "Did you mean '--json'?" in one_error_line(proc)
    proc = run("plugins", "which", "strategy")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: Missing argument 'NAME'. (see 'deepseek plugins which --help')"


def test_command_of_a_missing_edition_names_it() -> None:
    proc = run("launch", "-n", "2", DEEPSEEK_PLUGINS="deepseek-core")
    assert proc.returncode == 2
    assert one_error_line(proc).startswith("error: command 'launch' is provided by deepseek-pro")


def test_traceback_only_with_debug() -> None:
    plain = run("plugins", "which", "strategy", "nope")
    assert plain.returncode == 2
    one_error_line(plain)
    debug = run("--debug", "plugins", "which", "strategy", "nope")
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ComponentNotFoundError: unknown strategy 'nope'" in debug.stderr
