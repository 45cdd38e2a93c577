"""``recover``: a recipe step that trains its input (a pruned model) back towards the original.

In a ``deepseek compress --max-drop`` search, ``prune.ffn ratio=0.5 + recover`` prunes the trained
model and then trains the pruned one for a few steps, so that the budget judges the recovered
candidate rather than the bare cut. The step runs the ordinary trainer on one device (strategy
``single``) for ``steps`` steps (``--recovery-steps`` unless the step names its own), with the
original run's data, precision and optimizer; the step's input is written to the search's scratch
folder as a run and training starts from it:

- a GPT is **distilled** from the original: the ``distill`` model (:mod:`.distill`), the original
  checkpoint as teacher, soft targets (KL at ``temperature``, weight ``alpha``) plus the labels;
- any other model (the tri-modal classifier after ``prune.mlp``) is **fine-tuned** with its own
  loss (``train.init_from`` the pruned weights; ``alpha`` and ``temperature`` do not apply).

The result comes back as an ordinary model of its input's architecture, so later steps
(``+ quantize.int8``) and the written run folder see a plain model that deepseek-core loads.

Schedule: warmup over a tenth of the steps (at most the original's warmup), then cosine from
``lr`` (default: a third of the original's ``train.lr``) down to ``min(train.min_lr, lr)``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepseek.errors import TrainingDivergedError, UsageError
from deepseek_enterprise.compress.compressor import Compressed, Compressor, Recovery, StepContext


def _steps(value: int) -> str | None:
    return None if value >= 0 else "must be a whole number >= 0 (0: the search's --recovery-steps)"


def _lr(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0 (0: a third of the original run's train.lr)"


def _temperature(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def _alpha(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be in [0, 1] (the weight of the soft-target loss)"


@dataclass(frozen=True)
class RecoverOptions:
    """Options of ``recover`` (``'prune.ffn ratio=0.5 + recover steps=200 lr=1e-3'``)."""

    steps: int = field(default=0, metadata={"check": _steps})
    """Training steps; 0: the search's ``--recovery-steps``."""
    lr: float = field(default=0.0, metadata={"check": _lr})
    """Peak learning rate; 0: a third of the original run's ``train.lr``."""
    alpha: float = field(default=0.5, metadata={"check": _alpha})
    """Weight of the soft-target (KL) loss against the original; ``1 - alpha`` weighs the labels."""
    temperature: float = field(default=2.0, metadata={"check": _temperature})
    """Softmax temperature of the soft targets."""


def recovery_refusal(model: Any, config: Any, host: Any = None) -> str | None:
    """Why ``recover`` cannot train ``model`` (one line), or ``None``: a model that declares it
    does not train (:attr:`~deepseek.models.protocol.TrainableModel.not_trainable`, as ``quantized``
    does), read in the model's block (``host``: the command's, where ``config``'s model is
    registered)."""
    from deepseek.models.declared import training_refusal
    from deepseek.training.inference import served_calls

    refusal = training_refusal(model, model_name=config.model.name, calls=served_calls(model, config, host))
    if refusal is not None:
        return f"recover: {refusal}; recover before quantizing ('prune.ffn + recover + quantize.int8')"
    return None


def _distils(model: Any) -> bool:
    """A GPT is distilled from the original; other models are fine-tuned with their own loss."""
    from deepseek.models.gpt import GPT

    return isinstance(model, GPT)


