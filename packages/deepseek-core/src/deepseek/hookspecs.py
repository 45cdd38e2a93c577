"""Hook specifications: the plugin author's reference.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names match
the hooks below. Publish it through the ``deepseek`` entry-point group in the
``pyproject.toml`` of your distribution (``deepseek-acme``)::

    [project.entry-points.deepseek]
    acme = "deepseek_acme.plugin"

and implement hooks in that module (``deepseek_acme/plugin.py``)::

    from deepseek import hookimpl

    @hookimpl
    def deepseek_register_passes(register):
        register("acme.fold-scale", "deepseek_acme.passes:FoldScale", description="...")

Hooks come in three phases:

1. **Set-up**: :func:`deepseek_add_hookspecs` lets a plugin add hook specifications of its own.
2. **Registration**: ``deepseek_register_*`` hooks receive a ``register`` callback. Call it once
   per component: ``register(name, target, *, aliases=(), description="", declares=None)``. ``target`` is the
   component itself (a class or factory) or a lazy ``"package.module:attribute"`` string that the
   host imports only when the component is created. Keep plugin modules cheap to import (no torch
   at module level) so that ``deepseek --help`` and ``deepseek plugins list`` stay fast; the lazy
   string form makes that easy. Names are lower case: letters, digits, ``.``, ``_`` and ``-``.
   The host validates every call and names the plugin and hook when something is wrong.
   With them, :func:`deepseek_declare_run_files` declares the files a plugin's lifecycle hooks
   write into run folders.
3. **Training lifecycle**: called by the trainer on every rank, in order ``deepseek_train_start``,
   (``deepseek_train_step_end`` | ``deepseek_train_epoch_end`` | ``deepseek_evaluate`` |
   ``deepseek_checkpoint_saved``)*, ``deepseek_train_end``. Check ``trainer.is_global_zero`` before writing files.
   Each returns ``None`` and sets ``trainer.should_stop`` to a ``bool`` only; anything else is
   refused as a ``PluginError`` naming the plugin and the hook. The contract tests
   (``tests/contract/test_lifecycle_hooks_contract.py``, docs/plugins.md section 9) run them
   through a training run, its resume and a run that fails.

A plugin that raises while loading or registering is reported (distribution, version, plugin,
hook, error) and skipped; with ``--strict-plugins`` or ``DEEPSEEK_STRICT_PLUGINS=1`` that is
fatal. An exception from any other hook (other than a ``DeepseekError``, which passes as it
is) reaches the caller as a ``PluginError`` naming the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost
    from deepseek.training.trainer import Trainer

PROJECT_NAME = "deepseek"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marker for hook specifications (also for plugins that add hookspecs of their own)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for hook implementations: decorate your ``deepseek_*`` functions with it."""


class RegisterFn(Protocol):
    """The ``register`` callback handed to every registration hook.

    - ``name``: lower case letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
      digit; unique per kind within a distribution. Prefix third-party names with your plugin's
      name (``acme.fold-scale``). When two distributions register the same name, users pick one
      as ``dist:name`` or set precedence (``DEEPSEEK_PLUGIN_PREFER``, ``[plugins] prefer``).
    - ``target``: the component (a class, factory function or ``click.Command``), or a lazy
      ``"package.module:attribute"`` string imported only when the component is created.
    - ``aliases``: a list or tuple of further names for the same component.
    - ``description``: one line shown by ``deepseek plugins which KIND NAME`` (and its
      ``--json``) and, for a command, by ``deepseek --help`` (``deepseek plugins list`` shows
      names only); defaults to the first docstring paragraph of a non-lazy target.
    - ``declares``: facts tools read without importing the target (a mapping of strings to
      strings, numbers, booleans or lists of them). Strategies declare ``memory_rows``: the
      rows of the advisor's memory model they realise (docs/advise.md), e.g.
      ``declares={"memory_rows": ["zero3", "zero3+offload"]}``. Commands declare ``run_files``:
      the files they write directly in the run folders they make or write into, besides core's,
      which no command's output may then replace (``declares={"run_files": ["compression.json"]}``;
      a list of plain file names, a folder's ending in ``/`` (``hf/``), checked here, none of them
      core's or another loaded distribution's; docs/plugins.md section 15).

    An invalid call raises :class:`deepseek.errors.PluginError`, naming distribution, plugin
    and hook; the plugin is then skipped as a whole. ``register`` is valid only while its hook
    runs.
    """

    def __call__(
        self,
        name: str,
        target: Any,
        *,
        aliases: Sequence[str] = (),
        description: str = "",
        declares: Mapping[str, Any] | None = None,
    ) -> None: ...


