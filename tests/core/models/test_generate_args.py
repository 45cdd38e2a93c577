"""Hostile arguments to a model's ``generate`` and to ``deepseek.training.inference.sample``:
each is one ``UsageError`` naming the argument, before any decoding, never a ``TypeError``,
``AttributeError`` or ``IndexError`` from inside torch; NaN or infinite temperatures and bools
for numbers are refused rather than decoded."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import deepseek
from deepseek.errors import UsageError
from deepseek.training.inference import sample


@pytest.fixture(scope="module")
def model() -> Any:
    return deepseek.create_model("tiny", n_layers=1, d_model=32, n_heads=2, max_seq_len=16).eval()


PROMPT = torch.tensor([[1, 2, 3, 4]])


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_new_tokens": "3"}, "generate: max_new_tokens: expected a whole number >= 0 and <= 1000000, got '3' (str)"),
    ({"max_new_tokens": 3.0}, "generate: max_new_tokens: expected a whole number >= 0 and <= 1000000, got 3.0 (float)"),
    ({"max_new_tokens": True}, "generate: max_new_tokens: expected a whole number >= 0 and <= 1000000, got True (bool)"),
    ({"max_new_tokens": -1}, "generate: max_new_tokens: must be >= 0 and <= 1000000, got -1"),
    ({"temperature": float("nan")}, "generate: temperature: must be a finite number >= 0, got nan"),
    ({"temperature": float("inf")}, "generate: temperature: must be a finite number >= 0, got inf"),
    ({"temperature": None}, "generate: temperature: expected a number, got None"),
    ({"top_k": 5.5}, "generate: top_k: expected a whole number >= 1 and <= 1000000, got 5.5 (float)"),
    ({"top_k": True}, "generate: top_k: expected a whole number >= 1 and <= 1000000, got True (bool)"),
    ({"top_k": 0}, "generate: top_k: must be >= 1 and <= 1000000, got 0"),
    ({"top_p": "0.9"}, "generate: top_p: expected a number, got '0.9' (str)"),
    ({"top_p": True}, "generate: top_p: expected a number, got True (bool)"),
    ({"repetition_penalty": True}, "generate: repetition_penalty: expected a number, got True (bool)"),
    ({"idx": [[1, 2, 3]]}, "generate: prompt (idx) must be a tensor of token ids (torch.long), got list"),
    ({"idx": torch.tensor([[1.0, 2.0]])}, "generate: prompt (idx) must be a tensor of token ids (torch.long), got a float32"),
    ({"idx": torch.tensor([[1, 300]])}, "generate: prompt (idx) holds token id 300, outside the model's 256 tokens (0 to 255)"),
    ({"idx": torch.tensor([[-1, 2]])}, "generate: prompt (idx) holds token id -1, outside the model's 256 tokens"),
    ({"generator": 5}, "generate: generator must be a torch.Generator or None, got int"),
    ({"on_token": "print"}, "generate: on_token must be a function of each new column of tokens, got str"),
])
def test_a_generate_argument_of_the_wrong_kind_is_one_line_naming_it(model: Any, changes: dict[str, Any],
                                                                     message: str) -> None:
    with pytest.raises(UsageError) as caught:
        model.generate(**{"idx": PROMPT, "max_new_tokens": 3, **changes})
    assert message in str(caught.value)


def test_numpy_integers_still_generate(model: Any) -> None:
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    got = model.generate(PROMPT, np.int64(3), top_k=np.int64(5), generator=g)
    assert got.shape == (1, 7)
    assert torch.equal(got, model.generate(PROMPT, 3, top_k=5, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(("changes", "message"), [
    ({"prompt": b"hi"}, "prompt: expected the text to continue (a str), got bytes"),
    ({"prompt": "\udcff"}, "prompt: character '\\udcff' at 0 is not text (a lone surrogate)"),
    ({"seed": "0"}, "seed: expected a whole number >= 0, got '0' (str)"),
    ({"seed": 2**70}, "seed: must be below 2**64"),
    ({"stop": "\n"}, "stop: expected a list of stop strings"),  # a str would be one stop per character
    ({"stop": [5]}, "stop: expected a list of stop strings"),
    ({"tokenizer": "bytes"}, "tokenizer: expected a deepseek.data.tokenizer.Tokenizer"),
])
def test_a_sample_argument_of_the_wrong_kind_is_one_line_naming_it(model: Any, changes: dict[str, Any],
                                                                   message: str) -> None:
    with pytest.raises(UsageError) as caught:
        sample(**{"model": model, "prompt": "hi", "max_new_tokens": 3, **changes})
    assert message in str(caught.value)
