"""Static-cache decoding (``deepseek.models.static_decoding``) on the CPU: the device-position
step without a graph gives the tokens of the eager KV-cache loop (greedy and sampled with a seed,
through window rebuilds and the ring's copy-outs, rows of a batch alike, on a cache sized to the
request or to the whole window), leaves the generator where eager decoding leaves it, and says
why a model cannot use it. The CUDA-graph capture itself
runs only on a CUDA device (skipped here with the reason)."""

from __future__ import annotations

import pytest
import torch
from _small_gpt import small_gpt

from deepseek.errors import UsageError
from deepseek.models.decoding import sample_next
from deepseek.models.gpt import GPT
from deepseek.models.layers import KVCursor
from deepseek.models.static_decoding import (
    RING,
    StaticDecoders,
    choose_static,
    static_cache_length,
    static_refusal,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def eager_and_static(model: GPT, idx: torch.Tensor, new: int, pool: StaticDecoders, **kw: object) -> tuple:
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = model.generate(idx, new, generator=gen_a, **kw)
    b = model.generate(idx, new, generator=gen_b, static=pool, **kw)
    return a, b, gen_a, gen_b


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (0.9, 10), (1.3, None)])
def test_tokens_equal_eager_through_window_rebuilds(temperature: float, top_k: int | None) -> None:
    model = small_gpt(window=16)
    idx = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))  # 3 different prompts
    pool = StaticDecoders(graphs=False, compile_step=False)
    # 5 + 40 positions in a 16-position window: the cache is rebuilt from 8 tokens several times.
    a, b, gen_a, gen_b = eager_and_static(model, idx, 40, pool, temperature=temperature, top_k=top_k)
    assert a.shape == (3, 45)
    assert torch.equal(a, b)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())  # the generator advanced as in eager decoding
    assert len(set(map(tuple, a[:, 5:].tolist()))) == 3  # the rows did differ


def test_more_tokens_than_the_ring_and_reuse_of_a_decoder() -> None:
    model = small_gpt(window=64)
    idx = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    pool = StaticDecoders(graphs=False, compile_step=False)
    new = 2 * RING + 9  # two copy-outs of the ring, window rebuilds too
    a, b, *_ = eager_and_static(model, idx, new, pool, temperature=0.0)
    assert torch.equal(a, b) and b.shape == (2, 7 + new)
    _, again, *_ = eager_and_static(model, idx, new, pool, temperature=0.0)
    assert torch.equal(again, b)
    assert pool.lengths() == [(2, 64)]  # the same decoder served the second call
    model.generate(idx[:1], 3, temperature=0.0, static=pool)
    assert pool.lengths() == [(2, 64), (1, 64)]  # one per batch size


def test_cache_length_is_the_request_rounded_up_and_capped_at_the_window() -> None:
    assert static_cache_length(128 + 64, 1024) == 192  # not the 1,024 positions of the window
    assert static_cache_length(129 + 64, 1024) == 256
    assert static_cache_length(2, 1024) == 64  # at least one step
    assert static_cache_length(1000 + 100, 1024) == 1024  # past the window: the window (rebuilds)
    assert static_cache_length(80, 100) == 100  # rounded past a window that is no multiple: capped
    assert static_cache_length(5, 16) == 16  # a window below one step
    assert static_cache_length(33, 1024, step=32) == 64
    with pytest.raises(ValueError, match="must be >= 1"):
        static_cache_length(10, 1024, step=0)


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (0.9, 10)])
def test_a_cache_sized_to_the_request_decodes_the_eager_tokens(temperature: float, top_k: int | None) -> None:
    model = small_gpt(window=256)
    pool = StaticDecoders(graphs=False, compile_step=False)
    idx = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))
    a, b, gen_a, gen_b = eager_and_static(model, idx, 40, pool, temperature=temperature, top_k=top_k)
    assert torch.equal(a, b) and b.shape == (3, 45)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())
    assert pool.lengths() == [(3, 64)]  # 5 + 40 positions: a 64-position cache, not 256
    longer = torch.randint(0, 64, (3, 9), generator=torch.Generator().manual_seed(2))
    a, b, *_ = eager_and_static(model, longer, 50, pool, temperature=temperature, top_k=top_k)
    assert torch.equal(a, b) and pool.lengths() == [(3, 64)]  # 9 + 50 fit the same decoder: reused
    a, b, *_ = eager_and_static(model, idx, 70, pool, temperature=temperature, top_k=top_k)
    assert torch.equal(a, b) and pool.lengths() == [(3, 64), (3, 128)]  # 5 + 70: the next size up


