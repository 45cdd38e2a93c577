"""deepseek's GPT and Hugging Face's GPT-2 (``GPT2LMHeadModel``): one mapping, used both ways.

The two are the same network: pre-norm LayerNorm blocks with biases, learned positions, a fused
q/k/v projection laid out ``[q | k | v]`` with heads contiguous inside each, the tanh GELU (HF's
``gelu_new``), attention scaled by ``1/sqrt(head_dim)`` and a bias-free output head, tied to the
token embedding or not. What differs is the names and one layout: HF's ``Conv1D`` stores a weight
as ``(in, out)``, the transpose of ``nn.Linear``'s ``(out, in)``:

==============================  =====================================  ==========
deepseek                        GPT-2                                  transposed
==============================  =====================================  ==========
``wte.weight``                  ``transformer.wte.weight``             no
``wpe.weight``                  ``transformer.wpe.weight``             no
``blocks.N.ln1.*``              ``transformer.h.N.ln_1.*``             no
``blocks.N.attn.qkv.weight``    ``transformer.h.N.attn.c_attn.weight`` yes
``blocks.N.attn.proj.weight``   ``transformer.h.N.attn.c_proj.weight`` yes
``blocks.N.ln2.*``              ``transformer.h.N.ln_2.*``             no
``blocks.N.mlp.fc.weight``      ``transformer.h.N.mlp.c_fc.weight``    yes
``blocks.N.mlp.proj.weight``    ``transformer.h.N.mlp.c_proj.weight``  yes
``ln_f.*``                      ``transformer.ln_f.*``                 no
``lm_head.weight``              ``lm_head.weight`` (untied only)       no
==============================  =====================================  ==========

(biases keep their names beside their weights and are never transposed.) The config translates
``d_model``/``n_heads``/``n_layers``/``d_ff``/``max_seq_len``/``norm_eps``/``dropout``/
``tie_embeddings`` to ``n_embd``/``n_head``/``n_layer``/``n_inner``/``n_positions``/
``layer_norm_epsilon``/the three ``*_pdrop``/``tie_word_embeddings``. A GPT GPT-2 cannot express
(no biases, pruned heads) or a GPT-2 config deepseek's GPT cannot run (another activation, other
attention scaling, cross-attention) is refused by :func:`export_problem` / :func:`gpt_options`
with one line naming the option.

Everything read from a GPT-2 folder is checked like user input (:class:`UsageError` naming the
file and the key). Nothing here imports transformers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek.dtypes import DTYPE_NAMES
from deepseek.errors import ConfigError, UsageError
from deepseek.models.gpt import GPT, GPTConfig

ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
"""GPT-2 activations that are deepseek's ``GELU(approximate="tanh")``."""

_LAYER = {  # deepseek name inside blocks.N -> (GPT-2 name inside transformer.h.N, transposed)
    "ln1.weight": ("ln_1.weight", False),
    "ln1.bias": ("ln_1.bias", False),
    "attn.qkv.weight": ("attn.c_attn.weight", True),
    "attn.qkv.bias": ("attn.c_attn.bias", False),
    "attn.proj.weight": ("attn.c_proj.weight", True),
    "attn.proj.bias": ("attn.c_proj.bias", False),
    "ln2.weight": ("ln_2.weight", False),
    "ln2.bias": ("ln_2.bias", False),
    "mlp.fc.weight": ("mlp.c_fc.weight", True),
    "mlp.fc.bias": ("mlp.c_fc.bias", False),
    "mlp.proj.weight": ("mlp.c_proj.weight", True),
    "mlp.proj.bias": ("mlp.c_proj.bias", False),
}
_TOP = {
    "wte.weight": "transformer.wte.weight",
    "wpe.weight": "transformer.wpe.weight",
    "ln_f.weight": "transformer.ln_f.weight",
    "ln_f.bias": "transformer.ln_f.bias",
}
_MASK_BUFFER = re.compile(r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)\Z")
"""Causal-mask buffers older GPT-2 files carry (not weights)."""


