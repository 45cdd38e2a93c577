"""``deepseek multimodal eval``: a trained multimodal classifier on a split of its dataset, with
modalities hidden on demand: fused accuracy, each modality's own classifier's accuracy, the
confusion matrix (printed, and drawn to a PNG on request)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError


def split_report(checkpoint: str, *, split: str, missing: tuple[str, ...], device: Any, host: Any) -> dict[str, Any]:
    """Predictions of the checkpoint's model on every batch of ``split`` of its run's dataset
    (``missing``: modalities hidden), summarised: ``accuracy``, ``accuracy_<modality>`` (modalities
shown),
    ``confusion`` (rows: true class, columns: predicted), ``samples``."""
    import torch

    from deepseek.data.batch import move_to
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
    options = dataclasses.replace(dataset.options, missing=tuple(missing))
    dataset = MultimodalDigits(options, batch_size=dataset.batch_size, seed=dataset.seed)
    classes = model.options.num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    right = {m: 0 for m in model.modalities if m not in missing}
    total = 0
    for batch in dataset.split_batches(split):
        batch = move_to(batch, next(model.parameters()).device)
        out = model.predict(batch)
        label = batch["label"]
        pred = out.logits.argmax(-1)
        confusion += torch.bincount(label.cpu() * classes + pred.cpu(), minlength=classes * classes).view(classes, classes)
        for m in right:
            right[m] += int((out.modality_logits[m].argmax(-1) == label).sum())
        total += len(label)
    report: dict[str, Any] = {"checkpoint": checkpoint, "step": state.get("step"), "split": split,
                              "missing": list(missing), "samples": total,
                              "accuracy": float(confusion.diag().sum()) / total}
    for m, n in right.items():
        report[f"accuracy_{m}"] = n / total
    report["confusion"] = confusion.tolist()
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as text: accuracies, then the confusion matrix."""
    hidden = f", hidden: {', '.join(report['missing'])}" if report["missing"] else ""
    lines = [f"{report['split']} split, {report['samples']} samples (step {report['step']}{hidden})",
             f"accuracy {100 * report['accuracy']:.1f}%"]
    lines += [f"  {key.removeprefix('accuracy_')} classifier alone {100 * value:.1f}%"
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
