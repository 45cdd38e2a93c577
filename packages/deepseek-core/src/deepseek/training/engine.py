"""The step engine: set-up and one optimizer step, shared by the trainer and ``bench train``.

:class:`StepEngine` turns a validated config into a ready strategy (precision, process set-up,
model built, capability-checked and prepared, then wrapped with its optimizer) and runs optimizer
steps on global batches. It reads nothing back from the device: :meth:`StepEngine.step` returns
device tensors, and the caller decides when to read them (the trainer every
``logging.every_n_steps`` steps). Because benchmarks drive this same object, the measured path
and the trained path cannot drift apart.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.config.components import load_checked
from deepseek.data.batch import Batch, batch_rows, head_rows, shard_rows, split_rows
from deepseek.errors import ConfigError, PluginError, UsageError
from deepseek.models.declared import training_refusal
from deepseek.plugins.calls import (
    PLUGIN_BUG,
    blame_for,
    blamed_on,
    blames,
    code_package,
    model_blame,
)
from deepseek.training.attention import attention_kernel
from deepseek.training.build import (
    build_model,
    build_precision,
    optimizer_factory,
    prepare_model,
    run_host,
    strategies_where,
)
from deepseek.training.launcher_env import launcher_env, one_process
from deepseek.training.loss_items import ItemWeights, item_weights
from deepseek.training.param_groups import check_model_rules
from deepseek.training.step import MicroBatches
from deepseek.training.strategy import StepResult, StepSettings, Strategy
from deepseek.training.strategy_rules import skipped_parameters_problem
from deepseek.training.totals import (
    TotalsCapture,
    agreed_sums,
    offers_whole_set_metrics,
    whole_set_metrics,
)

if TYPE_CHECKING:
    from torch import nn

    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost
    from deepseek.training.evaluation import Evaluation

Sharder = Callable[[Batch, int, int], Batch]


class ResumeWarning(UserWarning):
    """A resumed run continues with a checkpoint's setting where its config now gives another."""


def check_batch_split(config: Config, dp_size: int) -> None:
    """ConfigError unless ``data.batch_size`` splits evenly over ``dp_size`` data-parallel ranks
    and each rank's rows into ``train.grad_accum`` micro-batches. Every rank checks it at set-up;
    ``deepseek launch`` checks it before any process starts."""
    batch, accum = config.data.batch_size, config.train.grad_accum
    rows = batch // max(dp_size, 1)
    if batch % max(dp_size, 1) or rows % accum:
        raise ConfigError(
            f"data.batch_size: {batch} rows must split evenly over {dp_size} data-parallel rank(s) x "
            f"train.grad_accum={accum}; use a multiple of {dp_size * accum}"
        )


