"""Quantization with torchao: what the ``quantize.*`` compressors (:mod:`.quantizers`, which
import no torch) run, and the ``quantized`` model.

Each scheme is a torchao config applied with ``torchao.quantization.quantize_`` to the model's
``nn.Linear`` layers (all of them but those named in ``skip``, ``lm_head`` by default, whose
weight a GPT ties to its token embedding; and but ``nn.MultiheadAttention``'s projections, whose
weights its functional code reads directly):

* ``quantize.int8`` (scheme ``int8``; CPU, CUDA): ``Int8DynamicActivationInt8WeightConfig``,
  int8 weights per output channel, activations quantized per token at run time, int8 GEMMs;
* ``quantize.int8-weight`` (CPU, CUDA): ``Int8WeightOnlyConfig``, int8 weights dequantized in
  the GEMM (for memory-bound decode; on a CPU slower than fp32);
* ``quantize.int4-weight`` (CUDA): ``Int4WeightOnlyConfig``, groups of ``group_size`` weights,
  torch's tinygemm kernel (``tile_packed_to_4d``), bf16 activations;
* ``quantize.float8`` (CUDA, compute capability >= 8.9): ``Float8DynamicActivationFloat8WeightConfig``
  with per-tensor scales (``granularity = "row"``: per-row, which needs cuBLAS row-wise scaling;
  on the H200 with torch 2.11+cu130 it failed with CUBLAS_STATUS_NOT_SUPPORTED), bf16 activations.

None needs calibration data: activations are quantized on the fly or not at all.

The result's ``[model]`` table is ``{name = "quantized", scheme, base = <the original [model]
table>, skip, group_size}``. The ``quantized`` model builds ``base`` through the host, quantizes
it the same way, and *is* that model (a GPT stays a GPT: ``eval``, ``generate``, ``compare``,
``bench`` and ``deepseek.optimize`` take it as before), so a checkpoint's structure comes from its
config as for every model. Quantized weights are torchao tensor subclasses; in a state dict each
appears as its inner tensors under torchao's flattened names (``blocks.0.mlp.fc._weight_qdata``,
``..._weight_scale``), so the safetensors file holds plain tensors and loading rebuilds each
subclass from the model's own (its metadata: block size, activation scheme) and the file's data.
Loading needs deepseek-enterprise and torchao; deepseek-core alone names them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from deepseek.errors import CheckpointError, ComponentNotFoundError, ConfigError, UsageError
from deepseek.models.protocol import BuildsComponents, TrainableModel
from deepseek_enterprise.compress.quantizers import (
    CUDA_SCHEMES,
    DEFAULT_SKIP,
    Scheme,
    group_size_problem,
)

BF16_SCHEMES = ("int4-weight", "float8")
"""Schemes whose kernels take bf16 activations: the model is cast to bf16 before quantizing."""


def torchao_config(scheme: str, group_size: int, granularity: str = "tensor") -> Any:
    """The torchao config of ``scheme`` (torchao's version checked first: its config classes and
    their arguments change between releases)."""
    from deepseek.extras import check_version

    check_version("torchao", where=f"quantization scheme {scheme!r}", edition="deepseek-enterprise")
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        PerRow,
        PerTensor,
    )

    if scheme == "int8":
        return Int8DynamicActivationInt8WeightConfig()
    if scheme == "int8-weight":
        return Int8WeightOnlyConfig()
    if scheme == "int4-weight":  # torchao's inductor settings stay unset: no global state changed
        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d",
                                    set_inductor_config=False)
    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow() if granularity == "row" else PerTensor(),
                                                     set_inductor_config=False)


def check_device(scheme: str, device: torch.device, where: str) -> None:
    """:class:`UsageError` when ``scheme`` cannot run on ``device``."""
    need = CUDA_SCHEMES.get(scheme)
    if need is None or device.type == "meta":
        return
    if device.type != "cuda":
        raise UsageError(f"{where}: runs on CUDA only (torchao's {scheme} kernels); "
                         "give --device cuda on a GPU machine, or use quantize.int8 or quantize.int8-weight on a CPU")
    have = torch.cuda.get_device_capability(device)
    if have < need:
        raise UsageError(f"{where}: {scheme} needs a GPU of compute capability {need[0]}.{need[1]} or newer; "
                         f"{torch.cuda.get_device_name(device)} is {have[0]}.{have[1]}")


def quantize_model(model: nn.Module, scheme: str, skip: list[str], group_size: int,
                   granularity: str = "tensor") -> list[str]:
    """Quantize ``model``'s Linear layers in place (bf16 first for the schemes that need it);
    returns the names of the layers quantized. The state-dict hooks that store each quantized
    weight as plain tensors are attached to those layers."""
    from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
    from torchao.quantization import quantize_

    if scheme in BF16_SCHEMES:
        model.to(torch.bfloat16)

    def chosen(module: nn.Module, fqn: str) -> bool:
        # nn.MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear: MHA's functional
        # code reads (and transposes) its weight directly, which a quantized weight cannot serve.
        if not isinstance(module, nn.Linear) or isinstance(module, NonDynamicallyQuantizableLinear):
            return False
        if any(fqn == s or fqn.startswith(s + ".") for s in skip):
            return False
        if scheme == "float8" and granularity != "row" and tuple(module.weight.shape) == (128, 128):
            # torchao 0.18 reads a per-tensor scale over a 128 x 128 weight as its 128 x 128 block
            # scaling, and its matmul then asserts the activation is 1 x 128 scaled (measured on an
            # H100 with more than one row): such a layer stays in bf16
            return False
        return scheme != "int4-weight" or module.in_features % group_size == 0

    _check_skip(model, scheme, skip)
    names = [fqn for fqn, m in model.named_modules() if chosen(m, fqn)]
    if not names:
        raise UsageError(f"quantize.{scheme}: the model has no Linear layer to quantize; change --set skip=... "
                         f"(skip = {skip}{', or in_features not a multiple of group_size' if scheme == 'int4-weight' else ''}"
                         f"{', or a 128 x 128 weight under per-tensor scales' if scheme == 'float8' else ''})")
    quantize_(model, torchao_config(scheme, group_size, granularity), filter_fn=chosen)
    for fqn in names:
        layer = model.get_submodule(fqn)
        # torchao gives each layer it quantizes an extra_repr of its own, a method over a
        # functools.partial that pickle cannot save: the model could not be saved whole
        # (torch.save(model)). The Linear class's own extra_repr takes its place.
        layer.__dict__.pop("extra_repr", None)
        layer.register_state_dict_post_hook(_flatten_weights)
        layer.register_load_state_dict_pre_hook(_unflatten_weights)
    return names


def _check_skip(model: nn.Module, scheme: str, skip: list[str]) -> None:
    """A ``skip`` entry other than the default's that names no module of ``model`` (a typo
    would quantize the layer it meant to keep): one line with a did-you-mean."""
    from deepseek.names import did_you_mean

    modules = [fqn for fqn, _ in model.named_modules() if fqn]
    for entry in skip:
        if entry not in DEFAULT_SKIP and entry not in modules:
            linears = [fqn for fqn, m in model.named_modules() if isinstance(m, nn.Linear)]
            shown = ", ".join(linears[:6]) + (", ..." if len(linears) > 6 else "")
            raise UsageError(f"quantize.{scheme}: skip: {entry!r} names no module of the model"
                             f"{did_you_mean(entry, modules)}; give module names (its Linear layers: {shown})")


def _subclass_params(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    from deepseek.graph.passes import is_tensor_subclass

    return [(n, p) for n, p in module.named_parameters(recurse=False) if is_tensor_subclass(p)]


def _flatten_weights(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: each quantized weight as its inner tensors (``<prefix>_weight_qdata``...)."""
    for name, _ in _subclass_params(module):
        tensor = state.pop(prefix + name)
        inner, _ = tensor.__tensor_flatten__()
        for part in inner:
            state[f"{prefix}_{name}_{part}"] = getattr(tensor, part)


