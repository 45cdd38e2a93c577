"""Model sizes that follow the data: a model whose options have ``vocab_size`` or ``num_classes``
gets the size its dataset declares (``Dataset.model_vocab_size``, ``Dataset.model_num_classes``)
when the config leaves the key out, and a smaller one set by hand is refused naming the key.

Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from deepseek.errors import ConfigError

DATA_SIZES: dict[str, tuple[str, str, str]] = {
    "vocab_size": ("model_vocab_size", "the {size} token ids of dataset {data!r} (its model_vocab_size; for "
                   "'text' and 'hf', data.tokenizer's vocabulary)", "follow the data"),
    "num_classes": ("model_num_classes", "the {size} classes of dataset {data!r} (its labels)", "follow the data"),
}
"""Model keys that follow the data: ``model.<key>`` -> (the ``Dataset`` classmethod declaring the
size from the data's options, what the size is, what leaving the key out does)."""


def follow_data_size(options: Any, key: str, size: int | None, *, explicit: bool, what: str, instead: str) -> Any:
    """A model size that follows the data (:data:`DATA_SIZES`: ``Dataset.model_vocab_size``, a
    tokenizer's; ``Dataset.model_num_classes``, the labels'): a model whose options have ``key``
    and do not set it gets the data's ``size``; a smaller one is refused, naming ``model.<key>``."""
    if size is None or not dataclasses.is_dataclass(options) or key not in {
        f.name for f in dataclasses.fields(options)
    }:
        return options
    if not explicit:
        return dataclasses.replace(options, **{key: size})
    if getattr(options, key) < size:
        raise DataSizeError(
            f"model.{key}: {getattr(options, key)} is smaller than {what}; "
            f"remove model.{key} to {instead}, or set it >= {size}", key=key, have=getattr(options, key), what=what)
    return options


class DataSizeError(ConfigError):
    """``model.<key>`` (:data:`DATA_SIZES`) is smaller than the data needs: ``have`` against
    ``what`` (a resume rewords it: there the model's size is the checkpoint's, not a choice)."""

    def __init__(self, message: str, *, key: str, have: int, what: str) -> None:
        super().__init__(message)
        self.key, self.have, self.what = key, have, what
