"""Built-in CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek.hookspecs import RegisterFn, hookimpl
from deepseek.plugins.records import COMMAND_RUN_FILES, CORE_DIST

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost
    from deepseek.run_files import OwnRunFile

EXPORT_HF = "hf/"
"""The folder ``deepseek export --format hf`` writes in a run folder by default
(:func:`deepseek.interop.hf_folder.default_export_folder`), with everything in it."""

EXPORT_FILES = ("model.pt2", "model.onnx", "model.onnx.data", EXPORT_HF)
"""What ``deepseek export`` writes in a run folder by default: ``model.FORMAT`` of its file
formats (:data:`deepseek.graph.export_trained.FORMATS`), the weights an ONNX file past 2 GB keeps
beside it (``model.onnx.data``) and the Hugging Face folder (:data:`EXPORT_HF`)."""


def export_run_file(host: PluginHost, name: str) -> OwnRunFile:
    """``name`` (one of :data:`EXPORT_FILES`) as ``deepseek export``'s own file, which a re-export
    replaces (:func:`deepseek.paths.check_output`'s ``replaces``): core's registration of the
    command on ``host``, whichever way it runs (the command, or ``deepseek.export`` from Python)."""
    from deepseek.run_files import OwnRunFile

    export = next(c for c in host.candidates("command", "export") if c.dist == CORE_DIST and c.alias_of is None)
    return OwnRunFile(export, name)


@hookimpl
def deepseek_register_commands(register: RegisterFn) -> None:
    """Core's sub-commands (lazy: their modules import torch only when run)."""
    register("plugins", "deepseek.cli.plugins_cmd:plugins", description="inspect and scaffold plugins")
    register("train", "deepseek.cli.train_cmd:train", description="train a model")
    register("config", "deepseek.cli.config_cmd:config", description="show the resolved config with every default")
    register("eval", "deepseek.cli.train_cmd:evaluate", description="evaluate a checkpoint")
    register("run", "deepseek.cli.run_cmd:run", description="run a Python training script (deepseek.fit)")
    register("generate", "deepseek.cli.generate_cmd:generate", description="sample text from a checkpoint")
    register("optimize", "deepseek.cli.optimize_cmd:optimize", description="optimize a trained model's graph")
    register("export", "deepseek.cli.optimize_cmd:export", description="export a model for deployment",
             declares={COMMAND_RUN_FILES: EXPORT_FILES})  # its default output, model.FORMAT in the run folder
    register("import-hf", "deepseek.cli.import_cmd:import_hf", description="import a Hugging Face GPT-2 folder")
    register("tokenizer", "deepseek.cli.tokenizer_cmd:tokenizer", description="train or inspect BPE tokenizers")
    register("bench", "deepseek.cli.bench_cmd:bench", description="benchmarks (latency, training)")
    register("advise", "deepseek.cli.advise_cmd:advise", description="edition/strategy advisor with memory estimates")
