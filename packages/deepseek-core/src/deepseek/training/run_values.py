"""The values a run reports: the one list of the names in a run's ``metrics.jsonl``.

A training run writes two kinds of records (``metrics.jsonl``, the trackers, the hooks):

- a *step record* per optimizer step (:mod:`deepseek.training.step_records`): :data:`STEP_VALUES`,
  then :data:`TOKEN_VALUES` when the data has tokens (``Dataset.count_tokens``), the model's
  metrics under their own names, ``loss_scale`` under fp16 and the strategy's step metrics
  (``Strategy.step_metrics``: ``comm_bytes`` ...);
- an *evaluation record* (:func:`deepseek.training.evaluation.summarize`): ``step``,
  ``val_loss``, ``val_<metric>`` of each model metric, and ``val_bits_per_byte`` when the dataset
  gives the bytes of text its tokens stand for (``Dataset.predicted_text``).

``deepseek eval`` reports the evaluation values and ``val_perplexity`` for data of tokens.

:func:`reported_values` lists them for a run of a model (its metric names: the model's
declaration, :meth:`~deepseek.models.protocol.TrainableModel.metric_names`, or what its first
evaluation returned) on a dataset; ``train.monitor`` (the trainer, before anything is written)
and ``deepseek tune --objective`` (before any trial) are checked against it, and the model
contract forbids model metrics named like a step value (:data:`RESERVED_METRICS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

STEP_VALUES = ("step", "loss", "lr", "grad_norm", "samples", "samples_per_s", "step_time", "skipped")
"""What every step record holds."""
TOKEN_VALUES = ("tokens", "tokens_per_s")
"""What a step record adds for data of tokens (tokens seen so far, and per second)."""
LOSS_SCALE = "loss_scale"
"""What a step record adds under fp16 (the loss scaler's scale)."""
RESERVED_METRICS = frozenset({*STEP_VALUES, *TOKEN_VALUES, LOSS_SCALE})
"""Names the trainer logs itself on a step record (``val_`` + name on an evaluation); a model
metric may not use them."""
VAL_LOSS = "val_loss"
BITS_PER_BYTE = "val_bits_per_byte"
PERPLEXITY = "val_perplexity"


@dataclass(frozen=True)
class RunValues:
    """The names a run of one model on one dataset reports (see the module docstring)."""

    evaluation: tuple[str, ...]
    """An evaluation record's values (``val_loss``, ``val_<metric>``, ``val_bits_per_byte``),
    without ``step``; where the model's metrics are not known, ``val_loss`` and the dataset's."""
    training: tuple[str, ...]
    """A step record's values, with ``step``."""
    command: tuple[str, ...]
    """What ``deepseek eval`` reports: :attr:`evaluation` and ``val_perplexity`` for tokens."""
    complete: bool
    """Whether the model's metrics are known: only then is a name outside these lists one the run
    does not report."""

    def missing(self, name: str, *, evaluation: bool = True) -> bool:
        """Whether ``name`` is known not to be an evaluation value (``evaluation``) or a value of
        any record of the run."""
        names = self.evaluation if evaluation else (*self.evaluation, *self.training)
        return self.complete and name not in names


def reported_values(
    metrics: Iterable[str] | None,
    *,
    tokens: bool,
    text: bool,
    loss_scale: bool = False,
    step_metrics: Iterable[str] = (),
) -> RunValues:
    """The values a run reports whose model's forward returns the metrics ``metrics`` (``None``:
    not known), on data with ``tokens`` (``Dataset.count_tokens`` gives a number) and ``text``
    whose bytes are known (``Dataset.predicted_text`` gives them); ``loss_scale`` under fp16,
    ``step_metrics`` the strategy's."""
    names = sorted(metrics) if metrics is not None else []
    evaluation = [VAL_LOSS, *(f"val_{m}" for m in names)]
    if text and BITS_PER_BYTE not in evaluation:
        evaluation.append(BITS_PER_BYTE)
    training = [*STEP_VALUES, *(TOKEN_VALUES if tokens else ()), *names, *((LOSS_SCALE,) if loss_scale else ()),
                *step_metrics]
    command = [*evaluation, *((PERPLEXITY,) if tokens and PERPLEXITY not in evaluation else ())]
    return RunValues(tuple(evaluation), tuple(training), tuple(command), metrics is not None)


def any_run(runs: Iterable[RunValues]) -> RunValues:
    """The values that one of ``runs`` reports (each name once, in order of first appearance):
    what a study of several configs may report; complete only when each of them is."""
    runs = list(runs)

    def union(lists: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for names in lists for name in names))

    return RunValues(union(r.evaluation for r in runs), union(r.training for r in runs),
                     union(r.command for r in runs), all(r.complete for r in runs))


def dataset_reports(dataset: Any) -> dict[str, bool]:
    """What a dataset class (or instance) may add to a run's values, from the methods it
    overrides: ``tokens`` (``count_tokens``) and ``text`` (``predicted_text``); the keyword
    arguments of :func:`reported_values` for a run not started yet."""
    from deepseek.data.dataset import Dataset

    cls = dataset if isinstance(dataset, type) else type(dataset)
    return {"tokens": cls.count_tokens is not Dataset.count_tokens,
            "text": cls.predicted_text is not Dataset.predicted_text}


def config_values(config: Any, host: Any = None) -> RunValues:
    """The values a run of ``config`` will report, known before it starts: the metrics its model
    declares (built on the meta device: free, any size) and what its dataset class adds
    (:func:`dataset_reports`: what it may add, as no data is read). ``host``: the run's plugin
    host (default: the process's)."""
    import torch

    from deepseek.models.checks import declared_metrics
    from deepseek.plugins.calls import model_blame
    from deepseek.training.build import build_model, run_host

    lookups = run_host(config, host)
    data_cls = lookups.resolve("dataset", config.data.name).load()
    with torch.random.fork_rng(devices=[]):
        model = build_model(config, host=host, create_on=torch.device("meta"))
    calls = model_blame(lookups.resolve("model", config.model.name), model)  # its declaration: its bug
    return reported_values(declared_metrics(model, calls=calls),
                           **dataset_reports(data_cls), loss_scale=config.precision.dtype == "fp16")
