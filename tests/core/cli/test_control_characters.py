"""A line break, ESC or other character that does not print, in a path the user gave: the success
output printed it raw (``run folder: runs/a`` then ``b`` on a line of its own, and an ESC sequence
recoloured the terminal), and errors escaped line breaks only. Now every such character is written
as its escape by one rule (deepseek.errors): an error line escapes it (``one_line``), a path a line
of output names is in bash's ``$'...'`` quoting (``shown``), and a command a line suggests quotes
it so that pasted into bash it names the same path (``shell_quoted``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile, invoke

from deepseek.errors import UsageError, one_line, shell_quoted, shown
from deepseek.plugins.host import PluginHost

NAME = "a\nb\x1b[31mred\tc"
"""A folder name with a line break, an ESC colour sequence and a tab."""


def bash_reads(word: str) -> bytes:
    """The bytes bash makes of ``word`` as one argument."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    return subprocess.run([bash, "-c", f"printf %s {word}"], capture_output=True, check=True).stdout


@pytest.mark.parametrize("text", [NAME, "it's \\ here\n", "caf\u00e9\u2028x", "bad\udcffbyte\x7f"])
def test_a_quoted_path_reads_back_as_itself_in_bash(text: str) -> None:
    assert bash_reads(shell_quoted(text)) == text.encode("utf-8", "surrogateescape")


def test_printable_text_is_left_as_it_is() -> None:
    assert shown("runs/my run") == "runs/my run" and shell_quoted("runs/my run") == "'runs/my run'"
    assert one_line("caf\u00e9: no such file") == "caf\u00e9: no such file"


def test_every_character_that_does_not_print_is_escaped_in_an_error() -> None:
    assert str(UsageError(f"{NAME}: no such file")) == "a\\nb\\x1b[31mred\\tc: no such file"
    assert shown(NAME) == "$'a\\nb\\x1b[31mred\\tc'"


def test_the_run_folder_and_the_try_line_quote_it(hostile: Hostile, trained_run: Path) -> None:
    out = hostile.run("train", *TINY, "--run-dir", f"runs/{NAME}")
    assert out.code == 0, out.stderr
    assert "\x1b" not in out.stdout + out.stderr, (out.stdout, out.stderr)
    lines = out.stdout.splitlines()
    assert "run folder: $'runs/a\\nb\\x1b[31mred\\tc' (created folder runs)" in lines, lines
    (tried,) = [line for line in lines if line.startswith("try: ")]
    word = tried.split(" --checkpoint ")[1].split(" ")[0]
    assert bash_reads(word) == f"runs/{NAME}".encode(), tried
    assert (hostile.work / "runs" / NAME / "checkpoints").is_dir()


def test_an_error_naming_it_is_one_line_without_the_escape_character(hostile: Hostile) -> None:
    line = hostile.refused("eval", "--checkpoint", f"gone/{NAME}",
                           expect=["gone/a\\nb\\x1b[31mred\\tc: no such checkpoint"])
    assert "\x1b" not in line and "\t" not in line, line


def test_a_resume_says_where_from_on_one_line(tmp_path: Path, core_host: PluginHost, trained_run: Path) -> None:
    run = tmp_path / NAME
    shutil.copytree(trained_run, run)
    out = invoke(["train", *TINY, "--max-steps", "2", "--resume", str(run)], core_host)
    assert out.code == 0, out.stderr
    assert f"resumed from {shown(run / 'checkpoints' / 'step-1')} at step 1" in out.stderr, out.stderr
    assert "\x1b" not in out.stderr + out.stdout
    notes = [line for line in (run / "config.toml").read_text().splitlines() if "resumed from" in line]
    assert notes and all(line.startswith("#") for line in notes), notes
