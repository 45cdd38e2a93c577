"""``lion``: the sign of an interpolated momentum as the update, with decoupled weight decay.

Per element, with ``beta1, beta2 = betas``, gradient ``g`` and momentum ``m`` (zero before the
first step)::

    p <- p * (1 - lr * weight_decay)
    p <- p - lr * sign(beta1 * m + (1 - beta1) * g)
    m <- beta2 * m + (1 - beta2) * g

Every element moves by exactly ``lr`` (or not at all where the interpolation is 0), so the
learning rate is typically 3-10x smaller than AdamW's and the weight decay as much larger. One
state tensor (``exp_avg``) per parameter; the update is element-wise, so it runs unchanged on
flat ZeRO partitions and FSDP shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from deepseek.training.hyper_parameters import BETAS, COMMON
from deepseek.training.optimizer_state import StateValue
from deepseek.training.optimizers import OptimizerBuilder


class Lion(torch.optim.Optimizer):
    """The Lion update above over ``params`` (tensors or parameter groups, each group may set its
    own ``lr``, ``betas`` and ``weight_decay``)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if lr < 0:
            raise ValueError(f"Lion: lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"Lion: betas must be two numbers in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Lion: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                if decay:
                    p.mul_(1.0 - lr * decay)
                p.add_(torch.lerp(m, p.grad, 1.0 - beta1).sign_(), alpha=-lr)
                m.lerp_(p.grad, 1.0 - beta2)
        return loss


class LionBuilder(OptimizerBuilder):
    """:class:`Lion`; reads ``betas`` (the paper's are ``[0.9, 0.99]``; the shared default is
    ``[0.9, 0.95]``) and ``weight_decay`` (decoupled, on the matrices)."""

    state_bytes = 4
    elementwise = True
    hyper_parameters = {**COMMON, "betas": BETAS}

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        return Lion(groups, lr=lr, betas=tuple(self.config.betas))

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        return {"exp_avg": torch.zeros_like(param)}

    def state_spec(self, shape: tuple[int, ...]) -> dict[str, StateValue]:
        return {"exp_avg": StateValue(shape)}
