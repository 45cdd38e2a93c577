"""Repetition penalty (Hugging Face's ``repetition_penalty``): the logits of tokens already in the
prompt or the output are divided by the penalty where positive and multiplied where negative,
before temperature and the greedy choice. Checked against a plain loop over the logits, in greedy
decoding built so that the penalty changes the tokens, against a cache-free reference decode of a
GPT, on the static-cache path (eager steps on CPU; CUDA graphs only on CUDA), and 1.0 leaves
today's tokens bit for bit. ``deepseek generate --repetition-penalty``:
tests/core/cli/test_generate_sampling.py; against transformers' processor: tests/ecosystem."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _small_gpt import small_gpt

from deepseek.errors import UsageError
from deepseek.models.decoding import decode, penalize_repeats, sample_next
from deepseek.models.gpt import GPT
from deepseek.models.sampling import sampling_arguments
from deepseek.models.static_decoding import StaticDecoders

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_penalty(logits: torch.Tensor, seen_ids: list[list[int]], penalty: float) -> torch.Tensor:
    """The penalty written out element by element over each row's seen token ids."""
    out = logits.clone()
    for row, ids in enumerate(seen_ids):
        for token in set(ids):
            value = logits[row, token]  # a float32 element: the arithmetic of the logits' dtype
            out[row, token] = value * penalty if value < 0 else value / penalty
    return out


@pytest.mark.parametrize("penalty", [1.3, 0.7, 2.0])
def test_penalty_is_the_loop_over_logits(penalty: float) -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 40, generator=gen) * 3
    ids = torch.randint(0, 40, (3, 12), generator=gen)
    seen = torch.zeros(3, 40, dtype=torch.bool).scatter_(1, ids, True)
    ours = penalize_repeats(logits, seen, penalty)
    expected = reference_penalty(logits, ids.tolist(), penalty)
    assert torch.equal(ours, expected)
    assert not torch.equal(ours, logits)
    # the greedy choice is the reference's argmax
    assert torch.equal(sample_next(logits, 0.0, None, None, repetition_penalty=penalty, seen=seen),
                       expected.argmax(-1, keepdim=True))


class Fixed:
    """A "model" whose next logits are always the same row: token 3 likeliest (5.0), then 7 (4.0),
    then 5 (3.0), token 9 negative (-1.0), the rest -2.0."""

    def __init__(self) -> None:
        row = torch.full((20,), -2.0)
        row[3], row[7], row[5], row[9] = 5.0, 4.0, 3.0, -1.0
        self.row = row

    def next_logits(self, ids: torch.Tensor, cache: SimpleNamespace) -> torch.Tensor:
        cache.length = min(cache.length + ids.size(1), cache.window)
        return self.row.expand(ids.size(0), -1).clone()

    def new_cache(self, batch: int, window: int) -> SimpleNamespace:
        return SimpleNamespace(length=0, window=window)


def greedy(prompt: list[int], steps: int, penalty: float, window: int = 8) -> list[int]:
    fixed = Fixed()
    out = decode(fixed.next_logits, fixed.new_cache, torch.tensor([prompt]), steps, window=window,
                 temperature=0.0, repetition_penalty=penalty)
    return out[0, len(prompt):].tolist()


def test_greedy_decoding_with_the_penalty_takes_other_tokens() -> None:
    assert greedy([1, 2], 4, 1.0) == [3, 3, 3, 3]
    # 3 seen: 5/2 = 2.5 < 4, so 7; then 3 and 7 seen: 5 (3.0) beats 2.5 and 2.0; then 2.5 > 2.0 > 1.5: 3
    assert greedy([1, 2], 4, 2.0) == [3, 7, 5, 3]
    # a prompt token is penalised too, even before the window (20 tokens, window 8), and still after
    # the cache is rebuilt from the last half window (before the second token), which no longer holds it
    assert greedy([3] + [1] * 19, 2, 2.0) == [7, 5]
    # 1.5: 5/1.5 = 3.33 < 4, so 7 after 3; then 3.33 > 3.0 > 2.67: 3 again
    assert greedy([1], 3, 1.5) == [3, 7, 3]


def test_a_negative_logit_is_multiplied() -> None:
    logits = torch.tensor([[-1.0, -1.5, -3.0]])
    seen = torch.tensor([[True, False, False]])
    # -1 * 2 = -2 < -1.5: token 1 is now the greedy choice
    assert sample_next(logits, 0.0, None, None, repetition_penalty=2.0, seen=seen).item() == 1
    assert sample_next(logits, 0.0, None, None).item() == 0


