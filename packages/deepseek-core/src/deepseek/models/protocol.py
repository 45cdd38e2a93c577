"""The model contract: what every trainable model provides, and what it may offer on top.

**Every model.** A registered model (``deepseek_register_models``) is a target carrying
``Options`` (a dataclass of its ``[model]`` keys) that is called with the validated options and
returns a ``torch.nn.Module``. The trainer and every strategy call that module with one batch's
entries as keyword arguments, ``model(**batch)``, and it returns its loss, either

- a 0-dim tensor: the mean loss over the batch's rows, or
- a mapping with the key ``"loss"`` and, optionally, further named 0-dim tensors or numbers: the
  model's metrics (``"accuracy"``, ...), averaged over rows and ranks like the loss and logged
  beside it (``accuracy`` on training steps, ``val_accuracy`` on evaluations). Entries that are
  not scalars (logits, hidden states) are ignored, so a Hugging Face ``ModelOutput`` qualifies.

**Optional capabilities.** Subclass :class:`TrainableModel` and override a capability's methods
to offer it; :func:`~deepseek.models.capabilities.model_capabilities` reads which ones a model overrides. A capability that the
config asks for and the model lacks is refused when the model is created
(:func:`~deepseek.models.capabilities.require_capabilities`), naming the capability and the model:

- ``blocks``: :meth:`TrainableModel.block_modules`, the repeated blocks in forward order. With it
  ``train.compile`` compiles each block in place and ``fsdp`` wraps each block as its own unit;
  without it the whole model is compiled and wrapped as one unit.
- ``activation_checkpointing``: :meth:`~TrainableModel.set_activation_checkpointing`
  (``train.activation_checkpointing``).
- ``residual_dtype``: :meth:`~TrainableModel.set_fp32_residual` (``precision.fp32_residual``).
- ``pipeline``: :meth:`~TrainableModel.split_stages`, :meth:`~TrainableModel.pipeline_batch`,
  :meth:`~TrainableModel.pipeline_loss` and, for weights shared between stages,
  :meth:`~TrainableModel.tied_parameters` (strategies ``pipeline`` and ``hybrid``).
- ``tensor_parallel``: :meth:`~TrainableModel.tensor_parallel_plan`, how the model's layers split
  over a tensor-parallel mesh dimension (strategy ``tp``): a :class:`TensorParallelPlan`.
- ``cached_decoding``: :meth:`~TrainableModel.new_cache`, :meth:`~TrainableModel.forward_cached`
  and :meth:`~TrainableModel.decode_window`, incremental decoding with a KV cache
  (:func:`deepseek.models.decoding.decode`). A model's pipeline stages that offer it too can be
  served by ``deepseek generate --strategy pipeline``, each stage caching its own blocks.
- ``serving``: :meth:`~TrainableModel.serving_inputs` and :meth:`~TrainableModel.serving_forward`,
  the prediction over a batch's inputs without its labels, which ``deepseek export`` traces into a
  deployment file for a model that takes more than token ids (:mod:`deepseek.graph.serving`).
- ``generation``: :meth:`~TrainableModel.generate`, prompts extended by sampled tokens
  (``deepseek generate``; the trainer's ``try: deepseek generate`` hint). A model with
  ``cached_decoding`` offers it in one call of :func:`deepseek.models.decoding.generate_cached`;
  the default says how (:data:`GENERATION_HOWTO`), and :func:`~deepseek.models.capabilities.require_generation` refuses a model
  without it in one line. Optionally :meth:`~TrainableModel.generation_vocab_size`, the token ids
  its logits cover: ``deepseek generate`` then refuses a tokenizer that does not fit it
  (:func:`deepseek.models.declared.generation_vocab_size` reads it; default ``None``, not checked).

:meth:`TrainableModel.token_input_limits` (optional) declares the token ids and positions a
``forward`` over one tensor of token ids takes, which the commands that trace a model on random
ids (``optimize``, ``export``, ``bench latency``) stay within
(:func:`deepseek.models.declared.token_input_limits`).

:meth:`TrainableModel.check_data` (default: accept) lets a model refuse data it cannot take
(sequences longer than its positions, a vocabulary larger than its own) with one clear line
before anything is written. The trainer then checks, for every model, that ``forward`` takes the
first validation batch's keys (:func:`deepseek.models.checks.check_batch_keys`) and evaluates that batch, so that a loss
that is not 0-dim or a metric named like a value the trainer logs (:data:`deepseek.training.run_values.RESERVED_METRICS`) is
refused before the run folder is written too.

:meth:`TrainableModel.metric_names` (optional, default ``None``: not declared) declares the
metrics ``forward`` reports: ``train.monitor`` and ``deepseek tune --objective`` are then checked
against the values the run reports (:func:`deepseek.training.run_values.reported_values`), and the
trainer refuses a model whose first evaluation returns other names
(:func:`deepseek.models.checks.check_declared_metrics`); it names the whole-set metrics too, of
which an evaluation may leave out those its data gave nothing to measure.

:meth:`TrainableModel.metrics_from_totals` (optional) gives metrics over a whole evaluation that
are not means over rows (F1, per-class recall): ``forward`` returns ``"totals"``, tensors that add
up over rows, and the evaluation hands their sums to it once (:mod:`deepseek.training.totals`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from deepseek.config.components import NoOptions

Batch = Mapping[str, Any]
"""One batch: a mapping of names to tensors (or nested lists, tuples and mappings of tensors),
every tensor with the batch's rows along its first dimension."""


