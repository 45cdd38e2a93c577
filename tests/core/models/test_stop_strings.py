"""Stop strings (``deepseek generate --stop``): a sample ends before the first of them, exactly the
full-length sample cut there, and decoding ends early once every sample of a batch has ended (at a
stop string or at the document separator), so the skipped steps are never run."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deepseek.data.tokenizer import ByteTokenizer
from deepseek.errors import UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.training.inference import sample
from deepseek.training.serving import serve
from deepseek.training.stopping import CHECK_EVERY, check_stops, cut_at_stop

pytestmark = pytest.mark.usefixtures("one_thread")


class CountingGPT(GPT):
    """A GPT counting its decode calls (prefill and steps)."""

    calls = 0

    def forward_cached(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        type(self).calls += 1
        return super().forward_cached(x, cache)


def gpt(window: int = 64) -> CountingGPT:
    torch.manual_seed(0)
    return CountingGPT(GPTConfig(vocab_size=256, d_model=32, n_heads=4, n_layers=1, max_seq_len=window)).eval()


def test_cut_at_the_earliest_stop() -> None:
    assert cut_at_stop("abc\n\ndef", ["\n\n"]) == "abc"
    assert cut_at_stop("x = 1; y = 2", ["y", ";"]) == "x = 1"
    assert cut_at_stop("nothing", ["zz"]) == "nothing"
    with pytest.raises(UsageError, match=r"^--stop: an empty stop string would end every sample"):
        check_stops(["ok", ""])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_stopped_sample_is_the_full_sample_cut_and_decodes_fewer_steps(temperature: float) -> None:
    model = gpt()
    CountingGPT.calls = 0
    full = sample(model, "ab", max_new_tokens=60, temperature=temperature, top_k=None, seed=3,
                  tokenizer=ByteTokenizer())
    assert CountingGPT.calls == 60 and len(full) >= 20  # no separator in the first 60 tokens
    stop = full[10:12]
    expected = full[:full.find(stop)]
    CountingGPT.calls = 0
    stopped = sample(model, "ab", max_new_tokens=60, temperature=temperature, top_k=None, seed=3,
                     tokenizer=ByteTokenizer(), stop=[stop])
    assert stopped == expected
    # decoding ended at the first check after the stop text was complete, not after 60 tokens
    assert CountingGPT.calls < 60 and CountingGPT.calls % CHECK_EVERY == 0


def test_serve_stops_each_prompt_and_counts_the_tokens_decoded() -> None:
    model = gpt()
    prompts = ["ab", "cd", "efg"]
    full = serve(model, prompts, tokenizer=ByteTokenizer(), max_new_tokens=48, temperature=0.0, top_k=None)
    stops = [full.texts[0][6:8], full.texts[1][6:8], full.texts[2][6:8]]
    cut = serve(model, prompts, tokenizer=ByteTokenizer(), max_new_tokens=48, temperature=0.0, top_k=None,
                stop=stops)
    assert cut.texts == [cut_at_stop(t, stops) for t in full.texts]
    assert all(len(c) < len(f) for c, f in zip(cut.texts, full.texts, strict=True))
    assert full.new_tokens == 3 * 48 and cut.new_tokens < full.new_tokens
