"""deepseek.models: the model contract, the GPT decoder, its presets and the text encoder.

Importing this package imports torch; the plugin registry refers to it only by lazy strings.
"""

from deepseek.models.capabilities import CAPABILITIES, model_capabilities, require_capabilities
from deepseek.models.checks import split_output
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.layers import Block, KVCache
from deepseek.models.presets import PRESETS, preset_config
from deepseek.models.protocol import TensorParallelPlan, TrainableModel

__all__ = [
    "CAPABILITIES",
    "GPT",
    "PRESETS",
    "Block",
    "GPTConfig",
    "KVCache",
    "TensorParallelPlan",
    "TrainableModel",
    "model_capabilities",
    "preset_config",
    "require_capabilities",
    "split_output",
]