def test_requests_past_a_window_that_is_no_multiple_of_the_step_rebuild_as_eager() -> None:
    model = small_gpt(window=100)
    pool = StaticDecoders(graphs=False, compile_step=False)
    idx = torch.randint(0, 64, (2, 50), generator=torch.Generator().manual_seed(3))
    a, b, *_ = eager_and_static(model, idx, 30, pool, temperature=0.0)  # 80 rounds to 128: capped at 100
    assert torch.equal(a, b) and pool.lengths() == [(2, 100)]
    a, b, *_ = eager_and_static(model, idx, 130, pool, temperature=0.0)  # 50 + 130 > 100: rebuilt twice
    assert torch.equal(a, b) and b.shape == (2, 180) and pool.lengths() == [(2, 100)]
    prompt = torch.randint(0, 64, (2, 140), generator=torch.Generator().manual_seed(4))  # longer than the window
    a, b, *_ = eager_and_static(model, prompt, 20, pool, temperature=0.0)
    assert torch.equal(a, b) and b.shape == (2, 160) and pool.lengths() == [(2, 100)]


def test_rows_of_a_batch_decode_as_alone_and_columns_stream() -> None:
    model = small_gpt(window=32)
    idx = torch.randint(0, 64, (4, 6), generator=torch.Generator().manual_seed(3))
    pool = StaticDecoders(graphs=False, compile_step=False)
    columns: list[torch.Tensor] = []
    out = model.generate(idx, 30, temperature=0.0, static=pool, on_token=columns.append)
    assert torch.equal(torch.cat(columns, dim=1), out[:, 6:])
    for row in range(4):
        alone = model.generate(idx[row:row + 1], 30, temperature=0.0, static=pool)
        assert torch.equal(alone, out[row:row + 1])


def test_cursor_step_matches_the_cache_step() -> None:
    model = small_gpt(window=16)
    idx = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cache = model.new_cache(2, 16)
        model.forward_cached(idx[:, :8], cache)
        reference = model.forward_cached(idx[:, 8:], cache)
        static = model.new_cache(2, 16)
        model.forward_cached(idx[:, :8], static)
        cursor = KVCursor(static)
        cursor.position.fill_(8)
        step = model.forward_cached(idx[:, 8:], cursor)
    assert int(cursor.position) == 9
    torch.testing.assert_close(step, reference, rtol=1e-5, atol=1e-6)
    # Layer 0's new key comes before any attention: stored bit for bit at the device position.
    assert torch.equal(static.keys[0][:, :, :9], cache.keys[0][:, :, :9])
    torch.testing.assert_close(static.values[1][:, :, :9], cache.values[1][:, :, :9], rtol=1e-5, atol=1e-6)


def test_sampling_is_torch_multinomial_draw_for_draw() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(6))
    ours, theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for _ in range(20):
        token = sample_next(logits, 0.7, 12, ours)
        scaled = logits / 0.7
        kth = torch.topk(scaled, 12, dim=-1).values[:, -1:]
        probs = torch.softmax(scaled.masked_fill(scaled < kth, float("-inf")), dim=-1)
        assert torch.equal(token, torch.multinomial(probs, 1, generator=theirs))


def test_refusals_name_the_reason() -> None:
    model = small_gpt()
    assert static_refusal(model, graphs=False) is None
    assert static_refusal(model) == "the model is on cpu, CUDA graphs need a CUDA device"
    assert "offers no whole-model KV-cache decoding" in (static_refusal(torch.nn.Linear(2, 2)) or "")
    stage = model.split_stages(1)[0]  # offers cached_decoding, does not declare static_decoding
    assert "does not declare static_decoding" in (static_refusal(stage, graphs=False) or "")
    assert choose_static(model, None) == (None, None)  # CPU, not asked: eager, nothing to say
    assert choose_static(model, False) == (None, None)
    with pytest.raises(UsageError, match=r"^--cuda-graphs: the model is on cpu, CUDA graphs need a CUDA device; "):
        choose_static(model, True)
    with pytest.raises(UsageError, match=r"^--compile-step: compiles the CUDA-graph step, and there is none here "
                                         r"\(--no-cuda-graphs\); drop --compile-step$"):
        choose_static(model, False, compile_step=True)
    assert choose_static(model, None, compile_step=False) == (None, None)
    with pytest.raises(UsageError, match="static-cache decoding cannot serve this model"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 2, static=StaticDecoders())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: captures CUDA graphs")
@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, None), (0.8, None), (0.8, 0.9)])
def test_cuda_graph_tokens_equal_eager(temperature: float, top_p: float | None) -> None:
    model = small_gpt(window=32).cuda()
    idx = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1)).cuda()
    gen_a, gen_b = torch.Generator("cuda").manual_seed(5), torch.Generator("cuda").manual_seed(5)
    a = model.generate(idx, 70, temperature=temperature, top_k=20, top_p=top_p, generator=gen_a)
    b = model.generate(idx, 70, temperature=temperature, top_k=20, top_p=top_p, generator=gen_b,
                       static=StaticDecoders(compile_step=False))
    assert torch.equal(a, b)
