"""Capability ``generation`` (``deepseek.models.capabilities``): declared by overriding
``TrainableModel.generate``, asked by ``deepseek generate`` and the trainer, never probed. A model
of one's own written as docs/plugins.md shows (``cached_decoding`` plus a ``generate`` that is one
call of ``generate_cached``) draws the GPT's tokens through window rebuilds and serves
``deepseek generate``'s ``sample``; a model without it is refused in one line saying how to add it,
even when it has a method called ``generate``."""

from __future__ import annotations

import inspect
import threading

import pytest
import torch
from _small_gpt import small_gpt
from torch import nn

from deepseek.data.tokenizer import ByteTokenizer
from deepseek.errors import PluginError, UsageError
from deepseek.models.capabilities import CAPABILITIES, model_capabilities, require_generation
from deepseek.models.declared import generation_vocab_size
from deepseek.models.decoding import generate_cached
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.protocol import GENERATION_HOWTO, TrainableModel
from deepseek.models.static_decoding import StaticDecoders
from deepseek.plugins.calls import PLUGIN_BUG, BrokenAnswer, blame_for, code_package
from deepseek.training.inference import generating_tokenizer, sample

pytestmark = pytest.mark.usefixtures("one_thread")


class CachedOnly(TrainableModel):
    """A model of one's own with ``cached_decoding`` (over a GPT's layers) and no ``generate``."""

    def __init__(self, inner: GPT) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids, targets)

    def new_cache(self, batch: int, max_len: int):
        return self.inner.new_cache(batch, max_len)

    def forward_cached(self, x: torch.Tensor, cache) -> torch.Tensor:
        return self.inner.forward_cached(x, cache)

    def decode_window(self) -> int:
        return self.inner.decode_window()


class MyLM(CachedOnly):
    """The same model with ``generate`` as docs/plugins.md writes it."""

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, on_token=None,
                 static=None):
        return generate_cached(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                               generator=generator, on_token=on_token, static=static)


