"""Evaluation: one batch through a model without gradients, and the mean over a validation set.

:func:`evaluate_batch` is the one implementation every strategy's ``evaluate`` and ``deepseek
eval`` use (:func:`evaluate_in_process` over a set of batches in one process, with the model's
whole-set metrics); :func:`summarize` turns per-batch results into ``{"val_loss": ..., "val_<metric>":
...}`` with one read from the device, and, for text whose bytes per token the dataset knows
(:meth:`~deepseek.data.dataset.Dataset.predicted_text`), ``val_bits_per_byte``: the validation
cross-entropy summed over every predicted token (nats), divided by ``ln 2`` and by the UTF-8
bytes those tokens stand for. It compares models with different tokenizers; for byte tokens it
is ``val_loss / ln 2``. :func:`validation_set` reads a run's fixed validation batches and
checks them (the trainer and ``deepseek eval`` read them the same way; only the last may be
shorter, and :func:`batch_weights` then weighs the batches by their rows); :func:`eval_batch_count`
is how many an evaluation command reads.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.data.batch import Batch, batch_rows, check_global_batch, move_to
from deepseek.data.dataset import PredictedText
from deepseek.errors import UsageError
from deepseek.models.checks import split_output
from deepseek.training.metrics import read_scalars
from deepseek.training.run_values import BITS_PER_BYTE

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.data.dataset import Dataset
    from deepseek.training.loss_items import ItemWeights

Evaluation = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""``(loss, metrics)`` of one batch, detached fp32 0-dim tensors."""


@dataclass(frozen=True)
class ValidationSet:
    """A run's fixed validation batches (global batches, checked) and what they hold."""

    batches: list[Batch]
    """``data.batch_size`` rows each, the last one possibly fewer (the rest of the split)."""
    texts: list[PredictedText | None]
    """Each batch's :meth:`~deepseek.data.dataset.Dataset.predicted_text` (bits per byte)."""
    samples: int
    """Rows over all batches."""
    tokens: int | None
    """Tokens over all batches (``dataset.count_tokens``); ``None`` when the data has no tokens."""


def validation_set(config: Config, dataset: Dataset, limit: int) -> ValidationSet:
    """At most ``limit`` validation batches of ``dataset`` (fewer when its validation data ends
    sooner), each checked as a global batch of ``data.batch_size`` rows; :class:`UsageError` when
    the dataset gives none."""
    from deepseek.data.dataset import blamed_label, checked_validation_batches, dataset_calls

    label = dataset.label
    batches = checked_validation_batches(dataset, limit)
    if not batches:
        raise UsageError(
            f"data: dataset {config.data.name!r} gave no validation batches; give it validation data "
            "(for 'text': a larger corpus or a higher data.val_fraction)"
        )
    for i, batch in enumerate(batches):
        check_global_batch(batch, dataset=config.data.name, batch_size=config.data.batch_size, what="validation batch",
                           last=i == len(batches) - 1, blamed=blamed_label(dataset))
    with dataset_calls(dataset, label, "count_tokens"):
        counts = [dataset.count_tokens(batch) for batch in batches]
    tokens = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    with dataset_calls(dataset, label, "predicted_text"):
        texts = [dataset.predicted_text(batch) for batch in batches]
    return ValidationSet(batches, texts, sum(batch_rows(batch) for batch in batches), tokens)


def eval_batch_count(config: Config, batches: int | None = None) -> int:
    """How many validation batches a command that evaluates a run's model reads (``deepseek eval``,
    ``bench latency --config``, ...): ``batches`` (its ``--batches``), else ``data.eval_batches``,
    else, for a run that trained without validation (``data.eval_batches = 0``), the field's
    default (8)."""
    from deepseek.config.schema import DataConfig

    return batches or config.data.eval_batches or DataConfig.eval_batches


@contextlib.contextmanager
def batches_named(batches: int | None) -> Iterator[None]:
    """Around the reading of a command's validation batches (``batches``: its ``--batches``): the
    count refused past memory (:class:`~deepseek.data.loader.OverMemory`) is then that option, and is
    named as its user gave it (``--batches N``, ``batches=N`` from Python), not as the
    ``data.eval_batches`` setting the data reads it by."""
    from deepseek.arguments import given
    from deepseek.data.loader import EVAL_BATCHES, OverMemory

    try:
        yield
    except OverMemory as exc:
        if batches is None or EVAL_BATCHES not in dict(exc.terms):
            raise
        raise exc.naming(EVAL_BATCHES, given("--batches", "batches", batches)) from None


def batch_weights(batches: Sequence[Batch], items: ItemWeights | None) -> list[int] | None:
    """Each validation batch's weight in the mean over batches (:func:`summarize`): its items,
    for a model weighing its loss by items (``items``, :mod:`deepseek.training.loss_items`); else
    its rows when the last batch is shorter than the others (the rest of the split), so every row
    counts once; else ``None``, every batch weighs the same. Items in proportion to the rows (every
    row counting as many) weigh as the rows do."""
    rows = [batch_rows(batch) for batch in batches]
    if items is not None:
        counts = [items.total(batch, "validation batch") for batch in batches]
        if any(c * rows[0] != counts[0] * r for c, r in zip(counts, rows, strict=True)):
            return counts
        # items in proportion to rows (packed rows): the rows give the same mean, in the same floats
    return rows if len(set(rows)) > 1 else None


