"""Deployment files of models that take more than token ids (capability ``serving``).

``deepseek export`` traces a language model on one tensor of token ids. A model whose inputs are
a batch of several tensors (a classifier over features, the tri-modal classifier) offers
capability ``serving`` instead (:class:`~deepseek.models.protocol.TrainableModel`):

- ``serving_inputs(batch)``: the entries of a batch that a prediction reads (the batch without its
  labels), a mapping of names to tensors (nested mappings allowed);
- ``serving_forward(inputs)``: the prediction for them, one tensor with a row per batch row (a
  classifier's logits).

:func:`export_serving` traces ``serving_forward`` on the inputs of an example batch (the run's
first validation batch, for ``deepseek export``) with the rows left dynamic, so the exported
program takes the same mapping with any number of rows: ``load_exported(path)(inputs)``.
The ``.pt2`` file's ``deepseek.json`` record lists the inputs (``serving.inputs``: each one's
dotted name, shape and dtype) and names the output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek.arguments import spelled
from deepseek.errors import DeepseekError, UsageError

MAX_ROWS = 4096
"""The most rows an exported program takes (its dynamic batch dimension's bound)."""


class ServingModule(nn.Module):
    """``model.serving_forward(inputs)`` as a module of its own: what is traced and exported."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        return self.model.serving_forward(inputs)  # type: ignore[operator]


def serving_inputs(model: nn.Module, batch: Any, *, name: str) -> dict[str, Any]:
    """``model.serving_inputs(batch)``, checked: a non-empty mapping whose leaves are tensors with
    the same rows (a one-line :class:`UsageError` naming the model otherwise)."""
    from torch.utils import _pytree as pytree

    from deepseek.data.batch import batch_rows

    inputs = model.serving_inputs(batch)  # type: ignore[operator]
    where = f"model {name!r}: serving_inputs"
    if not isinstance(inputs, Mapping) or not inputs:
        raise UsageError(f"{where} returned {type(inputs).__name__}; it must return the batch entries a prediction "
                         "reads, a non-empty mapping of names to tensors (docs/interop.md, 'Deployment files')")
    leaves = pytree.tree_leaves(dict(inputs))
    if not leaves or any(not isinstance(t, torch.Tensor) for t in leaves):
        kinds = sorted({type(t).__name__ for t in leaves if not isinstance(t, torch.Tensor)}) or ["nothing"]
        raise UsageError(f"{where} returned {', '.join(kinds)} among its entries; give tensors only (nested "
                         "mappings of tensors are fine)")
    rows = {int(t.shape[0]) if t.dim() else -1 for t in leaves}
    if len(rows) != 1 or rows != {batch_rows(inputs)}:
        raise UsageError(f"{where} returned tensors with first dimensions {sorted(rows)}; every input holds the "
                         "batch's rows along its first dimension")
    return dict(inputs)


def export_serving(
    model: nn.Module,
    batch: Any,
    out: str | os.PathLike[str],
    *,
    name: str = "model",
    fmt: str = "pt2",
    static: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``model.serving_forward`` (eval mode, fp32 as it is) traced on the serving inputs of
    ``batch`` to ``out`` as ``fmt`` (``pt2`` or ``onnx``); the rows stay dynamic (1 to
    :data:`MAX_ROWS`) unless ``static``. A traced example needs at least 2 rows for that (torch.export
    specialises a dimension of size 1)."""
    from torch.export import Dim
    from torch.utils import _pytree as pytree

    from deepseek.data.batch import batch_rows
    from deepseek.graph.export import export_model, input_names
    from deepseek.models.capabilities import model_capabilities, outside_contract

    if "serving" not in model_capabilities(model):
        raise UsageError(f"export: model {name!r} ({type(model).__name__}) does not offer capability 'serving' "
                         "(serving_inputs and serving_forward), which says what a deployed model reads and "
                         f"returns (docs/interop.md, 'Deployment files'){outside_contract(model, 'serving')}")
    inputs = serving_inputs(model, batch, name=name)
    n = batch_rows(inputs)
    as_static = spelled("export --static", "export with static=True")
    if not static and n < 2:
        raise UsageError(f"export: the example batch holds {n} row; a dynamic export traces at least 2 "
                         f"(torch.export fixes a dimension of size 1): give a larger batch or {as_static}")
    if not static and n > MAX_ROWS:
        raise UsageError(f"export: the example batch holds {n} rows; a dynamic export takes at most {MAX_ROWS}: "
                         f"give at most {MAX_ROWS} ({spelled('--batch', 'batch')}) or {as_static}")
    module = ServingModule(model).eval()
    with torch.no_grad():
        out_example = module(inputs)
    if not isinstance(out_example, torch.Tensor) or out_example.dim() == 0 or out_example.shape[0] != n:
        got = (f"a tensor of shape {list(out_example.shape)}" if isinstance(out_example, torch.Tensor)
               else type(out_example).__name__)
        raise UsageError(f"model {name!r}: serving_forward returned {got} for {n} rows; it must return one "
                         "tensor with a row per input row (docs/interop.md, 'Deployment files')")
    rows = Dim("batch", min=1, max=MAX_ROWS)
    dynamic = None if static else [pytree.tree_map(lambda _t: {0: rows}, inputs)]
    leaves = pytree.tree_leaves(inputs)
    record = {
        "serving": {
            "inputs": [{"name": key, "shape": list(t.shape), "dtype": str(t.dtype)}
                       for key, t in zip(input_names(inputs), leaves, strict=True)],
            "rows": "fixed" if static else f"dynamic, 1 to {MAX_ROWS}",
            "output": f"{name}'s serving_forward: one tensor, a row per input row",
        },
        "dynamic": None if static else "the first dimension of every input",
        **(metadata or {}),
    }
    with _traceable(name), _rows_kept_free(name, n):
        if dynamic is not None and fmt == "onnx":  # the ONNX exporter would fix the rows without a word
            with torch.no_grad():
                torch.export.export(module, (inputs,), dynamic_shapes=dynamic)
        return export_model(module, (inputs,), out, fmt=fmt, dynamic=dynamic, metadata=record)


@contextmanager
def _rows_kept_free(name: str, rows: int) -> Iterator[None]:
    """torch.export's refusal of a ``serving_forward`` that fixes the number of rows (a reshape to
    the example's rows), as one line."""
    from torch._dynamo.exc import UserError

    try:
        yield
    except UserError as exc:
        if "Constraints violated" not in str(exc):
            raise
        raise UsageError(f"export: model {name!r}'s serving_forward fixes the number of rows to the example's "
                         f"{rows}, so its rows cannot stay dynamic; let it take any rows (no shape of {rows} "
                         f"rows written in), or {spelled('export --static', 'export with static=True')}") from None


@contextmanager
def _traceable(name: str) -> Iterator[None]:
    """What torch.export raises while it traces ``serving_forward`` (code it cannot follow, such
    as a plugin encoder's packed sequences), as one line naming where in the model's code it
    happened; deepseek's own errors and running out of memory pass as they are."""
    try:
        yield
    except (DeepseekError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch.export's many error types, or the model's own under tracing
        missing = _onnx_conversion(exc)
        if missing is not None:
            pt2 = spelled("--format pt2", "fmt='pt2'")
            raise DeepseekError(
                f"export: model {name!r}: torch.export traced its serving_forward, but the ONNX exporter cannot "
                f"convert the program: {missing}; write that part of the model with other ops, or export a .pt2 "
                f"file ({pt2}), which runs it; "
                f"{spelled('--debug shows the traceback', 'its __cause__ holds the traceback')}") from exc
        where = _model_frame(exc)
        raise DeepseekError(
            f"export: model {name!r}: torch.export could not trace its serving_forward: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}{f' (in {where})' if where else ''}; everything serving_forward "
            "calls, a plugin's encoders and fusion method included, must be code torch.export can trace "
            f"(docs/interop.md, 'Deployment files'); "
            f"{spelled('--debug shows the traceback', 'its __cause__ holds the traceback')}") from exc


def _onnx_conversion(exc: BaseException) -> str | None:
    """What the ONNX exporter could not convert of a program torch.export had traced (its step
    3/3; an op without an ONNX function, such as ``aten.adaptive_max_pool2d``), or ``None`` when
    ``exc`` is another failure (tracing itself: :func:`_traceable`'s line)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 16:
        chain.append(link)
        link = link.__cause__ or link.__context__
    for inner in reversed(chain):  # the innermost names the op
        op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)', overload='([^']+)'\)>", str(inner))
        if op is not None:
            return f"no ONNX function for {op[1]}.{op[2]}"
    onnx_error = getattr(getattr(torch, "onnx", None), "OnnxExporterError", ())
    if isinstance(exc, onnx_error) and "step 3/3" in str(exc):
        inner = chain[-1]
        return f"{type(inner).__name__}: {' '.join(str(inner).split())[:200]}"
    return None


def _model_frame(exc: BaseException) -> str:
    """``module, line N (function)`` of the innermost frame of ``exc``'s traceback outside torch
    and the standard library: the model's (or a plugin's) code that made the call that failed."""
    import sysconfig
    import traceback

    skipped = (os.path.dirname(torch.__file__), sysconfig.get_paths()["stdlib"])
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skipped)]
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}, line {last.lineno} ({last.name})"