class Recover(Compressor):
    """Distil the step's input from the original model (see the module docstring)."""

    Options: ClassVar[type] = RecoverOptions

    def check_model(self, model: Any, config: Any) -> None:
        reason = recovery_refusal(model, config, self.host)
        if reason is not None:
            raise UsageError(reason)

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        return self.apply(model, config, StepContext(calibration))

    def apply(self, model: Any, config: Any, context: StepContext) -> Compressed:
        r = context.recovery
        if r is None:
            raise UsageError("recover: is a step of a --max-drop search, after a compressor "
                             "(--recipe 'prune.ffn ratio=0.5 + recover'); it trains against the original")
        if context.position == 0:
            raise UsageError("recover: nothing to recover at the start of a recipe; put it after a compressor, "
                             "e.g. 'prune.ffn ratio=0.5 + recover'")
        if r.unavailable:
            raise UsageError(r.unavailable)
        steps = self.options.steps or r.steps
        if steps == 0:
            raise UsageError("recover: no step budget (--recovery-steps 0); give --recovery-steps N or 'recover steps=N'")
        work = Path(tempfile.mkdtemp(prefix="recover-", dir=r.work_dir))
        try:
            return self._train(model, config, r, steps, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _train(self, model: Any, config: Any, r: Recovery, steps: int, work: Path) -> Compressed:
        from deepseek.config.load import config_from_dict
        from deepseek.training.inference import load_trained
        from deepseek.training.trainer import Trainer
        from deepseek_enterprise.compress.output import write_run

        student = work / "student"
        table = config.to_dict()["model"]
        write_run(student, source_state={"step": 0, "data": {}}, config=config,
                  compressed=Compressed(model, table), report={})
        distils = _distils(model)
        run_config, schedule = self.run_config(r, steps, student, table=None if distils else table)
        try:
            result = Trainer(config_from_dict(run_config, host=self.host), run_dir=work / "run", quiet=True,
                             host=self.host).fit()
        except TrainingDivergedError as exc:  # the trainer's fix names train.*, which this step sets itself
            what = str(exc).split("; ")[0]
            raise TrainingDivergedError(f"recover: {what}; give the step a lower learning rate ('recover lr=X')") from None
        if result.stopped_by is not None:  # a signal asked the command to stop
            raise KeyboardInterrupt(result.stopped_by)
        trained, _, _ = load_trained(work / "run", r.device, host=self.host)
        losses = result.losses
        first_last = [round(losses[0], 4), round(losses[-1], 4)] if losses else []
        record: dict[str, Any] = {"steps": steps, **schedule, "batch_size": r.config.data.batch_size,
                                  "seed": r.config.train.seed, "seconds": round(result.seconds, 1)}
        if not distils:
            record.update(method="fine-tune", trainer="its own loss, strategy single", train_loss=first_last)
            return Compressed(trained.eval(), table, record)
        record.update(method="distill", teacher=str(r.original), alpha=self.options.alpha,
                      temperature=self.options.temperature, trainer="distill model, strategy single",
                      distill_loss=first_last)
        return Compressed(trained.student.eval(), dict(trained.student_table), record)

    def run_config(self, r: Recovery, steps: int, student: Path,
                   table: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The recovery run's config (a dict) and the schedule it uses: the ``distill`` model
        (``table=None``), or the model ``table`` fine-tuned from the ``student`` run."""
        base = r.config.to_dict()
        t = r.config.train
        lr = self.options.lr or t.lr / 3
        schedule = {"lr": lr, "min_lr": min(t.min_lr, lr), "warmup_steps": min(t.warmup_steps, steps // 10)}
        train = {k: v for k, v in base["train"].items() if k != "decay_steps"}
        train.update(schedule, max_steps=steps, eval_interval=0, init_from="" if table is None else str(student),
                     early_stop_patience=0, monitor="val_loss", monitor_mode="min", compile=False)
        model = table if table is not None else {
            "name": "distill", "teacher": str(r.original), "student_from": str(student),
            "alpha": self.options.alpha, "temperature": self.options.temperature}
        logging = {**base["logging"], "name": "", "progress": False, "plot": False, "trackers": [],
                   "tensorboard": False}
        return ({**base, "model": model, "train": train, "strategy": {"name": "single", "device": r.device},
                 "checkpoint": {"interval": 0, "at_end": True, "keep_last": 1, "keep_best": False},
                 "logging": logging}, schedule)


def training_unavailable(model: Any, config: Any, source: Any, dataset: Any, host: Any = None) -> str:
    """Why a ``recover`` step cannot train on the original run (one line; ``""`` when it can):
    a model it does not train, weights that do not record their training data (exported weights,
    whose ``config.toml`` gives the data they are evaluated on; a checkpoint whose ``trainer.json``
    has no ``[data]``), or data that gives no training batch. ``source``: the
    :class:`~deepseek.training.weights_source.Source` the original was read from."""
    from deepseek.errors import shown

    reason = recovery_refusal(model, config, host)
    if reason is not None:
        return reason
    if source.origin.kind != "checkpoint":
        return (f"recover: {shown(source.origin.path)} holds {source.origin.kind} weights, which record no training "
                "data, so the original's training data is unknown; compress the run folder that trained them")
    recorded = source.state.get("config")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("data"), dict):
        return ("recover: the checkpoint's trainer.json records no [data] table, so the original's training "
                "data is unknown; compress the run folder that trained it")
    try:
        next(dataset)
    except StopIteration:
        return (f"recover: data {config.data.name!r} gives no training batch (only validation data); "
                "point the run's [data] at its training data")
    return ""
