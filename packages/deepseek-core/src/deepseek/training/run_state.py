"""What a checkpoint records of a run besides model and optimizer (``trainer.json``), and reading
it back when a run resumes; and the check of the first evaluation a run makes before anything is
written. :func:`trainer_state` reads a :class:`~deepseek.training.trainer.Trainer`'s public views;
the set-up's checks (:func:`restore`, :func:`check_evaluation`) take what they read as arguments,
since the trainer keeps none of it before its set-up returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deepseek.arguments import spelled
from deepseek.data.dataset import checked_state_dict, dataset_calls
from deepseek.errors import RunComplete, UsageError
from deepseek.models.checks import check_declared_metrics, declared_metrics
from deepseek.plugins.calls import instance_calls
from deepseek.training import checkpoint as ckpt
from deepseek.training.evaluation import reports_bits_per_byte, rng_kept
from deepseek.training.monitor import refuse_finished
from deepseek.training.param_groups import group_members
from deepseek.training.provenance import components_used
from deepseek.training.rank_zero import rank_zero_outcome
from deepseek.training.run_codec import gives_codec
from deepseek.training.run_values import reported_values
from deepseek.training.totals import offers_whole_set_metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from deepseek.data.batch import Batch
    from deepseek.data.dataset import Dataset, PredictedText
    from deepseek.training.engine import StepEngine
    from deepseek.training.monitor import Monitor
    from deepseek.training.trainer import Trainer


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """What ``trainer.json`` records besides model and optimizer."""
    assert trainer.strategy is not None
    return {
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "samples_seen": trainer.samples_seen,
        "data": checked_state_dict(trainer.dataset),
        "schedule": _schedule_state(trainer),
        "precision": trainer.precision.state_dict(),
        "config": trainer.config.to_dict(),
        "components": components_used(trainer.config, trainer.engine.lookups),
        "metrics": dict(trainer.last_metrics),
        "monitor": trainer.monitor.state_dict() if trainer.val_set else {},  # none without validation
        **({"should_stop": True} if trainer.should_stop else {}),  # a callback ended the run: it is complete
        # its token ids are its dataset's codec's: read without that dataset's plugin, it is refused (run_codec)
        **({"text_codec": True} if gives_codec(trainer.dataset, trainer.config.data.options) else {}),
        "strategy": trainer.config.strategy.name,
        "world_size": trainer.strategy.world_size,
        "torch": torch.__version__,
    }


def _schedule_state(trainer: Trainer) -> dict[str, Any]:
    # a plugin schedule's bug: one line naming it; core's own schedules' errors keep their traceback
    with instance_calls(trainer.schedule, trainer.schedule.label, "state_dict"):
        return trainer.schedule.state_dict()


@dataclass(frozen=True)
class Saved:
    """The newest checkpoint of a run, as its trainer knows it."""

    step: int = 0
    stopped: bool = False
    """Its ``trainer.json`` records ``should_stop`` (a checkpoint a run resumed from does not)."""
    best: bool = False
    """It is marked the run's best checkpoint."""


@dataclass(frozen=True)
class Restored:
    """What a resumed run continues from, read from its checkpoint."""

    step: int
    config: Any
    """The config the checkpoint recorded (its run's settings)."""
    tokens_seen: int
    samples_seen: int
    metrics: dict[str, Any]
    best_checkpoint: Path | None
    """The run's best checkpoint at or before ``step``, if it keeps one."""
    put_back_rng: Callable[[], None]
    """Sets the random generators to the checkpoint's states again: called when the set-up is
    over, just before the first step (what the set-up drew since must not count twice)."""
    saved: Saved
    """The checkpoint resumed from, as the newest of the run."""


