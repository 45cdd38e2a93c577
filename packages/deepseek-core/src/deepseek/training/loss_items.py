"""Weighing a step's parts by the items a model's loss averages over
(:meth:`~deepseek.models.protocol.TrainableModel.loss_items`), Hugging Face's
``num_items_in_batch``.

A model whose loss is a mean over *tokens* of rows of different lengths (padding ignored) gives,
for a micro-batch or a data-parallel shard, the mean over that part's tokens: averaging the parts
by their rows then weighs the tokens of short and long rows differently than the whole batch
does, so ``train.grad_accum`` and the number of processes change the objective. With the counts,
part ``p`` of the global batch ``B`` weighs ``items(p) x ranks / items(B)``: each rank's weighted
sum, averaged over the ranks (as gradients and reported losses are), is the loss per item of
``B``, whatever the split. Validation batches are averaged by their items the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deepseek.data.batch import Batch
from deepseek.errors import UsageError


class ItemWeights:
    """The weights of one model's batches by its ``loss_items`` (``label`` names it in errors)."""

    def __init__(self, count: Callable[[Batch], Any], label: str) -> None:
        self._count, self.label = count, label

    def count(self, batch: Batch, what: str) -> int:
        """Items in ``batch`` (``what`` names it), checked: a whole number >= 0."""
        items = self._count(batch)
        if hasattr(items, "item") and getattr(items, "numel", lambda: 2)() == 1:
            items = items.item()  # a 0-dim tensor count: read once
        if isinstance(items, bool) or not isinstance(items, int) or items < 0:
            raise UsageError(f"{self.label}: loss_items returned {items!r:.60} for the {what}; it must return the "
                             "number of items the loss averages over (an int >= 0), or None for every batch")
        return items

    def total(self, batch: Batch, what: str) -> int:
        """Items of a global batch, refused when there are none (its loss would be 0 / 0)."""
        items = self.count(batch, what)
        if items == 0:
            raise UsageError(f"{self.label}: the {what} holds no item its loss counts (loss_items is 0); every "
                             "global batch needs at least one (rows whose labels are not all ignored)")
        return items

    def step_weights(self, global_batch: Batch, micro_batches: Sequence[Batch], ranks: int, step: int) -> list[float]:
        """Each of this rank's micro-batches' weight in step ``step``'s loss."""
        total = self.total(global_batch, f"global batch of step {step}")
        return [self.count(m, f"micro-batch of step {step}") * ranks / total for m in micro_batches]

    def uneven_rows(self, batch: Batch, what: str) -> tuple[int, int] | None:
        """Two different counts of items of rows of ``batch`` (``what`` names it), or ``None`` when
        every row counts the same (packed rows): then weighing any split by its rows is exact."""
        from deepseek.data.batch import batch_rows, split_rows

        first: int | None = None
        for row in split_rows(batch, batch_rows(batch)):
            items = self.count(row, f"row of the {what}")
            if first is None:
                first = items
            elif items != first:
                return first, items
        return None

    def shard_weight(self, batch: Batch, shard: Batch, ranks: int) -> float:
        """This rank's shard's weight in a validation batch's loss."""
        return self.count(shard, "validation shard") * ranks / self.total(batch, "validation batch")


def item_weights(model: Any, label: str) -> ItemWeights | None:
    """:class:`ItemWeights` of ``model`` when it overrides ``TrainableModel.loss_items``, else
    ``None`` (every row weighs the same)."""
    from deepseek.models.protocol import TrainableModel

    if not isinstance(model, TrainableModel) or type(model).loss_items is TrainableModel.loss_items:
        return None
    return ItemWeights(model.loss_items, label)
