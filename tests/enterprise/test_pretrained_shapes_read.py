"""``pretrained.file_shapes`` (a ``[model] pretrained`` run's weight shapes, from the header
alone) reads through ``deepseek.safetensors_file``: a FIFO where the weights belong is one line
naming it, never waited on (safetensors' safe_open blocked the whole process, holding the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from deepseek.errors import CheckpointError
from deepseek_enterprise.pretrained import file_shapes


def test_weight_shapes_are_read_once_and_a_fifo_is_refused(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    weights = tmp_path / "model.safetensors"
    save_file({"vision.proj.weight": torch.zeros(4, 3), "vision.proj.bias": torch.zeros(4)}, str(weights))
    assert file_shapes(weights) == {"vision.proj.weight": (4, 3), "vision.proj.bias": (4,)}
    weights.unlink()
    os.mkfifo(weights)
    with pytest.raises(CheckpointError) as caught:
        past_fifo(weights, lambda: file_shapes(weights))
    assert str(caught.value) == (f"{weights}: is not a regular file (a FIFO, device or socket), not a safetensors "
                                 "file of model weights")
