"""The optimizer's on-disk decision cache: which pipeline won for a model and input signature.

Location: ``$DEEPSEEK_CACHE_DIR/optimize`` or ``~/.cache/deepseek/optimize``. One small JSON file
per key, written whole and durably (``deepseek.durable``); a corrupt or unreadable entry (a FIFO,
a folder or a file of more than 16 MiB in its place: :func:`deepseek.parsing.read_text`), or one
whose fields are not what :func:`store` writes (edited by hand), counts as a miss, searched again
and written over.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek import durable
from deepseek.graph.passes import is_tensor_subclass
from deepseek.parsing import loads_json, read_text

FORMAT_VERSION = 2


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding optimizer decisions."""
    if override is not None:
        return Path(override)
    root = os.environ.get("DEEPSEEK_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "deepseek"
    return base / "optimize"


def structure_hash(model: nn.Module) -> str:
    """Hash of the model's class, module tree, parameter names/shapes/dtypes/tensor types and
    forward source.

    Weight *values* are not part of it: a retrained model of the same architecture reuses the
    decision (it is re-verified on every load anyway). A tensor subclass (a torchao quantized
    weight) adds its class and flattening metadata, so int8 weight-only and int8 dynamic weights
    of one model are different structures.
    """
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}\n".encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{_tensor_kind(t)}\n".encode())
    classes = {type(m) for m in model.modules()}
    for mod in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        try:
            h.update(inspect.getsource(mod.forward).encode())
        except (OSError, TypeError):
            h.update(mod.__qualname__.encode())
    return h.hexdigest()[:32]


def _tensor_kind(t: torch.Tensor) -> str:
    if not is_tensor_subclass(t):
        return ""
    names, meta = t.__tensor_flatten__()
    return f"{type(t).__module__}.{type(t).__qualname__}{names}{meta!r}"


def code_fingerprint(passes: Iterable[object] = ()) -> str:
    """Hash of the source of the code that decides: every module of :mod:`deepseek.graph` (capture,
    the core passes, verification, replay) and the module of each of ``passes`` (a plugin's among
    them). The version alone does not change in a development install, where a decision made
    before a fix of the capture or of a pass was replayed after it. Each file is read once per
    process (:func:`_file_digest`); nothing is read before a decision is looked up."""
    modules = {f"deepseek.graph.{f.stem}": str(f) for f in Path(__file__).parent.glob("*.py")}
    for obj in passes:
        name = type(obj).__module__
        module = sys.modules.get(name)
        modules.setdefault(name, getattr(module, "__file__", None) or "")
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(f"{name}:{_file_digest(modules[name]) if modules[name] else '-'}\n".encode())
    return h.hexdigest()[:32]


@functools.cache
def _file_digest(path: str) -> str:
    """The hash of the file at ``path`` (``"unreadable"``: no such file, as in a zip import)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def decision_key(model: nn.Module, signature: tuple[Any, ...], device: str, extra: dict[str, Any],
                 passes: Iterable[object] = ()) -> str:
    """Key of one decision: structure, input signature (shapes, dtypes), device, versions, options,
    and the source of the deciding code (:func:`code_fingerprint`; ``passes``: the spec's passes)."""
    from deepseek._version import __version__

    payload = {
        "code": code_fingerprint(passes),
        "structure": structure_hash(model),
        "signature": repr(signature),
        "device": device,
        "torch": torch.__version__,
        "deepseek": __version__,
        "threads": torch.get_num_threads(),
        "format": FORMAT_VERSION,
        **extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:40]


def load(key: str, directory: Path) -> dict[str, Any] | None:
    """The stored decision for ``key``, or ``None``."""
    path = directory / f"{key}.json"
    try:
        data = loads_json(read_text(path))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or not _well_formed(data):
        return None
    return data


def _well_formed(decision: dict[str, Any]) -> bool:
    """Whether ``decision`` has the fields and types :func:`store` writes (a file edited by hand or
    by another tool may not): ``stage`` a name, ``pipeline`` a list of names, ``candidates`` a list
    of tables with a ``name`` and ``status``, numbers (or null) for the measures, names for
    ``changes`` and text for ``error``."""

    def names(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def measure(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))

    def candidate(c: Any) -> bool:
        return (
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("status"), str)
            and all(measure(c.get(k)) for k in ("median_ms", "max_rel_error", "top1_agreement"))
            and names(c.get("changes", [])) and isinstance(c.get("error", ""), (str, type(None)))
        )

    candidates = decision.get("candidates", [])
    return (
        isinstance(decision.get("stage"), str) and names(decision.get("pipeline"))
        and isinstance(candidates, list) and all(candidate(c) for c in candidates)
    )


def store(key: str, directory: Path, decision: dict[str, Any]) -> Path | None:
    """Write ``decision`` atomically; returns the path, or ``None`` if the directory is not writable."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT_VERSION, **decision}, f, indent=1, sort_keys=True)
            path = directory / f"{key}.json"
            durable.replace(tmp, path)
            return path
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
