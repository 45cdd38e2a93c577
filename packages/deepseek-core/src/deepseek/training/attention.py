"""Which ``scaled_dot_product_attention`` kernel a run uses: ``train.attention`` and
``deepseek bench train --attention``, one implementation for both.

``auto`` leaves the choice to torch (per call, from the inputs). Any other name allows that one
kernel only, for every attention call of the model while the run trains and evaluates: ``flash``
(torch's FlashAttention-2 on CUDA, its flash kernel on CPU), ``efficient`` (memory-efficient),
``cudnn`` (cuDNN's), ``math`` (the reference in plain ops) and ``fa4`` (FlashAttention-4 from the
``flash-attn-4`` package, on Hopper and Blackwell GPUs, :mod:`deepseek.training.fa4`). The choice
is checked against the run's device before anything is written, and a model call the kernel
cannot run (a padding mask with ``flash`` on CUDA, say) stops the run with one line naming the
setting instead of torch's "No available kernel" traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from deepseek.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import torch

KERNELS = ("auto", "flash", "efficient", "cudnn", "math", "fa4")
"""Every name ``train.attention`` takes."""
_CPU_KERNELS = ("auto", "flash", "math")  # what torch's CPU build of SDPA has
# torch's messages when no allowed kernel takes a call (on CUDA, and on the CPU)
_NO_KERNEL = ("No viable backend for scaled_dot_product_attention", "No available kernel")


def _setting(name: str, where: str) -> str:
    """How errors quote the choice: ``--attention cudnn`` or ``train.attention = 'cudnn'``."""
    return f"{where} {name}" if where.startswith("--") else f"{where} = {name!r}"


def check_attention(name: str, device: torch.device, *, where: str = "train.attention") -> None:
    """ConfigError unless kernel ``name`` exists on ``device``'s type (``where`` names the setting)."""
    if name not in KERNELS:
        raise ConfigError(f"{where}: unknown kernel {name!r}; use one of {', '.join(KERNELS)}")
    if device.type == "cpu" and name not in _CPU_KERNELS:
        raise ConfigError(f"{_setting(name, where)} needs a CUDA device and this run's device is the CPU; "
                          f"use one of {', '.join(_CPU_KERNELS)} there")


@contextlib.contextmanager
def attention_kernel(name: str, device: torch.device, *, where: str = "train.attention") -> Iterator[None]:
    """Within the block, every attention call runs on kernel ``name`` (``auto``: torch picks)."""
    check_attention(name, device, where=where)
    if name == "auto":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if name == "fa4":
        from deepseek.training.fa4 import activate

        activate(_setting(name, where))
    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH,
               "fa4": SDPBackend.FLASH_ATTENTION}[name]
    with sdpa_kernel([backend]):
        try:
            yield
        except Exception as exc:  # under torch.compile the same message comes wrapped in dynamo's errors
            if not any(text in str(exc) for text in _NO_KERNEL):
                raise
            raise UsageError(f"{_setting(name, where)}: the model calls attention with inputs this kernel cannot take "
                             f"on {device.type} (a mask, a dtype or a head size); use \"auto\" or another kernel"
                             ) from exc