class ProbedOnly(nn.Module):
    """Not a TrainableModel: a ``generate`` method here declares nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **_: object) -> torch.Tensor:
        return idx


def test_generation_is_a_capability_of_the_gpt_and_of_a_model_declaring_it() -> None:
    assert CAPABILITIES["generation"].methods == ("generate",)
    assert "generation" in model_capabilities(GPT)
    assert {"generation", "cached_decoding"} <= model_capabilities(MyLM)
    assert model_capabilities(CachedOnly) == {"cached_decoding"}
    assert model_capabilities(ProbedOnly) == frozenset()


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (0.9, 10)])
def test_the_documented_generate_draws_the_gpts_tokens_through_window_rebuilds(temperature: float,
                                                                               top_k: int | None) -> None:
    gpt = small_gpt(window=16, vocab_size=256)
    mine = MyLM(gpt)
    idx = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(1))
    columns: list[torch.Tensor] = []
    # 5 + 30 positions in a 16-position window: the cache is rebuilt from 8 tokens several times.
    a = gpt.generate(idx, 30, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(4))
    mine.train()
    b = mine.generate(idx, 30, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(4),
                      on_token=columns.append)
    assert b.shape == (2, 35) and torch.equal(a, b)
    assert torch.equal(torch.cat(columns, dim=1), b[:, 5:])
    assert mine.training  # its mode came back


def test_sample_serves_a_model_that_declares_generation() -> None:
    gpt = small_gpt(window=32, vocab_size=256)
    expected = sample(gpt, "def ", max_new_tokens=12, temperature=0.0, top_k=None)
    assert sample(MyLM(gpt), "def ", max_new_tokens=12, temperature=0.0, top_k=None) == expected
    assert len(expected.encode()) >= 1


def test_an_empty_prompt_starts_a_new_document_from_the_separator() -> None:
    """No prompt: the model continues the separator that ends every training document (byte 0
    for byte tokens), not some text of ours."""
    gpt = small_gpt(window=32, vocab_size=256)
    assert ByteTokenizer().prompt_ids("") == [0] and ByteTokenizer().prompt_ids("ab") == [97, 98]
    gen = torch.Generator().manual_seed(0)
    ids = gpt.generate(torch.tensor([[0]]), 6, temperature=0.0, top_k=None, generator=gen)[0, 1:].tolist()
    assert sample(gpt, "", max_new_tokens=6, temperature=0.0, top_k=None) == ByteTokenizer().decode_generated(ids)


def test_static_decoding_is_refused_for_a_model_without_it() -> None:
    mine = MyLM(small_gpt(vocab_size=256))
    with pytest.raises(UsageError, match=r"^generate: static-cache decoding cannot serve this model: the model "
                       r"\(MyLM\) does not declare static_decoding"):
        mine.generate(torch.zeros(1, 2, dtype=torch.long), 2, static=StaticDecoders(graphs=False))


@pytest.mark.parametrize("make", [lambda: CachedOnly(small_gpt(vocab_size=256)), lambda: ProbedOnly()],
                         ids=["cached-decoding-only", "plain-module-with-generate"])
def test_a_model_without_it_is_refused_in_one_line_saying_how(make) -> None:
    model = make()
    name = type(model).__name__
    with pytest.raises(UsageError) as refused:
        generating_tokenizer(model, None)
    message = str(refused.value)
    assert message == (f"generate: the model ({name}) does not generate text (capability 'generation'); "
                       f"{GENERATION_HOWTO}, or use a model that offers it, such as the GPT presets")
    assert "\n" not in message and "generate_cached" in message and "docs/plugins.md" in message
    # the method it names takes the contract's parameters, in their order (docs/plugins.md section 10)
    contract = [p for p in inspect.signature(TrainableModel.generate).parameters if p != "self"]
    assert f"a generate({', '.join(contract)}) method" in message
    with pytest.raises(UsageError, match=r"^eval: the model"):
        require_generation(model, command="eval")
    with pytest.raises(UsageError):
        sample(model, "x", max_new_tokens=2)


def test_the_default_generate_explains_itself() -> None:
    with pytest.raises(NotImplementedError) as raised:
        CachedOnly(small_gpt(vocab_size=256)).generate(torch.zeros(1, 2, dtype=torch.long), 2)
    assert str(raised.value) == (f"CachedOnly does not offer text generation (capability 'generation'); "
                                 f"{GENERATION_HOWTO}")


class DeclaresVocab(MyLM):
    """A plugin's model that declares the vocabulary its logits cover."""

    def __init__(self, inner: GPT, vocab: object) -> None:
        super().__init__(inner)
        self.vocab = vocab

    def generation_vocab_size(self):
        return self.vocab


class ConfigOnly(MyLM):
    """A ``config.vocab_size`` attribute declares nothing: the tokenizer is not checked against it."""

    def __init__(self, inner: GPT) -> None:
        super().__init__(inner)
        self.config = inner.config


def test_the_gpt_declares_its_vocabulary_and_the_default_is_unknown() -> None:
    assert small_gpt(vocab_size=256).generation_vocab_size() == 256
    assert GPT(GPTConfig(vocab_size=300, d_model=16, n_heads=2, n_layers=1)).generation_vocab_size() == 300
    assert MyLM(small_gpt(vocab_size=256)).generation_vocab_size() is None
    assert generation_vocab_size(ProbedOnly()) is None  # not a TrainableModel


def test_a_declared_vocabulary_is_checked_against_the_tokenizer() -> None:
    with pytest.raises(UsageError) as small:
        generating_tokenizer(DeclaresVocab(small_gpt(vocab_size=256), 100), None)
    assert str(small.value) == ("generate: the tokenizer has 256 tokens but the model's vocabulary only 100; "
                                "pass the run folder the model was trained in (its tokenizer.json)")
    with pytest.raises(UsageError) as large:
        generating_tokenizer(DeclaresVocab(small_gpt(vocab_size=256), 300), None)
    assert str(large.value).startswith("generate: the model has 300 token ids but no tokenizer.json was found "
                                       "with it, and byte tokens cover only 256; put the tokenizer.json")
    assert isinstance(generating_tokenizer(DeclaresVocab(small_gpt(vocab_size=256), 256), None), ByteTokenizer)


