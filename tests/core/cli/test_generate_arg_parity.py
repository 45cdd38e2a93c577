"""`deepseek generate` and `Model.generate` refuse the same decode values with the same rule:
for each bad value both give one line naming the argument and the same range ("a finite number
> 0 and <= 1"), and the CLI exits 2 (the rule itself: deepseek.api_args.real)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hostile_cli import invoke

from deepseek.api_args import DECODE_NUMBERS
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
def test_cli_and_python_refuse_a_value_with_the_same_range(option: str, name: str, text: str, value: Any,
                                                          tmp_path: Path, core_host: PluginHost) -> None:
    said = python_line(name, value)
    assert said.startswith(f"generate: {name}: must be a finite number ") and "\n" not in said
    rule = re.search(r"a finite number ([^,]+), got", said)
    assert rule is not None, said
    cli = invoke(["generate", "--checkpoint", str(tmp_path), option, text, "x"], core_host)
    assert cli.code == 2 and cli.stdout == ""
    line = cli.stderr.strip()
    assert "\n" not in line and option in line and f"a finite number {rule.group(1)}" in line, line


@pytest.mark.parametrize("name", sorted(DECODE_NUMBERS))
def test_each_cli_decode_option_takes_its_range_from_the_python_rule(name: str) -> None:
    """The options' bounds are read from api_args.DECODE_NUMBERS, not restated: the range the CLI
    prints is the one Python's check prints for a value outside it."""
    from deepseek.cli.generate_cmd import generate

    option = next(p for p in generate.params if p.name == name)
    below = DECODE_NUMBERS[name]["low"] - 1.0
    said = python_line(name, below)
    rule = re.search(r"a finite number ([^,]+), got", said)
    assert rule is not None, said
    assert option.type.expected() == f"give a finite number {rule.group(1)}"  # type: ignore[attr-defined]
