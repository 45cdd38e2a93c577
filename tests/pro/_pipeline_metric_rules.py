"""Pipeline models (``_pipeline_rule_models.py``) whose metrics and evaluations follow
``single``'s rules, given to ``deepseek.fit`` one after the other (test helper; :func:`attempt`
runs one under ``single`` too). A name of ``PLUGIN_MODELS``: that plugin's model, registered by
:class:`Acme` (:func:`plugin_attempt`); a name ``Served<plugin model>`` (``ServedPluginEvalBug``):
``deepseek eval --strategy pipeline``'s evaluation of that plugin model (:func:`served_attempt`);
a name of ``DECODING_MODELS``: ``deepseek generate --strategy pipeline``'s decoding of that plugin
model, whose code raises on one stage while decoding (:func:`generated_attempt`).

Usage: ``python tests/pro/_pipeline_metric_rules.py OUT [MODEL ...]`` under torchrun. Rank r
writes ``OUT/messages-r.json`` after each model: ``{model: record}`` (``_metric_rules_fit.fit_record``:
the error raised, ``raised_in``, the function its traceback ends in, and a RankError's ``type_name``,
or ``type`` None, each step's record without its timings and the last evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from _metric_rules_fit import FIT_CONFIG, fit_record, probe_main
from _pipeline_rule_models import (  # noqa: F401 - the lines: what test_pipeline_metric_rules reads from here
    BUG_LINE,
    DECODING_MODELS,
    FIRST_STAGE_LINE,
    LAST_STAGE_LINE,
    MODELS,
    PLUGIN_MODELS,
)

from deepseek import hookimpl


class Acme:
    """The plugin registering ``PLUGIN_MODELS`` and ``DECODING_MODELS``."""

    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        for name, cls in {**PLUGIN_MODELS, **DECODING_MODELS}.items():
            register(f"acme.{name.lower()}", cls)


def train_rows() -> torch.utils.data.TensorDataset:
    """64 rows, in order: step 1 (rows 0-7) has labels 0 and 1, its second micro-batch padding
    only; step 2 (rows 8-15) the first 2s, all in its first micro-batch, and two padding rows in
    its second; step 3 (rows 16-23) no 2 again; the rest labels 0-2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    labels = torch.randint(0, 2, (64,), generator=g)
    labels[24:] = torch.randint(0, 3, (40,), generator=g)
    labels[4:8] = -1
    labels[[8, 10]] = 2
    labels[12:14] = -1
    return torch.utils.data.TensorDataset(x, labels)


def val_rows(name: str) -> torch.utils.data.TensorDataset:
    """16 rows (two validation batches of 8), each batch with a 2 and some padding; the second
    batch holds the row ``name`` refuses."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    labels = torch.randint(0, 3, (16,), generator=g)
    labels[[0, 8]] = 2
    labels[5:8] = -1
    if name == "EvalRefusal":
        labels[9] = -2
    if name == "FirstStageRefusal":
        x[9, 0] = 99
    if name == "EvalBug":
        labels[9] = -3
    if name == "FirstStageBug":
        x[9, 0] = 77
    if name == "EvalShape":
        labels[9] = -4
    return torch.utils.data.TensorDataset(x, labels)


def attempt(out: Path, strategy: str, name: str) -> dict[str, Any]:
    """What ``deepseek.fit`` of model ``name`` under ``strategy`` raised, or its step records and
    last evaluation (``_metric_rules_fit.fit_record``); its run folder ``OUT/STRATEGY-NAME``. A
    name of ``PLUGIN_MODELS``: the plugin's model (:func:`plugin_attempt`)."""
    if name.removeprefix("Served") in PLUGIN_MODELS:
        return plugin_attempt(out / f"{strategy}-{name}", strategy, name)
    if name in DECODING_MODELS:
        return generated_attempt(out / f"{strategy}-{name}", name)
    return fit_record(MODELS[name], train_rows(), val_rows(name), out / f"{strategy}-{name}", strategy, lr=0.1)


