"""``deepseek multimodal eval``: a trained multimodal classifier on a split of its dataset, with
modalities hidden on demand: fused accuracy, each modality's own classifier's accuracy, the
confusion matrix (printed, and drawn to a PNG on request)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deepseek import durable
from deepseek.errors import UsageError
from deepseek.names import name_list_problem


def parse_logit_weights(text: str, where: str = "--logit-weights") -> dict[str, float]:
    """Option ``where``'s ``NAME=NUMBER,...`` as a dict (one-line :class:`UsageError` otherwise)."""
    import math

    weights: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not key:
            raise UsageError(f"{where}: {part.strip()!r} is not NAME=NUMBER; give e.g. fused=1.0,audio=0.4")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UsageError(f"{where}: {key}={value!r} is not a finite number; give e.g. {key}=0.5")
        from deepseek_enterprise.multimodal import logit_weight_problem

        problem = logit_weight_problem(number)
        if problem:
            raise UsageError(f"{where}: {key}={problem}")
        if key in weights:
            raise UsageError(f"{where}: {key} is given twice; give each name once")
        weights[key] = number
    from deepseek_enterprise.multimodal import all_zero_logit_weights

    problem = all_zero_logit_weights(weights)
    if problem:
        raise UsageError(f"{where}: {problem}")
    return weights


def split_report(checkpoint: str, *, split: str, missing: tuple[str, ...], device: Any, host: Any,
                 logit_weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Predictions of the checkpoint's model on every batch of ``split`` of its run's dataset
    (``missing``: modalities hidden; ``logit_weights``: evaluated with these instead of the run's
    ``[model] logit_weights``), summarised: ``accuracy``, ``accuracy_<modality>`` (modalities
    shown, each against its own label), ``confusion`` (rows: true class, columns: predicted),
    ``samples``, and the ``logit_weights`` the model was evaluated with. ``multimodal.digits``
    gives its whole ``val`` or ``test`` split; any other dataset (a plugin's, batches of the
    layout of docs/multimodal.md section 1) its validation batches (:func:`plugin_batches`)."""

    from deepseek.models.checks import check_model_data
    from deepseek.training.build import build_dataset
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import check_data_tokenizer, read_source
    from deepseek_enterprise.digits.dataset import MultimodalDigits
    from deepseek_enterprise.multimodal import MultimodalClassifier

    read = read_source(checkpoint)  # read once: the tokenizer its data is held to is the one it checked
    model, config, state = load_trained(read, device, need_data=True, host=host)
    if not isinstance(model, MultimodalClassifier):
        raise UsageError(f"--checkpoint: {checkpoint} holds model {config.model.name!r}; "
                         "'multimodal eval' reads multimodal.classifier runs (use 'deepseek eval' for others)")
    dataset = build_dataset(config, host)
    check_data_tokenizer(read, config, dataset)
    problem = name_list_problem(missing, model.modalities, "modality of this model")
    if problem:
        raise UsageError(f"--missing: {','.join(missing)} {problem}; use some of {', '.join(model.modalities)}, "
                         "each once")
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
    if isinstance(dataset, MultimodalDigits):
        options = dataclasses.replace(dataset.options, missing=tuple(missing))
        batches = MultimodalDigits(options, batch_size=dataset.batch_size, seed=dataset.seed).split_batches(split)
    else:
        batches = plugin_batches(dataset, config, split)
    # The model's own check of the data, as training and 'deepseek eval' make it: inputs its
    # encoders do not take (a [model.vision] img_size the images do not have) are the one line
    # naming the key, not the encoder's error in forward.
    check_model_data(model, batches[0], dataset, model_name=config.model.name)
    if not isinstance(dataset, MultimodalDigits):
        batches = [hidden(batch, missing) for batch in batches]
    return {"checkpoint": checkpoint, "step": state.get("step"), "logit_weights": dict(model.options.logit_weights),
            **evaluate_split(model, batches, split, missing)}


def plugin_batches(dataset: Any, config: Any, split: str) -> list[Any]:
    """The validation batches of a dataset other than ``multimodal.digits`` (``data.eval_batches``
    of them, as ``deepseek eval`` reads them); :func:`split_report` checks them as training checks
    them (the model's ``check_data``: the batch layout of docs/multimodal.md section 1) and then
    marks the ``--missing`` modalities absent (:func:`hidden`). The core dataset contract has no
    test split: ``--split test`` is one line."""
    from deepseek.data.dataset import checked_validation_batches
    from deepseek.training.evaluation import eval_batch_count

    if split != "val":
        raise UsageError(f"--split {split}: dataset {config.data.name!r} gives validation batches only (a held-out "
                         "test split is multimodal.digits'); use --split val")
    batches = checked_validation_batches(dataset, eval_batch_count(config))
    if not batches:
        raise UsageError(f"--checkpoint: dataset {config.data.name!r} gave no validation batches to evaluate")
    return batches


def hidden(batch: Any, missing: tuple[str, ...]) -> Any:
    """``batch`` with the ``missing`` modalities marked absent in ``present`` (the model then
    predicts those rows from the others, as for a sample that lacks them)."""
    present = {**batch["present"], **{m: batch["present"][m].new_zeros(batch["present"][m].shape) for m in missing}}
    return {**batch, "present": present}


def evaluate_split(model: Any, batches: list[Any], split: str, missing: tuple[str, ...] = ()) -> dict[str, Any]:
    """``model`` (a multimodal classifier, in eval mode for the call) on every batch of
    ``batches`` (of ``split``, its ``missing`` modalities hidden): ``split``, ``missing``,
    ``samples``, ``accuracy``, ``accuracy_<modality>`` (over the rows that have the modality and
    its own label: ``modality_labels``, or the class where the batch gives none) and
    ``confusion``."""
    import torch

    from deepseek.data.batch import move_to
    from deepseek_enterprise.multimodal import IGNORE

    classes = model.options.num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    right = {m: 0 for m in model.modalities if m not in missing}
    scored = dict(right)
    total = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = move_to(batch, next(model.parameters()).device)
            out = model.predict(batch)
            label = batch["label"]
            pred = out.logits.argmax(-1)
            confusion += torch.bincount((label * classes + pred).cpu(), minlength=classes * classes).view(classes, classes)
            for m in right:
                own = (batch.get("modality_labels") or {}).get(m, label)  # as the model's forward reads it
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
    durable.replace(tmp, path)
