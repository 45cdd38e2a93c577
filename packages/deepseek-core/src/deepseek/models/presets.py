"""GPT presets, registered as models ``tiny``, ``small`` and ``1.3b``.

A preset is a GPT with other defaults: its ``Options`` is a :class:`GPTConfig` subclass whose
defaults are the preset's shape, so ``[model] name = "small"`` with ``n_layers = 6`` is the small
GPT with six layers, validated like every ``[model]`` key. ``d_ff`` defaults to ``4 * d_model``.

Parameter counts (byte vocabulary of 256, biases on, tied embeddings):
``tiny`` 0.83 M, ``small`` 85.8 M, ``1.3b`` 1,213,321,216.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepseek.config.validate import build_dataclass
from deepseek.models.gpt import GPTConfig

if TYPE_CHECKING:
    from deepseek.models.gpt import GPT


@dataclass(frozen=True)
class TinyOptions(GPTConfig):
    """``tiny``: trains on 2 CPU cores in a minute or two and visibly learns byte statistics."""

    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    max_seq_len: int = 128


@dataclass(frozen=True)
class SmallOptions(GPTConfig):
    """``small``: the seed's V1 "lightweight variant", 768 hidden, 12 heads, 12 layers."""

    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    max_seq_len: int = 1024


@dataclass(frozen=True)
class Large13BOptions(GPTConfig):
    """``1.3b``: 2048 hidden, 16 heads, 24 layers, 2048 positions (1.21e9 parameters)."""

    d_model: int = 2048
    n_heads: int = 16
    n_layers: int = 24
    max_seq_len: int = 2048


class GPTPreset:
    """A registered model target: builds a :class:`~deepseek.models.gpt.GPT` from the preset's
    ``Options``."""

    def __init__(self, name: str, options: type[GPTConfig]) -> None:
        self.name = name
        self.Options = options

    def __call__(self, options: GPTConfig) -> GPT:
        from deepseek.models.gpt import GPT

        return GPT(options)

    def __repr__(self) -> str:
        return f"GPTPreset({self.name!r})"


tiny = GPTPreset("tiny", TinyOptions)
small = GPTPreset("small", SmallOptions)
gpt_1_3b = GPTPreset("1.3b", Large13BOptions)

PRESETS: dict[str, GPTPreset] = {p.name: p for p in (tiny, small, gpt_1_3b)}
"""The presets by registered name."""


def preset_config(name: str, **overrides: Any) -> GPTConfig:
    """Preset ``name``'s shape with ``overrides`` applied and validated (field paths ``model.*``)."""
    from deepseek.config.validate import did_you_mean
    from deepseek.errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"model: unknown preset {name!r}{did_you_mean(name, PRESETS)}; choose from {', '.join(PRESETS)}")
    return build_dataclass(PRESETS[name].Options, overrides, path="model")