class StepEngine:
    """Strategy, model and optimizer of one run, and its optimizer step."""

    def __init__(self, config: Config, *, host: PluginHost | None = None, command: str = "train") -> None:
        """``command`` is the CLI command running (``train``, ``bench train``), named in the
        refusal of a ``needs_launcher`` strategy in a process no launcher started."""
        self.config = config
        self.lookups = run_host(config, host)
        self.precision = build_precision(config)
        component = self.lookups.resolve("strategy", config.strategy.name)
        cls = load_checked("strategy", component)  # a Strategy, leaving core's final methods alone
        if cls.needs_launcher:
            launcher_env(config.strategy.name, command=command)
        else:
            one_process(config.strategy.name, lambda: strategies_where(self.lookups, lambda c: c.needs_launcher),
                        command=command)
        # How a call into a plugin strategy names it when the strategy's own code raises
        self.strategy_label = component.label
        """``strategy '<name>' (<distribution> <version>, registered by <module>)``, how errors name the
        run's strategy."""
        self._strategy_package = code_package(cls) if blames(component) else None
        with (blamed_on(self.strategy_label, "__init__", package=self._strategy_package)
              if self._strategy_package is not None else contextlib.nullcontext()):
            self.strategy: Strategy = cls(config.strategy.options, precision=self.precision, host=self.lookups)
        self.micro_batches = config.train.grad_accum
        self.shard: Sharder = shard_rows
        # After a resume: the optimizer hyper-parameters taken from the checkpoint where the
        # config gives others ("group 0 weight_decay 0.1 (the config gives 0.05)")
        self.kept_settings: list[str] = []
        # How a step or an evaluation names the model when its own code raises (set by build_model):
        # model_blame's two strings, not the model itself (the strategy owns its lifetime)
        self._model_label: str | None = None
        self._model_calls = blame_for(None, None)
        self.items: ItemWeights | None = None
        """The model's weights by items (``TrainableModel.loss_items``), after :meth:`build_model`."""
        self._totals_to_metrics: weakref.WeakMethod[Any] | None = None  # the model's metrics_from_totals

    def setup_environment(self) -> None:
        """Process group and device; checks that the strategy forms the data-parallel ranks it
        declared (``Strategy.data_parallel_size``) and that the batch splits over them."""
        cfg, strategy = self.config, self.strategy
        with self.strategy_calls("setup_environment"):
            strategy.setup_environment()
        if not self.precision.is_bound:
            self.precision.bind(strategy.device)
        if cfg.precision.master_weights and self.precision.name != "bf16":
            raise ConfigError(f"precision.master_weights: the compute dtype resolved to {self.precision.name} on "
                              f"{strategy.device.type}; set precision.dtype = \"bf16\" or master_weights = false")
        declared = type(strategy).data_parallel_size(cfg, strategy.world_size)
        if declared != strategy.dp_size:
            raise PluginError(
                f"strategy {cfg.strategy.name!r}: dp_size is {strategy.dp_size} after set-up, but its "
                f"data_parallel_size(config, {strategy.world_size}) gave {declared}; a strategy that overrides "
                "dp_size overrides data_parallel_size to agree (docs/plugins.md, 'Strategies')")
        check_batch_split(cfg, strategy.dp_size)

    def attention_kernel(self) -> contextlib.AbstractContextManager[None]:
        """The block within which attention runs on ``train.attention``'s kernel (after
        :meth:`setup_environment`: it is checked against the strategy's device on entry)."""
        return attention_kernel(self.config.train.attention, self.strategy.device)

    def build_model(self) -> nn.Module:
        """The run's model, capability-checked for this strategy, prepared (activation
        checkpointing, residual dtype, compile), not yet wrapped."""
        model = build_model(self.config, host=self.lookups, device=self.strategy.device,
                            strategy_cls=type(self.strategy))
        component = self.lookups.resolve("model", self.config.model.name)
        self._model_calls = model_blame(component, model)  # the model's own class: compile wraps it in torch's
        self._model_label = component.label if blames(component) else None
        refusal = training_refusal(model, model_name=self.config.model.name, calls=self._model_calls)
        if refusal is not None:
            raise UsageError(refusal)
        if not any(p.requires_grad for p in model.parameters()):
            raise UsageError(f"model {self.config.model.name!r}: {type(model).__name__} has no trainable parameters "
                             f"({sum(1 for _ in model.parameters())} parameter(s), none with requires_grad): there is "
                             "nothing to train; give it layers with weights, or unfreeze some (requires_grad_(True))")
        self.items = item_weights(model, self._model_label or f"model {self.config.model.name!r}")
        skipped = skipped_parameters_problem(model, type(self.strategy), model_name=self.config.model.name,
                                             strategy_name=self.config.strategy.name, host=self.lookups)
        if skipped is not None:
            raise UsageError(skipped)
        if offers_whole_set_metrics(model):
            self._totals_to_metrics = weakref.WeakMethod(model.metrics_from_totals)
        return prepare_model(model, self.config)

    def setup_model(self, model: nn.Module, *, resuming: bool = False) -> None:
        """Hand ``model`` to the strategy, which wraps it and builds the optimizer
        (``Strategy.place_for_training``: the run's settings kept, then the strategy's ``setup``;
        ``resuming``: first the strategy's ``check_resume`` with the run's optimizer builder)."""
        cfg = self.config
        settings = StepSettings(grad_clip=cfg.train.grad_clip, grad_accum=cfg.train.grad_accum,
                                model_name=cfg.model.name, skip_nonfinite=cfg.train.on_nonfinite == "skip",
                                model_calls=self._model_calls)
        if cfg.precision.master_weights:
            frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.is_floating_point()]
            if frozen:
                raise ConfigError(
                    f"precision.master_weights: the model has {len(frozen)} frozen parameter(s) (first: {frozen[0]!r}), "
                    "which would stay fp32 beside the bf16 ones the optimizer makes; set master_weights = false "
                    "for a run that freezes weights")
        check_model_rules(cfg.optimizer.groups, model)
        names = {id(p): n for n, p in model.named_parameters()}
        factory = optimizer_factory(cfg, host=self.lookups, names=names)
        if resuming:
            type(self.strategy).check_resume(cfg, factory.builder)
        with self.strategy_calls("setup"):
            self.strategy.place_for_training(model, factory, settings)
        with self.strategy_calls("resolved_options"):
            chosen = self.strategy.resolved_options()
        if chosen:
            self.config = with_chosen_options(cfg, chosen, self.strategy_label)


    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        """The strategy's :meth:`~Strategy.load_checkpoint` of ``directory`` (the trainer state it
        returns). A resume continues with the saved optimizer hyper-parameters (weight decay,
        betas...; only ``[[optimizer.groups]]``'s ``lr_scale`` follows the config): where the config
        now gives others, rank 0 warns in one line naming them and how to train with the new ones,
        and :attr:`kept_settings` lists them (the run's ``config.toml`` says so above its tables)."""
        from deepseek.training.checkpoint_io import group_settings, settings_kept

        optimizer = self.strategy.optimizer
        before = group_settings(optimizer.param_groups) if optimizer is not None else []
        with self.strategy_calls("load_checkpoint"):
            state = self.strategy.load_checkpoint(directory)
        if not isinstance(state, dict):
            raise PluginError(f"{self.strategy_label}: load_checkpoint returned {type(state).__name__}; it must "
                              f"return the trainer state it read (a dict: ckpt.read_trainer_state(directory)); "
                              f"{PLUGIN_BUG}")
        kept = settings_kept(before, group_settings(optimizer.param_groups)) if optimizer is not None else []
        self.kept_settings = kept
        if kept and self.strategy.is_global_zero:
            shown = "; ".join(kept[:4]) + (f"; and {len(kept) - 4} more" if len(kept) > 4 else "")
            warnings.warn(f"resumed with the checkpoint's optimizer settings where the config now differs: {shown}; "
                          f"to train with the config's, start a new run from its weights (--set "
                          f"train.init_from=\"{directory}\")", ResumeWarning, stacklevel=2)
        return state

    def step(self, global_batch: Batch, lr: float, step: int = 0) -> StepResult:
        """One optimizer step (number ``step``, for messages) on this rank's rows of
        ``global_batch`` at learning rate ``lr`` (values stay on the device)."""
        strategy = self.strategy
        strategy.set_lr(lr)
        rows = self.shard(global_batch, strategy.dp_rank, strategy.dp_size)
        micro = split_rows(rows, self.micro_batches)
        if self.items is not None:  # weighed by the items the loss averages over
            with self.model_calls("loss_items"):
                if strategy.weighs_items:
                    micro = MicroBatches(micro, self.items.step_weights(global_batch, micro, strategy.dp_size, step))
                else:
                    self._check_rows_alike(global_batch, step)
        with self.strategy_calls("train_step"), self.model_calls("forward"):
            return strategy.train_step(micro)

    def _check_rows_alike(self, global_batch: Batch, step: int) -> None:
        """Refuse a batch whose rows count different numbers of items for a strategy that weighs
        its parts by rows (``Strategy.weighs_items`` False): exact only where every row counts
        the same (packed rows). Every rank checks the whole global batch, so all refuse alike."""
        assert self.items is not None
        uneven = self.items.uneven_rows(global_batch, f"global batch of step {step}")
        if uneven is not None:
            raise UsageError(f"model {self.config.model.name!r}: rows of step {step}'s batch count {uneven[0]} and "
                             f"{uneven[1]} items its loss averages over (loss_items: padded rows), which strategy "
                             f"{self.config.strategy.name!r} weighs by rows, not items; pack the rows (every target "
                             "counted), or use single, ddp, fsdp, deepspeed or tp")

    def step_metrics(self, model_metrics: Sequence[str]) -> dict[str, float]:
        """The strategy's :meth:`~Strategy.step_metrics` of the last step, held to their contract
        (:func:`checked_step_metrics`); ``model_metrics`` the names the model's step reported."""
        with self.strategy_calls("step_metrics"):
            values = self.strategy.step_metrics()
        return checked_step_metrics(values, self.strategy_label, model_metrics)

    def evaluate(self, batch: Batch, capture: TotalsCapture | None = None) -> tuple[Any, dict[str, Any]]:
        """Mean loss and metrics of a global validation batch over the data-parallel ranks.

        The ranks' shards are weighed by their items (a model weighing its loss by items) or, when
        the batch's rows do not divide evenly over the ranks (the last, shorter validation batch),
        by their rows: the result is the batch's mean whatever the number of ranks. A rank left
        with no rows evaluates the batch's first row at weight 0 (every rank takes part in the
        forward, whose collectives a sharded model needs), its totals not counted (``capture``)."""
        strategy = self.strategy
        shard = self.shard(batch, strategy.dp_rank, strategy.dp_size)
        weight: float | None = None
        if self.items is not None and strategy.dp_size > 1:  # the ranks' shards weighed by their items
            with self.model_calls("loss_items"):
                weight = self.items.shard_weight(batch, shard, strategy.dp_size)
        elif strategy.dp_size > 1 and batch_rows(batch) % strategy.dp_size:
            weight = batch_rows(shard) * strategy.dp_size / batch_rows(batch)
        empty = weight is not None and batch_rows(shard) == 0
        with self.strategy_calls("evaluate"), self.model_calls("forward"), \
                capture.ignored() if empty and capture is not None else contextlib.nullcontext():
            if weight is None:
                return strategy.evaluate(shard)
            return strategy.evaluate(head_rows(batch, 1) if empty else shard, weight=0.0 if empty else weight)

    def evaluate_all(self, batches: Sequence[Batch], *, first: bool = False) -> tuple[list[Evaluation], dict[str, float]]:
        """:meth:`evaluate` of each global validation batch, and the model's whole-set metrics
        (``val_<name>``): its ``metrics_from_totals`` of the ``"totals"`` its forward returned,
        summed over the batches and the data-parallel ranks (:mod:`deepseek.training.totals`):
        every rank takes part in the sum, or none, whatever its own rows (:func:`agreed_sums`).
        The totals are read by a forward hook only from a model that offers whole-set metrics,
        and on the ``first`` evaluation (the check before training), which refuses totals from a
        model that does not: a hook added to a compiled model makes it compile again."""
        name = self.config.model.name
        offers = self._totals_to_metrics is not None
        capture = TotalsCapture(self.strategy.eval_module, model_name=name, offers=offers)
        with capture if offers or first else contextlib.nullcontext():
            results = [self.evaluate(batch, capture) for batch in batches]
        method = self._totals_to_metrics() if self._totals_to_metrics is not None else None
        if method is None:  # the model's class decides, alike on every rank
            return results, {}
        sums = agreed_sums(capture.sums, self.strategy, model_name=name)
        if not sums:  # no rank's model returned totals
            return results, {}
        with self.strategy_calls("reduce_sum"):
            sums = self.strategy.reduce_sum(sums)
        means = {"val_loss", *(f"val_{k}" for k in (results[0][1] if results else {}))}
        with self.model_calls("metrics_from_totals"):
            return results, whole_set_metrics(method.__self__, sums, model_name=name, taken=means)

    def batch_weights(self, batches: Sequence[Batch]) -> list[int] | None:
        """Each validation batch's weight in the mean over batches
        (:func:`~deepseek.training.evaluation.batch_weights`: its items or rows, or ``None``)."""
        from deepseek.training.evaluation import batch_weights

        with self.model_calls("loss_items"):
            return batch_weights(batches, self.items)

    def strategy_calls(self, call: str) -> contextlib.AbstractContextManager[None]:
        """The block calling the strategy's ``call``: an exception raised by a plugin strategy's own
        code becomes one line naming it and its distribution (core's strategies and a collective's
        or the model's errors beneath it pass as they are: :func:`~deepseek.plugins.calls.blamed_on`
        with ``raised_there``)."""
        if self._strategy_package is None:
            return contextlib.nullcontext()
        return blamed_on(self.strategy_label, call, package=self._strategy_package, raised_there=True)

    def model_calls(self, call: str) -> contextlib.AbstractContextManager[None]:
        """The block running the model's ``call`` (``forward``, ``check_data``, ...): an exception
        raised in a plugin model's code becomes one line naming the model and its distribution
        (:func:`~deepseek.plugins.calls.model_calls`); after :meth:`build_model`."""
        return self._model_calls(call)


