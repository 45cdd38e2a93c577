"""The optimizer contract, and core's registered optimizers ``adamw`` and ``sgd``.

An optimizer is a registered component (``deepseek_register_optimizers``): a subclass of
:class:`OptimizerBuilder` that turns the model's parameter groups into a ``torch.optim.Optimizer``.
The ``[optimizer]`` table holds ``name``, the keys every optimizer shares (``weight_decay``,
``betas``, ``eps``, ``momentum``, ``fused``: :class:`~deepseek.config.schema.OptimizerConfig`;
each optimizer reads those it uses) and the optimizer's own keys, validated by its ``Options``.

The trainer never builds an optimizer itself: the strategy calls the run's optimizer factory
(:func:`deepseek.training.build.optimizer_factory`) on the parameters it owns (all of them, a
shard, a pipeline stage), so one builder serves every strategy. Checkpoints store the optimizer's
``state_dict`` by parameter name, whatever its state keys are.

Nothing here imports torch at module level: loading a config resolves the class and its
``Options`` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from deepseek.config.components import NoOptions

if TYPE_CHECKING:
    import torch

    from deepseek.config.schema import OptimizerConfig


class OptimizerBuilder:
    """Base class of every registered optimizer.

    Subclasses set ``Options`` (a dataclass of their own ``[optimizer]`` keys, each with a
    default) and implement :meth:`create`. They are created once per run on every rank as
    ``cls(options, config)``: ``options`` the validated ``Options``, ``config`` the
    ``[optimizer]`` section (its shared keys). Class attributes declare what the rest of the
    framework may ask of them:

    - ``supports_master_weights``: :meth:`create` honours ``master_weights=True`` (bf16
      parameters, fp32 master copies in the optimizer: ``precision.master_weights``); a config
      asking for it with an optimizer that does not is refused when it loads.
    - ``state_bytes``: bytes of optimizer state per parameter element with fp32 parameters (AdamW
      8: two moments; SGD with momentum 4), for memory estimates.
    """

    Options: ClassVar[type] = NoOptions
    supports_master_weights: ClassVar[bool] = False
    state_bytes: ClassVar[int] = 8

    def __init__(self, options: Any, config: OptimizerConfig) -> None:
        self.options = options if options is not None else self.Options()
        self.config = config

    @classmethod
    def check_config(cls, options: Any, config: OptimizerConfig) -> None:
        """Refuse combinations of keys that cannot work, when the config loads (one-line
        :class:`deepseek.errors.ConfigError` naming the key). Default: accept."""

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        """The optimizer over ``groups`` (parameter groups, each a dict with ``params`` and its
        ``weight_decay``), starting at learning rate ``lr`` (the trainer sets each step's rate in
        every group's ``lr``). ``master_weights`` is only ever true for a builder that declares
        ``supports_master_weights``; ``accumulation`` is ``train.grad_accum``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement create()")

    def initial_state(self, param: torch.Tensor) -> dict[str, Any] | None:
        """The state one parameter has before its first step (what ``step()`` would create,
        with the step count at 0), for engines that must allocate optimizer state before loading
        a checkpoint into it (DeepSpeed ZeRO). ``None`` (the default): the optimizer does not
        say, and such an engine refuses to resume it."""
        return None


@dataclass(frozen=True)
class GroupedOptimizerFactory:
    """The optimizer factory a strategy's ``setup`` receives: called with the parameters it owns
    (or parameter groups, used as they are), it builds ``builder``'s optimizer with weight decay on
    the matrices (``ndim >= 2``) only. Group order is fixed (decay, then no decay; both always
    present) so optimizer checkpoints line up across strategies. ``builder`` stays readable for
    engines that ask it more (:meth:`OptimizerBuilder.initial_state`)."""

    builder: OptimizerBuilder
    lr: float
    weight_decay: float
    master_weights: bool = False
    accumulation: int = 1

    def __call__(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        items = list(params)
        if items and isinstance(items[0], dict):
            groups = items
        else:
            flat = [p for p in items if p.requires_grad]
            groups = [
                {"params": [p for p in flat if p.ndim >= 2], "weight_decay": self.weight_decay},
                {"params": [p for p in flat if p.ndim < 2], "weight_decay": 0.0},
            ]
        return self.builder.create(groups, self.lr, master_weights=self.master_weights,
                                   accumulation=self.accumulation)


@dataclass(frozen=True)
class SGDOptions:
    """``sgd``'s own keys."""

    nesterov: bool = False
    """Nesterov momentum (needs ``momentum > 0``)."""


class AdamW(OptimizerBuilder):
    """torch's AdamW (decoupled weight decay); reads ``betas``, ``eps``, ``weight_decay`` and
    ``fused``. With ``precision.master_weights``:
    :class:`~deepseek.training.master_weights.MasterWeightAdamW` over bf16 parameters."""

    supports_master_weights = True
    state_bytes = 8

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        import torch

        c = self.config
        if master_weights:
            from deepseek.training.master_weights import MasterWeightAdamW

            return MasterWeightAdamW(groups, lr=lr, betas=tuple(c.betas), eps=c.eps, accumulation=accumulation)
        fused = c.fused
        if fused is None:
            flat = [p for g in groups for p in g["params"]]
            fused = bool(flat) and all(p.is_cuda and type(p.data).__name__ != "DTensor" for p in flat)
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(c.betas), eps=c.eps, fused=fused or None)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        import torch

        return {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(param),
                "exp_avg_sq": torch.zeros_like(param)}


class SGD(OptimizerBuilder):
    """torch's SGD with ``momentum`` (0: plain SGD) and its own ``nesterov`` key; ``weight_decay``
    is L2 added to the gradient, on the matrices only (as for every optimizer here)."""

    Options = SGDOptions
    state_bytes = 4

    @classmethod
    def check_config(cls, options: Any, config: OptimizerConfig) -> None:
        from deepseek.errors import ConfigError

        if options.nesterov and config.momentum == 0:
            raise ConfigError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0; "
                              "set momentum (e.g. 0.9) or nesterov = false")

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        import torch

        return torch.optim.SGD(groups, lr=lr, momentum=self.config.momentum, nesterov=self.options.nesterov)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        import torch

        # torch's SGD keeps no state without momentum; with it, a buffer the first step fills
        return {"momentum_buffer": torch.zeros_like(param)} if self.config.momentum else {}