def name_map(config: GPTConfig) -> list[tuple[str, str, bool]]:
    """``(deepseek name, GPT-2 name, transposed)`` of every tensor a GPT-2 file holds for ``config``
    (``lm_head.weight`` only when the head is not tied)."""
    rows = [(ours, hf, False) for ours, hf in _TOP.items()]
    for i in range(config.n_layers):
        rows += [(f"blocks.{i}.{ours}", f"transformer.h.{i}.{hf}", t) for ours, (hf, t) in _LAYER.items()]
    if not config.tie_embeddings:
        rows.append(("lm_head.weight", "lm_head.weight", False))
    return rows


# ----------------------------------------------------------------------------- deepseek -> GPT-2


def export_problem(model_name: str, options: Any, model: Any = None) -> str | None:
    """Why the model ``model_name`` (its ``[model]`` ``options`` and, when built, ``model``) cannot
    be a GPT-2, as one line naming the option; ``None`` when it can."""
    if not isinstance(options, GPTConfig) or (model is not None and type(model) is not GPT):
        return (f"model {model_name!r} is not a GPT (its [model] options are {type(options).__name__}); only "
                "GPT models (tiny, small, 1.3b, gpt and their overrides) export to GPT-2")
    if not options.bias:
        return ("model.bias = false: GPT-2 has a bias in every Linear and LayerNorm and no option to drop "
                "them; only GPTs trained with bias = true export to GPT-2")
    if options.head_dim * options.n_heads != options.d_model:
        return (f"model.head_dim = {options.head_dim} with n_heads = {options.n_heads} attends at width "
                f"{options.head_dim * options.n_heads}, not d_model = {options.d_model} (pruned heads); GPT-2 "
                "attends at n_embd = n_head x head_dim, so this model has no GPT-2 form")
    return None


def hf_config(config: GPTConfig, dtype: str = "fp32", *, bos: int | None = None,
              eos: int | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``GPT2LMHeadModel`` for ``config`` (the transformers 4.x and 5.x keys),
    its tensors in ``dtype`` (a name of :data:`deepseek.dtypes.DTYPE_NAMES`)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.max_seq_len,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "use_cache": True,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": DTYPE_NAMES[dtype],
        "dtype": DTYPE_NAMES[dtype],
    }