def test_a_model_declaring_no_vocabulary_is_not_checked() -> None:
    gpt = GPT(GPTConfig(vocab_size=64, d_model=16, n_heads=2, n_layers=1, max_seq_len=16)).eval()
    with pytest.raises(UsageError, match=r"^generate: the tokenizer has 256 tokens but the model's vocabulary "
                       r"only 64;"):
        generating_tokenizer(gpt, None)
    for undeclared in (MyLM(gpt), ConfigOnly(gpt)):
        assert isinstance(generating_tokenizer(undeclared, None), ByteTokenizer)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "256", True])
def test_a_declared_vocabulary_that_is_not_a_positive_int_is_the_models_bug(bad: object) -> None:
    """A broken ``generation_vocab_size`` is the model's answer, not the user's input: in the
    model's block (``sample``'s ``model_calls``, as ``deepseek generate`` passes it) a plugin
    model's one-line PluginError naming it (was: a UsageError, exit code 2, as if the user's);
    with nothing blamed (core's own model, a script's) the BrokenAnswer itself."""
    model = DeclaresVocab(small_gpt(vocab_size=256), bad)
    what = (f"generation_vocab_size() returned {bad!r}; it must return the number of token ids its logits cover "
            "(a positive int) or None when unknown")
    label = "model 'acme.lm' (deepseek-acme 0.1, registered by acme.plugin)"
    with pytest.raises(PluginError) as raised:
        sample(model, "hi", max_new_tokens=1, model_calls=blame_for(label, code_package(model)))
    assert str(raised.value) == f"{label}: {what}; {PLUGIN_BUG}"
    with pytest.raises(BrokenAnswer) as unblamed:
        generating_tokenizer(model, None)
    assert str(unblamed.value) == what


class DeclaresWindow(MyLM):
    """A plugin's model whose ``decode_window`` answers ``window``."""

    def __init__(self, inner: GPT, window: object) -> None:
        super().__init__(inner)
        self.window = window

    def decode_window(self):
        return self.window


@pytest.mark.parametrize(("bad", "got"), [(0, "0 (int)"), (True, "True (bool)"), (16.0, "16.0 (float)"),
                                          ("16", "'16' (str)"), (lambda: 16, "a function"),
                                          (threading.Lock(), "a lock")])
def test_a_decode_window_that_is_not_a_positive_int_is_the_models_bug(bad: object, got: str) -> None:
    """``generate_cached`` holds ``decode_window`` to its contract (a positive int) before decoding
    (was: read as a window: ``idx[:, -0:]``, a float's slice, a lambda compared with an int): a
    plugin's model, blamed in its ``model_calls`` block as ``deepseek generate`` runs it, ends with
    its one-line PluginError naming the model and what it returned, whatever the code that checked
    it; with nothing blamed (core's own model, a script's) it is the BrokenAnswer itself."""
    model = DeclaresWindow(small_gpt(vocab_size=256), bad)
    what = (f"decode_window returned {got}, not a positive int: the most positions its KV cache holds, the "
            "model's context length (docs/plugins.md, 'Models')")
    idx = torch.zeros(1, 2, dtype=torch.long)
    label = "model 'acme.lm' (deepseek-acme 0.1, registered by acme.plugin)"
    with pytest.raises(PluginError) as raised, blame_for(label, code_package(model))("generate"):
        model.generate(idx, 2)
    assert str(raised.value) == f"{label}: {what}; {PLUGIN_BUG}"
    with pytest.raises(BrokenAnswer) as unblamed, blame_for(None, None)("generate"):
        model.generate(idx, 2)
    assert str(unblamed.value) == what
    assert DeclaresWindow(small_gpt(vocab_size=256), 16).generate(idx, 2).shape == (1, 4)


def test_a_sample_ends_at_the_separator_the_model_writes() -> None:
    """decode_generated cuts at the first separator (not shown), as HF generate stops at EOS."""
    tok = ByteTokenizer()
    assert tok.decode_generated([104, 105, 0, 120, 0]) == "hi"
    assert tok.decode_generated(torch.tensor([104, 105])) == "hi"
    assert tok.decode_generated([0, 104]) == ""