# --------------------------------------------------------------------------- 1. set-up


@hookspec
def deepseek_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications of your own plugin.

    Call ``pluginmanager.add_hookspecs(module_or_class)``. Other plugins can then implement
    those hooks. The enterprise edition uses this for fusions, compressors, tuners and executors
    (their reference: docs/hooks-enterprise.md).
    """


# --------------------------------------------------------------------------- 2. registration


@hookspec
def deepseek_register_models(register: RegisterFn) -> None:
    """Register trainable models.

    ``target`` carries ``Options``, a dataclass of the model's own ``[model]`` keys
    (``deepseek.config.components.NoOptions`` when it has none), and is called as
    ``target(options)`` with the validated instance; it returns a ``torch.nn.Module``. A
    :class:`deepseek.models.protocol.TrainableModel` subclass is such a target by itself; one that
    also subclasses :class:`deepseek.models.protocol.BuildsComponents` (a model that creates
    registered encoders or other parts) is called as ``target(options, host=host)`` with the
    run's plugin host. The module is called with a batch's entries as keyword arguments,
    ``model(**batch)``, and returns the mean loss (a 0-dim tensor) or a mapping with ``"loss"`` and named scalar metrics; its
    optional capabilities (per-block structure, activation checkpointing, residual dtype,
    pipeline stages) are the methods of ``TrainableModel`` it overrides. Core registers the GPT
    presets ``tiny``, ``small`` and ``1.3b``.
    """


@hookspec
def deepseek_register_datasets(register: RegisterFn) -> None:
    """Register datasets.

    ``target`` is a subclass of :class:`deepseek.data.dataset.Dataset` with ``Options`` (its own
    ``[data]`` keys), created on every rank as
    ``target(options, batch_size=data.batch_size, seed=train.seed)``. It yields global training
    batches (mappings of names to tensors, rows along the first dimension), has a fixed
    validation set (``validation_batches(limit)``) and a JSON-ready ``state_dict()`` /
    ``load_state_dict()`` so that a resumed run sees the same batches. Core registers ``text``
    and ``hf`` (the user's Hugging Face ``datasets`` files, docs/data.md).
    """


@hookspec
def deepseek_register_strategies(register: RegisterFn) -> None:
    """Register parallelism strategies.

    ``target`` is a subclass of :class:`deepseek.training.strategy.Strategy` that implements
    every abstract method (checked when a config naming it loads). The framework validates the
    ``[strategy]`` table minus ``name`` against the class's frozen ``Options`` dataclass (unknown
    keys and bad values refused with the field path) and the trainer creates it as
    ``target(options, precision=precision, host=host)``: ``options`` that ``Options``
    instance, ``precision`` the run's :class:`~deepseek.training.mixed_precision.Precision`,
    ``host`` the run's plugin host. A class with ``needs_launcher = True`` is set up only in a
    process a launcher started (:mod:`deepseek.training.launcher_env`). Core registers
    ``single``. Guide: docs/plugins.md section 12.
    """


@hookspec
def deepseek_register_optimizers(register: RegisterFn) -> None:
    """Register optimizers.

    ``target`` is a subclass of :class:`deepseek.training.optimizers.OptimizerBuilder` with
    ``Options`` (its own ``[optimizer]`` keys; the keys every optimizer shares, ``weight_decay``,
    ``betas``, ``eps``, ``momentum`` and ``fused``, stay in the config's ``OptimizerConfig``),
    created on every rank as ``target(options, config.optimizer)``. Its
    ``create(groups, lr, master_weights=..., accumulation=...)`` returns a
    ``torch.optim.Optimizer`` over the parameter groups a strategy hands in (decay and no-decay
    groups, each with its ``weight_decay``); the trainer sets every group's ``lr`` before each step.
    ``initial_state(param)`` (optional) gives a parameter's state before its first step, which
    DeepSpeed ZeRO needs to resume; ``state_spec(shape)`` (optional) what it keeps per parameter,
    which checkpoints read back are held to; ``elementwise`` and ``dtensor`` declare whether it can step flat
    partitions (DeepSpeed ZeRO) and DTensor shards (FSDP2, tensor parallel). Core registers
    ``adamw``, ``sgd``, ``lion`` and ``adafactor``. Guide: docs/plugins.md section 14.
    """


@hookspec
def deepseek_register_lr_schedules(register: RegisterFn) -> None:
    """Register learning-rate schedules.

    ``target`` is a subclass of :class:`deepseek.training.schedule.LRSchedule` with ``Options``
    (its own ``[lr_schedule]`` keys), created as ``target(options, lr=..., min_lr=...,
    warmup_steps=..., decay_steps=...)`` from ``[train]``. ``lr_at(step)`` (steps from 1) is the
    learning rate of that optimizer step: a pure function of the step, finite and ``>= 0``, so a
    resumed run needs only the step number. Implement ``decay(progress)`` to keep the linear
    warm-up and the ``min_lr`` floor after ``decay_steps``, or override ``lr_at``. Core registers
    ``cosine`` (the default), ``linear``, ``constant`` and ``wsd``. Guide: docs/plugins.md
    section 14.
    """


@hookspec
def deepseek_register_passes(register: RegisterFn) -> None:
    """Register graph-optimizer passes.

    ``target`` is a subclass of :class:`deepseek.graph.passes.GraphPass` (or a factory
    returning an instance), created without arguments. A pass implements
    ``apply(gm, example_inputs)``: it rewrites the ``torch.fx.GraphModule`` that
    :func:`deepseek.graph.capture.capture` made from the model and returns it (or ``None`` when
    it did not fire), noting what it changed with ``self.record(...)``. That graph has one of two
    forms (``call_module`` nodes from ``fx.symbolic_trace``, or ``aten`` ops from
    ``torch.export``); :mod:`deepseek.graph.match` recognises linears, adds, attention and
    activations in both. The optimizer checks every result against eager and drops a pass that
    changes the numbers. ``passes="auto"`` considers every registered third-party pass after
    core's and keeps it only when the pipeline is faster with it. Guide: docs/graph-passes.md.
    """


@hookspec
def deepseek_register_encoders(register: RegisterFn) -> None:
    """Register modality encoders.

    ``target`` carries ``Options`` (a dataclass of the encoder's keys) and is called as
    ``target(options)``; it returns a :class:`deepseek.models.encoder.Encoder`: a module with
    ``output_dim`` whose ``forward(inputs, padding_mask=None)`` returns an ``EncoderOutput``,
    features ``(batch, tokens, output_dim)`` and their padding mask ``(batch, tokens)`` (True at
    padding). Names are ``modality.kind`` (``text.transformer``, ``vision.acme_patches``): the
    classifier takes an encoder for modality ``m`` only when its name starts with ``m.``."""


@hookspec
def deepseek_register_trackers(register: RegisterFn) -> None:
    """Register experiment trackers (where a run's parameters, metrics and artefacts are sent).

    ``target`` is a subclass of :class:`deepseek.tracking.Tracker` carrying ``Options`` (its keys,
    the table ``[trackers.<name>]``), created on the global-zero rank only as ``target(options)``
    when ``logging.trackers`` names it. The trainer calls ``start(run)`` before the first step,
    ``log_metrics(step, metrics)`` with every row ``metrics.jsonl`` gets (training steps and
    evaluations), ``log_artifact(path, kind)`` at the end (``loss.png``, ``config.toml`` and
    ``final_checkpoint.json``) and ``finish(status)``. The classmethod ``check(options)`` runs when
    the config is loaded (a missing library, a malformed URI: one-line ``ConfigError``). Core
    registers ``tensorboard``, ``mlflow`` and ``wandb``. Guide: docs/tracking.md.
    """


@hookspec
def deepseek_register_commands(register: RegisterFn) -> None:
    """Register sub-commands of the ``deepseek`` CLI.

    ``target`` is a ``click.Command`` (or a lazy string naming one). The registered name is
    the word that runs it (``register("acme-peek", ...)``: ``deepseek acme-peek``); the name
    given to ``@click.command(...)`` is not read, and ``description`` is the command's line in
    ``deepseek --help``. A ``click.Group`` gives sub-commands (``deepseek acme-peek rows``).
    Import torch inside the command's callback, not at module level, so that ``deepseek
    --help`` stays fast. Refuse with a one-line ``deepseek.errors.UsageError`` (exit code 2) or ``click.UsageError``; any
    other exception the command's code raises is one ``PluginError`` line naming the command,
    its distribution and the plugin module, exit code 1 (``--debug`` shows the traceback).
    Guide: docs/plugins.md section 15.
    """


@hookspec
def deepseek_declare_run_files(declare: Callable[[Sequence[str]], None]) -> None:
    """Declare the files your lifecycle hooks write directly in ``trainer.run_dir``:
    ``declare(["acme-state.jsonl"])``, a list of plain file names (no ``/``, not ``.`` or
    ``..``; a folder's name ends in one ``/``: ``acme-plots/``), checked as a command's
    ``run_files`` is. They are then the run's own in every run folder, as its ``config.toml`` is
    (a folder with everything in it): another command's output given that path is refused
    instead of replacing your file. A name core's trainer writes (``metrics.jsonl``) or another
    loaded distribution declared first (its hooks, or a command's ``run_files``) is refused: both
    would write the same file. Called with the registration hooks, as one transaction with
    them; an invalid list skips the plugin. Guide: docs/plugins.md sections 6 and 15.
    """


# --------------------------------------------------------------------------- validation


@hookspec
def deepseek_validate_config(config: Config, host: PluginHost) -> None:
    """Reject a configuration that cannot work, before any process is launched.

    Raise :class:`deepseek.errors.ConfigError` with one line naming the conflicting fields and
    the fix (e.g. a DDP-only gradient compressor combined with a sharded strategy); return
    ``None`` otherwise. ``host`` is the host the config is loaded on (the command's, by
    ``--plugins`` / ``--disable-plugins``, or the one given to ``load_config``): check names of
    a kind of your own there (``host.names("widget")``), not on ``get_host()``, which ignores
    both; an implementation needing no host leaves it out. A returned value (a refusal message)
    is a ``PluginError`` naming the plugin, as from the ``train_*`` and ``checkpoint_saved`` hooks.
    """


# --------------------------------------------------------------------------- 3. training lifecycle


@hookspec
def deepseek_train_start(trainer: Trainer) -> None:
    """Called once on every rank after model, optimizer and data are set up, before the first step.

    Useful attributes: ``trainer.config``, ``trainer.run_dir``, ``trainer.step`` (0, or the
    step a resumed run continues from), ``trainer.is_global_zero``, ``trainer.model``,
    ``trainer.optimizer`` and ``trainer.host``, the run's plugin host (the command's
    ``--plugins`` / ``--disable-plugins``, or the one given to ``Trainer`` / ``deepseek.fit``):
    create components of a kind of your own there (``trainer.host.create("widget", name)``)
    and call hooks of your own on it (``trainer.host.hook.acme_widget_made(widget=...)``).
    """


@hookspec
def deepseek_train_step_end(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
    """Called once per optimizer step with that step's metrics (``loss``, ``lr``, ...), in step
    order, once the step's loss and gradient norm have been read from the device. Reading is
    batched (``logging.every_n_steps``, default 10 on an accelerator): the calls for steps
    ``k+1 .. k+N`` come together after step ``k+N``, so ``trainer.step`` may be ahead of ``step``.
    Every step is read before an evaluation, a checkpoint and the end.

    ``metrics`` may be extended in place: what a plugin adds (a string, a number or a 0-dim
    tensor under a key of its own) is logged with the step; changing or removing a value the
    trainer logs, adding anything else, or returning a value (the hook returns ``None``) is
    refused as a ``PluginError`` naming the hook.
    To stop early as a complete run, set ``trainer.should_stop = True`` (here or in
    :func:`deepseek_evaluate`): the run ends before the next step, that step is checkpointed as
    at the end, ``TrainResult.ended_early`` says why and the command exits 0; a resume of the
    run finds it complete and trains no further step (docs/plugins.md section 6).
    ``should_stop`` is a ``bool``: a hook that sets it to anything else (``"yes"``, ``1``, a
    tensor) is refused as a ``PluginError`` naming the plugin and the hook.
    Raising stops training: ``deepseek_train_end`` is still called, then the error propagates.
    A :class:`deepseek.errors.DeepseekError` propagates as it is (the CLI shows its one line);
    any other exception from a plugin's hook (this one or any hook the framework calls, not the
    registration hooks) comes back as a ``PluginError`` naming the distribution, version, plugin
    and hook (``deepseek-acme 0.1.0: plugin 'acme' (deepseek_acme.plugin) raised in
    deepseek_train_step_end: KeyError: 'loss'; a bug in the plugin: ...``), the original as its
    ``__cause__``.
    """


@hookspec
def deepseek_train_epoch_end(trainer: Trainer, epoch: int, step: int) -> None:
    """Called once per complete pass over the training data (Lightning's
    ``on_train_epoch_end``), ``epoch`` counting from 1, right after the
    :func:`deepseek_train_step_end` of the step ``step`` whose batch completed it, before that
    step's evaluation and checkpoint. Batches run on across epoch ends, so a pass usually ends
    inside a batch: that batch completes it. ``trainer.epochs_done`` holds the passes completed
    as of the last batch drawn.

    Only data that counts its passes calls it (``Dataset.epochs_done``, docs/plugins.md section
    11): ``deepseek.fit``'s data, ``text`` and ``hf``; data drawn at random (``multimodal.digits``)
    never does. An ``IterableDataset``'s pass is seen to end when the sample after its last is
    asked for, so a pass ending exactly with a batch is reported with the next step; ``text`` and
    ``hf`` shuffle rows within blocks of ``data.shuffle_buffer`` rows, and a pass ends with the
    block that holds its end (a block spanning several passes of a small corpus ends them
    together). A resumed run calls it only for passes completed after its checkpoint.
    """


@hookspec
def deepseek_evaluate(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
    """Called after each evaluation with its metrics (``val_loss``, ...), which may be extended
    in place as :func:`deepseek_train_step_end`'s. ``metrics`` is the record ``metrics.jsonl``
    gets: it also holds ``"step"`` (an ``int``, the ``step`` argument), so a hook that copies its
    values (``{k: float(v) ...}``) leaves that key out or puts ``step`` back after them.

    A fresh run evaluates once before the first step (``step == 0``), then every
    ``train.eval_interval`` steps and at the last step; a run with ``data.eval_batches = 0``
    (validation off) never does.
    Only a training run's evaluations call it (it is given the trainer): ``deepseek eval`` and
    ``deepseek.evaluate`` report the model's own values (``val_loss``, ``val_<metric>``), without
    what this hook adds, so a ``val_`` value of a plugin's is read from the run's
    ``metrics.jsonl`` or ``TrainResult.val_metrics``.
    """


@hookspec
def deepseek_checkpoint_saved(trainer: Trainer, path: Path, step: int) -> None:
    """Called on every rank after a checkpoint directory has been written completely.

    ``path`` is the final directory (it was written under a temporary name and renamed).
    """


@hookspec
def deepseek_train_end(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Called once when training stops, normally or not, with the last known metrics. The run
    has ended: a ``trainer.should_stop`` set here changes nothing and is not recorded (neither in
    the result nor in the last checkpoint)."""


REGISTRATION_HOOKS: dict[str, str] = {
    "deepseek_register_models": "model",
    "deepseek_register_datasets": "dataset",
    "deepseek_register_strategies": "strategy",
    "deepseek_register_optimizers": "optimizer",
    "deepseek_register_lr_schedules": "lr_schedule",
    "deepseek_register_passes": "pass",
    "deepseek_register_encoders": "encoder",
    "deepseek_register_trackers": "tracker",
    "deepseek_register_commands": "command",
}
"""Registration hook name -> component kind."""