def checked_step_metrics(values: Any, label: str, model_metrics: Sequence[str]) -> dict[str, float]:
    """A strategy's step metrics as the step record takes them: a dict of names to real numbers
    (Python's or numpy's). A name the trainer logs itself (``loss``, ``lr``, ...:
    :data:`~deepseek.training.run_values.STEP_VALUES` and the token values) or the model's own
    metric would replace that value in ``metrics.jsonl``, so it is the plugin's bug, as is any
    other value; ``loss_scale`` is allowed (a strategy whose engine scales fp16 losses itself
    reports it, as ``deepspeed`` does)."""
    import numbers

    from deepseek.training.run_values import STEP_VALUES, TOKEN_VALUES

    taken = {*STEP_VALUES, *TOKEN_VALUES, *model_metrics}
    problem = None
    if not isinstance(values, dict):
        problem = f"returned {type(values).__name__}"
    else:
        for name, value in values.items():
            if name in taken:
                whose = "the model's metric" if name in model_metrics else "a value the trainer logs"
                problem = f"returned {name!r}, {whose}, which it would replace in the step record"
            elif not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, numbers.Real):
                problem = f"returned {name!r}: {value!r}, not a number under a name"
            if problem:
                break
    if problem is None:
        return values
    raise PluginError(f"{label}: step_metrics {problem}; it must return a dict of metric names of its own "
                      f"(not one the trainer or the model logs) to numbers; {PLUGIN_BUG}")


