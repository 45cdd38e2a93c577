"""A run's validation set, or none, and the draw of its training batches.

``data.eval_batches`` validation batches are read once at set-up and the model is checked on the
first of them (``check_model_data``) before anything is written. ``data.eval_batches = 0`` turns
validation off, as Lightning's ``limit_val_batches=0``: the dataset's ``validation_batches`` is
never called, the run never evaluates (no ``val_*`` values, no ``deepseek_evaluate`` hooks), and
the model is checked at set-up on the first training batch, drawn and put back (the dataset's
position and the random generators restored), so what the run trains on, and a resumed run, stay
exactly as they would be. Settings that need evaluations are refused when the config loads
(:func:`deepseek.config.no_validation.check_no_validation`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from deepseek.data.batch import Batch, check_global_batch
from deepseek.data.dataset import blamed_label, dataset_calls
from deepseek.errors import UsageError
from deepseek.models.checks import check_model_data
from deepseek.training.evaluation import validation_set

if TYPE_CHECKING:
    from deepseek.config.schema import Config, DataConfig
    from deepseek.data.dataset import Dataset, PredictedText
    from deepseek.training.engine import StepEngine


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
    """Draws a session's training batches from ``dataset`` (``data``: its ``[data]`` section), each
    checked as a global batch. Checks ``model`` against the data (``check_model_data``) at set-up,
    before the model is placed, trackers start or anything is written: on the first validation
    batch (``val_set``), or, with validation off, on the first training batch, drawn and then put
    back (the dataset's position restored through its ``state_dict`` / ``load_state_dict``, which a
    resume relies on too, and the random generators as they were): what the run trains on stays
    exactly as it would be. ``engine`` blames what the model's check raises on the model."""

    def __init__(self, dataset: Dataset, data: DataConfig, model: Any, *, val_set: list[Batch],
                 engine: StepEngine) -> None:
        self.dataset, self.data = dataset, data
        first = val_set[0] if val_set else self._peek()
        check_model_data(model, first, dataset, model_name=engine.config.model.name, calls=engine.model_calls)

    def _peek(self) -> Batch:
        from deepseek.training.checkpoint_rng import rng_snapshot

        dataset = self.dataset
        put_back = rng_snapshot()
        with dataset_calls(dataset, dataset.label, "state_dict"):
            state = copy.deepcopy(dataset.state_dict())  # a copy: the draw may change the object it returned
        try:
            return self.draw(1)
        finally:
            with dataset_calls(dataset, dataset.label, "load_state_dict"):
                dataset.load_state_dict(state)
            put_back()

    def draw(self, step: int) -> Batch:
        """The training batch of ``step`` (the dataset's next one)."""
        dataset, data = self.dataset, self.data
        with dataset_calls(dataset, dataset.label, "__next__"):  # what a dataset raises: one line naming it
            batch = next(dataset)
        check_global_batch(batch, dataset=data.name, batch_size=data.batch_size, what=f"training batch of step {step}",
                           blamed=blamed_label(dataset))
        return batch
