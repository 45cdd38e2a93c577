"""``deepseek multimodal eval``: a trained multimodal classifier on a split of its dataset, with
modalities hidden on demand: fused accuracy, each modality's own classifier's accuracy, the
confusion matrix (printed, and drawn to a PNG on request)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError


def parse_logit_weights(text: str) -> dict[str, float]:
    """``--logit-weights NAME=NUMBER,...`` as a dict (one-line :class:`UsageError` otherwise)."""
    import math

    weights: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not key:
            raise UsageError(f"--logit-weights: {part.strip()!r} is not NAME=NUMBER; give e.g. fused=1.0,audio=0.4")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UsageError(f"--logit-weights: {key}={value!r} is not a finite number; give e.g. {key}=0.5")
        from deepseek_enterprise.multimodal import logit_weight_problem

        problem = logit_weight_problem(number)
        if problem:
            raise UsageError(f"--logit-weights: {key}={problem}")
        if key in weights:
            raise UsageError(f"--logit-weights: {key} is given twice; give each name once")
        weights[key] = number
    return weights


def split_report(checkpoint: str, *, split: str, missing: tuple[str, ...], device: Any, host: Any,
                 logit_weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Predictions of the checkpoint's model on every batch of ``split`` of its run's dataset
    (``missing``: modalities hidden; ``logit_weights``: evaluated with these instead of the run's
    ``[model] logit_weights``), summarised: ``accuracy``, ``accuracy_<modality>`` (modalities
    shown, each against its own label: the digit it shows), ``confusion`` (rows: true class,
    columns: predicted), ``samples``, and the ``logit_weights`` the model was evaluated with."""

    from deepseek.training.build import build_dataset
    from deepseek.training.inference import load_trained
    from deepseek_enterprise.digits.dataset import MultimodalDigits
    from deepseek_enterprise.multimodal import MultimodalClassifier

    model, config, state = load_trained(checkpoint, device, need_data=True, host=host)
    if not isinstance(model, MultimodalClassifier):
        raise UsageError(f"--checkpoint: {checkpoint} holds model {config.model.name!r}; "
                         "'multimodal eval' reads multimodal.classifier runs (use 'deepseek eval' for others)")
    dataset = build_dataset(config, host)
    if not isinstance(dataset, MultimodalDigits):
        raise UsageError(f"--checkpoint: the run trained on dataset {config.data.name!r}; 'multimodal eval' "
                         "reads multimodal.digits runs (use 'deepseek eval' for others)")
    unknown = [m for m in missing if m not in model.modalities]
    if unknown:
        raise UsageError(f"--missing: {', '.join(unknown)} is not a modality of this model; "
                         f"use some of {', '.join(model.modalities)}")
    if len(set(missing)) >= len(model.modalities):
        raise UsageError(f"--missing: hides every modality of this model ({', '.join(model.modalities)}); "
                         "leave at least one")
    if logit_weights is not None:
        from deepseek_enterprise.calibration import with_logit_weights
        from deepseek_enterprise.multimodal import unknown_logit_weight

        unknown = unknown_logit_weight(logit_weights, model.modalities)
        if unknown is not None:
            raise UsageError(f"--logit-weights: {unknown} is not 'fused' or a modality of this model "
                             f"({', '.join(model.modalities)}); name those only")
        with_logit_weights(model, logit_weights)
    options = dataclasses.replace(dataset.options, missing=tuple(missing))
    dataset = MultimodalDigits(options, batch_size=dataset.batch_size, seed=dataset.seed)
    return {"checkpoint": checkpoint, "step": state.get("step"), "logit_weights": dict(model.options.logit_weights),
            **evaluate_split(model, dataset, split)}


def evaluate_split(model: Any, dataset: Any, split: str) -> dict[str, Any]:
    """``model`` (a multimodal classifier, in eval mode for the call) on every batch of ``split``
    of ``dataset`` (its ``missing`` modalities hidden): ``split``, ``missing``, ``samples``,
    ``accuracy``, ``accuracy_<modality>`` and ``confusion``."""
    import torch

    from deepseek.data.batch import move_to
    from deepseek_enterprise.multimodal import IGNORE

    missing = dataset.options.missing
    classes = model.options.num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    right = {m: 0 for m in model.modalities if m not in missing}
    scored = dict(right)
    total = 0
    was_training = model.training
    model.eval()
    try:
        for batch in dataset.split_batches(split):
            batch = move_to(batch, next(model.parameters()).device)
            out = model.predict(batch)
            label = batch["label"].cpu()
            pred = out.logits.argmax(-1).cpu()
            confusion += torch.bincount(label * classes + pred, minlength=classes * classes).view(classes, classes)
            for m in right:
                own = batch["modality_labels"][m]
                has = (own != IGNORE) & batch["present"][m].bool()  # as deepseek eval counts them
                right[m] += int(((out.modality_logits[m].argmax(-1) == own) & has).sum())
                scored[m] += int(has.sum())
            total += len(label)
    finally:
        model.train(was_training)
    report: dict[str, Any] = {"split": split, "missing": list(missing), "samples": total,
                              "accuracy": float(confusion.diag().sum()) / total}
    for m, n in right.items():
        if scored[m]:
            report[f"accuracy_{m}"] = n / scored[m]
    report["confusion"] = confusion.tolist()
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as text: accuracies, then the confusion matrix."""
    hidden = f", hidden: {', '.join(report['missing'])}" if report["missing"] else ""
    lines = [f"{report['split']} split, {report['samples']} samples (step {report['step']}{hidden})",
             f"accuracy {100 * report['accuracy']:.1f}%"]
    if report.get("logit_weights"):
        lines[0] += ", logit_weights " + ", ".join(f"{k}={v:g}" for k, v in report["logit_weights"].items())
    lines += [f"  {key.removeprefix('accuracy_')} head, against its own label: {100 * value:.1f}%"
              for key, value in report.items() if key.startswith("accuracy_")]
    matrix = report["confusion"]
    width = max(4, len(str(max(max(row) for row in matrix))) + 1)
    lines += ["confusion (rows: true class, columns: predicted)",
              "     " + "".join(f"{c:>{width}}" for c in range(len(matrix)))]
    lines += [f"{r:>4} " + "".join(f"{v:>{width}}" for v in row) for r, row in enumerate(matrix)]
    return "\n".join(lines)


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """The confusion matrix as a PNG (row-normalised colours, counts written in), atomically."""
    import os

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.array(report["confusion"], dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(counts):
        ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=7, color="white" if rates[r, c] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(len(counts)))
    ax.set_yticks(range(len(counts)))
    hidden = f", without {', '.join(report['missing'])}" if report["missing"] else ""
    ax.set_title(f"{report['split']}: accuracy {100 * report['accuracy']:.1f}%{hidden}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
