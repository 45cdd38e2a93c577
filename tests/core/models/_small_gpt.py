"""The small GPT the decoding tests of this folder sample from (was written out in each of them)."""

from __future__ import annotations

import torch

from deepseek.models.gpt import GPT, GPTConfig


def small_gpt(window: int = 16, *, vocab_size: int = 64) -> GPT:
    """A seeded GPT of 2 layers, width 32, 4 heads, ``window`` positions and ``vocab_size`` ids, in eval mode."""
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, d_model=32, n_heads=4, n_layers=2, max_seq_len=window)).eval()
