"""Arguments of the wrong kind given to ``deepseek.optimize``: one ``UsageError`` naming the
argument before anything is captured or timed, never a ``TypeError`` from the search; a NaN or
negative ``tolerance`` (which no pass, or every pass, would meet) is refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.errors import UsageError

MODEL = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


@pytest.mark.parametrize(("changes", "message"), [
    ({"passes": 5}, "passes: expected 'auto', a pass name or a list of pass names / GraphPass objects, got 5"),
    ({"stages": "inductor"}, "stages: expected a list of stage names such as ['inductor'], got 'inductor'"),
    ({"stages": [5]}, "stages: expected a list of stage names such as ['inductor'], got [5]"),
    ({"tolerance": float("nan")}, "tolerance: must be a finite number >= 0, got nan"),
    ({"tolerance": -1e-4}, "tolerance: must be a finite number >= 0, got -0.0001"),
    ({"tolerance": "1e-4"}, "tolerance: expected a number, got '1e-4' (str)"),
    ({"cache": "no"}, "cache: expected True or False, got 'no' (str)"),
    ({"cache_dir": 5}, "cache_dir: expected a path (a str or pathlib.Path), got 5 (int)"),
    ({"max_shapes": "8"}, "max_shapes: expected a whole number >= 1, got '8' (str)"),
    ({"runs": 0}, "runs: must be >= 1, got 0"),
    ({"warmup": 1.5}, "warmup: expected a whole number >= 0, got 1.5 (float)"),
    ({"host": "default"}, "host: expected a deepseek.plugins.host.PluginHost or None, got 'default' (str)"),
])
def test_an_optimize_argument_of_the_wrong_kind_is_one_line_naming_it(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        deepseek.optimize(MODEL, torch.randn(2, 4), **{"passes": "none", **changes})
    assert message in str(caught.value)
