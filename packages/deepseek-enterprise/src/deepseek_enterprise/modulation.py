"""On-the-fly gradient modulation of ``multimodal.classifier``'s encoders (``[model]
gradient_modulation``), after the idea of Peng et al., "Balanced Multimodal Learning via On-the-fly
Gradient Modulation" (CVPR 2022), written for this model and any number of modalities.

In joint training the modality that is easiest to fit (on the digits' redundant task, the audio)
makes the fused loss small early, and the other encoders then learn less than they would alone
("modality competition"). The rule slows the dominant modality's encoder down on each training
batch:

- each modality's score ``s_m`` is the mean, over the batch's rows that show the modality (after
  modality dropout) and carry its own label, of its own classifier's softmax probability of that
  label (the fusion method's ``modality_logits``; taken without gradient);
- its ratio ``r_m = s_m / mean(s_n for the other scored modalities)``;
- its encoder's gradient is multiplied by ``k_m = 1 - tanh(alpha * (r_m - 1))`` where ``r_m > 1``
  and left as it is (``k_m = 1``) elsewhere, ``alpha`` the key's value.

``k_m`` is continuous at ``r_m = 1`` (the paper's form, ``1 - tanh(alpha * r_m)``, jumps there),
and the paper's Gaussian noise on the modulated gradients (its "GE") is not added. The factor
multiplies the whole gradient that reaches the encoder's output features (every loss term's), so
each parameter of the encoder gets ``k_m`` times its gradient; the projections, the modality
classifiers and the fusion method's own parts are not scaled. It acts in training only, is computed
on the batch the model is called on (a micro-batch with ``train.grad_accum``, each rank's shard
under a data-parallel strategy: like the training metrics, it depends on how the batch is split),
and does nothing with one modality, one scored modality, or an encoder that does not train
(``freeze_pretrained``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def check_alpha(value: float) -> str | None:
    """What is wrong with a ``gradient_modulation`` value, or ``None``."""
    return None if math.isfinite(value) and value >= 0 else "must be a finite number >= 0 (0: off)"


@torch.no_grad()
def coefficients(modality_logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
                 scored: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Each modality's gradient factor ``k_m`` (a 0-d tensor; the rule of the module docstring):
    ``labels[m]`` the modality's own label per row, ``scored[m]`` (bool, per row) the rows it is
    scored on."""
    names = list(modality_logits)
    scores, counted = [], []
    for m in names:
        probs = modality_logits[m].float().softmax(-1).gather(1, labels[m].clamp_min(0).unsqueeze(1)).squeeze(1)
        rows = scored[m].float()
        scores.append((probs * rows).sum() / rows.sum().clamp_min(1.0))
        counted.append(rows.sum() > 0)
    s, valid = torch.stack(scores), torch.stack(counted)
    others = (s * valid).sum() - s * valid  # each modality's score left out of the sum
    n_others = valid.sum() - valid.long()
    ratio = s / (others / n_others.clamp_min(1)).clamp_min(1e-12)
    slowed = valid & (n_others > 0) & (ratio > 1)
    k = torch.where(slowed, 1 - torch.tanh(alpha * (ratio - 1)), torch.ones_like(ratio))
    return {m: k[i] for i, m in enumerate(names)}


def modulate(features: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]) -> None:
    """Multiply, in backward, the gradient reaching each modality's encoder ``features`` by its
    factor (features that take no gradient, a frozen encoder's, are left alone)."""
    for m, tensor in features.items():
        if tensor.requires_grad:
            k = factors[m]
            tensor.register_hook(lambda grad, k=k: grad * k.to(grad.dtype))
