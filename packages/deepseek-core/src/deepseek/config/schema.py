"""The configuration schema: one frozen dataclass per TOML section.

Every field has a default, so an empty file (or no file) is the main job: train ``tiny`` on the
embedded corpus on CPU. Values are checked by :func:`deepseek.config.validate.build_dataclass`;
a field's ``metadata["check"]`` (:mod:`deepseek.config.field_checks`) rejects out-of-range values
with the field path.

The ``[model]``, ``[data]``, ``[optimizer]``, ``[lr_schedule]`` and ``[strategy]`` tables name a registered component and hold that
component's own keys beside ``name``, validated by its ``Options`` dataclass
(:mod:`deepseek.config.components`, :mod:`deepseek.config.load`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from deepseek.config import field_checks as checks
from deepseek.config.field_checks import SEED_MAX  # noqa: F401 (re-exported)
from deepseek.config.groups import ParamGroupRule
from deepseek.config.validate import non_negative, positive

PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
"""``auto``: bf16 on a CUDA device that supports it, fp32 otherwise."""


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: ``name`` of a registered model plus that model's own keys, validated by the
    model's ``Options``; the ``name = ...`` tables that follow in the config reference list each
    installed model's keys (``deepseek plugins list`` names the models). The GPT presets
    ``tiny``, ``small`` and ``1.3b`` take :class:`deepseek.models.GPTConfig`'s fields as overrides."""

    name: str = "tiny"
    options: Any = None
    """The model's ``Options`` instance (its keys sit beside ``name`` in TOML)."""


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: ``name`` of a registered dataset, the keys every dataset gets (below), and the
    dataset's own keys, validated by its ``Options``. The default dataset ``text`` reads the
    embedded corpus (the running Python's standard-library sources) or your text files."""

    name: str = "text"
    batch_size: int = field(default=16, metadata={"check": checks.positive_int})
    """Global batch in rows (all ranks and micro-batches together)."""
    eval_batches: int = field(default=8, metadata={"check": non_negative})
    """Validation batches per evaluation (always the same ones). 0 turns validation off (as
    Lightning's ``limit_val_batches=0``): the run never asks the dataset for validation batches
    (data without any can train) and never evaluates (no ``val_*`` values), and checks the model
    against the data on its first training batch instead; settings that follow evaluations
    (``checkpoint.keep_best``, ``train.early_stop_patience``, ``train.monitor``...) are refused,
    and ``train.eval_interval`` warns. ``deepseek eval`` of such a run reads 8 batches unless
    ``--batches`` says otherwise."""
    options: Any = None
    """The dataset's ``Options`` instance (its keys sit beside ``name`` in TOML)."""


DATA_COMMON_KEYS: tuple[str, ...] = ("batch_size", "eval_batches")
"""``[data]`` keys that every dataset accepts (the rest belong to the dataset's ``Options``)."""


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: the optimisation loop and the learning-rate schedule's numbers (its shape:
    ``[lr_schedule]``)."""

    max_steps: int = field(default=600, metadata={"check": checks.positive_int})
    """Optimizer steps of the run (``--max-steps``)."""
    lr: float = field(default=2e-3, metadata={"check": checks.learning_rate})
    """Peak learning rate, reached after the warm-up (at most 100)."""
    min_lr: float | None = field(default=None, metadata={"check": lambda v: None if v is None else non_negative(v)})
    """Learning rate at the end of the decay (at most ``lr``). Default: ``lr / 20``, at most
    ``1e-4`` (the config written to the run folder records the number; a resumed run keeps it
    while ``lr`` is unchanged)."""
    warmup_steps: int | None = field(
        default=None, metadata={"check": lambda v: None if v is None else non_negative(v)})
    """Steps of linear warm-up from 0 to ``lr``. Default: a tenth of ``max_steps``, at most 30
    (recorded as a number in the run folder's config, so a resumed run keeps it, also one
    resumed with its config file and another ``--max-steps``). At least ``max_steps`` warns
    (the whole run is warm-up: the rate never reaches ``lr``, or only at the last step)."""
    decay_steps: int | None = field(
        default=None,
        metadata={"check": lambda v: None if v is None or v >= 1 else "must be >= 1"},
    )
    """Step at which the decay reaches ``min_lr`` (default ``max_steps``); set it to extend a run later."""
    grad_accum: int = field(default=1, metadata={"check": checks.positive_int})
    """Micro-batches per optimizer step (gradient accumulation); ``data.batch_size`` must split
    evenly over data-parallel ranks x ``grad_accum``."""
    grad_clip: float = field(default=1.0, metadata={"check": non_negative})
    """Clip the global gradient norm to this value; 0 disables clipping."""
    eval_interval: int = field(default=50, metadata={"check": non_negative})
    """Evaluate every N steps (0: only at the end). The run also evaluates before its first step
    and after its last whatever N is, so an N past ``max_steps`` acts as 0 (no warning, unless
    ``checkpoint.keep_best`` or ``early_stop_patience`` then cannot work: those warn). With
    ``data.eval_batches = 0`` the run never evaluates: a value other than 0 or the default warns."""
    seed: int = field(default=1337, metadata={"check": checks.seed})
    """Seeds the model's initial weights, the data order and every random generator (0 to 2**32 - 1)."""
    init_from: str = field(default="", metadata={"check": checks.existing_path})
    """Start from these model weights instead of random ones: a run folder, a checkpoint folder,
    an exported ``.safetensors`` or a Hugging Face GPT-2 folder (fine-tuning, or recovering a
    pruned model; docs/interop.md); the optimizer, step and schedule start fresh. Shapes must
    match the ``[model]``. Ignored by ``--resume``, whose checkpoint holds the weights."""
    preempt_grace_s: float = field(default=120.0, metadata={"check": positive})
    """Seconds a run may take to stop after SIGTERM or SIGUSR1 (finish the step, write a
    checkpoint, exit with code 75); past it the process exits with code 75 without the new
    checkpoint. Set it a little below the scheduler's own grace before SIGKILL
    (docs/distributed.md, "Preemption")."""
    compile: bool = False
    """``torch.compile`` the model in place (names unchanged) before the strategy wraps it, as
    ``compile_scope`` says."""
    compile_scope: Literal["blocks", "model"] = "blocks"
    """With ``compile``: ``blocks`` compiles each block of a model that offers them (one graph per
    block, compiled once and reused; the whole model otherwise), ``model`` the whole model as one
    graph: a longer first compile, fewer launches and kernels fused across blocks (1.3b on one
    H200: 61.1% MFU against 60.3%, BENCHMARKS.md "Automated tuning"). ``model`` without
    ``compile`` warns (it does nothing then)."""
    activation_checkpointing: bool = False
    """Recompute activations in backward (the model must offer it: docs/plugins.md)."""
    attention: Literal["auto", "flash", "efficient", "cudnn", "math", "fa4"] = "auto"
    """The ``scaled_dot_product_attention`` kernel of every attention call while the run trains
    and evaluates: ``auto`` (torch picks per call), ``flash``, ``efficient``, ``cudnn``, ``math`` or
    ``fa4`` (FlashAttention-4, Hopper/Blackwell GPUs, the ``flash-attn-4`` package; process-wide
    once chosen). On the CPU only ``auto``, ``flash`` and ``math`` exist. A call the kernel cannot
    take (a padding mask with ``flash`` on CUDA) stops the run with one line."""
    monitor: str = field(default="val_loss", metadata={"check": checks.evaluation_value})
    """The evaluation value that best checkpoints and early stopping follow: ``val_loss``,
    ``val_bits_per_byte`` (text datasets whose tokenizer knows each token's bytes) or
    ``val_<metric>`` of a metric the model reports (``val_accuracy``), or a ``val_`` value a
    plugin's ``deepseek_evaluate`` hook adds to each evaluation (a callback's own score). Checked
    before the run folder is written, against the values the first validation batch gives (the
    model's declared metrics, ``TrainableModel.metric_names``, where it declares them); a declared
    whole-set metric that batch did not measure (a class or modality none of its rows has) is looked
    for over the whole validation set, as every evaluation counts it; when a plugin other
    than the editions implements ``deepseek_evaluate``, a name the model does not report is
    checked at the first evaluation instead (before step 1 in a fresh run, whose folder is then
    removed). Refused with ``data.eval_batches = 0`` (no evaluations), as are ``monitor_mode``,
    ``early_stop_patience`` and ``early_stop_min_delta`` other than their defaults. An evaluation
    whose value is NaN or infinite (a NaN in the validation data) never improves (the run's first
    such evaluation warns, naming its step and values, once per run): it counts toward ``early_stop_patience``, and a run without a finite one has no best checkpoint
    (``checkpoints/best`` absent, ``TrainResult.best_checkpoint`` None)."""
    monitor_mode: Literal["min", "max"] = "min"
    """Whether a lower (``min``) or a higher (``max``) ``monitor`` is better."""
    early_stop_patience: int = field(default=0, metadata={"check": non_negative})
    """Stop after this many evaluations in a row without improvement of ``monitor`` (0: never).
    More than the run has between step 0 and its last step (``max_steps - 1`` over
    ``eval_interval``) warns: early stopping could never end it early."""
    early_stop_min_delta: float = field(default=0.0, metadata={"check": non_negative})
    """An evaluation improves when it beats the best so far by more than this."""
    on_nonfinite: Literal["stop", "skip", "continue"] = "stop"
    """A step whose loss or gradient norm is NaN or infinite: ``stop`` ends the run with a message
    naming the step (at the next read of the step values, before any checkpoint); ``skip`` does
    not apply that step (its update is dropped; one host sync per step); ``continue`` trains on.
    Whatever the choice, a checkpoint with non-finite weights is never written."""
    init_device: Literal["cpu", "device"] = "cpu"
    """Where the model's weights are created: ``cpu`` (the same seeded weights under every
    strategy and device) or ``device``, directly on the strategy's device (fast for large models;
    the weights then come from that device's random generator)."""


