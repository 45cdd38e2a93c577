"""The paired bootstrap of ``deepseek compare``: B - A over the same resampled examples.

Means over examples (the loss, a model's per-row metrics) are resampled as per-example
differences (:func:`bootstrap`). Whole-set metrics (a model's ``metrics_from_totals``:
F1 from a confusion matrix, accuracy over the samples that have a modality) are not means over
rows: :func:`whole_set_bootstrap` computes A's and B's value from the totals summed over all the
examples (the point estimate) and, in every resample, from the totals summed over the resampled
examples, the same indices for A and B. Both draw their indices with :func:`draws`, so with the
same seed a mean and a whole-set metric over the same examples see the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 1 << 22
"""Numbers held at once per block of resamples (indices, or resampled totals): memory stays bounded."""

Metrics = Callable[[Mapping[str, torch.Tensor]], Mapping[str, float]]
"""A model's whole-set metrics of summed totals (its ``metrics_from_totals``, checked)."""


@dataclass(frozen=True)
class Estimate:
    """B - A of one quantity: A's and B's values on all the examples, the difference, its 95%
    percentile interval and two-sided p-value over ``resamples`` resamples that measured it."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float
    resamples: int


def draws(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The resamples' indices into ``n`` examples, in ``(k, n)`` blocks of at most :data:`BLOCK`
    numbers: the same draws as one ``(resamples, n)`` call of ``default_rng(seed).integers``."""
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK // n)
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def interval(resampled: np.ndarray) -> tuple[float, float, float]:
    """95% percentile interval of the resampled differences and the two-sided p-value: twice the
    share on the far side of zero, at least one resample's share."""
    low, high = np.percentile(resampled, [2.5, 97.5])
    p = 2 * min(float((resampled <= 0).mean()), float((resampled >= 0).mean()))
    return float(low), float(high), min(1.0, max(p, 1 / len(resampled)))


def bootstrap(a: list[float], b: list[float], *, resamples: int, seed: int) -> tuple[float, float, float, float]:
    """Mean of the paired differences B - A, its 95% percentile interval and the two-sided p-value."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    mean = float(d.mean())
    if np.all(d == 0):
        return mean, 0.0, 0.0, 1.0
    means = np.concatenate([d[idx].mean(axis=1) for idx in draws(len(d), resamples, seed)])
    return (mean, *interval(means))


def resampled_sums(idx: np.ndarray, totals: Mapping[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """Each resample's sums of ``totals`` (each ``(n, *shape)``, one row per example) over the
    examples its row of ``idx`` draws: how often each example is drawn, times the totals, as
    one matrix product per block of resamples."""
    k, n = idx.shape
    counts = np.bincount((idx + n * np.arange(k)[:, None]).ravel(), minlength=k * n).reshape(k, n)
    flat = {name: t.reshape(n, -1) for name, t in totals.items()}
    width = max(1, sum(t.shape[1] for t in flat.values()))
    step = max(1, BLOCK // width)
    for start in range(0, k, step):
        weights = torch.from_numpy(counts[start:start + step]).to(torch.float64)
        sums = [(weights @ t).reshape(-1, *totals[name].shape[1:]).unbind(0) for name, t in flat.items()]
        for each in zip(*sums, strict=True):  # one resample's sums, by name
            yield dict(zip(flat, each, strict=True))


def whole_set_bootstrap(metrics_a: Metrics, totals_a: Mapping[str, torch.Tensor], metrics_b: Metrics,
                        totals_b: Mapping[str, torch.Tensor], *, resamples: int, seed: int) -> dict[str, Estimate]:
    """Whole-set metrics of A and B (``totals_*``: each total per example, ``(n, *shape)``), by
    name: those both measure on all the examples. A resample in which A's or B's resampled totals
    leave a metric out (no drawn example has the class or modality it is about) is skipped for
    that metric; ``resamples`` of its :class:`Estimate` counts those that measured it (none: the
    interval is the point difference and p is 1)."""
    n = len(next(iter(totals_a.values())))
    point_a = metrics_a({k: t.sum(0) for k, t in totals_a.items()})
    point_b = metrics_b({k: t.sum(0) for k, t in totals_b.items()})
    names = [k for k in point_a if k in point_b]
    diffs: dict[str, list[float]] = {k: [] for k in names}
    for idx in draws(n, resamples, seed):
        for sums_a, sums_b in zip(resampled_sums(idx, totals_a), resampled_sums(idx, totals_b), strict=True):
            va, vb = metrics_a(sums_a), metrics_b(sums_b)
            for k in names:
                if k in va and k in vb:
                    diffs[k].append(vb[k] - va[k])
    out = {}
    for k in names:
        diff = point_b[k] - point_a[k]
        resampled = np.asarray(diffs[k], dtype=np.float64)
        low, high, p = interval(resampled) if len(resampled) else (diff, diff, 1.0)
        out[k] = Estimate(point_a[k], point_b[k], diff, low, high, p, len(resampled))
    return out
