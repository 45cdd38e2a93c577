"""`deepseek generate` and `Model.generate` refuse the same decode values with the same rule and
the same words: for each bad value both give one line, naming the argument as each surface calls
it (`--top-p`, `generate: top_p`), then the same text after it (range, value, hint: one formatter,
deepseek.api_args.real), and the CLI exits 2 with nothing on stdout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hostile_cli import invoke

from deepseek.api_args import DECODE_NUMBERS, DECODE_WHOLE
from deepseek.errors import UsageError
from deepseek.models.decoding import check_request
from deepseek.plugins.host import PluginHost

CASES = [
    ("--top-p", "top_p", "0", 0.0),
    ("--top-p", "top_p", "1.5", 1.5),
    ("--top-p", "top_p", "nan", float("nan")),
    ("--repetition-penalty", "repetition_penalty", "0", 0.0),
    ("--repetition-penalty", "repetition_penalty", "-1.2", -1.2),
    ("--temperature", "temperature", "-0.5", -0.5),
    ("--temperature", "temperature", "inf", float("inf")),
]


def python_line(name: str, value: Any) -> str:
    args: dict[str, Any] = {"max_new_tokens": 2, "temperature": 0.8, "top_k": 50}
    args[name] = value
    with pytest.raises(UsageError) as info:
        check_request(torch.zeros(1, 2, dtype=torch.long), **args)
    return str(info.value)


@pytest.mark.parametrize(("option", "name", "text", "value"), CASES)
def test_cli_and_python_refuse_a_value_with_the_same_words(option: str, name: str, text: str, value: Any,
                                                          tmp_path: Path, core_host: PluginHost) -> None:
    said = python_line(name, value)
    assert said.startswith(f"generate: {name}: must be a finite number ") and "\n" not in said, said
    assert said.endswith(DECODE_NUMBERS[name]["hint"]), said
    cli = invoke(["generate", "--checkpoint", str(tmp_path), option, text, "x"], core_host)
    assert cli.code == 2 and cli.stdout == ""
    line = cli.stderr.strip()
    assert "\n" not in line, line
    assert line == "error: " + said.replace(f"generate: {name}: ", f"{option}: ", 1), (line, said)


def test_text_that_is_no_number_reads_the_same_after_the_name(tmp_path: Path, core_host: PluginHost) -> None:
    said = python_line("temperature", "warm")
    assert said.startswith("generate: temperature: expected a number, got 'warm' (str);"), said
    cli = invoke(["generate", "--checkpoint", str(tmp_path), "--temperature", "warm", "x"], core_host)
    assert cli.code == 2 and cli.stdout == ""
    # the command line has only text, so it names no Python type; the rest is the same line
    assert cli.stderr.strip() == "error: " + said.replace("generate: temperature: ", "--temperature: ", 1).replace(
        " (str)", "", 1)


@pytest.mark.parametrize("name", sorted(DECODE_NUMBERS))
def test_each_cli_decode_option_takes_its_range_from_the_python_rule(name: str, tmp_path: Path,
                                                                  core_host: PluginHost) -> None:
    """The options' bounds are read from api_args.DECODE_NUMBERS, not restated: just below the
    low end both surfaces refuse, with the same line after the name."""
    from deepseek.cli.generate_cmd import generate

    option = next(p for p in generate.params if p.name == name)
    flag = option.opts[0]
    below = DECODE_NUMBERS[name]["low"] - 1.0
    said = python_line(name, below)
    assert re.search(r"a finite number [^,]+, got -", said), said
    cli = invoke(["generate", "--checkpoint", str(tmp_path), flag, repr(below), "x"], core_host)
    assert cli.code == 2
    assert cli.stderr.strip() == "error: " + said.replace(f"generate: {name}: ", f"{flag}: ", 1)
    at_low = DECODE_NUMBERS[name]["low"]
    accepted = invoke(["generate", "--checkpoint", str(tmp_path / "none"), flag, repr(at_low), "x"], core_host)
    # the low end itself: refused exactly where Python refuses it (top_p and repetition_penalty
    # exclude it), else the command goes on to the missing checkpoint
    if DECODE_NUMBERS[name].get("open_low"):
        assert accepted.stderr.strip().startswith(f"error: {flag}: must be"), accepted.stderr
    else:
        assert flag not in accepted.stderr and accepted.code != 0, accepted.stderr


@pytest.mark.parametrize(("option", "name", "value"), [
    ("--top-k", "top_k", 10**30),
    ("--top-k", "top_k", 1_000_001),
    ("--max-new-tokens", "max_new_tokens", 10**30),
])
def test_a_huge_whole_number_is_refused_with_its_range_by_both(option: str, name: str, value: int, tmp_path: Path,
                                                               core_host: PluginHost) -> None:
    """``--top-k 10**30`` was taken (and kept every token); ``top_k=10**30`` in Python too: both now
    name the range, from the one table (deepseek.api_args.DECODE_WHOLE)."""
    least, most = DECODE_WHOLE[name]
    assert python_line(name, value) == f"generate: {name}: must be >= {least} and <= {most}, got {value}"
    cli = invoke(["generate", "--checkpoint", str(tmp_path), option, str(value), "x"], core_host)
    assert cli.code == 2 and cli.stdout == ""
    assert cli.stderr.strip() == (f"error: Invalid value for '{option}': {value} is not in the range "
                                  f"{least}<=x<={most}. (see 'deepseek generate --help')"), cli.stderr


def test_the_largest_values_in_range_pass_the_check() -> None:
    for name, (_, most) in DECODE_WHOLE.items():
        args: dict[str, Any] = {"max_new_tokens": 2, "temperature": 0.8, "top_k": 50, name: most}
        check_request(torch.zeros(1, 2, dtype=torch.long), **args)  # no error


def test_a_huge_batch_size_is_refused(tmp_path: Path, core_host: PluginHost) -> None:
    cli = invoke(["generate", "--checkpoint", str(tmp_path), "--prompts", str(tmp_path / "p.txt"), "--batch-size",
                  str(10**30)], core_host)
    assert cli.code == 2 and cli.stdout == ""
    assert "'--batch-size': 1000000000000000000000000000000 is not in the range 1<=x<=65536." in cli.stderr
