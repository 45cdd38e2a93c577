"""ZeRO-3's gather units: which modules DeepSpeed gathers, releases and reduces whole.

DeepSpeed's default puts a pair of hooks on every submodule and gathers each one's parameters on
its own (a GPT block is six gathers and twelve hooks a forward). ``gather_unit = "block"`` makes
each of the model's blocks (``block_modules``, the units FSDP2 shards) a DeepSpeed *leaf module*
(``deepspeed.utils.set_z3_leaf_module``): one gather of the whole block before it runs, one
release after, and its gradients reduced together by a full backward hook on the block.

That hook fires when the gradients of the block's *inputs* are computed. A block none of whose
inputs needs a gradient (the first block of a model that feeds it raw features, or frozen
embeddings) would fire it before its own weights' gradients exist: DeepSpeed would reduce zeros
and free the weights backward still needs. So a leaf block whose inputs need no gradient gets its
first floating-point input as a detached copy that asks for one (the same values; one extra input
gradient is computed for that block).
"""

from __future__ import annotations

from typing import Any

import torch

from deepseek.errors import ConfigError


def _block_list(model: Any) -> list[Any]:
    from deepseek.models.capabilities import model_capabilities

    return list(model.block_modules()) if "blocks" in model_capabilities(model) else []


def chosen_gather_unit(model: Any, options: Any) -> str | None:
    """What ``options.gather_unit`` means for ``model``: ``"block"`` or ``"module"`` at ZeRO
    stage 3 (``auto``: ``block`` for a model that offers blocks, outside DeepCompile), ``None``
    below stage 3, where nothing is gathered. ``block`` for a model without blocks is refused."""
    if options.stage != 3:
        return None
    has_blocks = bool(_block_list(model))
    if options.gather_unit == "block" and not has_blocks:
        raise ConfigError(f"strategy.gather_unit: 'block' needs a model that offers its blocks (block_modules); "
                          f"{type(model).__name__} does not: use gather_unit = \"module\" or \"auto\"")
    if options.gather_unit != "auto":
        return options.gather_unit
    return "block" if has_blocks and not options.deepcompile else "module"


def gather_blocks_whole(model: Any, options: Any) -> str | None:
    """Mark each of ``model``'s blocks a ZeRO-3 leaf module where :func:`chosen_gather_unit` says
    ``block``; call before ``deepspeed.initialize``. Returns the unit chosen."""
    unit = chosen_gather_unit(model, options)
    if unit != "block":
        return unit
    from deepspeed.utils import set_z3_leaf_module

    for block in _block_list(model):
        set_z3_leaf_module(block, True)
        block.register_forward_pre_hook(_input_asks_for_grad, with_kwargs=True)
    return unit


def _input_asks_for_grad(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Forward pre-hook of a leaf block: with gradients on and no tensor input that needs one, the
    first floating-point input is passed as a detached copy that does (see the module's text)."""
    if not torch.is_grad_enabled():
        return None
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    if any(t.requires_grad for t in tensors):
        return None
    for i, value in enumerate(args):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return (*args[:i], value.detach().requires_grad_(), *args[i + 1:]), kwargs
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return args, {**kwargs, key: value.detach().requires_grad_()}
    raise ConfigError(f"strategy.gather_unit: block {type(module).__name__} takes no floating-point tensor input, so "
                      "DeepSpeed cannot reduce its gradients as one unit; set gather_unit = \"module\"")
