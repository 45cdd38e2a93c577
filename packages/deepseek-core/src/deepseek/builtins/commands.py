"""Built-in CLI commands."""

from deepseek.hookspecs import RegisterFn, hookimpl
from deepseek.plugins.records import COMMAND_RUN_FILES

EXPORT_HF = "hf/"
"""The folder ``deepseek export --format hf`` writes in a run folder by default
(:func:`deepseek.interop.hf_folder.default_export_folder`), with everything in it."""

EXPORT_FILES = ("model.pt2", "model.onnx", "model.onnx.data", EXPORT_HF)
"""What ``deepseek export`` writes in a run folder by default: ``model.FORMAT`` of its file
formats (:data:`deepseek.graph.export_trained.FORMATS`), the weights an ONNX file past 2 GB keeps
beside it (``model.onnx.data``) and the Hugging Face folder (:data:`EXPORT_HF`)."""


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
