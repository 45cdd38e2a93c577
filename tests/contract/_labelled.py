"""A labelled dataset for the model-batch contract tests (test_model_batches_contract,
test_model_batches_modalities_contract): one training batch and one validation batch, made by the
subclass's ``_batch(index)``, with ``options.classes`` labels declared and no position to save."""

from __future__ import annotations

from typing import Any

from deepseek.data.dataset import Dataset


class LabelledBatches(Dataset):
    """Training batch ``_batch(1)`` every time, validation ``[_batch(2)]``; labels ``0 ..
    options.classes - 1`` (:meth:`model_num_classes`)."""

    def _batch(self, index: int) -> Any:
        raise NotImplementedError

    def __next__(self) -> Any:
        return self._batch(1)

    def validation_batches(self, limit: int) -> list[Any]:
        return [self._batch(2)]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def model_num_classes(cls, options: Any) -> int:
        return options.classes
