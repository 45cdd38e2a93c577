"""A registered model called on a registered dataset's batch: what the model contract checks for
every model, whoever registered it (``test_models_contract.py``, ``test_model_batches_contract.py``).

No registration says which data a model takes; the model's own answer does. For each registered
dataset (tiny options, files made for those that read the user's files: :data:`NEEDS_FILES`), the
model is built as a config of the pair builds it (the sizes that follow the data, and the keys a
user sets to what its batches carry, as the model declares them: :func:`batch_keys`,
``multimodal.classifier``'s modalities), and the trainer's data check (:func:`deepseek.models.checks.check_model_data`: the model's
``check_data`` on the first validation batch, then the batch's keys against ``forward``) decides
whether the model takes it. A dataset it takes gives its first training batch to one
``model(**batch)`` on the CPU, and the trainer's own output rule
(:func:`deepseek.models.checks.split_output`) judges what comes back (a model that declares its
metrics, ``metric_names``, reports exactly those); the loss's backward pass
must then reach every trainable parameter (:mod:`_gradients`), unless the model declares that it
does not train (``TrainableModel.not_trainable``); a model that trains also gives a finite loss on
that batch with its parameters alone in bf16, as DeepSpeed's 16-bit engine holds them
(:func:`_sixteen_bit.check_forward_in_16_bits`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from _advice import advice_for
from _contract_data import own_keys
from _gradients import check_every_parameter_trains
from _sixteen_bit import check_forward_in_16_bits

from deepseek.config.components import build_options, options_class
from deepseek.config.data_sizes import DATA_SIZES
from deepseek.config.toml_files import holds_in_toml
from deepseek.data.dataset import Dataset, checked_validation_batches
from deepseek.errors import UsageError
from deepseek.models.capabilities import model_capabilities
from deepseek.models.checks import check_model_data, declared_metrics, split_output
from deepseek.models.declared import training_refusal
from deepseek.models.factory import instantiate_model
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import model_blame
from deepseek.plugins.catalogue import EDITIONS
from deepseek.plugins.records import Component
from deepseek.training.totals import (
    TOTALS,
    TotalsCapture,
    offers_whole_set_metrics,
    whole_set_metrics,
)

ROWS = 4
MODEL_SHRINK = {"d_model": 64, "n_heads": 4, "n_layers": 2, "max_seq_len": 32}
"""The GPT family's size keys, small; given to any model whose ``Options`` has them."""
DATA_SHRINK = {"seq_len": 16, "shuffle_buffer": 16}
"""Dataset keys made small where a dataset's ``Options`` has them (16 positions fit ``max_seq_len``)."""


def _hf_files(folder: Path) -> dict[str, Any]:
    for name in ("a", "b", "c"):
        (folder / f"{name}.jsonl").write_text("".join(
            json.dumps({"text": f"record {i} of {name}: " + "words and more words " * (i % 5)}) + "\n" for i in range(40)))
    return {"files": [str(folder / "a.jsonl"), str(folder / "b.jsonl")], "val_files": [str(folder / "c.jsonl")],
            "seq_len": 16}


NEEDS_FILES = {"deepseek-core:hf": (_hf_files, "datasets")}
"""Core datasets that read the user's files, by qualified name: options made in a folder, and the
library they need."""


def batch_keys(host: Any, name: str, data: Any, batch: Any) -> dict[str, Any]:
    """The ``[model]`` keys of model ``name`` that follow dataset ``data``'s first validation
    ``batch``, as the class registered as the model declares them
    (:meth:`~deepseek.models.protocol.TrainableModel.keys_for_batch`, called with a builder of the
    model at this module's sizes with keys on top; none for a model that declares none): one rule
    for every suite that pairs a model with a dataset. A refusal while working them out is the
    model's ``UsageError``; an answer that is not a mapping of key names to values a config file
    holds fails, naming the model."""
    target = host.resolve("model", name).load()
    if not (isinstance(target, type) and issubclass(target, TrainableModel)):
        return {}
    keys = target.keys_for_batch(batch, lambda keys: _built(host, name, data, dict(keys)))
    assert isinstance(keys, Mapping) and all(isinstance(k, str) and holds_in_toml(v) for k, v in keys.items()), (
        f"model {name!r}: keys_for_batch returned {keys!r:.80}, not a mapping of its [model] keys to values a "
        "config file holds (docs/plugins.md section 10)")
    return dict(keys)