def restore(engine: StepEngine, dataset: Dataset, monitor: Monitor, run_dir: Path, directory: Path) -> Restored:
    """Load checkpoint ``directory`` of the run in ``run_dir`` into ``dataset`` (its position,
    first: another tokenizer or corpus is named as such, before the model's shapes would refuse the
    weights), ``engine``'s strategy (model and optimizer) and precision, ``monitor`` and the random
    generators; refuse a run with nothing left to train
    (:func:`~deepseek.training.monitor.refuse_finished`)."""
    config = engine.config
    saved = ckpt.read_trainer_state(directory)
    try:
        with dataset_calls(dataset, dataset.label, "load_state_dict"):  # its own bug: one line naming it
            dataset.load_state_dict(saved["data"])
    except UsageError as exc:
        _refuse_another_run(config, saved.get("config"), directory)  # the cause, where it is one
        raise UsageError(f"{directory / ckpt.TRAINER_FILE}: {exc}") from exc
    state = engine.load_checkpoint(directory)
    step = int(state.get("step", 0))
    if "monitor" in state:
        monitor.load_state_dict(state["monitor"], directory / ckpt.TRAINER_FILE)
    try:
        refuse_finished(directory, step, config.train.max_steps, monitor, should_stop=state.get("should_stop") is True)
    except RunComplete:
        with rank_zero_outcome(engine.strategy):  # its error (a step-N it cannot rename back) every rank's
            if engine.strategy.is_global_zero:  # a requeued job finding it done writes nothing, but tidies the folder
                tidy_finished(run_dir, directory, config.checkpoint.keep_last)
        raise
    engine.precision.load_state_dict(state.get("precision", {}))
    saved = state.get("world_size")
    ckpt.load_rng_state(directory, engine.strategy.rank, saved if isinstance(saved, int) else None)  # checked now
    put_back_rng = ckpt.rng_snapshot()
    best = best_as_of(directory, step)  # the run's best so far, as the summary names it
    return Restored(step, state.get("config"), int(state.get("tokens_seen", 0)),
                    int(state.get("samples_seen", step * config.data.batch_size)),
                    dict(state.get("metrics", {})), best, put_back_rng,
                    Saved(step, best=best is not None and best.resolve() == directory.resolve()))


def best_as_of(directory: Path, step: int) -> Path | None:
    """The run's best checkpoint at or before ``step`` (``directory``: that step's checkpoint), as
    a resumed run's result names it (``None``: the run keeps none, or only a later one)."""
    best = ckpt.best_checkpoint(directory.parent)
    kept = best is not None and any(p == best and s <= step for s, p in ckpt.list_checkpoints(directory.parent))
    return best if kept else None


def tidy_finished(run_dir: Path, directory: Path, keep_last: int) -> None:
    """What a save or prune killed after a finished run's last checkpoint left in
    ``run_dir/checkpoints`` (a ``.trash-`` folder, say) is removed, ``latest`` / ``best`` a kill
    before their update left naming an older checkpoint are pointed at the newest / best, as any
    session's start does, and the checkpoints beyond ``keep_last`` a kill before (or during) the
    last save's prune left are pruned when ``directory``, the checkpoint the run was resumed (or
    read) from, is the newest (which pruning always keeps): under the run folder's lock taken
    without waiting (a live job holding it keeps its folder as it is). For a run that has nothing
    left to train, in one process (rank 0)."""
    from deepseek.training.run_lock import LOCK_FILE, try_lock, unlock

    root = run_dir / "checkpoints"
    if not (run_dir / LOCK_FILE).is_file():
        return
    if not (ckpt.list_stale(root) or ckpt.pointer_updates(root)
            or (_is_newest(root, directory) and ckpt.prunable(root, keep_last))):
        return
    fd = try_lock(run_dir / LOCK_FILE)
    if fd is None:
        return
    try:
        ckpt.remove_stale(root)
        ckpt.update_pointers(root)
        if _is_newest(root, directory):  # looked at again under the lock
            ckpt.prune_checkpoints(root, keep_last)
    finally:
        unlock(fd)