@dataclass(frozen=True)
class PrecisionConfig:
    """``[precision]``: compute dtype under autocast and fp16 loss scaling."""

    dtype: PrecisionName = "auto"
    """Compute dtype under autocast; ``auto``: bf16 on a CUDA device that supports it, fp32
    otherwise. Parameters and optimizer state stay fp32 (unless ``master_weights``). ``fp16`` on
    the CPU trains, with a warning: CPUs lack fast float16 kernels (12x slower than fp32 for
    the default model on a 2-core EPYC)."""
    master_weights: bool = False
    """Keep the model's parameters in bf16 and their fp32 master copies in the optimizer
    (Megatron's and DeepSpeed's bf16 layout): no weight casts under autocast each step, bf16
    gradients (micro-batches of ``train.grad_accum`` add up in fp32). Needs the compute dtype
    bf16, AdamW and a strategy that offers it (``single``); checkpoints still hold fp32 weights
    and resume either way. The GPT's residual stream then starts from bf16 embeddings and stays
    bf16 whatever ``fp32_residual`` says. A model with frozen parameters (``requires_grad``
    false) is refused: they would stay fp32 beside the bf16 ones."""
    fp32_residual: bool = True
    """Keep the residual stream in fp32 under autocast; ``false`` carries it in the compute
    dtype (bf16/fp16), as Megatron does by default: faster, slightly different numerics. No
    effect with ``master_weights`` (the stream is bf16 then)."""
    init_scale: float = field(default=2.0**16, metadata={"check": checks.loss_scale})
    """fp16 only: the initial loss scale (another value than the default warns in a run computing in
    another dtype)."""
    growth_interval: int = field(default=2000, metadata={"check": checks.growth_interval})
    """fp16 only: steps without overflow before the loss scale doubles, 1 to 2**31 - 1 (another value than the
    default warns in a run computing in another dtype)."""


