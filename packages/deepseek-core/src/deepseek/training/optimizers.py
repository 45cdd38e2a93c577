"""The optimizer contract, and core's registered optimizers ``adamw`` and ``sgd`` (``adafactor``:
:mod:`deepseek.training.adafactor`; ``lion``: :mod:`deepseek.training.lion`).

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

import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from deepseek.config.components import NoOptions
from deepseek.training.hyper_parameters import (
    BETAS,
    COMMON,
    EPS,
    FLAG,
    MOMENTUM,
    NON_NEGATIVE,
    HyperParameter,
)
from deepseek.training.optimizer_state import StateValue

if TYPE_CHECKING:
    import torch

    from deepseek.config.schema import OptimizerConfig


class OptimizerBuilder(ABC):
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
    - ``elementwise``: the update of every element reads only that element's gradient and state
      (and its group's numbers), so the optimizer may run on flat shards of concatenated
      parameters (DeepSpeed ZeRO does); an optimizer that looks at a parameter's shape or norm
      (Adafactor) keeps the default ``False`` and such engines refuse it when the config loads.
    - ``dtensor``: it can step parameters sharded as DTensors (FSDP2, tensor parallel), as plain
      torch ops on the parameter and its state do (the default); torch's Adafactor cannot.
    - ``hyper_parameters``: the type of each key of its parameter groups
      (:class:`~deepseek.training.hyper_parameters.HyperParameter`: AdamW's ``betas`` two finite
      numbers; a signed ``momentum`` in [-1, 1]), to which every reader of a checkpoint's saved
      groups holds them (``checkpoint info`` and ``export`` too, before any optimizer is built),
      and a resume again as it loads them into the optimizer it built; the default
      (:data:`~deepseek.training.hyper_parameters.COMMON`) declares ``lr``, ``initial_lr`` and
      ``weight_decay`` finite numbers >= 0, and any other number in a group is held finite.

    Which form a strategy hands its optimizer is the strategy's ``optimizer_parameters``; the one
    rule matching the two is :func:`placement_problem`.
    """

    Options: ClassVar[type] = NoOptions
    label: str = "optimizer"
    """The registered component and its distribution (set when the run creates it), for errors."""
    supports_master_weights: ClassVar[bool] = False
    state_bytes: ClassVar[int] = 8
    elementwise: ClassVar[bool] = False
    dtensor: ClassVar[bool] = True
    hyper_parameters: ClassVar[Mapping[str, HyperParameter]] = COMMON

    def __init__(self, options: Any, config: OptimizerConfig) -> None:
        self.options = options if options is not None else self.Options()
        self.config = config

    @classmethod
    def check_config(cls, options: Any, config: OptimizerConfig) -> None:
        """Refuse combinations of keys that cannot work, when the config loads (one-line
        :class:`deepseek.errors.ConfigError` naming the key). Default: accept."""

    @abstractmethod
    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        """The optimizer over ``groups`` (parameter groups, each a dict with ``params``, its
        ``weight_decay`` and its ``lr_scale``: keep the keys in the optimizer's groups), starting
        at learning rate ``lr`` (the trainer sets each step's rate in every group's ``lr``, times
        the group's ``lr_scale``). ``master_weights`` is only ever true for a builder that declares
        ``supports_master_weights``; ``accumulation`` is ``train.grad_accum``. Abstract: a
        registered builder without it is refused when a config names it."""

    def initial_state(self, param: torch.Tensor) -> dict[str, Any] | None:
        """The state one parameter has before its first step (what ``step()`` would create,
        with the step count at 0), for engines that must allocate optimizer state before loading
        a checkpoint into it (DeepSpeed ZeRO). ``None`` (the default): the optimizer does not
        say, and such an engine refuses to resume it."""
        return None

    def state_spec(self, shape: tuple[int, ...]) -> Mapping[str, StateValue] | None:
        """What the optimizer keeps for a parameter of ``shape`` once it has stepped it, by state
        key (:class:`~deepseek.training.optimizer_state.StateValue`: shape, floating point,
        never negative, a step count); checkpoints read back are held to it before they are
        loaded (a key it does not keep, one it lacks, another shape or dtype, a NaN, a negative
        second moment, a step that is not a whole count are refused). It must hold for every
        hyper-parameter a checkpoint may carry (a resumed run keeps the saved ones). ``None``
        (the default): every tensor floating point and finite, of the parameter's shape, that
        shape with dimensions reduced to 1, or a scalar; ``step`` a whole count; parameters with
        as many dimensions holding the same keys."""
        return None


