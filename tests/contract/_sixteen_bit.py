"""Running a module as an engine that holds its weights in 16 bits runs it: DeepSpeed's bf16/fp16
casts the parameters alone (buffers stay as they were loaded), autocasts nothing and hands float
inputs in as the weights' type. CUDA's attention kernels then refuse a float mask of another dtype
than the queries' ("expected scalar type Float but found BFloat16"), which the CPU's accept, so
each attention call is recorded and held to CUDA's rule: a CPU run fails where a GPU run would.

One implementation for every contract suite that checks this: encoders
(``test_encoders_contract.py``), fusion methods (``test_fusions_contract.py``) and models on a
registered dataset's batch (:func:`check_forward_in_16_bits`, called by :mod:`_pairing`)."""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from deepseek.models.checks import split_output

_MHA = inspect.signature(torch.nn.functional.multi_head_attention_forward)


def _mask_dtypes(func: Any, args: Any, kwargs: dict) -> tuple[torch.dtype, list[torch.dtype | None]] | None:
    """The queries' dtype and the dtypes of the masks an attention call ``func`` is given (None for
    an absent one), its arguments by position or keyword; None when ``func`` is no attention call.
    ``nn.MultiheadAttention`` is recorded at ``multi_head_attention_forward``: a mode does not see
    the calls made inside a call it handles, and MHA adds a float ``key_padding_mask`` /
    ``attn_mask`` as it is to the scores it hands ``scaled_dot_product_attention`` (a bool one it
    turns into the queries' dtype first)."""
    if func is torch.nn.functional.scaled_dot_product_attention:
        query = args[0] if args else kwargs["query"]
        mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
        return query.dtype, [None if mask is None else mask.dtype]
    if func is torch.nn.functional.multi_head_attention_forward:
        given = _MHA.bind(*args, **kwargs).arguments
        return given["query"].dtype, [None if given.get(k) is None else given[k].dtype
                                      for k in ("key_padding_mask", "attn_mask")]
    return None


class AttentionDtypes(TorchFunctionMode):
    """Records (query dtype, mask dtype or None) of every mask of every attention call:
    ``scaled_dot_product_attention`` and ``nn.MultiheadAttention`` (``multi_head_attention_forward``;
    under a mode MHA never takes its fused fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.dtype, torch.dtype | None]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        found = _mask_dtypes(func, args, kwargs)
        if found is not None:
            query, masks = found
            self.calls += [(query, m) for m in masks]
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


def batch_as_weights(batch: Any, dtype: torch.dtype) -> Any:
    """Every tensor of ``batch`` (nested dicts, lists...) through :func:`as_weights`, as deepseek_pro's
    DeepSpeed strategy hands a batch to the engine (``_engine_inputs``)."""
    return pytree.tree_map(lambda t: as_weights(t, dtype) if isinstance(t, torch.Tensor) else t, batch)


def check_forward_in_16_bits(model: torch.nn.Module, batch: Any, where: str, doc: str) -> None:
    """Asserts that a copy of ``model`` (in training mode) with its parameters alone in bf16 gives a
    finite loss on ``batch`` (its float tensors in bf16), with every attention mask in the queries'
    dtype: one step of a ``--strategy deepspeed`` run with ``precision.dtype = "bf16"``. ``model``
    itself is left as it was."""
    engine = params_only(copy.deepcopy(model).train(), torch.bfloat16)
    with torch.no_grad(), AttentionDtypes() as seen:
        loss, _ = split_output(engine(**batch_as_weights(batch, torch.bfloat16)))
    assert math.isfinite(float(loss)), (
        f"{where}: with its parameters alone in bf16 (DeepSpeed's bf16) the loss is {float(loss)}; compute in the "
        f"weights' dtype and keep 16-bit values in range ({doc})")
    assert not seen.mismatched(), (
        f"{where}: attention masks of another dtype than the queries' with bf16 parameters {seen.mismatched()}, "
        f"which CUDA refuses; keep float buffers and masks in the weights' dtype ({doc})")
