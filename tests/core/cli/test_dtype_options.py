"""The dtype names are one table (``deepseek.dtypes.DTYPE_NAMES``): ``--dtype`` of eval, generate
and export, ``dtype=`` of ``deepseek.evaluate`` / ``deepseek.export``, the dtype the weights are
cast to and the name an hf folder's config.json records all come from it (they were three lists:
the CLI option's, the checkpoint loader's and export's, one test keeping the first two equal)."""

from __future__ import annotations

import click
import pytest
import torch

import deepseek
from deepseek.dtypes import DTYPE_NAMES, TORCH_NAMES, torch_dtype
from deepseek.errors import UsageError


def _choices(command: click.Command) -> tuple[str, ...]:
    (option,) = [p for p in command.params if p.name == "dtype"]
    assert isinstance(option.type, click.Choice)
    return tuple(option.type.choices)


def test_every_dtype_option_takes_the_tables_names() -> None:
    from deepseek.cli.bench_cmd import latency
    from deepseek.cli.generate_cmd import generate
    from deepseek.cli.optimize_cmd import export
    from deepseek.cli.train_cmd import evaluate

    assert DTYPE_NAMES == {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    assert _choices(evaluate) == _choices(generate) == _choices(export) == ("fp32", "bf16", "fp16")
    assert _choices(latency) == TORCH_NAMES == ("float32", "bfloat16", "float16")


@pytest.mark.parametrize("call", [lambda: deepseek.export("nowhere", dtype="fp8"),
                                  lambda: deepseek.evaluate(checkpoint="nowhere", dtype="fp8")], ids=["export", "evaluate"])
def test_the_python_api_takes_the_same_names(call: object) -> None:
    with pytest.raises(UsageError, match=r"^dtype: expected one of 'fp32', 'bf16', 'fp16', got 'fp8'$"):
        call()  # type: ignore[operator]


def test_each_name_is_torchs_dtype_of_that_name() -> None:
    assert [torch_dtype(n) for n in DTYPE_NAMES] == [torch.float32, torch.bfloat16, torch.float16]
    assert [torch_dtype(n) for n in TORCH_NAMES] == [torch.float32, torch.bfloat16, torch.float16]
    assert all(str(torch_dtype(short)) == "torch." + name for short, name in DTYPE_NAMES.items())
    for other in ("fp8", "int8", "float64", "finfo", ""):
        with pytest.raises(KeyError):
            torch_dtype(other)