def qualified_names(kind: str, pattern: str | None = None, host: Any = None) -> list[str]:
    """Every component of ``kind`` registered in ``host`` (default: the process's host), aliases
    included, as ``distribution:name``, sorted by name: the names the contract suites look
    components up by and their test ids, so that each distribution's component is tested even where
    two register the same name (a bare name then resolves to neither), and ``pytest tests/contract
    -k DISTRIBUTION:`` selects exactly one plugin's tests (docs/plugins.md section 9). ``pattern``
    is a glob over the bare names (``"text.*"``); a kind no hook registers has none."""
    import fnmatch

    from deepseek.plugins.host import get_host

    host = host or get_host()
    if kind not in host.known_kinds():
        return []
    return [comp.qualified_name for name in host.names(kind) if pattern is None or fnmatch.fnmatch(name, pattern)
            for comp in host.candidates(kind, name)]


def _shrunk(target: Any, shrink: dict[str, Any], *, kind: str, name: str) -> dict[str, Any]:
    keys = {f.name for f in dataclasses.fields(options_class(target, kind=kind, name=name))}
    return {k: v for k, v in shrink.items() if k in keys}


def tiny_model(host: Any, name: str, data: Any = None, batch: Any = None) -> Any:
    """Model ``name`` of ``host`` on the CPU, with :data:`MODEL_SHRINK` where it has those keys and,
    paired with dataset ``data``, the sizes that follow the data (``num_classes``, ``vocab_size``:
    :data:`deepseek.config.data_sizes.DATA_SIZES`) where it has those keys, as a config naming both gets them,
    and, given the dataset's first validation ``batch``, the keys that follow what it carries
    (:func:`batch_keys`)."""
    return _built(host, name, data, batch_keys(host, name, data, batch) if batch is not None else {})


def _built(host: Any, name: str, data: Any, keys: dict[str, Any]) -> Any:
    """Model ``name`` as :func:`tiny_model` makes it, with ``keys`` (a batch's) on top."""
    target = host.resolve("model", name).load()
    keys = {**MODEL_SHRINK, **(_data_sizes(data) if data is not None else {}), **keys}
    return instantiate_model(target, _shrunk(target, keys, kind="model", name=name), name=name,
                             device="cpu", host=host)


def _data_sizes(data: Dataset) -> dict[str, int]:
    """The model keys dataset ``data`` declares from its options (``Dataset.model_num_classes``, ...:
    the methods :data:`~deepseek.config.data_sizes.DATA_SIZES` names, which every ``Dataset`` has)."""
    sizes = {key: getattr(type(data), method)(data.options) for key, (method, _, _) in DATA_SIZES.items()}
    return {key: size for key, size in sizes.items() if size is not None}


def data_table(cls: type, name: str, folder: Path, own: Mapping[str, Mapping[str, Any]] | None = None, *,
               files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``[data]`` keys the contract suites make dataset ``name`` (class ``cls``) with:
    :data:`DATA_SHRINK` where its ``Options`` has those keys, files made in ``folder`` where it
    reads the user's (``files``: qualified name -> maker; default :data:`NEEDS_FILES`'s), then the
    plugin author's own keys for it (``own``: ``--contract-data``, :mod:`_contract_data`; a
    ``dist:name`` key is taken before the bare name, for a name two distributions share). ``name``
    is the dataset's qualified name (``dist:name``)."""
    makers = files if files is not None else {n: make for n, (make, _) in NEEDS_FILES.items()}
    table = _shrunk(cls, DATA_SHRINK, kind="dataset", name=name)
    if name in makers:
        table.update(makers[name](folder))
    table.update(own_keys(dict(own or {}), name))
    return table