@dataclass(frozen=True)
class GroupedOptimizerFactory:
    """The optimizer factory a strategy's ``setup`` receives: called with the parameters it owns,
    it builds ``builder``'s optimizer over the run's parameter groups
    (:mod:`deepseek.training.param_groups`: weight decay on the matrices only, and the
    ``[[optimizer.groups]]`` rules), in a layout fixed by the config so optimizer checkpoints line
    up across strategies. Pass ``module.named_parameters()``: the rules match names. Plain
    parameters are named through ``names`` (the model's parameters before the strategy wrapped
    it); parameter groups (dicts) are used as they are. ``builder`` stays readable for engines that
    ask it more (:meth:`OptimizerBuilder.initial_state`)."""

    builder: OptimizerBuilder
    lr: float
    weight_decay: float
    master_weights: bool = False
    accumulation: int = 1
    label: str = "optimizer"
    """The registered component, with its distribution (``Component.label``), for errors."""
    rules: tuple[Any, ...] = ()
    """``[[optimizer.groups]]`` (:class:`~deepseek.config.groups.ParamGroupRule`)."""
    names: Mapping[int, str] = field(default_factory=dict)
    """``id(parameter) -> name`` of the model as the engine built it, for plain parameters."""

    def __call__(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        """The optimizer over ``params``, recorded as made by :attr:`builder` (:func:`builder_of`)."""
        from deepseek.training.param_groups import build_groups

        items = list(params)
        if items and isinstance(items[0], dict):
            groups = items
        else:
            groups = build_groups(self._named(items), self.rules, self.weight_decay)
        import torch

        from deepseek.plugins.calls import blamed_on, code_package, step_blamed_on

        package = code_package(self.builder)  # None: core's own builders, whose bugs keep their traceback
        with blamed_on(self.label if package else None, "create", package=package):
            made = self.builder.create(groups, self.lr, master_weights=self.master_weights,
                                       accumulation=self.accumulation)
        if not isinstance(made, torch.optim.Optimizer):
            from deepseek.errors import PluginError

            raise PluginError(f"{self.label}: create() returned {type(made).__name__}, not a torch.optim.Optimizer; "
                              "return the optimizer over the groups it is given (docs/plugins.md section 14)")
        for group in made.param_groups:  # the rate before the trainer first sets it (Strategy.set_lr)
            if "lr_scale" in group:
                group["lr"] = self.lr * group["lr_scale"]
        step_blamed_on(made, self.label)
        _MADE_BY[made] = self.builder
        return made

    def _named(self, items: list[Any]) -> list[tuple[str, Any]]:
        """``(name, parameter)`` pairs of what a strategy passed (pairs, or parameters named by
        :attr:`names`)."""
        from deepseek.training.param_groups import is_named

        if is_named(items):
            return items
        if not self.rules:  # names decide nothing without rules
            return [("", p) for p in items]
        unnamed = sum(id(p) not in self.names for p in items)
        if unnamed:
            from deepseek.errors import PluginError

            raise PluginError(f"optimizer.groups: the strategy passed the optimizer factory {unnamed} parameter(s) "
                              "without names that the model does not hold (it replaced them), so no rule can match "
                              "them; pass module.named_parameters() in the strategy's setup (docs/plugins.md "
                              "section 12)")
        return [(self.names[id(p)], p) for p in items]


_MADE_BY: weakref.WeakKeyDictionary[Any, OptimizerBuilder] = weakref.WeakKeyDictionary()


def builder_of(optimizer: Any) -> OptimizerBuilder | None:
    """The builder whose :class:`GroupedOptimizerFactory` made ``optimizer`` (what checkpoint
    loading holds the state it reads back to: :meth:`OptimizerBuilder.state_spec`); ``None`` for
    an optimizer made otherwise."""
    try:
        return _MADE_BY.get(optimizer)
    except TypeError:  # not weakly referable: made by no factory
        return None


def fused_kernel(groups: list[dict[str, Any]], asked: bool | None) -> bool | None:
    """torch's ``fused`` argument for AdamW and SGD from ``optimizer.fused``: unset means on when
    every parameter is a plain CUDA tensor (the fused kernels take no DTensor shards), else off
    (``None``: torch's own choice, foreach on CUDA)."""
    if asked is None:
        flat = [p for g in groups for p in g["params"]]
        asked = bool(flat) and all(p.is_cuda and type(p.data).__name__ != "DTensor" for p in flat)
    return asked or None


@dataclass(frozen=True)
class SGDOptions:
    """``sgd``'s own keys."""

    nesterov: bool = False
    """Nesterov momentum (needs ``momentum > 0``)."""


@dataclass(frozen=True)
class AdamWOptions:
    """``adamw``'s own keys."""

    master_update: Literal["per_parameter", "multi_tensor"] = "per_parameter"
    """With ``precision.master_weights`` on CUDA: launch the Triton update once per parameter, or
    once per parameter group over all its parameters (``multi_tensor``: fewer launches, the same
    numbers bit for bit, but slower inside the 1.3b step on an H100: BENCHMARKS.md section 1m).
    No effect without master weights."""


class AdamW(OptimizerBuilder):
    """torch's AdamW (decoupled weight decay); reads ``betas``, ``eps``, ``weight_decay`` and
    ``fused`` (:func:`fused_kernel`). With ``precision.master_weights``:
    :class:`~deepseek.training.master_weights.MasterWeightAdamW` over bf16 parameters, its update
    launched as ``master_update`` says."""

    Options = AdamWOptions
    supports_master_weights = True
    state_bytes = 8
    elementwise = True
    hyper_parameters = {**COMMON, "betas": BETAS, "eps": EPS, "amsgrad": FLAG, "maximize": FLAG,
                        "decoupled_weight_decay": FLAG}

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        import torch

        c = self.config
        if master_weights:
            from deepseek.training.master_weights import MasterWeightAdamW

            return MasterWeightAdamW(groups, lr=lr, betas=tuple(c.betas), eps=c.eps, accumulation=accumulation,
                                     update=self.options.master_update)
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(c.betas), eps=c.eps, fused=fused_kernel(groups, c.fused))

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        import torch

        return {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(param),
                "exp_avg_sq": torch.zeros_like(param)}

    def state_spec(self, shape: tuple[int, ...]) -> dict[str, StateValue]:
        # MasterWeightAdamW saves the same (its masters are the model's weights)
        return {"step": StateValue(count=True), "exp_avg": StateValue(shape),
                "exp_avg_sq": StateValue(shape, non_negative=True)}


