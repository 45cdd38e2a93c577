"""What data ``multimodal.classifier`` takes: the check of a dataset's first validation batch
before anything trains (``TrainableModel.check_data``), each refusal one line naming what to change."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from deepseek.config.toml_files import holds_in_toml, toml_value
from deepseek.errors import UsageError
from deepseek.models.protocol import Batch
from deepseek.plugins.calls import broken_answer, model_calls
from deepseek_enterprise.multimodal import MODALITIES


def carried_modalities(batch: Batch) -> list[str]:
    """The modalities of ``multimodal.classifier`` (vision, audio, text, in that order) that
    ``batch`` carries: an entry of its own and a flag in ``present``. This is how a dataset
    declares its modalities (docs/multimodal.md section 1), and the ``model.modalities`` a config
    may name with it are a non-empty subset of these."""
    present = batch.get("present")
    return [m for m in MODALITIES if m in batch and m in present] if isinstance(present, Mapping) else []


def keys_for_batch(batch: Batch, build: Callable[[Mapping[str, Any]], Any]) -> dict[str, Any]:
    """``multimodal.classifier``'s ``TrainableModel.keys_for_batch``: the ``modalities`` ``batch``
    carries (:func:`carried_modalities`), as a config of a dataset of vision and text only names
    them, and the tables of its encoders that follow their inputs' shapes (:func:`encoder_keys_for`
    of the model ``build`` makes with those modalities); none for a batch of no modality."""
    carried = carried_modalities(batch)
    if not carried:
        return {}
    keys: dict[str, Any] = {"modalities": carried}
    return {**keys, **encoder_keys_for(build(keys), batch)}


def encoder_keys_for(model: Any, batch: Batch) -> dict[str, dict[str, Any]]:
    """The ``[model.<modality>]`` tables that would make the encoders of ``model`` (a
    :class:`~deepseek_enterprise.multimodal.MultimodalClassifier`) take ``batch``'s inputs where
    their shape is what an encoder refuses: each such modality's table as the model has it, with
    the keys its encoder's ``keys_for_inputs`` gives on top (an image size, a frame width). The
    contract tests build the model with them for a dataset's batches (docs/plugins.md section 9),
    and the refusal of such inputs names the keys (:func:`check_batch`)."""
    tables = {}
    for m in model.modalities:
        keys = _encoder_keys(model, m, batch)
        if keys:
            tables[m] = {**(getattr(model.options, m) or {}), **keys}
    return tables


ANSWERS = {
    "check_inputs": (lambda a: a is None or isinstance(a, str),
                     "None (the batch is usable) or a str saying what is wrong with it"),
    "keys_for_inputs": (lambda a: isinstance(a, Mapping) and all(isinstance(k, str) and holds_in_toml(v) for k, v in a.items()),
                        "a mapping of its option names to values a config file holds"),
}
"""What each of an encoder's questions about a batch's inputs must return: a check and its words."""


def _asked(model: Any, m: str, method: str, entry: Mapping[str, Any]) -> Any:
    """The answer of the encoder of modality ``m`` to ``method`` (``check_inputs`` or
    ``keys_for_inputs``) for ``entry``'s inputs, held to its contract (:data:`ANSWERS`). What it
    raises, or an answer of another kind, is its plugin's bug: one :class:`PluginError` naming the
    encoder and the method, never read as the data's fault."""
    label = model.encoder_labels[m]
    with model_calls(model.encoders[m], label, method):
        answer = getattr(model.encoders[m], method)(entry["inputs"], entry.get("padding_mask"))
    accepts, wanted = ANSWERS[method]
    if not accepts(answer):
        raise broken_answer(label, f"{method} returned {answer!r:.60} ({type(answer).__name__}), not {wanted} "
                                   "(docs/multimodal.md section 2)")
    return answer


def _encoder_keys(model: Any, m: str, batch: Batch) -> dict[str, Any]:
    """What the encoder of modality ``m`` answers for ``batch``'s inputs (``keys_for_inputs``)."""
    entry = batch.get(m)
    if not isinstance(entry, Mapping) or "inputs" not in entry:
        return {}
    return dict(_asked(model, m, "keys_for_inputs", entry))


def check_batch(model: Any, batch: Batch, dataset: Any) -> None:
    """``batch`` (of ``dataset``) must carry every modality ``model`` (a
    :class:`~deepseek_enterprise.multimodal.MultimodalClassifier`) uses, finite inputs its encoders
    take, a ``label`` within its classes, and at least one of its modalities present."""
    missing = [m for m in model.modalities if m not in batch or m not in batch.get("present", {})]
    name = type(dataset).__name__
    if missing:
        carried = carried_modalities(batch)
        if not carried:
            raise UsageError(f"data: batches of dataset {name} lack {missing}, the modalities model "
                             f"multimodal.classifier uses; set data.name to a multimodal dataset (multimodal.digits "
                             "or a plugin's, docs/multimodal.md section 4)")
        raise UsageError(f"model.modalities: {model.modalities} includes {missing}, which batches of dataset {name} "
                         f"lack; set model.modalities to a subset of those it carries, {carried}, or use a "
                         f"dataset with {missing}")
    if "label" not in batch:
        raise UsageError(f"data: batches of dataset {name} have no 'label', which model multimodal.classifier "
                         "trains on; use a dataset that labels its samples (docs/multimodal.md)")
    for m in model.modalities:
        problem = _asked(model, m, "check_inputs", batch[m])  # a True is not the data's fault
        if problem:
            keys = _encoder_keys(model, m, batch)
            hint = "; set " + ", ".join(f"model.{m}.{k} = {toml_value(v)}" for k, v in keys.items()) if keys else ""
            raise UsageError(f"model.{m}: encoder {getattr(model.options, f'{m}_encoder')}: {problem} "
                             f"(dataset {type(dataset).__name__}){hint}")
        # Encoders run on every row, absent ones included: a NaN there (a common "missing"
        # marker) would make the loss NaN and read as a diverged run.
        x = batch[m]["inputs"]
        bad = ~torch.isfinite(x).flatten(1).all(1) if torch.is_tensor(x) and x.is_floating_point() else None
        if bad is not None and bool(bad.any()):
            raise UsageError(f"data: dataset {name} gives non-finite {m} inputs (NaN or inf) in {int(bad.sum())} "
                             f"of {bad.numel()} rows, {int((bad & ~batch['present'][m].bool()).sum())} of them "
                             f"marked absent in present; encoders run on every row, so the loss would be NaN: "
                             "give an absent modality finite inputs, such as zeros (docs/multimodal.md section 1)")
    label, n = batch["label"], model.options.num_classes
    if label.numel() and int(label.max()) >= n:
        raise UsageError(f"model.num_classes: {n}, but dataset {type(dataset).__name__} has label "
                         f"{int(label.max())}; set model.num_classes to at least {int(label.max()) + 1}")
    if label.numel() and int(label.min()) < 0:
        raise UsageError(f"data: dataset {type(dataset).__name__} has label {int(label.min())}; labels must be "
                         f"0..num_classes-1")
    if not any(bool(batch["present"][m].any()) for m in model.modalities):
        raise UsageError(f"data: no sample of dataset {type(dataset).__name__} has any modality of this model "
                         f"({', '.join(model.modalities)}) present (data.missing?); leave at least one of them out "
                         "of data.missing")
