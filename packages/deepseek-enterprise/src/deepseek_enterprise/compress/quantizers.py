"""The ``quantize.*`` compressors and their options (torchao's schemes, :mod:`.quantize`).

This module imports no torch (its compressors declare ``loads_without_torch``): the job service
loads it to check a ``compress`` job's ``--set`` and ``--recipe`` options for these compressors at
submit, with the checks and lines ``deepseek compress`` uses (:func:`.compressor.create_compressor`).
What quantizing needs (torch, torchao, the ``quantized`` model) is in :mod:`.quantize`, imported
when a compressor checks a model or compresses one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from deepseek.errors import UsageError
from deepseek_enterprise.compress.compressor import (
    Compressed,
    Compressor,
    figures_record,
    linear_weight_bytes,
)

Scheme = Literal["int8", "int8-weight", "int4-weight", "float8"]

CUDA_SCHEMES = {"int4-weight": (8, 0), "float8": (8, 9)}
"""Schemes that need CUDA, with the least compute capability."""

DEFAULT_SKIP = ("lm_head",)
"""What ``skip`` leaves out by default: a language model's output layer (other models have none)."""


def group_size_problem(value: int) -> str | None:
    """Why ``value`` is not an int4 group size (``None``: it is one)."""
    return None if value in (32, 64, 128, 256) else "must be 32, 64, 128 or 256 (weights per int4 scale)"


@dataclass(frozen=True)
class QuantizeOptions:
    """Options of ``quantize.int8`` and ``quantize.int8-weight`` (and the others' shared ones)."""

    skip: list[str] = field(default_factory=lambda: list(DEFAULT_SKIP))
    """Linear layers (module names, with their children) left in floating point; a name other
    than the default ``lm_head`` must be a module of the model."""


@dataclass(frozen=True)
class Int4Options(QuantizeOptions):
    """Options of ``quantize.int4-weight``."""

    group_size: int = field(default=128, metadata={"check": group_size_problem})
    """Weights sharing one scale and zero point."""


@dataclass(frozen=True)
class Float8Options(QuantizeOptions):
    """Options of ``quantize.float8``."""

    granularity: Literal["row", "tensor"] = "tensor"
    """One scale per tensor, or per row (weights per output channel, activations per token; needs
    cuBLAS row-wise scaling, which failed on the H200 with torch 2.11+cu130)."""


class Quantize(Compressor):
    """Quantize a trained model's Linear layers with torchao (``scheme`` set by each subclass)."""

    Options: ClassVar[type] = QuantizeOptions
    scheme: ClassVar[str] = "int8"

    def check_model(self, model: Any, config: Any) -> None:
        from deepseek.graph.passes import is_tensor_subclass
        from deepseek_enterprise.compress.quantize import check_device

        if config.model.name == "quantized" or any(is_tensor_subclass(p) for p in model.parameters()):
            raise UsageError(f"quantize.{self.scheme}: the model is quantized already; quantize the checkpoint it was "
                             "made from, once (a recipe takes one quantize step, last)")
        check_device(self.scheme, next(model.parameters()).device, f"quantize.{self.scheme}")

    def kernel_options(self) -> tuple[int, str]:
        """The group size and scale granularity torchao is given (recorded in the quantized
        model's table); a scheme whose options set one returns it."""
        return 128, "tensor"

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        from importlib.metadata import version

        from deepseek.config.components import options_dict
        from deepseek_enterprise.compress.quantize import quantize_model

        group_size, granularity = self.kernel_options()
        work = copy.deepcopy(model)
        names = quantize_model(work, self.scheme, list(self.options.skip), group_size, granularity)
        base = {"name": config.model.name, **options_dict(config.model.options)}
        table = {"name": "quantized", "scheme": self.scheme, "base": base, "skip": list(self.options.skip),
                 "group_size": group_size, "granularity": granularity}
        before = sum(linear_weight_bytes(model.get_submodule(n)) for n in names)
        after = sum(linear_weight_bytes(work.get_submodule(n)) for n in names)
        record = {"scheme": self.scheme, "layers": len(names), **figures_record(model, work),
                  "quantized_weight_bytes": [before, after], "quantized_weight_ratio": round(before / after, 3),
                  "torchao": version("torchao")}
        return Compressed(work.eval(), table, record, loads_with=f"deepseek-enterprise with torchao {version('torchao')}")


class Int8Dynamic(Quantize):
    """``quantize.int8``: int8 weights and dynamically quantized int8 activations."""

    scheme = "int8"


class Int8Weight(Quantize):
    """``quantize.int8-weight``: int8 weights, floating-point activations."""

    scheme = "int8-weight"


class Int4Weight(Quantize):
    """``quantize.int4-weight``: grouped int4 weights, bf16 activations (CUDA)."""

    Options: ClassVar[type] = Int4Options
    scheme = "int4-weight"

    def kernel_options(self) -> tuple[int, str]:
        return self.options.group_size, "tensor"


class Float8(Quantize):
    """``quantize.float8``: float8 weights and activations, per-row or per-tensor scales (CUDA, >= 8.9)."""

    Options: ClassVar[type] = Float8Options
    scheme = "float8"

    def kernel_options(self) -> tuple[int, str]:
        return 128, self.options.granularity