def plugin_attempt(run_dir: Path, strategy: str, name: str) -> dict[str, Any]:
    """The run of ``fit_record`` with the plugin's model ``acme.<name>`` on the script's rows (a
    host with the script's data, as ``deepseek.fit`` makes it, and :class:`Acme`): what it raised.
    A name ``Served<name>``: :func:`served_attempt` instead."""
    from deepseek.training.trainer import Trainer

    if name.startswith("Served"):
        return served_attempt(run_dir, name.removeprefix("Served"))
    base = next(c.__name__ for c in PLUGIN_MODELS[name].__mro__ if not c.__name__.startswith("Plugin"))  # its bug's rows
    host = plugin_host(name, val_rows(base))
    try:
        Trainer(plugin_config(name, host, strategy), run_dir=run_dir, quiet=True, host=host).fit()
    except Exception as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "message": ""}


def served_attempt(run_dir: Path, name: str) -> dict[str, Any]:
    """``deepseek eval --strategy pipeline``'s evaluation (``evaluate_run``) of the plugin's model
    ``acme.<name>``, trained for one step on rows it takes, on the validation rows its bug is in:
    what it raised."""
    from deepseek.training.run_eval import evaluate_run
    from deepseek.training.trainer import Trainer

    host = plugin_host(name, val_rows("Padded"))
    config = plugin_config(name, host, "pipeline", max_steps=1)
    Trainer(config, run_dir=run_dir, quiet=True, host=host).fit()
    try:
        evaluate_run(run_dir, strategy="pipeline", host=plugin_host(name, val_rows(PLUGIN_MODELS[name].__mro__[1].__name__)))
    except Exception as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "message": ""}


def generated_attempt(run_dir: Path, name: str) -> dict[str, Any]:
    """``deepseek generate --strategy pipeline``'s decoding (``load_placed``, ``served_calls``,
    ``sample``) of the plugin's model ``acme.<name>`` (`DECODING_MODELS`), trained for one
    step: what it raised."""
    from deepseek.training.inference import load_placed, placed_run, sample, served_calls
    from deepseek.training.trainer import Trainer

    host = plugin_host(name, val_rows("Padded"))
    Trainer(plugin_config(name, host, "pipeline", max_steps=1), run_dir=run_dir, quiet=True, host=host).fit()
    try:
        model, config, _, placer = load_placed(run_dir, "cpu", strategy="pipeline", host=host)
        with placed_run(placer):
            sample(model, "hi", max_new_tokens=DECODING_MODELS[name].new_tokens, temperature=0, model_calls=served_calls(model, config, host, placer))
    except Exception as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "message": ""}


def plugin_host(name: str, val: torch.utils.data.Dataset) -> Any:
    """A host with the script's rows (training rows, ``val`` to validate), as ``deepseek.fit``
    makes it, and :class:`Acme`."""
    from deepseek.training.script import script_host

    wrap = {"names": ("x", "label"), "collate_fn": None, "shuffle": False, "validation": True, "val_fraction": 0.1,
            "num_workers": 0, "pin_memory": False}
    host = script_host({**PLUGIN_MODELS, **DECODING_MODELS}[name], train_rows(), val_data=val, wrap=wrap)
    assert host.register_plugin(Acme(), dist="deepseek-acme", version="0.1").status == "ok"
    return host


def plugin_config(name: str, host: Any, strategy: str, max_steps: int = 3) -> Any:
    """:data:`FIT_CONFIG` for model ``acme.<name>`` on the script's data, ``max_steps`` steps."""
    from deepseek.config.load import config_from_dict

    return config_from_dict({**FIT_CONFIG, "model": {"name": f"acme.{name.lower()}"},
                             "train": {**FIT_CONFIG["train"], "max_steps": max_steps},
                             "data": {"name": "script", "batch_size": 8, "eval_batches": 2},
                             "strategy": {"name": strategy}}, host=host)


if __name__ == "__main__":
    probe_main("messages", lambda out, name: attempt(out, "pipeline", name), [*MODELS, *PLUGIN_MODELS])
