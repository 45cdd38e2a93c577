"""Contract every registered compressor meets, whoever registered it (kind ``compressor``, added
by deepseek-enterprise; docs/compress.md, 'Writing a compressor').

Each compressor, created from its defaults, is handed a trained-run-like model of every registered
model (built from its defaults at the contract's small sizes, :mod:`_pairing`, paired with the first
registered dataset it takes, with the keys that follow that dataset's batches as the model suite
builds it: ``_pairing.batch_keys``, a ``multimodal.classifier`` of the modalities they carry; fresh
and in eval mode on the CPU) as ``deepseek compress --method``
hands it one: its ``check_model``, then ``apply`` with the dataset's first training batches as
calibration, through the command's own checks (``run_step``: a ``Compressed`` whose ``[model]``
table rebuilds the returned model's class, keys and shapes, and the input left as it was). For
each model it takes:

- the returned model evaluates on the dataset's first validation batch (the command's
  ``evaluate_in_process``) with a finite loss and finite metrics;
- a size figure its record states (``parameters``, ``linear_weight_bytes``:
  ``deepseek_enterprise.compress.compressor.FIGURES``) is ``[input's, result's]`` as
  ``model_figures`` measures the two models.

A model it cannot take is refused with one line (a ``UsageError`` from ``check_model`` or
``apply``), never a crash. A compressor that takes none of the registered models is skipped,
saying why for each; register a model (and a dataset it takes) that it applies to in the same
plugin (a first-party edition's compressor is skipped saying it is that edition's own, nothing for
the plugin under test to do). Skipped where no edition adds the kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _advice import advice_for
from _contract_data import OwnData
from _pairing import batch_keys, pair_table, qualified_names

from deepseek.errors import DeepseekError, PluginError, UsageError
from deepseek.plugins.host import get_host

HOST = get_host()
COMPRESSORS = HOST.components("compressor") if "compressor" in HOST.known_kinds() else []
CALIBRATION = 2
"""Training batches handed to a compressor (``deepseek compress --calibration-batches``)."""

if not COMPRESSORS:
    pytest.skip("no compressors registered here (deepseek-enterprise adds the kind)", allow_module_level=True)


@dataclass
class Subject:
    """A registered model's run as ``deepseek compress`` reads one: its config, the first
    validation batch and the calibration batches of the first registered dataset it takes."""

    config: Any
    val: list[Any]
    calibration: list[Any]
    host: Any = HOST

    def model(self) -> torch.nn.Module:
        """The model, built afresh (seeded from the config) in eval mode on the CPU."""
        from deepseek.training.build import build_model

        return build_model(self.config, host=self.host).eval()


class Subjects:
    """Each registered model's :class:`Subject`, made once for the module, or why there is none."""

    def __init__(self, folder: Path, own: OwnData, host: Any = HOST) -> None:
        self.folder, self.own, self.host = folder, own, host
        self._made: dict[str, Subject | str] = {}

    def get(self, model: str) -> Subject | str:
        if model not in self._made:
            self._made[model] = self._make(model)
        return self._made[model]

    def _make(self, model: str) -> Subject | str:
        from deepseek.config.load import config_from_dict
        from deepseek.models.checks import check_model_data
        from deepseek.training.build import build_dataset

        host, reasons = self.host, []
        for data in qualified_names("dataset", host=host):
            place = self.folder / f"{model}-{data}".replace(".", "_").replace(":", "-")
            place.mkdir(parents=True, exist_ok=True)
            try:
                config = config_from_dict(pair_table(host, model, data, place, self.own), host=host)
                dataset = build_dataset(config, host)
                val = dataset.validation_batches(1)
                # the model keys that follow the batches (a classifier's modalities): as the model suite
                follows = batch_keys(host, model, dataset, val[0])
                if follows:
                    config = config_from_dict(pair_table(host, model, data, place, self.own, follows), host=host)
                subject = Subject(config, val, [next(dataset) for _ in range(CALIBRATION)], host)
                check_model_data(subject.model(), subject.val[0], dataset, model_name=model)
            except DeepseekError as exc:  # data it does not take, or a model or dataset not made here
                reasons.append(f"{data}: {str(exc).splitlines()[0]}")
                continue
            return subject
        return "; ".join(reasons) or "no dataset is registered"


@pytest.fixture(scope="module")
def subjects(tmp_path_factory: pytest.TempPathFactory, contract_data: OwnData) -> Subjects:
    return Subjects(tmp_path_factory.mktemp("compressor-subjects"), contract_data)


def _check_result(name: str, model_name: str, given: torch.nn.Module, result: Any, config: Any,
                  subject: Subject) -> None:
    from deepseek.training.evaluation import evaluate_in_process
    from deepseek_enterprise.compress.compressor import FIGURES, model_figures

    where = f"compressor {name} on model {model_name!r}"
    with torch.no_grad():
        values = evaluate_in_process(result.model, subject.val, device=torch.device("cpu"),
                                     model_name=config.model.name)
    bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
    assert not bad, (f"{where}: the model it returned evaluates to non-finite values {bad} on the first validation "
                     "batch; a compressed model must still run (docs/compress.md, 'Writing a compressor')")
    before, after = model_figures(given), model_figures(result.model)
    for key in FIGURES:
        if key in result.record:
            assert result.record[key] == [before[key], after[key]], (
                f"{where}: its record states {key} = {result.record[key]!r}, but the model it was given and the one it "
                f"returned have {[before[key], after[key]]}; state [input's, result's] as "
                "deepseek_enterprise.compress.compressor.model_figures measures them (docs/compress.md, "
                "'Writing a compressor')")


def untaken_reason(comp: Any, refused: dict[str, str]) -> str:
    """Why compressor ``comp`` (a registered component) is skipped: it took none of the models,
    each refused as ``refused`` says; the advice ends for whoever reads it (:func:`advice_for`)."""
    fix = "register a model it applies to, and a dataset that model takes, in the same plugin, and this check compresses it"
    return (f"compressor {comp.qualified_name} takes none of the registered models here ("
            + "; ".join(f"{m}: {r}" for m, r in refused.items()) + f"); {advice_for(comp, fix)}")


@pytest.mark.parametrize("comp", COMPRESSORS, ids=[c.qualified_name for c in COMPRESSORS])
def test_compressor_keeps_the_contract(comp, subjects: Subjects) -> None:  # noqa: ANN001
    from deepseek_enterprise.compress.compressor import (
        StepContext,
        check_applies,
        create_compressor,
        run_step,
    )

    compressor = create_compressor(HOST, comp.qualified_name, {}, where=f"compressor {comp.qualified_name}")
    taken, refused = [], {}
    for model_name in qualified_names("model", host=HOST):
        subject = subjects.get(model_name)
        if isinstance(subject, str):
            refused[model_name] = f"not made here ({subject})"
            continue
        given = subject.model()
        try:
            check_applies(compressor, given, subject.config)
            result, config = run_step(HOST, compressor, given, subject.config, StepContext(list(subject.calibration)))
        except PluginError:  # the command's own check of the result: a broken contract
            raise
        except UsageError as exc:  # a refusal (a DeepseekError writes line breaks as escapes: one line)
            line = str(exc)
            assert line.strip(), (
                f"compressor {comp.qualified_name} refuses model {model_name!r} with an empty message; refuse in one "
                "line saying what it takes (docs/compress.md, 'Writing a compressor')")
            refused[model_name] = line
            continue
        _check_result(comp.qualified_name, model_name, given, result, config, subject)
        taken.append(model_name)
    if not taken:
        pytest.skip(untaken_reason(comp, refused))