GENERATION_HOWTO = (
    "give the model's class (a TrainableModel subclass) a generate(idx, max_new_tokens, temperature, top_k, "
    "generator, on_token, static, top_p, repetition_penalty) method; with cached_decoding it is one call of "
    "deepseek.models.decoding.generate_cached (docs/plugins.md, 'Models')"
)
"""How a model offers capability ``generation`` (the end of
:func:`~deepseek.models.capabilities.require_generation`'s line)."""


@dataclass(frozen=True)
class TensorParallelPlan:
    """How a model splits over a tensor-parallel mesh dimension (capability ``tensor_parallel``).

    The strategy hands ``styles`` to ``torch.distributed.tensor.parallel.parallelize_module`` on
    the tensor-parallel sub-mesh; parameters of modules no style names stay whole on every rank
    (replicated) and must then see the same inputs on every rank. A module's forward must work on
    its local shard: attention reads its head count from the local width of its projection.
    """

    styles: Mapping[str, Any]
    """Module name (``fnmatch`` wildcards per name part, ``blocks.*.attn.qkv``) -> a torch
    ``ParallelStyle`` (``ColwiseParallel``, ``RowwiseParallel``, ``SequenceParallel``,
    ``PrepareModuleInput``)."""
    fused_rows: Mapping[str, int] = field(default_factory=dict)
    """Parameter name pattern -> how many equal parts are stacked along dim 0 of a column-sharded
    parameter (a fused ``q|k|v`` projection: 3). Each part is split over the ranks, so rank ``r``
    holds rows ``r`` of every part (its own heads' q, k and v); the strategy reorders the rows
    before sharding and back when it gathers, so checkpoints keep the canonical layout."""


class BuildsComponents:
    """Mixin of a model or encoder class that creates registered components itself (encoders,
    fusion methods, ...), or of a factory object (a target instance with ``Options`` and
    ``__call__``) that does. The factory creates such a target as ``target(options, host=host)``:
    ``host`` is the :class:`~deepseek.plugins.host.PluginHost` of the run, with its
    ``[plugins] prefer``, so the parts resolve where the model did (a plugin registered on that
    host only, a preferred provider). Look parts up on ``host`` and nowhere else; create them
    with :func:`deepseek.models.factory.instantiate_model` passing ``host`` on."""


