"""``[model.text]`` left out of a ``multimodal.classifier`` config: the small shape
``{d_model = 64, n_heads = 4, n_layers = 2, max_seq_len = 32}`` is core ``text.transformer``'s,
so only that encoder gets it; a plugin's text encoder gets its own defaults. It used to get the
transformer's shape too, and the config failed with ``model.text.n_heads: unknown key``, a key
the user never wrote (found by an outside author plugging a byte encoder in, docs only)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _hosts import enterprise_host, registering
from torch import nn

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.models.encoder import Encoder, EncoderOutput
from deepseek_enterprise.multimodal import TEXT_SHAPE


@dataclass(frozen=True)
class BytesOptions:
    width: int = 8
    """Feature width."""


class Bytes(Encoder):
    """Byte embeddings, nothing more."""

    Options = BytesOptions

    def __init__(self, options: BytesOptions) -> None:
        super().__init__()
        self.options = options
        self.embed = nn.Embedding(256, options.width)
        self.output_dim = options.width

    def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None = None) -> EncoderOutput:
        mask = torch.zeros(inputs.shape, dtype=torch.bool) if padding_mask is None else padding_mask
        return EncoderOutput(self.embed(inputs) * (~mask).unsqueeze(-1), mask)


def _model(**keys: object) -> dict[str, object]:
    host = enterprise_host((registering("deepseek_register_encoders", {"text.acme_bytes": Bytes}), "acme-text"))
    tables = {"model": {"name": "multimodal.classifier", "modalities": ["text"], "fusion": "late", **keys},
              "data": {"name": "multimodal.digits"}}
    return config_from_dict(tables, host=host).model.options


def test_a_plugins_text_encoder_gets_its_own_defaults() -> None:
    assert _model(text_encoder="text.acme_bytes").text == {"width": 8}
    assert _model(text_encoder="acme-text:text.acme_bytes").text == {"width": 8}


def test_text_transformer_keeps_the_small_shape_and_a_given_table_is_kept() -> None:
    text = _model().text
    assert {k: text[k] for k in TEXT_SHAPE} == TEXT_SHAPE
    assert _model(text_encoder="text.acme_bytes", text={"width": 4}).text == {"width": 4}
    # every key of the table in the one line (d_model alone, one per run, before)
    with pytest.raises(ConfigError, match=r"^model\.text: unknown keys for encoder 'text\.acme_bytes': d_model, max_seq_len, "
                       r"n_heads, n_layers \(encoder 'text\.transformer' \(deepseek-core\) takes them\); set "
                       r"model\.text_encoder = \"text\.transformer\", or remove them \(--set '~model\.text\.d_model' "):
        _model(text_encoder="text.acme_bytes", text=dict(TEXT_SHAPE))


def test_multimodal_md_says_whose_the_small_shape_is() -> None:
    from pathlib import Path

    page = " ".join((Path(__file__).resolve().parents[2] / "docs" / "multimodal.md").read_text(encoding="utf-8").split())
    assert ("The small shape is `text.transformer`'s alone: with another `text_encoder` (a plugin's) and no "
            "`[model.text]`, that encoder runs with its own defaults.") in page