@dataclass(frozen=True)
class OptimizerConfig:
    """``[optimizer]``: ``name`` of a registered optimizer (core: ``adamw``, ``sgd``, ``lion``,
    ``adafactor``), the keys
    optimizers share (each reads those it uses) and the optimizer's own keys beside them, validated
    by its ``Options``. Weight decay applies to matrices only (not to biases and norms)."""

    name: str = "adamw"
    """the registered optimizer: ``adamw`` (torch's AdamW), ``sgd`` (with ``momentum``), ``lion``,
    ``adafactor`` or a plugin's (``deepseek plugins list``)"""
    betas: tuple[float, ...] = field(default=(0.9, 0.95), metadata={"check": checks.betas})
    """Moment decay rates (AdamW and optimizers like it)."""
    eps: float = field(default=1e-8, metadata={"check": checks.eps})
    """Denominator epsilon (AdamW and optimizers like it), above 0 and at most 1."""
    weight_decay: float = field(default=0.1, metadata={"check": checks.weight_decay})
    """Weight decay of the matrices (decoupled for AdamW, L2 for SGD), 0 to 100; biases and norms get none."""
    momentum: float = field(default=0.9, metadata={"check": checks.fraction})
    """SGD's momentum (0: plain SGD)."""
    fused: bool | None = None
    """torch's fused kernel of AdamW and SGD; ``None``: on when every parameter is a plain CUDA
    tensor (not a DTensor shard)."""
    groups: tuple[ParamGroupRule, ...] = ()
    """Parameter groups with their own learning-rate factor or weight decay, as
    ``[[optimizer.groups]]`` tables (``match``, ``lr_scale``, ``weight_decay``; below), first match
    wins; rules are numbered from 0 in messages and ``deepseek config params``. ``--set
    'optimizer.groups=[{match = "wte.*", lr_scale = 0.1}]'`` replaces the file's list;
    ``--set optimizer.groups.0.lr_scale=0.5`` changes one rule's key."""
    options: Any = None
    """The optimizer's ``Options`` instance (its keys sit beside ``name`` in TOML)."""


