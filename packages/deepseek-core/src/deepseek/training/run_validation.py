"""A run's validation set, or none, and the draw of its training batches.

``data.eval_batches`` validation batches are read once at set-up and the model is checked on the
first of them (``check_model_data``) before anything is written. ``data.eval_batches = 0`` turns
validation off, as Lightning's ``limit_val_batches=0``: the dataset's ``validation_batches`` is
never called, the run never evaluates (no ``val_*`` values, no ``deepseek_evaluate`` hooks), and
the model is checked on the first training batch each session draws, when the loop draws it for
the first step: peeking a batch at set-up would move the data's position, so what the run trains
on, and a resumed run, stay exactly as they would be. A check that refuses the data then stops a
fresh run before its first step, which leaves no run folder (as a refusal at set-up). Settings
that need evaluations are refused when the config loads
(:func:`deepseek.config.no_validation.check_no_validation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepseek.data.batch import Batch, check_global_batch
from deepseek.errors import UsageError
from deepseek.models.checks import check_model_data
from deepseek.plugins.calls import blamed_on
from deepseek.training.evaluation import validation_set

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.data.dataset import Dataset, PredictedText
    from deepseek.training.trainer import Trainer


def validates(config: Config) -> bool:
    """Whether runs of ``config`` evaluate (``data.eval_batches`` above 0)."""
    return config.data.eval_batches > 0


def read_validation(config: Config, dataset: Dataset) -> tuple[list[Batch], list[PredictedText | None]]:
    """The run's fixed validation batches and their texts
    (:func:`~deepseek.training.evaluation.validation_set`); none, without asking the dataset,
    when ``data.eval_batches`` is 0."""
    if not validates(config):
        return [], []
    validation = validation_set(config, dataset, config.data.eval_batches)
    return validation.batches, validation.texts


def no_validation_error() -> UsageError:
    """What asking a run without validation for an evaluation raises (``Trainer.evaluate``)."""
    return UsageError("data.eval_batches: 0 turns validation off, so this run has no validation batches to "
                      "evaluate; set data.eval_batches >= 1")


class TrainingBatches:
    """Draws a session's training batches from the trainer's dataset, each checked as a global
    batch; checks ``model`` against the data (``check_model_data``): on the first validation
    batch at once, or, with validation off, on the first training batch drawn."""

    def __init__(self, trainer: Trainer, model: Any) -> None:
        self.trainer = trainer
        self._unchecked: Any = model
        if trainer.val_set:
            self._check(trainer.val_set[0])

    def _check(self, batch: Batch) -> None:
        model, self._unchecked = self._unchecked, None
        with self.trainer.engine.model_calls("check_data"):
            check_model_data(model, batch, self.trainer.dataset, model_name=self.trainer.config.model.name)

    def draw(self, step: int) -> Batch:
        """The training batch of ``step`` (the dataset's next one)."""
        dataset, data = self.trainer.dataset, self.trainer.config.data
        with blamed_on(dataset.label, "__next__"):  # what a dataset raises: one line naming it
            batch = next(dataset)
        check_global_batch(batch, dataset=data.name, batch_size=data.batch_size, what=f"training batch of step {step}")
        if self._unchecked is not None:
            self._check(batch)
        return batch
