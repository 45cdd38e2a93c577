"""The compiled static-decoding step (``compile_step``) when a pool holds more decoders than
torch.compile's ``recompile_limit`` (8 by default; 2 here, to keep the test short): serving prompts of many lengths builds one decoder per
batch size and cache length, and each must run a compiled step, not fall back to eager from the
ninth on. Real inductor on the CPU (no graphs); a tiny GPT keeps each compile to seconds."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.static_decoding import CACHE_STEP, StaticDecoders

pytestmark = pytest.mark.usefixtures("one_thread")


@torch._dynamo.config.patch(recompile_limit=2)  # the default 8 in miniature: 3 compiles, not 9
def test_every_decoder_of_a_pool_runs_a_compiled_step_past_the_recompile_limit() -> None:
    limit = torch._dynamo.config.recompile_limit
    assert limit == 2
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, d_model=16, n_heads=2, n_layers=1, max_seq_len=(limit + 2) * CACHE_STEP)).eval()
    pool = StaticDecoders(graphs=False, compile_step=True, keep=limit + 2)
    counters.clear()
    for i in range(limit + 1):  # prompt lengths whose caches are 1, 2, ... limit + 1 steps long
        idx = torch.randint(0, 64, (1, i * CACHE_STEP + 3), generator=torch.Generator().manual_seed(i))
        eager = model.generate(idx, 2, temperature=0.0)
        assert torch.equal(model.generate(idx, 2, temperature=0.0, static=pool), eager)
    assert sorted(length for _, length in pool.lengths()) == [(i + 1) * CACHE_STEP for i in range(limit + 1)]
    # one compiled graph per decoder: none fell back to the uncompiled step
    assert counters["stats"]["unique_graphs"] == limit + 1
