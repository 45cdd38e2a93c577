"""deepseek-enterprise's entry-point plugin: its own hookspecs (fusion methods, compressors,
tuners), the multimodal encoders, fusion methods, model and datasets, registered lazily
(nothing heavy is imported until a component is created)."""

from __future__ import annotations

from typing import Any

import pluggy

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add the enterprise hookspecs (fusions, compressors, tuners, executors)."""
    from deepseek_enterprise import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def deepseek_register_encoders(register: RegisterFn) -> None:
    """``vision.swin`` (timm) and ``audio.conv_transformer`` (torchaudio)."""
    register("vision.swin", "deepseek_enterprise.encoders:SwinEncoder",
             description="timm Swin Transformer: small-image shapes, or any timm Swin by name")
    register("audio.conv_transformer", "deepseek_enterprise.encoders:AudioConvTransformer",
             description="torchaudio MFCC/mel front end or feature frames, conv subsampling, Transformer/Conformer")


@hookimpl
def deepseek_register_fusions(register: RegisterFn) -> None:
    """``concat``, ``late`` and ``cross_attention``."""
    register("concat", "deepseek_enterprise.fusion:ConcatFusion",
             description="pooled modality embeddings and presence flags, concatenated, then an MLP")
    register("late", "deepseek_enterprise.fusion:LateFusion",
             description="the mean of the present modalities' own predictions")
    register("cross_attention", "deepseek_enterprise.fusion:CrossAttentionFusion",
             description="each modality attends to the others, with learned modality embeddings")


@hookimpl
def deepseek_register_models(register: RegisterFn) -> None:
    """``multimodal.classifier`` (encoders per modality, a fusion method, a classifier),
    ``distill`` (knowledge distillation of a GPT student from a trained teacher) and
    ``quantized`` (a registered model with torchao-quantized Linear layers)."""
    register("multimodal.classifier", "deepseek_enterprise.multimodal:MultimodalClassifier",
             description="vision/audio/text encoders, a registered fusion method, one classifier")
    register("distill", "deepseek_enterprise.compress.distill:Distill",
             description="a student GPT trained on a frozen teacher's soft targets (knowledge distillation)")
    register("quantized", "deepseek_enterprise.compress.quantize:quantized",
             description="a model with torchao-quantized Linear layers (written by deepseek compress)")


@hookimpl
def deepseek_register_datasets(register: RegisterFn) -> None:
    """``multimodal.digits``: images, speech and text of digits, redundant or complementary."""
    register("multimodal.digits", "deepseek_enterprise.digits.dataset:MultimodalDigits",
             description="digit images (scikit-learn), spoken digits (FSDD) and spellings; two tasks")


@hookimpl
def deepseek_register_commands(register: RegisterFn) -> None:
    """``deepseek multimodal study|table|eval``, ``compress``, ``compare``, ``tune``, and the job
    service: ``server``, ``jobs``, ``tenants``."""
    from deepseek.plugins.records import COMMAND_RUN_FILES

    register("multimodal", "deepseek_enterprise.cli:multimodal",
             description="multimodal fusion study: train, test on the held-out split, tables")
    register("compress", "deepseek_enterprise.compress.cli:compress",
             description="compress a trained model (structured pruning, ...) into a new run folder",
             declares={COMMAND_RUN_FILES: ["compression.json"]})  # its record of what was done, in the run it writes
    register("compare", "deepseek_enterprise.compare:compare",
             description="A/B of two trained models: paired examples, bootstrap CI, size, latency")
    register("tune", "deepseek_enterprise.tune.cli:tune",
             description="automated tuning on Optuna: training or system studies, advisor-pruned")
    register("server", "deepseek_enterprise.service.server_cli:server",
             description="multi-tenant job server: HTTP API, quotas, fair share, isolated local jobs")
    register("jobs", "deepseek_enterprise.service.cli:jobs",
             description="submit, list, show, follow and cancel jobs on a deepseek server")
    register("tenants", "deepseek_enterprise.service.cli:tenants",
             description="tenants, quotas, users and API tokens of a deepseek server")


@hookimpl
def deepseek_register_compressors(register: RegisterFn) -> None:
    """``prune.ffn`` and ``prune.heads`` (structured pruning of a GPT's MLP channels and
    attention heads), ``prune.mlp`` (Torch-Pruning of the MLPs of encoder-built models such as
    the tri-modal classifier), ``distill.student`` (the
    student of a ``distill`` run), ``recover`` (a search step training a pruned candidate back:
    distilled from the original for a GPT, fine-tuned otherwise) and ``quantize.*`` (torchao int8, int8 weight-only, int4
    weight-only, float8)."""
    from deepseek_enterprise.compress import LOADS_WITHOUT_TORCH

    register("prune.ffn", "deepseek_enterprise.compress.prune:PruneFFN",
             description="remove each block's least important MLP channels (magnitude or Taylor)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("prune.heads", "deepseek_enterprise.compress.prune:PruneHeads",
             description="remove each block's least important attention heads (magnitude or Taylor)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("prune.mlp", "deepseek_enterprise.compress.prune_mlp:PruneMLP",
             description="Torch-Pruning: remove MLP channels of encoder-built models (Swin, audio, text)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("distill.student", "deepseek_enterprise.compress.student:ExtractStudent",
             description="the student of a distill run, as a model of its own",
             declares={LOADS_WITHOUT_TORCH: True})
    register("recover", "deepseek_enterprise.compress.recover:Recover",
             description="search step: distil (GPT) or fine-tune the candidate for --recovery-steps steps",
             declares={LOADS_WITHOUT_TORCH: True})
    register("quantize.int8", "deepseek_enterprise.compress.quantizers:Int8Dynamic",
             description="torchao: int8 weights, int8 activations quantized per token (CPU, CUDA)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("quantize.int8-weight", "deepseek_enterprise.compress.quantizers:Int8Weight",
             description="torchao: int8 weights, floating-point activations (memory-bound decode)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("quantize.int4-weight", "deepseek_enterprise.compress.quantizers:Int4Weight",
             description="torchao: grouped int4 weights, bf16 activations (CUDA)",
             declares={LOADS_WITHOUT_TORCH: True})
    register("quantize.float8", "deepseek_enterprise.compress.quantizers:Float8",
             description="torchao: float8 weights and activations, per-row scales (CUDA >= 8.9)",
             declares={LOADS_WITHOUT_TORCH: True})


@hookimpl
def deepseek_register_tuners(register: RegisterFn) -> None:
    """``training`` (validation metrics through deepseek train) and ``system`` (throughput
    through bench train, trials that cannot fit skipped by the advisor)."""
    register("training", "deepseek_enterprise.tune.training:TrainingTuner",
             description="learning rate, warm-up, dropout, batch, model options... by a validation metric")
    register("system", "deepseek_enterprise.tune.system:SystemTuner",
             description="strategy, micro-batch, checkpointing, compile, buckets... by tokens/s")


@hookimpl
def deepseek_register_executors(register: RegisterFn) -> None:
    """``local``: jobs as process groups on the server's machine; ``slurm``: jobs as ``sbatch``
    jobs of a Slurm cluster (docs/service.md)."""
    register("local", "deepseek_enterprise.service.executor:LocalExecutor",
             description="process groups on this machine: own workspace, scrubbed env, GPU mask, rlimits")
    register("slurm", "deepseek_enterprise.service.slurm:SlurmExecutor",
             description="sbatch jobs: --account per tenant, --gres=gpu:N, --mem and --time from quotas")


@hookimpl
def deepseek_train_start(trainer: Any) -> None:
    """Record which images and recordings each split holds in the run folder (rank 0)."""
    from deepseek_enterprise.digits.dataset import MultimodalDigits

    # a folder in the place of MultimodalDigits.written_files was refused with the run folder's own files
    if not isinstance(trainer.dataset, MultimodalDigits):
        return
    if trainer.is_global_zero:
        import json

        from deepseek.training.checkpoint import atomic_write_text

        atomic_write_text(trainer.run_dir / "splits.json", json.dumps(trainer.dataset.split_record()))


@hookimpl
def deepseek_evaluate(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """A multimodal classifier's confusion matrix on the validation split after each evaluation
    but the one before training:
    ``confusion.json`` and ``confusion.png`` in the run folder (overwritten; gathering the model
    is a collective, so every rank takes part and rank 0 writes)."""
    from deepseek_enterprise.digits.dataset import MultimodalDigits

    if step == 0 or not isinstance(trainer.dataset, MultimodalDigits):
        return
    from deepseek_enterprise.multimodal import MultimodalClassifier

    model = trainer.strategy.unwrapped_model()
    if trainer.is_global_zero and isinstance(model, MultimodalClassifier):
        import json

        from deepseek.training.checkpoint import atomic_write_text
        from deepseek_enterprise.report import evaluate_split, plot_confusion

        options = trainer.dataset.options
        report = {"step": step, **evaluate_split(model, trainer.dataset.split_batches(options.eval_split),
                                                 options.eval_split, options.missing)}
        atomic_write_text(trainer.run_dir / "confusion.json", json.dumps(report))
        if trainer.config.logging.plot:
            plot_confusion(report, trainer.run_dir / "confusion.png")
