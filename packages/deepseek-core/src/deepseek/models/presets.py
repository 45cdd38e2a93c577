"""GPT presets, registered as models ``tiny``, ``small`` and ``1.3b``.

Each builder takes config overrides (validated: an unknown key is a ConfigError with a
did-you-mean) and an optional ``device``; ``device="meta"`` builds the model without allocating
memory (parameter counts, FLOP estimates, sharded initialisation).

Parameter counts (byte vocabulary of 256, biases on, tied embeddings):
``tiny`` 0.83 M, ``small`` 85.8 M, ``1.3b`` 1,213,321,216.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from deepseek.config.validate import build_dataclass
from deepseek.models.gpt import GPTConfig

if TYPE_CHECKING:
    import torch

    from deepseek.models.gpt import GPT

PRESETS: dict[str, GPTConfig] = {
    # Trains on 2 CPU cores in a minute or two and visibly learns the stdlib's byte statistics.
    "tiny": GPTConfig(d_model=128, n_heads=4, n_layers=4, max_seq_len=128),
    # The seed's V1 "lightweight variant": 768 hidden, 12 heads, 12 layers.
    "small": GPTConfig(d_model=768, n_heads=12, n_layers=12, max_seq_len=1024),
    "1.3b": GPTConfig(d_model=2048, n_heads=16, n_layers=24, max_seq_len=2048),
}


def preset_config(name: str, **overrides: Any) -> GPTConfig:
    """The preset's config with ``overrides`` applied and validated (field paths ``model.*``)."""
    from deepseek.config.validate import did_you_mean
    from deepseek.errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"model: unknown preset {name!r}{did_you_mean(name, PRESETS)}; choose from {', '.join(PRESETS)}")
    base = dataclasses.asdict(PRESETS[name])
    if "d_model" in overrides and "d_ff" not in overrides:
        base["d_ff"] = None  # keep d_ff = 4 * d_model when only the width changes
    base.update(overrides)
    return build_dataclass(GPTConfig, base, path="model")


def build(name: str, *, device: torch.device | str | None = None, **overrides: Any) -> GPT:
    """Build preset ``name`` with ``overrides`` on ``device`` (default: the current default)."""
    import torch

    from deepseek.models.gpt import GPT

    config = preset_config(name, **overrides)
    if device is None:
        return GPT(config)
    with torch.device(device):
        return GPT(config)


def tiny(*, device: torch.device | str | None = None, **overrides: Any) -> GPT:
    """GPT ``tiny``: 128 hidden, 4 heads, 4 layers, 128 positions (CPU demo and tests)."""
    return build("tiny", device=device, **overrides)


def small(*, device: torch.device | str | None = None, **overrides: Any) -> GPT:
    """GPT ``small``: 768 hidden, 12 heads, 12 layers, 1024 positions."""
    return build("small", device=device, **overrides)


def gpt_1_3b(*, device: torch.device | str | None = None, **overrides: Any) -> GPT:
    """GPT ``1.3b``: 2048 hidden, 16 heads, 24 layers, 2048 positions (1.21e9 parameters)."""
    return build("1.3b", device=device, **overrides)
