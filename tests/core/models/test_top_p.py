"""Nucleus sampling (``top_p``): :func:`~deepseek.models.decoding.sample_next` draws from the fewest
likeliest tokens holding ``top_p`` of the probability, draw for draw as ``torch.multinomial`` over
that set; ``top_p=1`` is no filter and a tiny one is greedy; static-cache decoding gives the eager
tokens; a model whose ``generate`` predates ``top_p`` still serves requests without it and refuses
one with it in one line (``deepseek generate --top-p``: tests/core/cli/test_generate_top_p.py)."""

from __future__ import annotations

import pytest
import torch
from _small_gpt import small_gpt

from deepseek.errors import UsageError
from deepseek.models.decoding import sample_next
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.static_decoding import StaticDecoders
from deepseek.training.inference import sample

pytestmark = pytest.mark.usefixtures("one_thread")


def nucleus_reference(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """The nucleus written out row by row: probabilities after temperature and top-k, the
    likeliest tokens taken until they hold ``top_p``, renormalised."""
    scaled = logits.double() / temperature
    if top_k is not None:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    out = torch.zeros_like(probs)
    for row in range(probs.size(0)):
        total = 0.0
        for token in torch.argsort(probs[row], descending=True).tolist():
            out[row, token] = probs[row, token]
            total += float(probs[row, token])
            if total >= top_p:
                break
    return (out / out.sum(dim=-1, keepdim=True)).float()


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, None, 0.9), (0.7, 12, 0.5), (1.5, None, 0.3)])
def test_draws_are_multinomial_over_the_nucleus(temperature: float, top_k: int | None, top_p: float) -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(6)) * 2
    kept = nucleus_reference(logits, temperature, top_k, top_p) > 0
    assert (kept.sum(-1) < (top_k or 50)).all()  # the nucleus did cut tokens in every row
    ours = torch.Generator().manual_seed(9)
    seen = torch.zeros_like(kept)
    for _ in range(300):
        token = sample_next(logits, temperature, top_k, ours, top_p=top_p)
        seen.scatter_(1, token, True)
    assert not (seen & ~kept).any()  # nothing outside the nucleus was drawn
    assert (seen == kept).all()  # and, in 300 draws, every token of it was


def test_the_draw_follows_the_renormalised_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, 1.0, None, gen, top_p=0.7) for _ in range(4000)]).flatten()
    counts = torch.bincount(draws, minlength=4).double() / 4000
    # 0.5 + 0.3 reach 0.7: the nucleus is {0, 1}, drawn 5:3
    torch.testing.assert_close(counts, torch.tensor([0.625, 0.375, 0.0, 0.0], dtype=torch.double), atol=0.03, rtol=0)


def test_top_p_one_is_no_filter_and_a_tiny_one_is_greedy() -> None:
    model = small_gpt()
    idx = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    plain = model.generate(idx, 20, temperature=0.9, generator=torch.Generator().manual_seed(3))
    one = model.generate(idx, 20, temperature=0.9, generator=torch.Generator().manual_seed(3), top_p=1.0)
    assert torch.equal(plain, one)
    greedy = model.generate(idx, 20, temperature=0.0)
    tiny = model.generate(idx, 20, temperature=0.9, generator=torch.Generator().manual_seed(3), top_p=1e-6)
    assert torch.equal(greedy, tiny)


def test_static_cache_decoding_draws_the_eager_tokens_with_top_p() -> None:
    model = small_gpt(window=16)
    idx = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = model.generate(idx, 40, temperature=1.2, top_k=30, top_p=0.8, generator=gen_a)
    b = model.generate(idx, 40, temperature=1.2, top_k=30, top_p=0.8, generator=gen_b,
                       static=StaticDecoders(graphs=False, compile_step=False))
    assert torch.equal(a, b) and torch.equal(gen_a.get_state(), gen_b.get_state())


@pytest.mark.parametrize("top_p", [0.0, -0.1, 1.5, float("nan")])
def test_a_top_p_outside_zero_one_is_one_line(top_p: float) -> None:
    with pytest.raises(UsageError, match=r"^generate: top_p: must be a finite number > 0 and <= 1, got "):
        small_gpt().generate(torch.zeros(1, 2, dtype=torch.long), 2, top_p=top_p)


class OlderLM(GPT):
    """A plugin model whose ``generate`` was written before ``top_p``."""

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, on_token=None,  # noqa: ANN001, ANN201
                 static=None):
        return super().generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator,
                                on_token=on_token, static=static)


def test_a_generate_without_top_p_serves_the_rest_and_refuses_it_in_one_line() -> None:
    torch.manual_seed(0)
    older = OlderLM(GPTConfig(vocab_size=256, d_model=32, n_heads=4, n_layers=1, max_seq_len=16)).eval()
    assert sample(older, "ab", max_new_tokens=4, temperature=0.0, top_k=None)  # no top_p: served as before
    with pytest.raises(UsageError, match=r"^generate --top-p: the model's generate \(OlderLM\.generate\) takes no "
                       r"top_p; leave out --top-p, or give the method a top_p=None argument"):
        sample(older, "ab", max_new_tokens=4, top_p=0.9)
