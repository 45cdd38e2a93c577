"""What an evaluation of ``multimodal.classifier`` measured per modality, over the whole set.

In eval mode the model's ``forward`` returns, instead of per-batch means of ``accuracy_<modality>``
and ``recall_<a>_<b>``, counts that add up over rows (core's ``"totals"``,
:mod:`deepseek.training.totals`): for each modality the samples that have it and its own label
and how many of them its own classifier gets right, for each pair the samples having both and
their in-batch retrieval hits. The evaluation sums them over every batch and data-parallel rank
and hands the sums to :func:`whole_set_metrics` once, so that

- ``accuracy_<modality>`` is the accuracy over the evaluated samples that have the modality (and
  its own label), however they fall into batches; a modality no evaluated sample has is not
  measured and its key is left out rather than reported as 0;
- ``recall_<a>_<b>`` is the recall over the samples having both (each within its own batch, among
  at least two: a batch with one such sample has nothing to retrieve among and counts none), left
  out when no batch measured it (``deepseek compare``, one row per forward, never does);
- ``loss_excludes_<modality>`` states, for a modality no evaluated sample has, that ``val_loss``
  lacks that modality's terms (its own classifier's loss and, with ``contrastive_weight``, the
  InfoNCE of its pairs, which add 0 without samples), so it is lower than the same model's loss
  with the modality present and not comparable with it. Its value is the weight those terms have
  in the loss: ``(aux_loss_weight + 2 * contrastive_weight) / len(modalities)`` (the contrastive
  part only when it is active); reported only when that weight is above 0.

Nothing here is kept on the model: what was measured comes with the data (the batch's ``present``
flags and own labels) through the totals.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch


def metric_names(modalities: Sequence[str], *, aux_loss_weight: float, contrastive_weight: float) -> tuple[str, ...]:
    """Every metric an evaluation may report (``accuracy``, then per modality and pair); the
    per-modality and per-pair ones are left out when the evaluated data did not measure them."""
    names = ["accuracy", *(f"accuracy_{m}" for m in modalities)]
    if contrastive_weight and len(modalities) > 1:
        names += [f"recall_{a}_{b}" for a, b in itertools.combinations(modalities, 2)]
    if excluded_weight(modalities, aux_loss_weight, contrastive_weight) > 0:
        names += [f"loss_excludes_{m}" for m in modalities]
    return tuple(names)


def accuracy_totals(modality: str, right: torch.Tensor, scored: torch.Tensor) -> dict[str, torch.Tensor]:
    """One modality's totals of one batch: ``right`` marks the rows its own classifier got right
    among ``scored``, the rows that have the modality and its own label (bool, ``(B,)`` each)."""
    return {f"right_{modality}": (right & scored).sum(), f"scored_{modality}": scored.sum()}


@torch.no_grad()
def recall_totals(pooled: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                  modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per pair of modalities, the batch's in-batch recall@1 hits (both directions averaged) and
    the samples having both: ``recall_hits_<a>_<b>``, ``recall_rows_<a>_<b>``
    (:func:`deepseek_enterprise.alignment.retrieval_recall` is ``hits / rows``); 0 and 0 for a
    batch with fewer than two such samples, which has nothing to retrieve among."""
    from deepseek_enterprise.alignment import pair_embeddings, recall_hits

    out = {}
    for a, b, za, zb in pair_embeddings(pooled, present, modalities):
        hits, rows = recall_hits(za, zb)
        out[f"recall_hits_{a}_{b}"] = hits
        out[f"recall_rows_{a}_{b}"] = torch.tensor(float(rows), device=za.device)
    return out


def excluded_weight(modalities: Sequence[str], aux_loss_weight: float, contrastive_weight: float) -> float:
    """The weight one modality's terms have in the loss: its own classifier's share of the
    auxiliary mean and, with the contrastive term active, its pairs' share of the InfoNCE mean
    (``len(modalities) - 1`` of the ``len(modalities) * (len(modalities) - 1) / 2`` pairs)."""
    n = len(modalities)
    contrastive = contrastive_weight if n > 1 else 0.0
    return (aux_loss_weight + 2 * contrastive) / n


def whole_set_metrics(totals: Mapping[str, torch.Tensor], modalities: Sequence[str], *, aux_loss_weight: float,
                      contrastive_weight: float) -> dict[str, float]:
    """The metrics of the summed ``totals`` of an evaluation (see the module docstring), by name."""
    out: dict[str, float] = {}
    weight = excluded_weight(modalities, aux_loss_weight, contrastive_weight)
    for m in modalities:
        scored = float(totals[f"scored_{m}"])
        if scored > 0:
            out[f"accuracy_{m}"] = float(totals[f"right_{m}"]) / scored
        elif weight > 0:
            out[f"loss_excludes_{m}"] = weight
    for a, b in itertools.combinations(modalities, 2):
        rows = totals.get(f"recall_rows_{a}_{b}")
        if rows is not None and float(rows) > 0:
            out[f"recall_{a}_{b}"] = float(totals[f"recall_hits_{a}_{b}"]) / float(rows)
    return dict(sorted(out.items()))  # in name order, as the evaluation lists the means
