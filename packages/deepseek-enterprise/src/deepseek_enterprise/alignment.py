"""Cross-modal alignment of the tri-modal classifier's pooled embeddings (``contrastive_weight``):
a symmetric InfoNCE objective between each pair of modalities, and recall@1 retrieval metrics
(``recall_<a>_<b>``), both over the samples of a batch that have the two modalities (recall needs
two of them at least: one sample is the only candidate for its own retrieval)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def pair_embeddings(pooled: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], modalities: Sequence[str]):
    """``(a, b, za, zb)`` of each pair of modalities: their normalised embeddings of the samples having both."""
    for a, b in itertools.combinations(modalities, 2):
        both = present[a] & present[b]
        yield a, b, F.normalize(pooled[a].float()[both], dim=-1), F.normalize(pooled[b].float()[both], dim=-1)


def contrastive_loss(pooled: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                     modalities: Sequence[str], temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between each pair of modalities, averaged over the pairs (0 on a graph
    for a pair with fewer than two samples)."""
    losses = []
    for _, _, za, zb in pair_embeddings(pooled, present, modalities):
        sim = za @ zb.T / temperature
        target = torch.arange(sim.size(0), device=sim.device)
        losses.append((F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2 if len(target) > 1
                      else sim.sum() * 0.0)
    return torch.stack(losses).mean()


@torch.no_grad()
def retrieval_recall(pooled: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                     modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """Cross-modal recall@1 within the batch (``recall_<a>_<b>``: how often the nearest ``b``
    embedding to a sample's ``a`` embedding is that sample's own), both directions averaged, over
    the samples having both; NaN (not measured, left out of the step record) where fewer than
    :data:`MIN_CANDIDATES` have both."""
    out = {}
    for a, b, za, zb in pair_embeddings(pooled, present, modalities):
        hits, rows = recall_hits(za, zb)
        out[f"recall_{a}_{b}"] = hits / rows if rows else hits.new_full((), float("nan"))
    return out


MIN_CANDIDATES = 2
"""Samples having both modalities that in-batch retrieval needs: with one, its own embedding is
the only candidate and is always "found", so recall would read 1.0 whatever the model learnt
(``deepseek compare``, which evaluates one row at a time, saw nothing else)."""


def recall_hits(za: torch.Tensor, zb: torch.Tensor) -> tuple[torch.Tensor, int]:
    """In-batch recall@1 hits of paired normalised embeddings (both directions averaged) and the
    rows they count, ``(0, 0)`` where fewer than :data:`MIN_CANDIDATES` rows leave nothing to
    retrieve among."""
    if len(za) < MIN_CANDIDATES:
        return za.new_zeros(()), 0
    sim = za @ zb.T
    target = torch.arange(sim.size(0), device=sim.device)
    return ((sim.argmax(1) == target).sum() + (sim.argmax(0) == target).sum()).float() / 2, len(za)
