"""``adafactor``: torch's Adafactor as a registered optimizer (:class:`Adafactor`), with its own
``[optimizer]`` keys (:class:`AdafactorOptions`).

Nothing here imports torch at module level: loading a config resolves the class and its
``Options`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepseek.config.field_checks import EPS_MAX
from deepseek.training.hyper_parameters import COMMON, FLAG, HyperParameter
from deepseek.training.optimizer_state import StateValue
from deepseek.training.optimizers import OptimizerBuilder

if TYPE_CHECKING:
    import torch

    from deepseek.config.schema import OptimizerConfig


def _eps1(value: float | None) -> str | None:
    if value is None or 0 <= value <= EPS_MAX:
        return None
    return f"must be >= 0 and at most {EPS_MAX:g} (or unset: the dtype's machine epsilon)"


def _eps2(value: float) -> str | None:  # it multiplies the step: 1e300 was inf at the first one
    return None if 0 <= value <= EPS_MAX else f"must be >= 0 and at most {EPS_MAX:g}"


BETA2_DECAY = HyperParameter(maximum=0)
"""The one rule of ``beta2_decay``, a finite number <= 0: the config's key (its check) and the
saved groups' (``Adafactor.hyper_parameters``) are held to it."""

D = HyperParameter(minimum=1)
"""The one rule of ``d``, the clipping threshold, a finite number >= 1: the config's key and the
saved groups' are held to it."""


@dataclass(frozen=True)
class AdafactorOptions:
    """``adafactor``'s own keys (torch's names and defaults)."""

    beta2_decay: float = field(default=-0.8, metadata={"check": BETA2_DECAY.problem})
    """Exponent of the second-moment decay: step ``t`` keeps ``1 - t ** beta2_decay`` of the past."""
    eps1: float | None = field(default=None, metadata={"check": _eps1})
    """Added to the second moment in the denominator (0 to 1); unset: the parameter dtype's machine epsilon."""
    eps2: float = field(default=1e-3, metadata={"check": _eps2})
    """Floor of a parameter's RMS when it scales the step (so zero-initialised parameters move), 0 to 1."""
    d: float = field(default=1.0, metadata={"check": D.problem})
    """Clipping threshold: an update whose RMS exceeds ``d`` is scaled down to it."""


class Adafactor(OptimizerBuilder):
    """torch's Adafactor: the second moment of a matrix kept factored as row and column means, a
    step of ``min(lr, 1/sqrt(t))`` times the parameter's RMS, no first moment; weight decay
    decoupled (the parameter shrinks by ``lr * weight_decay``). Reads ``weight_decay`` only: its
    epsilons are its own ``eps1`` / ``eps2``.

    ``state_bytes`` 1: an ``r x c`` matrix keeps ``r + c`` fp32 numbers (``4 (r + c) / (r c)``
    bytes per element, 0.125 for 64 x 64, under 0.01 from 1024 x 1024), vectors (biases, norms)
    a full fp32 copy (4); 1 rounds the mixture up for models whose vectors are under a fifth of
    their elements (every transformer here). Not ``elementwise``: the factoring needs each
    matrix's shape and the step its RMS. torch's implementation cannot step DTensor shards
    (FSDP2, tensor parallel): :meth:`create` refuses them."""

    Options = AdafactorOptions
    state_bytes = 1
    dtensor = False
    hyper_parameters = {**COMMON, "beta2_decay": BETA2_DECAY, "d": D, "maximize": FLAG}

    @classmethod
    def check_config(cls, options: Any, config: OptimizerConfig) -> None:
        import dataclasses

        from deepseek.config.schema import OptimizerConfig
        from deepseek.errors import ConfigError

        default = {f.name: f.default for f in dataclasses.fields(OptimizerConfig)}["eps"]
        if config.eps != default:
            raise ConfigError(f"optimizer.eps: adafactor does not read eps (got {config.eps}); its epsilons are "
                              "optimizer.eps1 (denominator) and optimizer.eps2 (RMS floor)")

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        import torch
        from torch.distributed.tensor import DTensor

        from deepseek.errors import UsageError

        if any(isinstance(p, DTensor) for g in groups for p in g["params"]):
            # its column statistics square a norm over the sharded dimension in place, which
            # DTensor refuses at the first step; say so before it
            raise UsageError("optimizer.name: torch's Adafactor cannot step parameters sharded as DTensors "
                             "(strategies fsdp, zero3, tp); use 'adafactor' with strategy 'single' or 'ddp'")
        o = self.options
        return torch.optim.Adafactor(groups, lr=lr, beta2_decay=o.beta2_decay, eps=(o.eps1, o.eps2), d=o.d)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        import torch

        # what torch's first step creates: a float step count (float64 only under that default
        # dtype), then the row and column factors of a matrix (its last dimension, then the one
        # before, reduced to 1) or the full second moment of a vector
        wide = torch.get_default_dtype() == torch.float64
        state: dict[str, Any] = {"step": torch.tensor(0.0, dtype=torch.float64 if wide else torch.float32)}
        if param.dim() > 1:
            state["row_var"] = param.new_zeros((*param.shape[:-1], 1))
            state["col_var"] = param.new_zeros((*param.shape[:-2], 1, param.shape[-1]))
        else:
            state["variance"] = torch.zeros_like(param)
        return state

    def state_spec(self, shape: tuple[int, ...]) -> dict[str, StateValue]:
        spec = {"step": StateValue(count=True)}
        if len(shape) > 1:  # the factors of initial_state, means of squares: never negative
            spec["row_var"] = StateValue((*shape[:-1], 1), non_negative=True)
            spec["col_var"] = StateValue((*shape[:-2], 1, shape[-1]), non_negative=True)
        else:
            spec["variance"] = StateValue(shape, non_negative=True)
        return spec