class SGD(OptimizerBuilder):
    """torch's SGD with ``momentum`` (0: plain SGD) and its own ``nesterov`` key; ``weight_decay``
    is L2 added to the gradient, on the matrices only (as for every optimizer here); ``fused`` as
    for AdamW (:func:`fused_kernel`)."""

    Options = SGDOptions
    state_bytes = 4
    elementwise = True
    hyper_parameters = {**COMMON, "momentum": MOMENTUM, "dampening": NON_NEGATIVE, "nesterov": FLAG,
                        "maximize": FLAG}

    @classmethod
    def check_config(cls, options: Any, config: OptimizerConfig) -> None:
        from deepseek.errors import ConfigError

        if options.nesterov and config.momentum == 0:
            raise ConfigError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0; "
                              "set momentum (e.g. 0.9) or nesterov = false")

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        import torch

        return torch.optim.SGD(groups, lr=lr, momentum=self.config.momentum, nesterov=self.options.nesterov,
                               fused=fused_kernel(groups, self.config.fused))

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        import torch

        # torch's SGD keeps no state without momentum; with it, a buffer the first step fills
        return {"momentum_buffer": torch.zeros_like(param)} if self.config.momentum else {}

    def state_spec(self, shape: tuple[int, ...]) -> dict[str, StateValue]:
        # the buffer whether or not this run's config has momentum: the saved groups' momentum
        # is the one a resumed run steps with (without it, torch keeps no state at all)
        return {"momentum_buffer": StateValue(shape)}


def can_step(form: str, *, elementwise: bool, dtensor: bool) -> bool:
    """Whether an optimizer declaring ``elementwise`` and ``dtensor`` can step parameters in
    ``form`` (a strategy's ``optimizer_parameters``: whole, dtensor or flat): the one rule, read by
    config loading (:func:`placement_problem`) and the advisor's rows."""
    return (form != "flat" or elementwise) and (form != "dtensor" or dtensor)


def placement_problem(builder: type[OptimizerBuilder], optimizer: str, strategy_cls: Any, strategy: str,
                      host: Any = None) -> str | None:
    """Why optimizer ``optimizer`` (its ``builder`` class) cannot step the parameters strategy
    ``strategy`` gives it (its ``optimizer_parameters``: whole, DTensor shards or flat
    partitions), as one line naming ``optimizer.name`` and the strategies registered on ``host``
    that can; ``None`` when it can."""
    from deepseek.training.build import strategies_where

    form = strategy_cls.optimizer_parameters
    if can_step(form, elementwise=builder.elementwise, dtensor=builder.dtensor):
        return None
    fit = strategies_where(host, lambda cls: can_step(cls.optimizer_parameters, elementwise=builder.elementwise,
                                                      dtensor=builder.dtensor))
    instead = f"use it with strategy {', '.join(repr(n) for n in fit)}" if fit else "use another strategy"
    if form == "flat":
        return (f"optimizer.name: {optimizer!r} is not element-wise (it reads each parameter's shape or norm), and "
                f"strategy {strategy!r} steps the optimizer on flat partitions of concatenated parameters; "
                f"{instead}, or an element-wise optimizer")
    return (f"optimizer.name: {optimizer!r} cannot step parameters sharded as DTensors, which strategy "
            f"{strategy!r} gives it; {instead}, or another optimizer")
