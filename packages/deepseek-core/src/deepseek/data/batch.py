"""Batches as pytrees: a mapping of names to tensors (or nested lists, tuples and mappings of
tensors), every tensor holding the batch's rows along its first dimension.

These functions are the one implementation of what the trainer and the strategies do to a batch:
count its rows, take a data-parallel rank's rows, cut it into micro-batches, join micro-batches,
and move it to a device. A list or tuple of plain values (numbers, strings, ``None``) with one per
row (what a custom ``collate_fn`` returns for lengths, ids or texts) is rows too: a rank's shard
and a micro-batch take its entries with their rows. Other leaves that are not tensors (a string, a
number, a list of another length) are carried unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from deepseek.errors import UsageError

Batch = Mapping[str, Any]


def _tensors(batch: Any) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(batch) if isinstance(t, torch.Tensor)]


def _is_array(leaf: Any) -> bool:
    """An array of another library (numpy, jax, ...) with rows: ``__array__`` and at least one
    dimension, not a tensor; models get tensors (strings and numbers are carried as they are)."""
    return not isinstance(leaf, torch.Tensor) and hasattr(leaf, "__array__") and getattr(leaf, "ndim", 0) >= 1


def check_batch(batch: Any, *, where: str) -> int:
    """The number of rows of ``batch``; a one-line :class:`UsageError` naming ``where`` when it is
    not a mapping of tensors that agree on their first dimension."""
    if not isinstance(batch, Mapping) or not batch:
        raise UsageError(
            f"{where}: a batch must be a non-empty mapping of names to tensors, got {type(batch).__name__}"
        )
    for key, value in batch.items():
        arrays = [leaf for leaf in pytree.tree_leaves(value) if _is_array(leaf)]
        if arrays:
            raise UsageError(
                f"{where}: batch[{key!r}] holds a {type(arrays[0]).__module__.partition('.')[0]}."
                f"{type(arrays[0]).__name__}, which is carried as it is, not as rows; give tensors "
                "(torch.from_numpy(array), or torch.as_tensor)"
            )
    tensors = _tensors(batch)
    if not tensors and type(batch) is not dict:  # torch's pytree enters dicts, lists and tuples only
        raise UsageError(f"{where}: the batch is a {type(batch).__name__}, a mapping the trainer cannot look "
                         "into; give a plain dict of names to tensors (dict(batch))")
    if not tensors:
        raise UsageError(f"{where}: the batch holds no tensors (keys {sorted(map(str, batch))})")
    sizes = {int(t.size(0)) if t.dim() else -1 for t in tensors}
    if len(sizes) != 1 or -1 in sizes:
        raise UsageError(
            f"{where}: every tensor of a batch needs the rows along its first dimension, and the "
            f"same number of them; got first dimensions {sorted(sizes)}"
        )
    return sizes.pop()


def check_global_batch(batch: Any, *, dataset: str, batch_size: int, what: str, last: bool = False,
                       blamed: str | None = None) -> None:
    """A batch from dataset ``dataset`` must pass :func:`check_batch` and hold ``data.batch_size``
    rows (a dataset yields global batches); ``what`` names the batch in the one-line error.
    ``last``: the last validation batch, which may hold fewer rows (the rest of the split), not
    none. Whose fault a failure is goes by where the data came from: ``blamed``, the label of a
    plugin's dataset (:func:`deepseek.data.dataset.blamed_label`), makes it that plugin's bug (a
    :class:`~deepseek.errors.PluginError`, exit code 1, naming the dataset and its distribution);
    ``None`` (the user's own data: :func:`deepseek.fit`'s iterable, core's datasets over the
    user's files) a :class:`UsageError`, exit code 2."""
    try:
        rows = check_batch(batch, where=f"data: dataset {dataset!r}, {what}")
        if last and 1 <= rows <= batch_size:
            return
        if rows != batch_size:
            also = " (only the last validation batch may hold fewer, at least one: the rest of its split)" \
                if "validation" in what else ""
            raise UsageError(
                f"data: dataset {dataset!r} gave a {what} of {rows} rows, but data.batch_size is {batch_size}; "
                f"a dataset yields global batches of data.batch_size rows{also} (docs/plugins.md, 'Datasets')"
            )
    except UsageError as exc:
        if blamed is None:
            raise
        from deepseek.plugins.calls import broken_answer

        raise broken_answer(blamed, str(exc).removeprefix(f"data: dataset {dataset!r}").lstrip(", ")) from None


def batch_rows(batch: Any) -> int:
    """Rows of ``batch`` (the first dimension of its first tensor)."""
    tensors = _tensors(batch)
    return int(tensors[0].size(0)) if tensors else 0


def _is_row_list(value: Any, rows: int) -> bool:
    """A list or tuple with one plain value (not a tensor or container) for each of ``rows`` rows."""
    return (isinstance(value, list | tuple) and not hasattr(value, "_fields") and rows > 0 and len(value) == rows
            and not any(isinstance(v, torch.Tensor | Mapping | list | tuple) for v in value))


def _rebuilt(value: Any, items: Sequence[Any]) -> Any:
    if hasattr(value, "_fields"):  # a named tuple
        return type(value)(*items)
    return type(value)(items)


def _cut_rows(value: Any, rows: int, cut: Any) -> Any:
    """``value`` with ``cut`` applied to each tensor and each row list (:func:`_is_row_list`),
    through dicts, lists and tuples (the containers torch's pytree enters)."""
    if isinstance(value, torch.Tensor) or _is_row_list(value, rows):
        return cut(value)
    if type(value) is dict:
        return {k: _cut_rows(v, rows, cut) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return _rebuilt(value, [_cut_rows(v, rows, cut) for v in value])
    return value


def shard_rows(batch: Any, rank: int, size: int) -> Any:
    """Rows ``rank::size`` of every tensor and row list: the default data-parallel shard."""
    if size == 1:
        return batch
    return _cut_rows(batch, batch_rows(batch), lambda t: t[rank::size])


def head_rows(batch: Any, n: int) -> Any:
    """The first ``n`` rows of every tensor and row list of ``batch``."""
    return _cut_rows(batch, batch_rows(batch), lambda t: t[:n])


def split_rows(batch: Any, n: int) -> list[Any]:
    """``batch`` cut into ``n`` micro-batches of equal rows, in order."""
    if n == 1:
        return [batch]
    rows = batch_rows(batch)
    if rows % n:
        raise UsageError(f"train.grad_accum: {rows} rows do not split into {n} micro-batches")
    step = rows // n
    return [_cut_rows(batch, rows, lambda t, i=i: t[i * step:(i + 1) * step]) for i in range(n)]


def concat_rows(batches: Sequence[Any]) -> Any:
    """The micro-batches ``batches`` joined back into one batch (tensors and row lists joined,
    other leaves taken from the first)."""
    if len(batches) == 1:
        return batches[0]
    return _joined(list(batches), [batch_rows(b) for b in batches])


def _joined(parts: list[Any], rows: list[int]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if all(_is_row_list(p, n) for p, n in zip(parts, rows, strict=True)):
        return _rebuilt(first, [v for p in parts for v in p])
    if type(first) is dict:
        return {k: _joined([p[k] for p in parts], rows) for k in first}
    if isinstance(first, list | tuple) and all(len(p) == len(first) for p in parts):
        return _rebuilt(first, [_joined([p[i] for p in parts], rows) for i in range(len(first))])
    return first


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` on ``device`` (asynchronous copies to CUDA)."""
    non_blocking = device.type == "cuda"
    return pytree.tree_map(
        lambda t: t.to(device, non_blocking=non_blocking) if isinstance(t, torch.Tensor) else t, batch
    )
