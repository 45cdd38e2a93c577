"""Running a module as an engine that holds its weights in 16 bits runs it: DeepSpeed's bf16/fp16
casts the parameters alone (buffers stay as they were loaded), autocasts nothing and hands float
inputs in as the weights' type. CUDA's attention kernels then refuse a float mask of another dtype
than the queries' ("expected scalar type Float but found BFloat16"), which the CPU's accept, so
each attention call is recorded and held to CUDA's rule: a CPU run fails where a GPU run would."""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode


class AttentionDtypes(TorchFunctionMode):
    """Records (query dtype, mask dtype or None) of every ``scaled_dot_product_attention`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.dtype, torch.dtype | None]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            self.calls.append((args[0].dtype, None if mask is None else mask.dtype))
        return func(*args, **kwargs)

    def mismatched(self) -> list[tuple[torch.dtype, torch.dtype | None]]:
        """The calls whose float mask is not of the queries' dtype (CUDA refuses them)."""
        return [(q, m) for q, m in self.calls if m is not None and m != torch.bool and m != q]


def params_only(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """DeepSpeed 0.19's cast: the parameters to ``dtype``, every buffer as it was."""
    for p in module.parameters():
        p.data = p.data.to(dtype)
    return module


def as_weights(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float input in ``dtype`` (how the strategy hands it in); integer and bool ones as they are."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor
