"""FlashAttention-4 for ``train.attention = "fa4"`` and ``deepseek bench train --attention fa4``.

torch 2.11 routes its flash backend to an outside implementation through
``torch.nn.attention`` (``register_flash_attention_fa4(module_path)``), calling that module's
``_flash_attn_fwd`` / ``_flash_attn_bwd`` and expecting ``(out, lse)`` and ``(dq, dk, dv)``. The
``flash-attn-4`` releases that carry Hopper kernels return more (``out, lse`` plus split-KV
buffers; ``dq, dk, dv`` plus a sink gradient), so this module is the module torch is pointed at:
it calls ``flash_attn.cute.interface`` and returns what torch expects.
"""

from __future__ import annotations

from typing import Any

# torch's registration lives as long as its handle (a torch.library.Library): kept for the process.
_HANDLE: Any = None


def _flash_attn_fwd(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    from flash_attn.cute import interface

    out, lse = interface._flash_attn_fwd(*args, **kwargs)[:2]
    return out, lse


def _flash_attn_bwd(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    from flash_attn.cute import interface

    dq, dk, dv = interface._flash_attn_bwd(*args, **kwargs)[:3]
    return dq, dk, dv


def activate(setting: str = "--attention fa4") -> None:
    """Route the flash backend to FlashAttention-4, process-wide (torch's dispatcher override, which
    stays for the life of the process); ``setting`` is how errors quote the choice."""
    import importlib.util

    import torch

    from deepseek.errors import UsageError

    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        raise UsageError(f"{setting} needs the flash-attn-4 package: pip install flash-attn-4")
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] not in (9, 10):
        raise UsageError(f"{setting} needs a CUDA GPU of compute capability 9.x or 10.x (Hopper, Blackwell)")
    from torch.nn.attention import _fa4

    global _HANDLE
    _HANDLE = _fa4.register_flash_attention_fa4(module_path=__name__)
    # Compiled graphs pick their SDPA kernel when traced; with cuDNN's off, flash is what they pick.
    torch.backends.cuda.enable_cudnn_sdp(False)
