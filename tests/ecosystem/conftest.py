"""tests/ecosystem: deepseek-core with its optional ecosystem extras installed (the nox session
``tests-ecosystem``): Hugging Face tokenizers/datasets/transformers, MLflow, W&B, TensorBoard."""

from __future__ import annotations

import pytest
import torch

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """A plugin host with core's built-ins only, whatever else is installed (one intra-op
    thread: the models here are tiny)."""
    torch.set_num_threads(1)
    return PluginHost(PluginSettings(autoload=False))