def reference_decode(model: GPT, idx: torch.Tensor, steps: int, penalty: float) -> torch.Tensor:
    """Greedy decoding without a cache reuse: each step feeds the whole sequence to a fresh cache,
    takes the last logits and penalises every token of the sequence so far in a loop."""
    seq = idx.clone()
    for _ in range(steps):
        logits = model.forward_cached(seq, model.new_cache(seq.size(0), model.decode_window()))[:, -1].float()
        logits = reference_penalty(logits, seq.tolist(), penalty)
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    return seq


def test_gpt_greedy_matches_the_reference_and_differs_without_the_penalty() -> None:
    model = small_gpt(window=32)
    idx = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.generate(idx, 20, temperature=0.0)
        penalized = model.generate(idx, 20, temperature=0.0, repetition_penalty=1.8)
        expected = reference_decode(model, idx, 20, 1.8)
    assert torch.equal(penalized, expected)
    assert not torch.equal(penalized, plain)
    # the untrained model repeats itself; the penalty repeats less
    def distinct(t: torch.Tensor) -> int:
        return sum(len(set(row)) for row in t[:, 5:].tolist())
    assert distinct(penalized) > distinct(plain)


def test_one_is_bit_identical_to_no_penalty() -> None:
    model = small_gpt(window=16)
    idx = torch.randint(0, 64, (2, 4), generator=torch.Generator().manual_seed(2))
    for temperature, top_k, top_p in [(0.0, None, None), (0.8, 20, None), (1.0, None, 0.9)]:
        before = model.generate(idx, 40, temperature=temperature, top_k=top_k, top_p=top_p,
                                generator=torch.Generator().manual_seed(4))
        one = model.generate(idx, 40, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=torch.Generator().manual_seed(4), repetition_penalty=1.0)
        assert torch.equal(before, one)
    assert sampling_arguments(model, top_p=None, repetition_penalty=1.0) == {}


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (0.9, 20)])
def test_static_cache_decodes_the_eager_tokens_through_window_rebuilds(temperature: float, top_k: int | None) -> None:
    model = small_gpt(window=16)
    idx = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(1))  # longer than the window
    pool = StaticDecoders(graphs=False, compile_step=False)
    for _ in range(2):  # the second request reuses the decoder: its seen tokens start over
        a = model.generate(idx, 40, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(5),
                           repetition_penalty=1.5)
        b = model.generate(idx, 40, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(5),
                           repetition_penalty=1.5, static=pool)
        assert torch.equal(a, b)
    assert len(pool.lengths()) == 1


def test_rows_of_a_batch_are_penalised_by_their_own_tokens() -> None:
    model = small_gpt(window=32)
    idx = torch.randint(0, 64, (3, 6), generator=torch.Generator().manual_seed(7))
    together = model.generate(idx, 15, temperature=0.0, repetition_penalty=1.6)
    for row in range(3):
        alone = model.generate(idx[row:row + 1], 15, temperature=0.0, repetition_penalty=1.6)
        assert torch.equal(together[row:row + 1], alone)


@pytest.mark.parametrize("bad", [0.0, -1.2, math.nan, math.inf])
def test_bad_values_are_refused_in_one_line(bad: float) -> None:
    model = small_gpt()
    with pytest.raises(UsageError, match="repetition_penalty: must be a finite number > 0") as info:
        model.generate(torch.zeros(1, 2, dtype=torch.long), 2, repetition_penalty=bad)
    assert "\n" not in str(info.value)


def test_a_generate_without_the_argument_is_refused_only_when_it_is_set() -> None:
    class Old(torch.nn.Module):
        def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, on_token=None,
                     static=None):  # written before the penalty existed
            return idx

    assert sampling_arguments(Old(), top_p=None) == {}
    with pytest.raises(UsageError, match="--repetition-penalty: the model's generate .* takes no repetition_penalty"):
        sampling_arguments(Old(), top_p=None, repetition_penalty=1.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: captures CUDA graphs")
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_cuda_graph_tokens_equal_eager(temperature: float) -> None:
    model = small_gpt(window=32).cuda()
    idx = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1)).cuda()
    gen_a, gen_b = torch.Generator("cuda").manual_seed(5), torch.Generator("cuda").manual_seed(5)
    a = model.generate(idx, 70, temperature=temperature, top_k=20, generator=gen_a, repetition_penalty=1.4)
    b = model.generate(idx, 70, temperature=temperature, top_k=20, generator=gen_b, repetition_penalty=1.4,
                       static=StaticDecoders(compile_step=False))
    assert torch.equal(a, b)
    plain = model.generate(idx, 70, temperature=0.0, top_k=20)
    if temperature == 0.0:
        assert not torch.equal(a, plain)