OPTIMIZER_COMMON_KEYS: tuple[str, ...] = ("betas", "eps", "weight_decay", "momentum", "fused", "groups")
"""``[optimizer]`` keys that every optimizer accepts (the rest belong to the optimizer's ``Options``)."""


SHARED_KEYS: dict[str, tuple[str, ...]] = {"data": DATA_COMMON_KEYS, "optimizer": OPTIMIZER_COMMON_KEYS}
"""Component sections whose tables hold, beside ``name`` and the component's own keys, keys that
every component of the kind takes (they stay when another component is named)."""


@dataclass(frozen=True)
class LRScheduleConfig:
    """``[lr_schedule]``: ``name`` of a registered learning-rate schedule (core: ``cosine``,
    ``linear``, ``constant``, ``wsd``) and its own keys; the peak, floor, warm-up and decay length
    are ``[train]``'s ``lr``, ``min_lr``, ``warmup_steps`` and ``decay_steps``."""

    name: str = "cosine"
    """the registered schedule: ``cosine`` (half cosine to ``min_lr``), ``linear``, ``constant``
    (``lr`` after the warm-up), ``wsd`` (warmup-stable-decay) or a plugin's"""
    options: Any = None
    """The schedule's ``Options`` instance (its keys sit beside ``name`` in TOML)."""


@dataclass(frozen=True)
class StrategyConfig:
    """``[strategy]``: ``name`` of a registered strategy plus its own validated options."""

    name: str = "single"
    options: Any = None
    """The strategy's ``Options`` dataclass instance (its keys sit beside ``name`` in TOML)."""


