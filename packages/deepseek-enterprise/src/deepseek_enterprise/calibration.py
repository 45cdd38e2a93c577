"""Calibration of a trained multimodal classifier: its ``logit_weights`` fitted on held-out data.

A trained ``multimodal.classifier`` gives, for every sample, the fusion method's logits and each
present modality's own classifier's logits. :func:`fit_logit_weights` keeps every trained
parameter fixed and fits one scalar per such output (``fused``, ``vision``, ``audio``,
``text``) so that ``sum_k w_k * logits_k`` has the least cross-entropy on the given batches
(L-BFGS, full batch; a handful of numbers fitted on thousands of samples, so they do not
overfit where a trained head would). The result is the model's ``[model] logit_weights``.

Why: models fitted on the same data they are combined on trust each modality as far as it fits
*its training samples*; a modality that generalises worse to unseen sources (speech from an
unheard speaker) is then over-trusted. Weights fitted on data none of the models trained on
(the digits dataset's ``blend`` part: a speaker and images held out of ``fit``) correct that.
Late fusion has no ``fused`` output of its own (it is the mean of the modalities'), so its
weights are the modalities' only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F


def calibration_keys(model: Any) -> list[str]:
    """The outputs ``model``'s weights are fitted for: ``fused`` (unless its fusion is ``late``)
    and each modality."""
    return ([] if model.options.fusion == "late" else ["fused"]) + list(model.modalities)


@torch.no_grad()
def collect_logits(model: Any, batches: Iterable[Any], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, K, C)`` logits of every calibration output (:func:`calibration_keys`; a modality's are
    0 where the sample lacks it) and the ``(N,)`` labels, from ``model`` in eval mode, uncalibrated."""
    from deepseek.data.batch import move_to

    was_training = model.training
    model.eval()
    keys = calibration_keys(model)
    xs, ys = [], []
    try:
        for batch in batches:
            batch = move_to(batch, device)
            out = model.predict(batch, calibrated=False)
            parts = []
            for k in keys:
                if k == "fused":
                    parts.append(out.logits.float())
                else:
                    present = batch["present"][k].bool().float().unsqueeze(-1)
                    parts.append(out.modality_logits[k].float() * present)
            xs.append(torch.stack(parts, 1).cpu())
            ys.append(batch["label"].cpu())
    finally:
        model.train(was_training)
    return torch.cat(xs), torch.cat(ys)


def fit_weights(logits: torch.Tensor, labels: torch.Tensor, keys: list[str], *, max_iter: int = 200) -> dict[str, float]:
    """The weights (one per key) minimising the cross-entropy of ``sum_k w_k * logits[:, k]``,
    starting from the uncalibrated model (``fused`` 1 and the modalities 0, or, without ``fused``,
    every modality 1: late fusion's mean up to scale)."""
    start = [1.0 if (k == "fused" or "fused" not in keys) else 0.0 for k in keys]
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    x, y = logits.double(), labels
    opt = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy((x * w[None, :, None]).sum(1), y)
        loss.backward()
        return loss

    opt.step(closure)
    fitted = w.detach()
    if not torch.isfinite(fitted).all():
        raise ValueError(f"calibration did not converge (weights {fitted.tolist()}); use more or other batches")
    return {k: round(float(v), 6) for k, v in zip(keys, fitted.tolist(), strict=True)}


def fit_logit_weights(model: Any, batches: Iterable[Any], device: Any) -> dict[str, float]:
    """``model``'s ``logit_weights`` fitted on ``batches`` (every trained parameter kept fixed)."""
    logits, labels = collect_logits(model, batches, device)
    return fit_weights(logits, labels, calibration_keys(model))


def with_logit_weights(model: Any, weights: dict[str, float]) -> Any:
    """``model`` with ``logit_weights`` set (its options replaced; the modules are shared)."""
    model.options = dataclasses.replace(model.options, logit_weights=dict(weights))
    return model


def calibration_batches(data_options: Any, *, part: str, batches: int, batch_size: int, seed: int) -> list[Any]:
    """``batches`` training batches (corrupted and augmented as in training) drawn from the
    ``part`` of the digits dataset's training split (``data.train_sources``: ``blend`` for data no
    ``fit`` model saw)."""
    from deepseek_enterprise.digits.dataset import MultimodalDigits

    data = MultimodalDigits(dataclasses.replace(data_options, train_sources=part), batch_size=batch_size, seed=seed)
    return [next(data) for _ in range(batches)]
