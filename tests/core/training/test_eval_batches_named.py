"""A count of validation batches past this machine's memory is named as the user gave it: the
``batches`` of ``deepseek.evaluate`` / ``evaluate_model`` as ``batches=N``, under a command as its
``--batches N``, and the config's own count as ``data.eval_batches N``
(:func:`deepseek.training.evaluation.batches_named`; the CLI's: tests/core/cli/test_hostile_numbers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek.arguments import command_line
from deepseek.errors import UsageError
from deepseek.training.build import build_model
from deepseek.training.inference import evaluate_model

HUGE = 10**20


def test_a_count_past_memory_is_named_as_given(tiny_config: Any) -> None:
    config = tiny_config()
    model = build_model(config)
    with pytest.raises(UsageError) as python:
        evaluate_model(model, config, HUGE)
    with command_line(), pytest.raises(UsageError) as command:
        evaluate_model(model, config, HUGE)
    own = tiny_config(data={"eval_batches": 10**15})
    with pytest.raises(UsageError) as configured:
        evaluate_model(model, own)
    rest = f" x data.batch_size {config.data.batch_size} x data.seq_len "
    assert str(python.value).startswith(f"batches={HUGE}{rest}")
    assert str(command.value).startswith(f"--batches {HUGE}{rest}")
    assert str(configured.value).startswith(f"data.eval_batches {10**15}{rest}")
    for refused in (python, command, configured):
        assert str(refused.value).endswith("GiB of memory; lower them")