def with_chosen_options(cfg: Any, chosen: Any, label: str) -> Any:
    """``cfg`` with the strategy's options that it chose at set-up (``resolved_options``) in
    place of what was asked; a key the options do not have, or a value its field's type or check
    refuses, is the plugin's bug."""
    import dataclasses

    options = cfg.strategy.options
    known = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
    if not isinstance(chosen, dict) or set(chosen) - known:
        raise PluginError(f"{label}: resolved_options returned {chosen!r}; it must return a dict of its own option "
                          f"keys ({', '.join(sorted(known)) or 'it has none'}); {PLUGIN_BUG}")
    from typing import get_type_hints

    from deepseek.config.validate import convert

    hints, checks = get_type_hints(type(options)), {f.name: f.metadata.get("check") for f in dataclasses.fields(options)}
    for key, value in chosen.items():  # held to the field's type and check, as the config's own values are
        try:
            convert(value, hints[key], path=f"strategy.{key}")
            problem = checks[key](value) if checks[key] is not None else None
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"strategy.{key}: ")
        if problem:
            raise PluginError(f"{label}: resolved_options returned strategy.{key} = {value!r}, which its own Options "
                              f"refuse ({problem}); {PLUGIN_BUG}")
    strategy = dataclasses.replace(cfg.strategy, options=dataclasses.replace(options, **chosen))
    return dataclasses.replace(cfg, strategy=strategy)