def to_hf_state(state: Mapping[str, torch.Tensor], config: GPTConfig,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """GPT-2 tensors (contiguous CPU copies in ``dtype``) of a GPT's state dict."""
    out = {}
    for ours, hf, transposed in name_map(config):
        t = state[ours].detach().to("cpu")
        out[hf] = (t.t() if transposed else t).to(dtype).contiguous().clone()
    return out


# ----------------------------------------------------------------------------- GPT-2 -> deepseek


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def gpt_options(data: Any, where: Path) -> tuple[GPTConfig, list[str]]:
    """The GPT of a GPT-2 ``config.json`` (``data``, read from ``where``), and notes on what was
    simplified; anything deepseek's GPT cannot run is one :class:`UsageError` line naming the key."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object of GPT-2 settings, got {type(data).__name__}")

    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{where}: {key} {what}, got {data.get(key)!r}")

    def get(key: str, default: Any) -> Any:
        return data[key] if key in data and data[key] is not None else default

    if data.get("model_type") != "gpt2":
        raise UsageError(f"{where}: model_type is {data.get('model_type')!r}, not 'gpt2'; deepseek imports "
                         "GPT-2 models (GPT2LMHeadModel) only")
    for key in ("vocab_size", "n_embd", "n_head", "n_layer", "n_positions"):
        if key not in data:
            raise UsageError(f"{where}: the required key {key} is missing; save the model with "
                             "GPT2LMHeadModel.save_pretrained")
        if not _is_int(data[key]) or data[key] <= 0:
            raise bad(key, "must be a positive integer")
    d, h = data["n_embd"], data["n_head"]
    if d % h:
        raise UsageError(f"{where}: n_embd = {d} is not divisible by n_head = {h}; this is not a valid GPT-2")
    inner = get("n_inner", 4 * d)
    if not _is_int(inner) or inner <= 0:
        raise bad("n_inner", "must be a positive integer or null")
    eps = get("layer_norm_epsilon", 1e-5)
    if not _is_number(eps) or eps <= 0:
        raise bad("layer_norm_epsilon", "must be a number > 0")
    act = get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise UsageError(f"{where}: activation_function {act!r} has no deepseek GPT equivalent (its MLP uses "
                         f"the tanh GELU); only {' or '.join(ACTIVATIONS)} import")
    for key, expected, why in (
        ("scale_attn_weights", True, "deepseek's attention always scales scores by 1/sqrt(head_dim)"),
        ("scale_attn_by_inverse_layer_idx", False, "deepseek's attention has no per-layer scaling"),
        ("add_cross_attention", False, "deepseek's GPT is decoder-only, without cross-attention"),
    ):
        value = get(key, expected)
        if not isinstance(value, bool):
            raise bad(key, "must be true or false")
        if value is not expected:
            raise UsageError(f"{where}: {key} = {str(value).lower()} cannot be imported: {why}")
    tied = get("tie_word_embeddings", True)
    if not isinstance(tied, bool):
        raise bad("tie_word_embeddings", "must be true or false")
    drops = {}
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        value = get(key, 0.1)
        if not _is_number(value) or not 0 <= value < 1:
            raise bad(key, "must be a number in [0, 1)")
        drops[key] = float(value)
    notes = []
    if len(set(drops.values())) > 1:
        notes.append(f"deepseek's GPT has one dropout; took resid_pdrop = {drops['resid_pdrop']} "
                     f"(embd_pdrop = {drops['embd_pdrop']}, attn_pdrop = {drops['attn_pdrop']})")
    try:  # GPTConfig checks the sizes together (a parameter count past what can be built)
        config = GPTConfig(vocab_size=data["vocab_size"], d_model=d, n_heads=h, n_layers=data["n_layer"], d_ff=inner,
                           max_seq_len=data["n_positions"], dropout=drops["resid_pdrop"], bias=True,
                           tie_embeddings=tied, norm_eps=float(eps))
    except ConfigError as exc:  # named by config.json's keys, not the [model] keys they become
        raise UsageError(f"{where}: its sizes (vocab_size, n_embd, n_head, n_layer, n_inner, n_positions) do not make "
                         f"a model deepseek can build: {exc}") from None
    return config, notes


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """GPT-2 name -> shape of every tensor a GPT-2 of ``config`` holds (read off a meta-device GPT)."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    return {hf: shapes[ours][::-1] if t else shapes[ours] for ours, hf, t in name_map(config)}


def from_hf_state(tensors: Mapping[str, torch.Tensor], config: GPTConfig, where: Path) -> dict[str, torch.Tensor]:
    """A GPT's fp32 state dict from GPT-2 ``tensors`` (names with or without the ``transformer.``
    prefix); a missing, unexpected, misshapen or non-float tensor is one line naming its key."""
    if not any(k.startswith("transformer.") for k in tensors):  # saved from GPT2Model (the hub's gpt2)
        tensors = {k if k == "lm_head.weight" else f"transformer.{k}": v for k, v in tensors.items()}
    shapes = expected_shapes(config)
    given = {k: v for k, v in tensors.items() if not _MASK_BUFFER.match(k)}
    if config.tie_embeddings and "lm_head.weight" in given:  # tied: HF ignores a stored copy
        head = given.pop("lm_head.weight")
        if tuple(head.shape) != shapes["transformer.wte.weight"]:
            raise UsageError(f"{where}: tensor lm_head.weight has shape {tuple(head.shape)}, config.json says "
                             f"{shapes['transformer.wte.weight']}")
    missing = [k for k in shapes if k not in given]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        hint = ("; config.json has tie_word_embeddings = false, which needs it" if missing[0] == "lm_head.weight"
                else "; the file does not match its config.json")
        raise UsageError(f"{where}: tensor {missing[0]} is missing{more}{hint}")
    unexpected = sorted(k for k in given if k not in shapes)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UsageError(f"{where}: unexpected tensor {unexpected[0]}{more}: not part of a GPT2LMHeadModel with "
                         "this config.json (another head, or more layers than n_layer?)")
    for key, shape in shapes.items():
        t = given[key]
        if tuple(t.shape) != shape:
            raise UsageError(f"{where}: tensor {key} has shape {tuple(t.shape)}, config.json says {shape}")
        if not t.is_floating_point():
            raise UsageError(f"{where}: tensor {key} holds {t.dtype}, not floating-point weights")
    state = {}
    for ours, hf, transposed in name_map(config):
        t = given[hf].to(torch.float32)
        state[ours] = (t.t() if transposed else t).contiguous()
    if config.tie_embeddings:
        state["lm_head.weight"] = state["wte.weight"]
    return state