def weighed(value: torch.Tensor, weight: float) -> torch.Tensor:
    """A data-parallel shard's loss or metrics times its ``weight`` in a validation batch's mean
    (:meth:`~deepseek.training.strategy.Strategy.evaluate`). A shard of weight 0 (no item its loss
    counts, or a rank's stand-in row) adds exactly 0: its own mean over no items is NaN, and NaN x 0
    would make the batch's mean NaN."""
    if weight == 0.0:
        return torch.zeros_like(value)
    return value if weight == 1.0 else value * weight


def evaluate_batch(
    module: nn.Module,
    batch: Batch,
    *,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> Evaluation:
    """``module(**batch)`` on ``device`` in eval mode without gradients (under ``autocast``)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            moved = move_to(batch, device)
            with autocast if autocast is not None else contextlib.nullcontext():
                loss, metrics = split_output(module(**moved))
    finally:
        module.train(was_training)
    return loss.detach().float(), {k: v.detach().float() for k, v in metrics.items()}


def evaluate_in_process(
    module: nn.Module,
    batches: Sequence[Batch],
    *,
    device: torch.device,
    model_name: str,
    texts: Sequence[PredictedText | None] | None = None,
    weights: Sequence[int | None] | None = None,
) -> dict[str, float]:
    """:func:`summarize` of :func:`evaluate_batch` over ``batches`` of a model this process
    evaluates alone (``deepseek eval``, ``deepseek.evaluate``), with the model's whole-set
    metrics from the totals its forward returns (:mod:`deepseek.training.totals`). ``weights``:
    each batch's (:func:`batch_weights`); by default the model's items, or the rows when the last
    batch is shorter."""
    from deepseek.training.loss_items import item_weights
    from deepseek.training.totals import TotalsCapture, offers_whole_set_metrics, whole_set_metrics

    if weights is None:
        weights = batch_weights(batches, item_weights(module, f"model {model_name!r}"))
    offers = offers_whole_set_metrics(module)
    with TotalsCapture(module, model_name=model_name, offers=offers) as capture:
        results = [evaluate_batch(module, batch, device=device) for batch in batches]
    values = summarize(results, texts, weights=weights)
    if capture.sums and offers:
        values.update(whole_set_metrics(module, capture.sums, model_name=model_name, taken=values))
    return values


def rng_kept(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A context after which the CPU's and ``device``'s random generators are as before it: an
    evaluation made only to check the model leaves training's draws unchanged."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.accelerator.current_device_index()
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def summarize(results: Sequence[Evaluation], texts: Sequence[PredictedText | None] | None = None,
              weights: Sequence[int | None] | None = None) -> dict[str, float]:
    """Means over batches: ``{"val_loss": ..., "val_<metric>": ...}`` for every metric name any
    batch returned, and ``val_bits_per_byte`` when ``texts`` gives every batch's
    :class:`PredictedText` (the dataset's ``predicted_text`` of each batch, in order; see the
    module docstring). ``weights``: each batch's weight (:func:`batch_weights`: its items or rows);
    ``None`` (or ``None`` entries): every batch weighs the same. A metric a batch did not return,
    or returned as NaN, was not measured there (the rule of a step's micro-batches,
    :class:`~deepseek.training.step.MetricSums`): its value is the weighted mean over the batches
    that measured it, NaN where none did."""
    names = sorted({k for _, m in results for k in m})
    nan = float("nan")
    values = read_scalars([v for loss, m in results for v in (loss, *(m.get(k, nan) for k in names))])
    width = 1 + len(names)
    items = [w for w in (weights or []) if w is not None]
    weighs = items if len(items) == len(results) else [1] * len(results)
    out = {}
    for j, key in enumerate(["loss", *names]):
        column = values[j::width]
        kept = [(v, n) for v, n in zip(column, weighs, strict=True) if j == 0 or not math.isnan(v)]
        total = sum(n for _, n in kept)
        if len(items) == len(results):  # per item of all the batches
            out[f"val_{key}"] = sum(v * n for v, n in kept) / total if total else nan
        else:
            out[f"val_{key}"] = sum(v for v, _ in kept) / len(kept) if kept else nan
    bpb = bits_per_byte(values[0::width], texts)
    if bpb is not None and BITS_PER_BYTE not in out:
        out[BITS_PER_BYTE] = bpb
    return out


def _known_texts(texts: Sequence[PredictedText | None] | None, batches: int) -> list[PredictedText] | None:
    """``texts`` when there is one for each of ``batches`` batches and they hold bytes, else ``None``."""
    if texts is None or len(texts) != batches or any(t is None for t in texts):
        return None
    known = [t for t in texts if t is not None]
    return known if sum(t.bytes for t in known) > 0 else None


def reports_bits_per_byte(texts: Sequence[PredictedText | None] | None, batches: int) -> bool:
    """Whether :func:`summarize` reports ``val_bits_per_byte`` for ``batches`` batches of these ``texts``."""
    return _known_texts(texts, batches) is not None


def bits_per_byte(losses: Sequence[float], texts: Sequence[PredictedText | None] | None) -> float | None:
    """``sum(loss_b * tokens_b) / ln 2 / sum(bytes_b)`` over batches ``b`` (each ``loss_b`` the mean
    cross-entropy in nats over its ``tokens_b`` predicted tokens); ``None`` when a batch's text is
    unknown or there are no bytes."""
    known = _known_texts(texts, len(losses))
    if known is None:
        return None
    total_bytes = sum(t.bytes for t in known)
    nats = sum(loss * t.tokens for loss, t in zip(losses, known, strict=True) if t.tokens)
    return nats / math.log(2) / total_bytes