@dataclass(frozen=True)
class CheckpointConfig:
    """``[checkpoint]``: when to write checkpoints and how many to keep."""

    interval: int = field(default=200, metadata={"check": non_negative})
    """Every N steps (0: only at the end). Past ``train.max_steps`` with ``at_end = false`` (and
    no ``keep_best``) the run would write no checkpoint: it warns (``interval = 0`` with
    ``at_end = false`` writes none without a word)."""
    keep_last: int = field(default=2, metadata={"check": checks.positive_int})
    """Checkpoints kept in the run folder (older ones are deleted)."""
    at_end: bool = True
    """Write a checkpoint after the last step."""
    keep_best: bool = False
    """Also checkpoint every evaluation that improves ``train.monitor`` and keep the best one
    (named in ``checkpoints/best``) beside the ``keep_last`` newest. A run that evaluates only
    before its first step and after its last (``train.eval_interval`` 0 or at least
    ``max_steps``) warns: its best could only be the last checkpoint; one without validation
    (``data.eval_batches = 0``) is refused."""


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``: where runs go and what is written there (rank 0 only)."""

    runs_dir: str = field(default="runs", metadata={"check": checks.not_empty_path})
    """Folder that holds run folders."""
    name: str = field(default="", metadata={"check": checks.folder_name})
    """Run folder name under ``runs_dir`` (default: a timestamp): one folder name, no ``/``, of
    characters that print (no line break, tab, ESC or other control character)."""
    progress: bool = True
    """Show a progress bar and a line per evaluation while the run trains (``deepseek train
    --quiet`` and ``deepseek.fit(quiet=True)`` turn both off; the values still go to
    ``metrics.jsonl``)."""
    trackers: tuple[str, ...] = ()
    """Experiment trackers the run is logged to, by registered name: ``tensorboard``, ``mlflow``,
    ``wandb`` or a plugin's (``deepseek plugins list``); each one's options are the table
    ``[trackers.<name>]``. Rank 0 only. ``deepseek train --tracker NAME`` adds one. See
    docs/tracking.md."""
    tensorboard: bool = False
    """Old spelling of ``trackers = ["tensorboard"]`` (TensorBoard event files in
    ``<run>/tensorboard``); the resolved config records it in ``trackers``."""
    plot: bool = True
    """Write ``loss.png`` (losses and the model's metrics against step) at the end."""
    every_n_steps: int | None = field(
        default=None,
        metadata={"check": lambda v: None if v is None or v >= 1 else "must be >= 1"},
    )
    """Read each step's loss and gradient norm from the device every N steps: one host sync per
    N steps instead of one per step (every step is still recorded, its hooks run at the read).
    Default: 1 on the CPU (nothing to gain), 10 on an accelerator."""


@dataclass(frozen=True)
class PluginsConfig:
    """``[plugins]``: ``prefer`` lists distributions that win component-name conflicts."""

    prefer: tuple[str, ...] = ()
    """Distributions whose components win name conflicts, first first; applies to this config's
    lookups only (``DEEPSEEK_PLUGIN_PREFER`` comes first)."""


@dataclass(frozen=True)
class TrackersConfig:
    """``[trackers]``: one table ``[trackers.<name>]`` per tracker listed in ``logging.trackers``,
    holding that tracker's own keys, validated by its ``Options`` (a tracker without a table gets
    its defaults)."""

    options: dict[str, Any] = field(default_factory=dict)
    """Tracker name -> its ``Options`` instance."""


@dataclass(frozen=True)
class Config:
    """A whole training configuration (what ``deepseek train`` runs)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    trackers: TrackersConfig = field(default_factory=TrackersConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML-ready data: ``None`` values left out, components' options inlined."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if isinstance(section, TrackersConfig):
                out[f.name] = {n: _plain(dataclasses.asdict(o)) for n, o in section.options.items()}
                continue
            table = {k.name: getattr(section, k.name) for k in dataclasses.fields(section) if k.name != "options"}
            options = getattr(section, "options", None)
            if options is not None and dataclasses.is_dataclass(options):
                table.update(dataclasses.asdict(options))
            out[f.name] = _plain(table)
        return out


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))
"""The top-level tables a config file may contain."""


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