def _unflatten_weights(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                       missing: list[str], unexpected: list[str], errors: list[str]) -> None:
    """Load pre-hook: rebuild each quantized weight from the file's inner tensors, checked
    against the model's own (dtype and shape: values read back from disk are input)."""
    for name, own in _subclass_params(module):
        parts, meta = own.__tensor_flatten__()
        keys = {part: f"{prefix}_{name}_{part}" for part in parts}
        if not all(k in state for k in keys.values()):
            continue  # reported as missing keys by the strict load
        inner = {}
        for part, key in keys.items():
            value, expected = state.pop(key), getattr(own, part)
            if value.dtype != expected.dtype or value.shape != expected.shape:
                raise CheckpointError(f"{key}: stored as {value.dtype} {tuple(value.shape)}, the {own.__class__.__name__} "
                                      f"of this model needs {expected.dtype} {tuple(expected.shape)}; the weights "
                                      "do not belong to this [model] config")
            inner[part] = value.to(expected.device)
        state[prefix + name] = type(own).__tensor_unflatten__(inner, meta, own.shape, own.stride())


@dataclass(frozen=True)
class QuantizedOptions:
    """``[model]`` keys of ``quantized`` (written by ``deepseek compress --method quantize.*``)."""

    base: dict[str, Any] = field(default_factory=lambda: {"name": "tiny"})
    """The original model's ``[model]`` table (``name`` and options)."""
    scheme: Scheme = "int8"
    """What torchao does to the Linear layers (see :mod:`deepseek_enterprise.compress.quantize`)."""
    skip: list[str] = field(default_factory=lambda: list(DEFAULT_SKIP))
    """Linear layers (module names, with their children) left in floating point; a name other
    than the default ``lm_head`` must be a module of the model."""
    group_size: int = field(default=128, metadata={"check": group_size_problem})
    """int4-weight: weights sharing one scale and zero point."""
    granularity: Literal["row", "tensor"] = "tensor"
    """float8: one scale per tensor, or per row (weights per output channel, activations per token)."""