class TrainableModel(nn.Module):
    """Base class of models that offer optional capabilities (see the module docstring).

    Subclasses implement ``forward(**batch)`` returning the loss (or a mapping with ``"loss"``)
    and override the methods of the capabilities they offer; the defaults here say "not offered".
    ``Options`` is the dataclass of the model's ``[model]`` keys; a subclass registered directly
    as a model target is created as ``cls(options)``.
    """

    Options: ClassVar[type] = NoOptions

    not_trainable: str | None = None
    """``None`` (default): the model trains. A model whose weights take no gradient step (torchao's
    quantized ``quantized``) sets it, on its class or on the instance a factory returns, to one line
    saying why and what to train instead: every command that trains refuses it before anything is
    written (:func:`deepseek.models.declared.training_refusal`), and the contract suite does not
    ask its parameters for gradients."""

    skips_parameters: bool = False
    """``True``: some training steps leave some trainable parameters without a gradient (experts a
    router did not pick, a branch or a head the batch does not use). The contract suite then lets
    such parameters go without one on its batch; ``ddp`` needs ``strategy.find_unused_parameters``,
    and a strategy that ``steps_every_parameter`` (``deepspeed``) refuses the model."""

    written_files: ClassVar[tuple[str, ...]] = ()
    """Names of files (directly in the run folder) that a run of this model writes besides core's,
    e.g. by a plugin's ``deepseek_evaluate`` hook (as :attr:`deepseek.data.dataset.Dataset.written_files`
    for a dataset): a command's output option naming one of them is refused (as one naming
    ``config.toml`` is), and a folder in their place is refused when the run starts. Declared on
    the class registered as the model (a factory function's model declares nothing, when its run
    starts as for an output check: :func:`deepseek.run_files.declaring_class`); each a plain
    file name or a folder's ending in ``/``, and one distribution's (as a dataset's), else a
    ``PluginError`` naming the class and its distribution (when registered too, for a class
    registered as a class). Default: none."""

    def metric_names(self) -> tuple[str, ...] | None:
        """The metrics ``forward`` reports beside ``"loss"`` (the names of its scalar entries;
        ``()``: none, the loss alone) and those :meth:`metrics_from_totals` returns, which may depend on the options but not on the batch. A
        model that declares them has ``train.monitor`` and ``deepseek tune --objective`` checked
        against them before anything runs (:func:`deepseek.training.run_values.reported_values`);
        the trainer refuses a model whose first evaluation returns other names (fewer may come
        from :meth:`metrics_from_totals`, which leaves out what the data did not measure). An
        answer that is neither ``None`` nor a tuple of names is the model's broken answer (a
        plugin model's ``PluginError``). Default: ``None``, not declared (the names are learnt
        from the first evaluation)."""
        return None

    def loss_items(self, batch: Batch) -> int | None:
        """How many items ``forward``'s loss averages over in ``batch`` (the tokens whose labels
        are not ignored, for a loss averaged over tokens of padded rows); additive over rows. A
        model that answers is weighed by items: micro-batches (``train.grad_accum``),
        data-parallel ranks and validation batches count each item alike, so every strategy
        gives the loss per item of the whole batch (Hugging Face's ``num_items_in_batch``).
        Default: ``None``, every row weighs the same (exact for a loss that is a mean over rows)."""
        return None

    def metrics_from_totals(self, totals: Mapping[str, torch.Tensor]) -> Mapping[str, float | torch.Tensor]:
        """Whole-set metrics of an evaluation from ``totals``: each ``"totals"`` entry ``forward``
        returned, summed over every batch and data-parallel rank (float64 tensors, the shapes
        ``forward`` gave). Return metric names and numbers (floats or 0-dim tensors), reported as
        ``val_<name>`` beside the means over batches: what is not a mean over rows, such as F1
        or per-class recall from a confusion matrix (:mod:`deepseek.training.totals`). A metric
        the totals give nothing to measure (a class, a modality no row has) may be left out, not
        reported as 0. Called once per evaluation, on every rank alike. Default: not offered (a
        model returning ``"totals"`` without overriding this is refused)."""
        return {}

    def encoder_modules(self) -> Mapping[str, nn.Module]:
        """The encoders (:class:`~deepseek.models.encoder.Encoder`) this model is built from, keyed
        by the ``[model]`` key holding each one's options (``multimodal.classifier``: ``vision``,
        ``audio``, ``text``); ``prune.mlp`` narrows their MLPs. Default: none."""
        return {}

    def check_data(self, batch: Batch, dataset: Any) -> None:
        """Raise :class:`~deepseek.errors.UsageError` (one line) when this model cannot train on
        ``dataset`` (a :class:`deepseek.data.dataset.Dataset`), of which ``batch`` is one
        validation batch; called before training starts (through :func:`deepseek.models.checks.check_model_data`).
        Return ``None`` to accept: anything returned (a message, ``False``) is the model's broken
        answer, a plugin model's ``PluginError``, not a refusal of the data. Default: accept."""

    @classmethod
    def keys_for_batch(cls, batch: Batch, build: Callable[[Mapping[str, Any]], nn.Module]) -> Mapping[str, Any]:
        """The ``[model]`` keys a config pairing this model with a dataset sets to what the
        dataset's batches carry (``batch`` is its first validation batch): ``multimodal.classifier``'s
        ``modalities`` and its encoders' image size, a width that must match the batch's
        features. ``build(keys)`` gives this model built with ``keys`` on top of the config's, to
        ask the parts it is built from (an encoder's ``keys_for_inputs``); a refusal raised while
        working them out is :class:`~deepseek.errors.UsageError`. Return ``{}`` for batches not of
        the kind the model reads. Declared on the class registered as the model. The contract
        suites build the model with these keys for each registered dataset and report a dataset
        they are given for that the model still refuses (docs/plugins.md section 10); no command
        applies them to a user's config, which names its keys itself. Default: ``{}``."""
        return {}

    # ------------------------------------------------------------------ capability "blocks"

    def block_modules(self) -> Sequence[nn.Module]:
        """The repeated blocks in forward order (compile and sharding units)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ "activation_checkpointing"

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward instead of keeping them."""
        raise NotImplementedError

    # ------------------------------------------------------------------ "residual_dtype"

    def set_fp32_residual(self, enabled: bool) -> None:
        """Keep the residual stream in fp32 under autocast (``True``) or in the compute dtype."""
        raise NotImplementedError

    # ------------------------------------------------------------------ "pipeline"

    def split_stages(self, n: int) -> list[nn.Module]:
        """``n`` modules that, chained, compute the model: stage 0 takes
        ``pipeline_batch(batch)[0]`` as positional arguments, each later stage takes the previous
        stage's output tensor, and :meth:`pipeline_loss` turns the last stage's output into the
        loss. Stages hold the model's own modules with the model's parameter names."""
        raise NotImplementedError

    def pipeline_batch(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """``(stage-0 arguments, target)`` of a batch; both are cut into pipeline micro-batches
        along their first dimension."""
        raise NotImplementedError

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss of one pipeline micro-batch from the last stage's output."""
        raise NotImplementedError

    def tied_parameters(self, stages: Sequence[nn.Module]) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """Pairs ``(source, copy)`` of one weight held by two stages, whose gradients the pipeline
        strategy sums so that both copies stay equal. Default: none."""
        return []

    # ------------------------------------------------------------------ "tensor_parallel"

    def tensor_parallel_plan(self, tp_size: int, *, sequence_parallel: bool) -> TensorParallelPlan:
        """How this model splits over ``tp_size`` tensor-parallel ranks; with
        ``sequence_parallel`` the norms (and dropout) between the sharded layers work on a
        sequence shard. Raise :class:`~deepseek.errors.ConfigError` (one line, naming the model
        field) when the model's shape does not split over ``tp_size`` ranks. Builds the styles
        only (no process group needed: it is also called on a meta-device model before launch)."""
        raise NotImplementedError


    # ------------------------------------------------------------------ "cached_decoding"

    def new_cache(self, batch: int, max_len: int) -> Any:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` positions, for the
        layers and heads this module computes; it has an int ``length`` (positions filled), 0
        when new (:func:`~deepseek.models.cache_checks.fresh_cache` checks it)."""
        raise NotImplementedError

    def forward_cached(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        """The output for ``x`` (token ids, or a previous stage's hidden states) following the
        ``cache.length`` cached positions, whose keys and values are appended to ``cache``: the
        logits ``(B, T, V)`` of a whole model or a last stage, else hidden states. It adds the
        ``T`` positions it consumed to ``cache.length``
        (:func:`~deepseek.models.cache_checks.fed_cached` checks it)."""
        raise NotImplementedError

    static_decoding: ClassVar[bool] = False
    """``True`` when ``new_cache`` returns a :class:`~deepseek.models.layers.KVCache` and
    ``forward_cached`` also takes a :class:`~deepseek.models.layers.KVCursor` in its place
    (positions from ``cache.positions``, attention through ``cache.attend``, then
    ``cache.advance``): the model can then decode on a static cache with CUDA graphs
    (:mod:`deepseek.models.static_decoding`; ``deepseek generate --cuda-graphs``)."""

    def decode_window(self) -> int:
        """The most positions the cache may hold (the model's context length): a positive int,
        the same on every stage of ``split_stages`` (:func:`~deepseek.models.cache_checks.decode_window_of`
        checks it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ "generation"

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[torch.Tensor], None] | None = None,
        static: Any = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """``idx`` ``(B, T)`` token ids extended by ``max_new_tokens`` sampled tokens: ``(B, T +
        new)``. ``temperature=0`` is greedy; ``top_k`` keeps the ``k`` likeliest tokens;
        ``top_p`` the nucleus (the fewest likeliest tokens holding ``top_p`` of the probability;
        callers pass it only when it is set, so a ``generate`` without it serves the rest);
        ``repetition_penalty`` Hugging Face's (:func:`~deepseek.models.decoding.penalize_repeats`;
        passed only when it is not 1.0, as ``top_p``);
        ``generator`` seeds the sampling; ``on_token`` gets each new column ``(B, 1)`` as it is
        sampled; ``static`` is a :class:`~deepseek.models.static_decoding.StaticDecoders` from
        ``deepseek generate --cuda-graphs`` (only for models with ``static_decoding``: refuse
        anything but ``None`` otherwise). Raise :class:`~deepseek.errors.UsageError` (one line)
        for a request the model cannot serve. Default: not offered (:data:`GENERATION_HOWTO`)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not offer text generation (capability 'generation'); {GENERATION_HOWTO}"
        )

    def generation_vocab_size(self) -> int | None:
        """How many token ids ``generate`` works with (the width of the logits): ``deepseek
        generate`` refuses a tokenizer with more tokens, and a model with more ids than the byte
        tokenizer's 256 when no ``tokenizer.json`` came with it. Default: ``None``, unknown (the
        tokenizer is not checked)."""
        return None

    def token_input_limits(self) -> tuple[int, int | None] | None:
        """For a ``forward`` that takes one tensor of token ids: how many ids it embeds and the most
        positions it takes (``None``: no limit). ``deepseek optimize``, ``export`` and ``bench
        latency`` draw their example ids and lengths within them. Default ``None``: unknown (ids
        below 256, any length)."""
        return None

    # ------------------------------------------------------------------ "serving"

    def serving_inputs(self, batch: Batch) -> Mapping[str, Any]:
        """The entries of ``batch`` a prediction reads (the batch without its labels): a mapping of
        names to tensors, nested mappings allowed, each with the batch's rows first."""
        raise NotImplementedError

    def serving_forward(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The prediction for :meth:`serving_inputs` (a classifier's logits): one tensor with a row
        per input row; what ``deepseek export`` traces for a model that takes more than token ids
        (:mod:`deepseek.graph.serving`)."""
        raise NotImplementedError