def pair_table(host: Any, model: str, data: str, folder: Path,
               own: Mapping[str, Mapping[str, Any]] | None = None, follows: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """The config table of a run of model ``model`` on dataset ``data`` at the sizes this module
    makes them (:data:`MODEL_SHRINK`, the dataset's :func:`data_table` with the author's ``own``
    keys, ``ROWS`` a batch), with ``follows``, the model keys that follow the dataset's batches
    (:func:`batch_keys`); the config fills in the sizes that follow the data, as for any run."""
    target, component = host.resolve("model", model).load(), host.resolve("dataset", data)
    return {"model": {"name": model, **_shrunk(target, {**MODEL_SHRINK, **(follows or {})}, kind="model", name=model)},
            "data": {"name": data, "batch_size": ROWS,
                     **data_table(component.load(), component.qualified_name, folder, own)}}


def tiny_dataset(host: Any, name: str, folder: Path, own: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """Dataset ``name`` of ``host``, ``ROWS`` rows a batch, made with its :func:`data_table` (the
    author's ``own`` keys on top); a one-line error where it cannot be made."""
    component = host.resolve("dataset", name)
    cls = component.load()
    table = data_table(cls, component.qualified_name, folder, own)
    return cls(build_options(cls, table, kind="dataset", name=name, path="data"), batch_size=ROWS, seed=0)


def _whole_set(model: Any, output: Any, name: str, means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The whole-set metrics of one output's ``"totals"`` (docs/plugins.md section 10), named as
    ``metric_names`` declares them, checked by the evaluation's own rules (one-line ``UsageError``)."""
    capture = TotalsCapture(model, model_name=name, offers=offers_whole_set_metrics(model))
    if not isinstance(output, Mapping) or TOTALS not in output:
        return {}
    capture.add(output[TOTALS])
    values = whole_set_metrics(model, capture.sums, model_name=name, taken={f"val_{k}": v for k, v in means.items()})
    return {key.removeprefix("val_"): torch.tensor(value) for key, value in values.items()}


@dataclasses.dataclass
class Calls:
    """What :func:`call_on_batches` found: each dataset the model took with its output
    (``(loss, metrics)``), and why every other dataset was left out, both by the datasets'
    qualified names (``deepseek-core:text``)."""

    model: Component
    """The model's registration: whose it is decides whom a skip reason's advice is for
    (:func:`_advice.advice_for`)."""
    outputs: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]
    refused: dict[str, str]
    unfit: dict[str, str] = dataclasses.field(default_factory=dict)
    """Those of ``refused`` whose batches are of the kind the model reads (:func:`batch_keys` found
    keys for them, or the model refused while working them out: a multimodal dataset for
    ``multimodal.classifier``), refused all the same."""
    not_built: str | None = None
    """Why the model could not be built from its defaults (it needs the user's files: ``distill``
    its teacher's run folder), in which case no dataset was tried."""

    def skip_reason(self, name: str) -> str:
        if self.not_built is not None:
            return (f"model {name!r} cannot be built from its defaults ({self.not_built}), so model(**batch) is "
                    "not checked here; its own tests must call it on a batch")
        why = "; ".join(f"{d}: {r}" for d, r in self.refused.items()) or "none is registered"
        fix = ("register a dataset whose batches it takes (its check_data accepts them, its forward takes their "
               "keys) in the same plugin, and this check calls the model on its first batch")
        return (f"model {name!r}: no registered dataset's batches fit it ({why}), so model(**batch) is not checked; "
                + advice_for(self.model, fix))

    def unchecked_reason(self, name: str) -> str | None:
        """Why model ``name``, called on some datasets, was not called on one whose batches are of
        the kind it reads (:attr:`unfit`), or ``None``: a pass would hide that it checked nothing
        for that dataset."""
        if not self.unfit:
            return None
        if any(d.partition(":")[0] not in EDITIONS for d in self.unfit):  # a plugin's dataset: its author acts
            fix = "make the dataset's batches what the model takes, or register a model of your own that takes them"
        else:  # first-party datasets: the model's author, if a plugin's
            fix = advice_for(self.model, "make the model take their batches (its check_data accepts them, its "
                             "forward takes their keys)")
        return (f"model {name!r} refuses dataset(s) whose batches carry what it reads, so model(**batch) is not "
                "checked on them: " + "; ".join(f"{d}: {r}" for d, r in self.unfit.items())
                + f" (checked on {', '.join(self.outputs)}); {fix} (docs/plugins.md section 9)")


class FirstBatches:
    """Each registered dataset of a host made once (tiny, files in ``folder``, the author's ``own``
    keys on top: :func:`data_table`) with its first
    validation and training batches, or the one line that says why it cannot be made here: every
    model of a test module is called on the same batches, and a slow dataset is built once."""

    def __init__(self, host: Any, folder: Path, own: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.host, self.folder, self.own = host, folder, own
        self._made: dict[str, tuple[Any, Any, Any] | str] = {}

    def get(self, data_name: str) -> tuple[Any, Any, Any] | str:
        """``(dataset, first validation batch, first training batch)`` or why it cannot be made."""
        if data_name not in self._made:
            place = self.folder / data_name.replace(".", "_").replace(":", "-")
            place.mkdir(parents=True, exist_ok=True)
            try:
                data = tiny_dataset(self.host, data_name, place, self.own)
                self._made[data_name] = (data, checked_validation_batches(data, 1)[0], next(data))
            except UsageError as exc:
                self._made[data_name] = str(exc).splitlines()[0]
        return self._made[data_name]


def call_on_batches(host: Any, name: str, folder: Path, batches: FirstBatches | None = None) -> Calls:
    """Model ``name`` called on the first training batch of every dataset of ``host`` it takes
    (``batches``: the datasets made already, shared by a test module's models; else made in
    ``folder``). A broken answer (an output without a 0-dim loss, a ``check_data`` that returns
    something, a ``metric_names()`` of no names) fails with the trainer's line, read in the model's
    block (a plugin model's ``PluginError`` naming it); a reserved metric name with its one-line
    UsageError; a non-finite loss or metric fails."""
    batches = batches or FirstBatches(host, folder)
    calls = Calls(host.resolve("model", name), {}, {})
    try:
        tiny_model(host, name)
    except UsageError as exc:  # a required file of the user's (a teacher run): one line says which
        calls.not_built = str(exc).splitlines()[0]
        return calls
    for data_name in qualified_names("dataset", host=host):
        made = batches.get(data_name)
        if isinstance(made, str):  # a dataset that cannot be made here
            calls.refused[data_name] = made
            continue
        data, val, train = made
        torch.manual_seed(0)
        keys = None
        try:  # the batch's keys worked out and the model built with them (either may be refused)
            keys = batch_keys(host, name, data, val)
            model = _built(host, name, data, keys)
            blame = model_blame(host.resolve("model", name), model)  # a broken answer: one line naming the model
            check_model_data(model, val, data, model_name=name, calls=blame)
        except UsageError as exc:  # one the model refuses
            calls.refused[data_name] = str(exc).splitlines()[0]
            if keys is None or keys:  # batches of the kind it reads (keys for them, or refused working them out)
                calls.unfit[data_name] = calls.refused[data_name]
            continue
        model.train()
        output = model(**train)
        with blame("forward"):
            loss, metrics = split_output(output)
        metrics = {**metrics, **_whole_set(model, output, name, metrics)}
        values = {"loss": loss, **metrics}
        bad = {k: float(v.detach()) for k, v in values.items() if not math.isfinite(float(v.detach()))}
        assert not bad, f"model {name!r} on dataset {data_name!r}: non-finite output {bad}"
        # a model that declares its metrics (TrainableModel.metric_names) reports exactly those:
        # the model built for this dataset (its modalities, say) declares them
        declared = declared_metrics(model, calls=blame)
        assert declared is None or declared == tuple(sorted(metrics)), (
            f"model {name!r} declares metrics {declared} but reports {sorted(metrics)} on dataset {data_name!r}")
        if training_refusal(model, model_name=name) is None:  # one training step reaches every parameter
            # ... and one under DeepSpeed's bf16 (the parameters alone in 16 bits) gives a finite loss
            check_forward_in_16_bits(model, train, f"model {name!r} on dataset {data_name!r}",
                                     "docs/plugins.md section 10")
            loss.backward()
            check_every_parameter_trains(model, where=f"model {name!r} on dataset {data_name!r}",
                                         source=f"the loss on the first training batch of dataset {data_name!r}",
                                         doc="docs/plugins.md section 10; declare TrainableModel.skips_parameters "
                                             "if some steps leave them out, or not_trainable if it does not train",
                                         skips=isinstance(model, TrainableModel) and model.skips_parameters is True)
        calls.outputs[data_name] = (loss, metrics)
        if "serving" in model_capabilities(model):
            _check_serving(model, val, name, data_name)
    return calls


def _check_serving(model: Any, batch: Any, name: str, data_name: str) -> None:
    """What ``deepseek export`` traces for a model with capability ``serving``: its inputs checked as
    the export checks them, and a prediction with a row per row of the batch."""
    from deepseek.data.batch import batch_rows
    from deepseek.graph.serving import serving_inputs

    model.eval()
    with torch.no_grad():
        out = model.serving_forward(serving_inputs(model, batch, name=name))
    assert isinstance(out, torch.Tensor) and out.dim() >= 1 and out.shape[0] == batch_rows(batch), (
        f"model {name!r} on dataset {data_name!r}: serving_forward gave "
        f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, not a row per input row")
    assert torch.isfinite(out.float()).all(), f"model {name!r} on dataset {data_name!r}: non-finite serving_forward"
