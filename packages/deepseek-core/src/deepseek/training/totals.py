"""Whole-set metrics: statistics a model adds up over an evaluation, turned into metrics once.

A metric that is not a mean over rows (F1, precision and recall per class, a ratio of two counts)
cannot be averaged over batches. A model's ``forward`` may therefore return, beside ``"loss"`` and
its scalar metrics, ``"totals"``: a mapping of names to tensors that add up over rows (counts,
sums; any shape, such as a confusion matrix). An evaluation sums each over its batches and over the
data-parallel ranks, then calls the model's
:meth:`~deepseek.models.protocol.TrainableModel.metrics_from_totals` once with the sums; its values
are reported as ``val_<name>`` beside the means (Hugging Face's ``compute_metrics`` over the whole
evaluation set, torchmetrics' ``compute`` after ``update``). Training steps ignore the totals.

:class:`TotalsCapture` reads them from the model's outputs through a forward hook on the module a
strategy evaluates, so no strategy's ``evaluate`` changes; :func:`agreed_sums` checks that every
rank holds the same names and shapes before the strategy's ``reduce_sum``, which every rank then
calls whatever its own rows; :func:`whole_set_metrics` checks what ``metrics_from_totals``
returns. The pipeline strategies evaluate the loss alone (their last stage computes
``pipeline_loss``), so they report no totals, as they report no scalar metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.errors import UsageError

if TYPE_CHECKING:
    from deepseek.training.strategy import Strategy

TOTALS = "totals"
"""The key of a model output's totals."""


def offers_whole_set_metrics(model: nn.Module) -> bool:
    """Whether ``model`` overrides ``TrainableModel.metrics_from_totals``."""
    from deepseek.models.protocol import TrainableModel

    return isinstance(model, TrainableModel) and type(model).metrics_from_totals is not TrainableModel.metrics_from_totals


class TotalsCapture:
    """Sums the ``"totals"`` of every output of ``module`` while the context is open; a model that
    returns them without defining ``metrics_from_totals`` (``offers`` false) is one line."""

    def __init__(self, module: nn.Module, *, model_name: str, offers: bool) -> None:
        self.module = module
        self.model_name = model_name
        self.offers = offers
        self.sums: dict[str, torch.Tensor] = {}
        self.latest: dict[str, torch.Tensor] = {}
        """The checked totals (float64) of the latest output added: one row's, where each forward
        is of one row (``deepseek compare`` keeps every example's)."""
        self.batches = 0
        self._handle: Any = None
        self._ignoring = False

    def __enter__(self) -> TotalsCapture:
        self._handle = self.module.register_forward_hook(self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    @contextlib.contextmanager
    def ignored(self) -> Iterator[None]:
        """A block whose outputs add zeros (a rank's stand-in row at weight 0): checked as any
        batch's, their names and shapes taken, their values not counted. A rank whose shards
        were all empty so holds the names and shapes the other ranks sum (:func:`agreed_sums`)."""
        self._ignoring = True
        try:
            yield
        finally:
            self._ignoring = False

    def _seen(self, _module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, Mapping) and TOTALS in output:
            self.add(output[TOTALS], counted=not self._ignoring)

    def add(self, totals: Any, *, counted: bool = True) -> None:
        """Add one output's ``totals`` (checked) to the sums; zeros of their shapes where not
        ``counted``."""
        where = f"model {self.model_name!r}: output['totals']"
        latest: dict[str, torch.Tensor] = {}
        if not self.offers:
            raise UsageError(f"{where} is returned, but the model does not define metrics_from_totals, which turns "
                             "the evaluation's summed totals into metrics; subclass "
                             "deepseek.models.protocol.TrainableModel and define it, or return no 'totals' "
                             "(docs/plugins.md, 'Models')")
        if not isinstance(totals, Mapping) or not totals:
            raise UsageError(f"{where} is {type(totals).__name__}{' (empty)' if isinstance(totals, Mapping) else ''}; "
                             "it must map names to tensors that add up over rows (counts, sums)")
        for name, value in totals.items():
            if not isinstance(name, str) or not isinstance(value, torch.Tensor) or value.is_complex() \
                    or value.dtype == torch.bool:
                got = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a {value.dtype} tensor"
                raise UsageError(f"{where}[{name!r}] is {got}; give each total as a real-valued tensor under a "
                                 "string name (counts or sums over the batch's rows)")
            value = value.detach().to(torch.float64)
            if not counted:
                value = torch.zeros_like(value)
            before = self.sums.get(name)
            if before is not None and before.shape != value.shape:
                raise UsageError(f"{where}[{name!r}] has shape {tuple(value.shape)} here and {tuple(before.shape)} "
                                 "in an earlier batch; a total keeps one shape over the evaluation (pad per-class "
                                 "counts to the number of classes)")
            self.sums[name] = value if before is None else before + value
            latest[name] = value
        if self.batches and set(totals) != set(self.sums):
            raise UsageError(f"{where} names {sorted(totals)} here and {sorted(self.sums)} over earlier batches; "
                             "return the same totals for every batch")
        self.latest = latest
        self.batches += 1


def agreed_sums(sums: dict[str, torch.Tensor], strategy: Strategy, *, model_name: str) -> dict[str, torch.Tensor]:
    """``sums`` (this rank's :attr:`TotalsCapture.sums`) once every rank is known to hold the same
    names and shapes: rank 0's, from ``strategy.broadcast_object``, compared by every rank, and
    ``strategy.any_rank`` of whether they differ. A strategy's ``reduce_sum`` then sums them name
    by name on every rank, or on none where no rank's model returned totals; neither depends on
    one rank's rows (a rank left with no row holds its stand-in's zeros:
    :meth:`TotalsCapture.ignored`). Totals whose names or shapes differ between ranks (chosen by the
    model from its rows or its rank) are one line on every rank. One process: ``sums`` as they are."""
    def shown(held: list[tuple[str, tuple[int, ...]]]) -> str:
        return ", ".join(f"{name!r} of shape {shape}" for name, shape in held) or "none"

    mine = [(name, tuple(value.shape)) for name, value in sorted(sums.items())]
    first = strategy.broadcast_object(mine)
    if strategy.any_rank(mine != first):
        here = (f"{shown(mine)} on rank {strategy.rank} and {shown(first)} on rank 0" if mine != first
                else f"{shown(first)} on rank 0 and differ on another rank")
        raise UsageError(f"model {model_name!r}: output['totals'] are {here}; an evaluation sums them over the "
                         "ranks, so return the same totals (names and shapes) for every batch, whatever its rows "
                         "(pad per-class counts to the number of classes)")
    return sums


def whole_set_metrics(model: nn.Module, sums: Mapping[str, torch.Tensor], *, model_name: str,
                      taken: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``val_<name>`` of what ``model.metrics_from_totals(sums)`` returns, each a real number; a
    name the evaluation reports already (``taken``, the means) is one line."""
    values = model.metrics_from_totals(dict(sums))
    where = f"model {model_name!r}: metrics_from_totals"
    if not isinstance(values, Mapping):
        raise UsageError(f"{where} returned {type(values).__name__}; it must return a mapping of metric names to "
                         "numbers (0-dim tensors or floats)")
    out: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
            value = float(value.detach().float().reshape(()))
        if not isinstance(name, str) or not name or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where} returned {name!r}: {type(value).__name__}; give each metric a non-empty "
                             "string name and a real number (a 0-dim tensor or a float)")
        key = f"val_{name}"
        if key in (taken or {}):
            raise UsageError(f"{where} returned {name!r}, which the evaluation reports already as {key} (a mean "
                             "over batches); rename one of them")
        out[key] = float(value)
    return out
