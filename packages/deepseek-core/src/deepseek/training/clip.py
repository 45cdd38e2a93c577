"""Global gradient-norm clipping without host syncs.

:func:`clip_gradients` computes the total norm as a device tensor and scales the gradients by
``min(1, max_norm / (norm + 1e-6))`` (``torch.nn.utils.clip_grad_norm_``'s coefficient). With a
fused Adam/AdamW/SGD and no loss scaler, the scaling is not a separate pass over the gradients: the
optimizer's kernel divides each gradient by ``grad_scale`` as it reads it (the hook
``torch.amp.GradScaler`` uses), so we hand it ``1 / coefficient`` and save one read and one write
of every gradient. Nothing here calls ``.item()``: read the returned norm only when you log it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

EPS = 1e-6
"""Added to the norm before dividing, as ``torch.nn.utils.clip_grad_norm_`` does."""


def fusable(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` applies a ``grad_scale`` inside its own kernel: fused Adam/AdamW/SGD, or
    an optimizer whose class says so with ``applies_grad_scale = True``
    (:class:`~deepseek.training.master_weights.MasterWeightAdamW`)."""
    if getattr(type(optimizer), "applies_grad_scale", False):
        return True
    fused = bool(optimizer.defaults.get("fused"))
    return fused and getattr(optimizer, "_step_supports_amp_scaling", False)


def clip_gradients(
    params: Iterable[torch.nn.Parameter],
    max_norm: float,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> torch.Tensor:
    """Clip the gradients of ``params`` to a total norm of ``max_norm`` (``<= 0``: only measure);
    return the norm before clipping as a 0-dim tensor on the gradients' device.

    When ``optimizer`` is given and :func:`fusable`, the scaling is deferred to its next
    ``step()`` (call it right after this; a loss scaler must not be in use). Gradients must be
    plain tensors (for DTensor gradients reduce the norm first, see deepseek-pro's ``fsdp``).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = total_norm(grads)
    if max_norm <= 0:
        return norm
    coef = torch.clamp(max_norm / (norm + EPS), max=1.0)
    if optimizer is not None and fusable(optimizer):
        optimizer.grad_scale = coef.reciprocal()  # type: ignore[attr-defined]
    elif _plain(grads):
        torch._foreach_mul_(grads, coef.to(grads[0].device))
    else:
        for g in grads:
            g.mul_(coef.to(g.device))
    return norm


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm over all ``grads``; bf16/fp16 gradients are summed in fp32 (their own dtype
    would round the norm, and so the clip coefficient, to 3 significant digits)."""
    if all(g.dtype == torch.float32 for g in grads) or not _plain(grads):
        return torch.nn.utils.get_total_norm(grads)
    norms = torch._foreach_norm(grads, 2.0, dtype=torch.float32)
    return torch.linalg.vector_norm(torch.stack(norms))


def release(optimizer: torch.optim.Optimizer) -> None:
    """Drop a deferred ``grad_scale`` after the optimizer step that used it."""
    if "grad_scale" in optimizer.__dict__:
        del optimizer.grad_scale  # type: ignore[attr-defined]


def _plain(grads: list[torch.Tensor]) -> bool:
    first = grads[0]
    return all(type(g) is torch.Tensor and g.device == first.device for g in grads)