NOT_TRAINABLE = ("torchao's quantized weights take no gradient step; train or fine-tune the source run its "
                 "compression.json names, then compress it again")
"""What the ``quantized`` model declares as :attr:`~deepseek.models.protocol.TrainableModel.not_trainable`."""


class QuantizedModel(BuildsComponents):
    """The ``quantized`` model target: builds ``base`` and quantizes it (a factory object, so the
    result is the base model's own class; a plain ``nn.Module`` base becomes a TrainableModel
    subclass of it, :func:`_declaring`, to declare that it does not train)."""

    Options: ClassVar[type] = QuantizedOptions

    def __call__(self, options: QuantizedOptions, *, host: Any) -> nn.Module:
        from deepseek.models.factory import instantiate_model

        table = dict(options.base)
        name = table.pop("name", None)
        if not isinstance(name, str) or name == "quantized":
            raise ConfigError("model.base.name: name the original model, e.g. base = { name = \"small\" }")
        try:
            target = host.resolve("model", name).load()
        except ComponentNotFoundError as exc:
            raise ConfigError(f"model.base.name: {exc}") from None
        model = instantiate_model(target, table, name=name, path="model.base", host=host)
        device = next(model.parameters()).device
        if options.scheme in CUDA_SCHEMES:
            # also on the meta device (a command checking the model before loading it): torchao's
            # kernels for these schemes initialise CUDA as they quantize
            if not torch.cuda.is_available():
                raise ConfigError(f"model.scheme: {options.scheme} runs on CUDA only (torchao's kernels) and this "
                                  "machine has no GPU; use the model on a GPU machine, or compress the source run "
                                  "with quantize.int8 or quantize.int8-weight for a CPU")
            if device.type != "meta":
                model.to("cuda")
        quantize_model(model, options.scheme, list(options.skip), options.group_size, options.granularity)
        if not isinstance(model, TrainableModel):
            model.__class__ = _declaring(type(model))
        model.not_trainable = NOT_TRAINABLE
        return model

    def __repr__(self) -> str:
        return "QuantizedModel()"


quantized = QuantizedModel()
"""The registered ``quantized`` model target."""


@functools.cache
def _declaring(cls: type[nn.Module]) -> type[TrainableModel]:
    """``cls``, a plain ``nn.Module`` (which declares nothing), as a :class:`TrainableModel` of the
    same name, so that the quantized model can declare :data:`NOT_TRAINABLE` (core reads
    declarations from TrainableModels only). :class:`TrainableModel` comes first: its defaults
    ("not offered") shadow any method of ``cls`` of the same name, so the model offers no
    capability, as the plain module did not (a Hugging Face ``generate`` is not taken for
    deepseek's), while ``forward`` and everything else is ``cls``'s. Made at run time, the class
    is no module's attribute, so pickle could not name it; its instances pickle as
    :func:`_declared` of ``cls`` (:func:`_reduce_declared`), which ``cls``'s name finds."""
    return type(cls.__name__, (TrainableModel, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                                      "__doc__": cls.__doc__, "__reduce_ex__": _reduce_declared})


def _reduce_declared(model: nn.Module, protocol: int) -> tuple[Any, ...]:
    """How pickle saves a model of a :func:`_declaring` class: :func:`_declared` of the plain base
    class (pickled by its name, as any class is), then the model's state."""
    return _declared, (type(model).__bases__[1],), model.__getstate__()


def _declared(cls: type[nn.Module]) -> nn.Module:
    """An empty model of ``_declaring(cls)`` (the same class in this process as the one the
    quantized model was made with), which pickle then fills with the saved state."""
    declared = _declaring(cls)
    return declared.__new__(declared)