def _is_newest(root: Path, directory: Path) -> bool:
    """Whether checkpoint ``directory`` is the newest complete one under ``root`` (by commit order);
    a moved-aside ``directory`` is that step's checkpoint under its name renamed back
    (:func:`~deepseek.training.checkpoint.committed_path`), as :func:`tidy_finished` finds it after
    :func:`~deepseek.training.checkpoint.remove_stale`."""
    found = ckpt.list_checkpoints(root)
    return bool(found) and ckpt.committed_path(found[-1][1]).resolve() == ckpt.committed_path(directory).resolve()


def check_resumed_weights(config: Any, model: torch.nn.Module, directory: Path, host: Any = None) -> None:
    """Before any strategy loads checkpoint ``directory`` into ``model`` (built from ``config``):
    a checkpoint of another model or dataset is one line naming both, and weights that do not fit
    the model (names, shapes; from the file's header) are one line naming the keys, and saved
    optimizer groups whose members differ from those of this config's ``[[optimizer.groups]]``
    (from the metadata) one line naming a parameter that moved, before the strategy builds its
    optimizer or engine (DeepSpeed built its engine on every rank before its load refused them);
    their types are those of the optimizer the checkpoint names, on ``host`` (the run's)."""
    _refuse_another_run(config, ckpt.read_trainer_state(directory).get("config"), directory)
    ckpt.check_weights_fit(model, directory)
    ckpt.check_resumed_groups(directory, group_members(model.named_parameters(), config.optimizer.groups), host)


def _refuse_another_run(cfg: Any, saved: Any, directory: Path) -> None:
    """A config of another model or dataset resuming a run: one line naming both (a GPT config
    resuming a multimodal run was refused as a mismatch of the data position, then of the weights)."""
    if not isinstance(saved, dict):
        return
    model, data = (saved.get("model") or {}).get("name"), (saved.get("data") or {}).get("name")
    if (model, data) == (cfg.model.name, cfg.data.name) or not (isinstance(model, str) and isinstance(data, str)):
        return
    raise UsageError(f"{directory / ckpt.TRAINER_FILE}: the checkpoint is a run of model {model!r} on data {data!r}, "
                     f"this config trains {cfg.model.name!r} on {cfg.data.name!r}; a resumed run keeps its model and "
                     "data: " + spelled("resume without the config file (the run's own config is used), or train "
                                        "this config in another run folder (--run-dir)",
                                        f"resume it with model {model!r} on data {data!r}, or train this model and "
                                        "data in another run folder (run_dir=)"))


def check_evaluation(engine: StepEngine, model: torch.nn.Module, dataset: Dataset, val_set: list[Batch],
                     val_texts: list[PredictedText | None], monitor: Monitor) -> None:
    """Evaluate the first validation batch (of ``val_set``, whose texts are ``val_texts``) as
    evaluations will, before anything is written: the output must follow the model contract with
    the metrics the model declares, and ``train.monitor`` (``monitor``) name a value the
    evaluations report (random generators put back). A monitored whole-set metric that the model
    declares but the first batch did not measure (a class or modality none of its rows has) is
    looked for over the whole validation set, as every evaluation will count it."""
    if not val_set:  # data.eval_batches = 0: nothing is evaluated, no monitored value is needed
        return
    device = engine.strategy.device
    with rng_kept(device):
        results, whole_set = engine.evaluate_all(val_set[:1], first=True)
    reported = [*results[0][1], *(name.removeprefix("val_") for name in whole_set)]
    whole = offers_whole_set_metrics(model)
    got = check_declared_metrics(model, reported, whole_set=whole, calls=engine.model_calls)
    declared = declared_metrics(model, calls=engine.model_calls) or ()
    monitored = monitor.name.removeprefix("val_")
    if whole and monitored in declared and monitored not in got and len(val_set) > 1:
        with rng_kept(device):
            _, whole_set = engine.evaluate_all(val_set)
        got = tuple(sorted({*got, *(name.removeprefix("val_") for name in whole_set)}))
    values = reported_values(got, tokens=dataset.count_tokens(val_set[0]) is not None,
                             text=reports_bits_per_byte(val_texts, len(val_set)))
    monitor.check_name(values.evaluation)
