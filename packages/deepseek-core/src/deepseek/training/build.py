"""Building what a run needs from its config: model, optimizer factory, data, precision.

The model is built on the CPU in fp32 right after seeding, before any strategy moves or shards it,
so every strategy starts from the same weights.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.config.schema import Config, OptimizerConfig
from deepseek.errors import ConfigError
from deepseek.training.precision import Precision

if TYPE_CHECKING:
    from deepseek.data.loader import PackedBatches
    from deepseek.training.strategy import OptimizerFactory


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators (CPU and CUDA)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(
    config: Config, *, for_training: bool = True, device: torch.device | None = None
) -> nn.Module:
    """The ``[model]`` preset with its overrides, seeded with ``train.seed``, in fp32: on the CPU,
    or on ``device`` when ``train.init_device = "device"``.

    ``for_training`` also checks that ``data.seq_len`` fits the model."""
    from deepseek.plugins.registry import create_model

    seed_everything(config.train.seed)
    where = device if device is not None and config.train.init_device == "device" else torch.device("cpu")
    with torch.device(where):
        model = create_model(config.model.preset, **config.model.overrides())
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.preset: {config.model.preset!r} did not build a torch.nn.Module")
    model = model.float()
    max_len = getattr(getattr(model, "config", None), "max_seq_len", None)
    if for_training and max_len is not None and config.data.seq_len > max_len:
        raise ConfigError(
            f"data.seq_len: {config.data.seq_len} is longer than the model's max_seq_len={max_len}; "
            f"lower data.seq_len or set model.max_seq_len = {config.data.seq_len}"
        )
    return model


def prepare_model(model: nn.Module, config: Config) -> nn.Module:
    """Apply activation checkpointing, the residual dtype and ``torch.compile`` (per block, in place: parameter
    names do not change) before the strategy wraps the model, as torchtitan orders them."""
    if config.train.activation_checkpointing:
        setter = getattr(model, "set_activation_checkpointing", None)
        if setter is None:
            raise ConfigError(
                f"train.activation_checkpointing: model {config.model.preset!r} does not support it; "
                "set it to false"
            )
        setter(True)
    if not config.precision.fp32_residual:
        setter = getattr(model, "set_fp32_residual", None)
        if setter is None:
            raise ConfigError(
                f"precision.fp32_residual: model {config.model.preset!r} does not support it; set it to true"
            )
        setter(False)
    if config.train.compile:
        blocks = getattr(model, "blocks", None)
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            for block in blocks:
                block.compile()
        else:
            model.compile()
    return model


def build_precision(config: Config) -> Precision:
    """The ``[precision]`` section as a :class:`Precision` (``auto`` resolves on ``bind``)."""
    p = config.precision
    return Precision(p.dtype, init_scale=p.init_scale, growth_interval=p.growth_interval)


def optimizer_factory(config: OptimizerConfig, lr: float) -> OptimizerFactory:
    """Build the optimizer from parameters: weight decay on matrices (``ndim >= 2``) only.

    Parameter groups handed in (dicts) are used as they are. Group order is fixed (decay, then
    no decay; both always present) so optimizer checkpoints line up across strategies.
    """

    def factory(params: Iterable[Any]) -> torch.optim.Optimizer:
        items = list(params)
        if items and isinstance(items[0], dict):
            groups = items
            flat = [p for g in items for p in g["params"]]
        else:
            flat = [p for p in items if p.requires_grad]
            groups = [
                {"params": [p for p in flat if p.ndim >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in flat if p.ndim < 2], "weight_decay": 0.0},
            ]
        if config.name == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
        fused = config.fused
        if fused is None:
            fused = bool(flat) and all(p.is_cuda and type(p.data).__name__ != "DTensor" for p in flat)
        return torch.optim.AdamW(
            groups, lr=lr, betas=tuple(config.betas), eps=config.eps, fused=fused or None
        )

    return factory


def build_batches(config: Config) -> PackedBatches:
    """Training batches of the ``[data]`` corpus (global batches, seeded with ``train.seed``);
    their ``val_batches(n)`` are the fixed evaluation set."""
    from deepseek.data.corpus import open_corpus
    from deepseek.data.loader import PackedBatches

    d = config.data
    corpus = open_corpus(d.path or None, pattern=d.pattern or None, val_fraction=d.val_fraction)
    return PackedBatches(
        corpus, d.seq_len, d.batch_size, "train", seed=config.train.seed, shuffle_buffer=d.shuffle_buffer
    )
