"""The floating-point dtypes a command or a config names, in one table: ``--dtype`` of ``deepseek
eval``, ``generate`` and ``export --format hf`` (``dtype=`` of ``deepseek.evaluate`` and
``deepseek.export``), the precisions (``precision.dtype`` once resolved, fsdp's
``reduce_dtype``), and ``deepseek bench latency --dtype``, which takes torch's spelling.

Standard library only, so that the commands' options are built without importing torch: each
short name with torch's name of its dtype, which is also what Hugging Face writes as
``torch_dtype`` / ``dtype`` in a model folder's ``config.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""Short name (``--dtype``, ``precision.dtype``) -> torch's (and Hugging Face's) name of the dtype."""

TORCH_NAMES: tuple[str, ...] = tuple(DTYPE_NAMES.values())
"""torch's names of the same dtypes (``deepseek bench latency --dtype``)."""


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a short name (``fp32``) or of torch's name (``float32``) in the table;
    KeyError for any other name (the callers take their names from the table)."""
    import torch

    dtype = getattr(torch, DTYPE_NAMES.get(name, name if name in TORCH_NAMES else ""), None)
    if not isinstance(dtype, torch.dtype):
        raise KeyError(name)
    return dtype
