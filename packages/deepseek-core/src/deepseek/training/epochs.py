"""Epoch ends for ``deepseek_train_epoch_end``: which optimizer step completed which passes over
the training data, from the dataset's :meth:`~deepseek.data.dataset.Dataset.epochs_done` read
after each step's batch is drawn. The hook runs when that step's ``deepseek_train_step_end`` has
(step-end hooks wait for the step's loss to be read), so the ends are kept until then."""

from __future__ import annotations

from deepseek.data.dataset import Dataset, checked_epochs_done


class EpochEnds:
    """The passes completed so far (:attr:`done`, ``None`` for data without passes) and, per step
    not yet handed over, the passes that step completed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.done = checked_epochs_done(dataset)  # where a fresh or resumed run starts: nothing to call for
        self._pending: dict[int, range] = {}

    def drawn(self, step: int) -> None:
        """Step ``step``'s batch was drawn: note the passes it completed."""
        done = checked_epochs_done(self.dataset)
        if done is not None and self.done is not None and done > self.done:
            self._pending[step] = range(self.done + 1, done + 1)
        self.done = done

    def completed_by(self, step: int) -> range:
        """The passes (1-based) step ``step`` completed, handed over once."""
        return self._pending.pop(step, range(0))
