"""What a strategy declares and the rules it checks without a process: the class side of
:class:`~deepseek.training.strategy.Strategy`.

The class attributes say what the strategy supports (gradient compression, fp32 master weights,
the form of the parameters its optimizer steps, weighing by items, whether it needs a
launcher); the class methods are checked when a config is loaded, before ``deepseek launch``
starts any process, and before a resume (:meth:`StrategyRules.check_config`,
:meth:`~StrategyRules.check_launch`, :meth:`~StrategyRules.check_resume`), and tell the
launcher and the advisor what the strategy forms (:meth:`~StrategyRules.data_parallel_size`,
:meth:`~StrategyRules.required_capabilities`, :meth:`~StrategyRules.memory_row`,
:meth:`~StrategyRules.device_type`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from deepseek.config.components import NoOptions

if TYPE_CHECKING:
    from torch import nn

    from deepseek.config.schema import Config
    from deepseek.training.optimizers import OptimizerBuilder


class StrategyRules:
    """The class side of a strategy (:class:`~deepseek.training.strategy.Strategy` derives from
    it): declarations with their defaults, and rules that need no process."""

    name: ClassVar[str] = "?"
    Options: ClassVar[type] = NoOptions
    supports_compression: ClassVar[tuple[str, ...]] = ()
    """Gradient compression methods this strategy applies (``strategy.compression`` values)."""
    supports_master_weights: ClassVar[bool] = False
    """True when :meth:`setup` builds the optimizer from ``optimizer_factory`` over the model's own
    parameters and checkpoints write the optimizer's fp32 masters as the weights
    (``precision.master_weights``, :mod:`deepseek.training.master_weights`)."""
    optimizer_parameters: ClassVar[Literal["whole", "dtensor", "flat"]] = "whole"
    """What the optimizer this strategy builds steps: ``whole`` parameters (all of them, or a
    pipeline stage's), ``dtensor`` shards of them (FSDP2, tensor parallel) or ``flat`` partitions
    of concatenated parameters (DeepSpeed ZeRO). A config naming an optimizer that cannot step that
    form is refused when it loads (:func:`deepseek.training.optimizers.placement_problem`)."""
    weighs_items: ClassVar[bool] = True
    """Whether the step honours :class:`~deepseek.training.step.MicroBatches` weights and
    :meth:`evaluate` its ``weight``, as the base class's do: a strategy with a step of its own
    that does not sets ``False``, and a model weighing its loss by items
    (``TrainableModel.loss_items``) then trains under it only on global batches whose rows all
    count the same number of items (where weighing by rows is exact); the trainer refuses any
    other batch at its step."""
    steps_every_parameter: ClassVar[bool] = False
    """True when the optimizer steps every trainable parameter in every step, one that got no
    gradient as if its gradient were zero (DeepSpeed ZeRO's flat partitions), where torch's
    optimizers leave it alone: a model declaring ``TrainableModel.skips_parameters`` is then
    refused for it (:func:`skipped_parameters_problem`)."""
    needs_launcher: ClassVar[bool] = False
    """True when the strategy needs one process per device started by a launcher
    (``deepseek launch`` / torchrun); False when it trains inside the calling process. Core
    refuses to set up a True one in a process without the launcher's environment
    (:mod:`deepseek.training.launcher_env`)."""

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Raise :class:`~deepseek.errors.ConfigError` (one line) for a config this strategy
        cannot run; called when a config is loaded and before ``deepseek launch``."""

    @classmethod
    def check_launch(cls, config: Config, world_size: int, model: nn.Module) -> None:
        """Like :meth:`check_config`, with the job's size and the model built on the meta
        device; called by ``deepseek launch`` before any process starts."""

    @classmethod
    def check_resume(cls, config: Config, optimizer: OptimizerBuilder) -> None:
        """Refuse (one line) a resume this strategy cannot do with ``optimizer``, the run's
        builder: called before set-up of every resumed run, and by ``deepseek launch -- train
        --resume`` before any process starts."""

    @classmethod
    def data_parallel_size(cls, config: Config, world_size: int) -> int:
        """The data-parallel ranks this strategy forms for ``config`` on ``world_size`` processes:
        what :attr:`dp_size` is after :meth:`setup_environment` (default: every process). The
        launcher checks that ``data.batch_size`` splits over them before any process starts; a
        strategy that overrides :attr:`dp_size` overrides this too (set-up checks they agree)."""
        return world_size

    @classmethod
    def required_capabilities(cls, config: Config) -> dict[str, str]:
        """Model capabilities this strategy needs (names in
        :data:`deepseek.models.capabilities.CAPABILITIES`), each with the reason, e.g.
        ``{"pipeline": "strategy 'pipeline' runs the model as stages"}``."""
        return {}

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        """The advisor's memory-model row (``deepseek.advise.estimate.STRATEGIES``) this strategy
        realises with these validated ``options``, one of the ``memory_rows`` it declares at
        registration; ``None`` (the default) when no row models it. ``deepseek tune`` asks the
        advisor whether a trial fits through this row before running it."""
        return None

    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        """The kind of device :attr:`~deepseek.training.strategy.Strategy.device` will be with
        these validated ``options``, known before any process starts (``device`` itself is set by
        ``setup_environment``): ``"cpu"`` or ``"cuda"`` where the options fix it (``single``'s
        ``device = "cpu"``), ``None`` (the default) where the strategy picks at set-up (CUDA when
        available). ``deepseek tune``'s system tuner estimates a trial's memory and default
        precision for that device."""
        return None


DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
"""What :meth:`StrategyRules.device_type` may answer besides ``None``."""


def checked_device_type(cls: type[StrategyRules], options: Any) -> Literal["cpu", "cuda"] | None:
    """``cls.device_type(options)``: ``"cpu"``, ``"cuda"`` or ``None``, else a
    :class:`~deepseek.plugins.calls.BrokenAnswer` (``"gpu"`` is no device type), which the block
    blaming the strategy (``class_calls(component, "device_type")``, or its ``check_config``
    block) makes one :class:`~deepseek.errors.PluginError` line naming it and its distribution.
    The one read of the answer: every caller goes through it."""
    from deepseek.plugins.calls import BrokenAnswer

    kind = cls.device_type(options)
    if kind is None or (isinstance(kind, str) and kind in DEVICE_TYPES):
        return kind  # type: ignore[return-value]
    raise BrokenAnswer(f"device_type() returned {kind!r:.80}; it must return 'cpu' or 'cuda' where the options fix "
                       "the device, or None where the strategy picks it at set-up (docs/plugins.md section 12)")


def checked_memory_row(component: Any, options: Any) -> str | None:
    """``memory_row(options)`` of the resolved strategy ``component``: ``None`` or one of the
    ``memory_rows`` it declared at registration that the advisor models
    (``deepseek.advise.estimate.STRATEGIES``), else one :class:`~deepseek.errors.PluginError`
    line naming the strategy and its distribution; what the call raises is named the same way."""
    from deepseek.advise.estimate import STRATEGIES
    from deepseek.plugins.calls import BrokenAnswer, class_calls

    with class_calls(component, "memory_row"):
        row = component.load().memory_row(options)
        declared = tuple(component.declared("memory_rows", ()))
        if row is None or (isinstance(row, str) and row in declared and row in {s.key for s in STRATEGIES}):
            return row
        rows = ", ".join(repr(r) for r in declared) or "none"
        raise BrokenAnswer(f"memory_row() returned {row!r:.80}; it must return one of the memory_rows it declares at "
                           f"registration that the advisor models (declared: {rows}), or None where no row models "
                           "it (docs/plugins.md section 12)")


def skipped_parameters_problem(model: Any, strategy_cls: type[StrategyRules], *, model_name: str, strategy_name: str,
                               host: Any = None) -> str | None:
    """The line refusing ``model`` for ``strategy_cls`` when the model declares
    ``TrainableModel.skips_parameters`` and the strategy :attr:`~StrategyRules.steps_every_parameter`
    (it would train other weights than ``single``), else ``None``. Checked by each rank at set-up
    and by ``deepseek launch`` before any process starts."""
    from deepseek.models.protocol import TrainableModel
    from deepseek.training.build import strategies_where

    if not strategy_cls.steps_every_parameter or not isinstance(model, TrainableModel) or not model.skips_parameters:
        return None
    others = strategies_where(host, lambda c: c.needs_launcher == strategy_cls.needs_launcher
                              and not c.steps_every_parameter)
    use = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else (others or ["single"])[0]
    return (f"model {model_name!r}: declares skips_parameters (some steps leave trainable parameters without a "
            f"gradient), but strategy {strategy_name!r} steps every parameter in every step, one without a "
            "gradient as if it were zero (Adam's moments and weight decay move it, where single leaves it alone); "
            f"use {use} (ddp: with strategy.find_unused_parameters = true)")


KEPT_BY_CORE: dict[str, tuple[str, str]] = {
    "place_for_training": ("the run's settings", "setup"),
    "place_for_inference": ("the served model's settings", "setup_inference"),
}
"""The final methods of :class:`~deepseek.training.strategy.Strategy` that core calls -> (what
they keep as ``self.settings``, the method they then call, which a strategy overrides instead)."""


def check_core_calls(cls: type, label: str) -> type:
    """``cls``, a strategy class that leaves core's final methods (:data:`KEPT_BY_CORE`) as they
    are; one overriding either is one line naming the strategy (``label``: its name and
    distribution). Run by :func:`deepseek.config.components.load_checked`, so when a config naming
    it loads, when training sets it up and when ``eval`` / ``generate --strategy`` place a model."""
    from deepseek.errors import PluginError
    from deepseek.training.strategy import Strategy

    for method, (kept, then) in KEPT_BY_CORE.items():
        if getattr(cls, method) is not getattr(Strategy, method):
            raise PluginError(f"{label}: overrides {method}, which core calls to keep {kept} before {then}; "
                              f"override {then} instead (docs/plugins.md section 12)")
    return cls


def check_setup_inference(cls: type, label: str) -> type:
    """``cls``, a strategy class whose ``setup_inference`` takes ``(model, settings)`` as ``setup``
    does; one overriding the one-argument form (before the served model's blame came in the
    settings) is one line naming the strategy, not core's ``TypeError`` at the call."""
    import inspect

    from deepseek.errors import PluginError

    signature = inspect.signature(cls.setup_inference)  # with self
    try:
        signature.bind(None, None, None)
    except TypeError:
        names = ", ".join(list(signature.parameters)[1:])
        raise PluginError(f"{label}: setup_inference({names}) does not take (model, settings); take the "
                          "StepSettings too (core keeps them as self.settings; docs/plugins.md section 12)") from None
    return cls
