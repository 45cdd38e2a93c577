"""deepseek.models: the GPT decoder, its presets and the bidirectional text encoder.

Importing this package imports torch; the plugin registry refers to it only by lazy strings.
"""

from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.layers import Block, KVCache
from deepseek.models.presets import PRESETS, gpt_1_3b, preset_config, small, tiny

__all__ = ["GPT", "PRESETS", "Block", "GPTConfig", "KVCache", "gpt_1_3b", "preset_config", "small", "tiny"]
