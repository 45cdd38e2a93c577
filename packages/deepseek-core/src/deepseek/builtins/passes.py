"""Built-in graph-optimizer passes (see deepseek.graph); registered lazily, no torch import."""

from deepseek.hookspecs import RegisterFn, hookimpl

_PASSES: tuple[tuple[str, str, str], ...] = (
    ("drop-dropout", "eliminate:DropDropoutIdentity", "remove dropout and identity operations (no-ops in eval mode)"),
    ("fold-batchnorm", "fold_bn:FoldBatchNorm", "fold eval-mode BatchNorm into the preceding Linear/Conv layer"),
    ("fuse-linear", "fuse_linear:FuseConsecutiveLinear", "fuse consecutive Linear layers with nothing non-linear between"),
    ("merge-siblings", "merge_siblings:MergeSiblingLinear", "merge sibling Linear layers reading the same input (Q/K/V) into one matmul"),
    ("attention-sdpa", "attention:AttentionToSDPA", "rewrite hand-written softmax(QK^T/sqrt(d)+mask)V into scaled_dot_product_attention"),
    ("const-fold", "const_fold:ConstantFolding", "fold input-independent sub-graphs and input-shape queries into constants"),
    ("onednn-linear", "onednn:OneDNNLinear", "CPU: pre-pack Linear weights for oneDNN GEMM kernels, fusing activations and residual adds"),
    ("attention-bmm", "attention_bmm:AttentionBMM", "CPU: short causal/unmasked SDPA as baddbmm + softmax + bmm with a constant mask"),
    ("inductor", "inductor:InductorStage", "torch.compile (inductor): freezing on CPU, CUDA graphs on GPU (final stage)"),
    ("bf16", "reduced_precision:BFloat16", "opt-in: run in bfloat16 with fp32 inputs/outputs (own tolerance)"),
    ("int8-dynamic", "reduced_precision:Int8Dynamic", "opt-in: int8 dynamic quantization of Linear layers (own tolerance)"),
)


@hookimpl
def deepseek_register_passes(register: RegisterFn) -> None:
    """The deploy-time graph passes."""
    for name, target, description in _PASSES:
        register(name, f"deepseek.graph.{target}", description=description)
