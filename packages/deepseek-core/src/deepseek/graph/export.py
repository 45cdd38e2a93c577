"""Deployment artifacts: ``torch.export`` programs (``.pt2``) and ONNX files.

A ``.pt2`` file loads and runs with torch alone (:func:`load_exported`); it carries a
``deepseek.json`` record (format, input names, dynamic dimensions, model config) beside the
program. ONNX export needs the ``onnx`` and ``onnxscript`` packages (core's ``onnx`` extra);
running an ONNX file needs ``onnxruntime``. Files are written under a hidden name beside the
output and put in place by :mod:`deepseek.durable` (flushed, renamed, the folder flushed): an
export that fails leaves an earlier file at the output as it was and nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek import durable
from deepseek.arguments import spelled
from deepseek.errors import UsageError
from deepseek.parsing import loads_json
from deepseek.paths import usual_mode

FORMATS = ("pt2", "onnx")
META_NAME = "deepseek.json"


def token_dims(max_seq_len: int | None) -> dict[int, Any]:
    """Dynamic batch and sequence dims for ``(batch, seq)`` token inputs."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    seq = Dim("seq", min=1, max=max_seq_len) if max_seq_len else Dim("seq", min=1)
    return {0: batch, 1: seq}


def input_names(inputs: Any) -> list[str]:
    """The dotted name of each tensor of ``inputs`` (a mapping's keys joined by dots:
    ``audio.padding_mask``), in the order an exported program flattens them; a tensor given by
    position has the name ``""``. An ONNX file of mapping inputs names its inputs so, and
    :class:`OnnxRunner` feeds a mapping by these names, whatever the order of its keys."""
    from torch.utils import _pytree as pytree

    paths, _ = pytree.tree_flatten_with_path(inputs)
    return [".".join(str(k.key) for k in path if isinstance(k, pytree.MappingKey)) for path, _ in paths]


def missing_onnx_packages() -> list[str]:
    """The ONNX export dependencies that are not installed."""
    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]


def check_onnx_packages() -> None:
    """One line naming the ONNX export dependencies that are not installed, and the install
    command (the command's ``--format onnx``, Python's ``format='onnx'``)."""
    missing = missing_onnx_packages()
    if missing:
        asked = spelled("export --format onnx", "export(format='onnx')")
        raise UsageError(f"{asked} needs the package(s) {', '.join(missing)}, which are not installed; install them "
                         "with: pip install 'deepseek-core[onnx]'")
    from deepseek.extras import check_extra

    check_extra("onnx", where=spelled("export --format onnx", "export(format='onnx')"))


@contextmanager
def _atomic_path(out: Path) -> Iterator[Path]:
    """A file to write in place of ``out``, renamed onto it when the block ends without an
    exception and removed when it raises; what killed exports of ``out`` left is removed first."""
    from deepseek.paths import partial_path, remove_dead_partials

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(out)
    tmp = partial_path(out, out.suffix)  # the extension kept: a writer may go by it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    usual_mode(fd)
    os.close(fd)
    try:
        yield Path(tmp)
        durable.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def staged_onnx(out: Path) -> Iterator[Path]:
    """The path to save an ONNX model to in place of ``out``. ONNX keeps weights over 2 GB in a
    second file named after the model file (``NAME.data``) and refers to it by that name, so the
    model is saved under its final name in a hidden folder beside ``out``; when the block ends
    without an exception, that data file is moved beside ``out`` first and the model file last
    (a model file at ``out`` always finds its data), and the folder is removed either way. An
    earlier export's model file at ``out`` is removed before a new data file takes its data
    file's name: stopped between the two renames, the old model would read the new weights at
    its own offsets (a model of the same shapes loads them without a word)."""
    import shutil

    from deepseek.paths import partial_path, remove_dead_partials

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(out)
    folder = partial_path(out)
    folder.mkdir()
    try:
        yield folder / out.name
        extras = sorted(p for p in folder.iterdir() if p.name != out.name)
        if extras and out.is_file():
            out.unlink()
            durable.fsync_dir(out.parent)
        for extra in extras:
            durable.replace(extra, out.parent / extra.name)
        durable.replace(folder / out.name, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_model(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    out: str | os.PathLike[str],
    *,
    fmt: str = "pt2",
    dynamic: Sequence[dict[int, Any] | None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (eval mode) traced on ``example_inputs`` to ``out`` as ``fmt``.

    ``dynamic`` gives, per input, the dims that may vary (``{dim: torch.export.Dim}``, or that
    structure for each tensor of an input that is a mapping of tensors);
    ``metadata`` is stored in the ``.pt2`` file's ``deepseek.json`` record.
    """
    if fmt not in FORMATS:
        raise UsageError(f"export: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(out)
    model = model.eval()
    inputs = tuple(example_inputs)
    shapes = None if dynamic is None else tuple(dynamic)
    if fmt == "onnx":
        check_onnx_packages()
        args, kwargs, dims, onnx_names = inputs, None, shapes, None
        if any(isinstance(i, Mapping) for i in inputs):  # torch.onnx.export takes a trailing mapping for keywords
            import inspect

            names = list(inspect.signature(model.forward).parameters)[: len(inputs)]
            args, kwargs = (), dict(zip(names, inputs, strict=True))
            dims = None if shapes is None else dict(zip(names, shapes, strict=True))
            dotted = input_names(inputs)  # the file's inputs by their dotted names, as OnnxRunner feeds them
            onnx_names = dotted if all(dotted) and len(set(dotted)) == len(dotted) else None
        with staged_onnx(path) as tmp, warnings.catch_warnings(), torch.no_grad(), _onnx_registry_quiet():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, kwargs=kwargs, dynamo=True, dynamic_shapes=dims,
                                        input_names=onnx_names, verbose=False)
            program.save(str(tmp))  # type: ignore[union-attr]
        return path
    with torch.no_grad():
        program = torch.export.export(model, inputs, dynamic_shapes=shapes)
    from torch.utils import _pytree as pytree

    record = {
        "format": 1,
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype)} for t in pytree.tree_leaves(inputs)],
        "dynamic": [None if d is None else {str(k): str(v) for k, v in d.items()} if all(isinstance(k, int) for k in d)
                    else str(d) for d in (shapes or [])],
        "torch": torch.__version__,
        **(metadata or {}),
    }
    with _atomic_path(path) as tmp:
        torch.export.save(program, str(tmp), extra_files={META_NAME: json.dumps(record, default=str)})
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``deepseek.json`` record of a ``.pt2`` file (``{}`` if it has none). Only ``.pt2``
    files carry one: an ``.onnx`` file, a missing file, one torch cannot load, or a record that
    is not a JSON object (a file written by another tool, or edited) is one line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"read_metadata: {p} {_not_a_file(p)}; export a model first (deepseek export)")
    if p.suffix == ".onnx":
        raise UsageError(f"read_metadata: {p} is an ONNX file, which carries no deepseek.json record (only .pt2 "
                         "files do); its inputs are onnxruntime's InferenceSession(path).get_inputs(), named as the "
                         "record names them, or export the run again as .pt2 for the record")
    extra = {META_NAME: ""}
    _load_pt2(p, f"read_metadata: {p}", extra_files=extra)
    if not extra[META_NAME]:
        return {}
    try:
        record = loads_json(extra[META_NAME])
    except ValueError as exc:
        raise UsageError(f"read_metadata: {p}: its {META_NAME} record is not JSON ({str(exc).splitlines()[0]}); "
                         "export the model again (deepseek export)") from None
    if not isinstance(record, dict):
        raise UsageError(f"read_metadata: {p}: its {META_NAME} record is not a JSON object (a "
                         f"{type(record).__name__}), which deepseek export writes; export the model again (deepseek export)")
    return record


def _not_a_file(p: Path) -> str:
    """Why ``p``, which is not a regular file, cannot be loaded: it does not exist, or is something else."""
    if p.exists():
        return "is not a file (a folder, FIFO, device or socket)"
    return "does not exist"


class OnnxRunner:
    """Runs an ONNX file with onnxruntime: ``runner(*tensors)`` returns the first output. An input
    that is a mapping of tensors, as a ``serving`` export takes, is given as the mapping and fed by
    its dotted names (:func:`input_names`), so the order of its keys does not matter; tensors given
    by position are fed in order. Other inputs than the file's are one line, and so is a file
    onnxruntime cannot load (damaged, or its ``NAME.data`` weights file beside it missing,
    truncated or not a regular file); onnxruntime's own log lines are held back (the error is in
    that line)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime  # type: ignore[import-not-found]

        self.path = path
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # fatal only: a load error is raised, and said once below
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for bad files
            raise UsageError(f"{path}: not a loadable ONNX file ({_onnxruntime_reason(exc)}); export the model "
                             "again (deepseek export), keeping the NAME.data file it writes beside a model over "
                             "2 GB") from None
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Any) -> torch.Tensor:
        from torch.utils import _pytree as pytree

        tensors, given = pytree.tree_leaves(inputs), input_names(inputs)
        keys = given if all(given) and sorted(given) == sorted(self.names) else self.names  # by name, or in order
        if len(tensors) != len(self.names) or (any(given) and keys is self.names and given != self.names):
            shown = ", ".join(n or "<tensor>" for n in given) or "nothing"
            raise UsageError(f"{self.path}: the ONNX file takes the inputs {', '.join(self.names)}; it was given "
                             f"{shown}: pass the mapping (or tensors) it was exported with")
        feeds = {n: t.detach().cpu().numpy() for n, t in zip(keys, tensors, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def _onnxruntime_reason(exc: BaseException) -> str:
    """The reason in an onnxruntime error: its text after the last ``[ONNXRuntimeError] : N :
    CODE :`` and the source location that may begin it (``env.cc:538 OpenRandomAccessFile``)."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    text = re.split(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", text)[-1]
    return re.sub(r"^\S+\.cc:\d+ \S+ ", "", text).strip().rstrip(".") or type(exc).__name__


@contextmanager
def _onnx_registry_quiet() -> Iterator[None]:
    """The ONNX exporter logs one warning line per torchvision op it skips where torchvision is not
    installed (``torchvision is not installed. Skipping torchvision::nms``, four lines on every
    export); they say nothing about the file written, so they are held back while it runs."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registry.setLevel(level)


def load_exported(path: str | os.PathLike[str]) -> Any:
    """A callable running an exported model: ``.pt2`` with torch alone, ``.onnx`` with onnxruntime."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"load_exported: {p} {_not_a_file(p)}; export a model first (deepseek export)")
    if p.suffix == ".onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError(f"{p}: running ONNX files needs onnxruntime; pip install onnxruntime")
        return OnnxRunner(p)
    return _load_pt2(p, str(p)).module()


EXPORT_LOAD_LOGGER = "torch.export"
"""``torch.export.load`` logs a damaged file's whole traceback as a warning ("Ran into the
following error when deserializing") before it tries an older format and raises; :func:`_load_pt2`
captures that record while a file loads and names its error in its one line instead."""


@contextmanager
def _log_captured(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records logger ``name`` (and those below it) emits while the block runs, collected in
    the list yielded instead of reaching any handler (torch gives its loggers a stderr handler of
    their own); the logger's handlers and propagation restored after."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    handlers, propagate = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = handlers, propagate


def _load_pt2(p: Path, where: str, **kwargs: Any) -> Any:
    """``torch.export.load(p, **kwargs)`` without torch's warnings and log lines; a file torch
    cannot load is one :class:`UsageError` beginning with ``where``, naming the error torch logged
    reading the current format where it logged one (the error it raises after that comes from its
    try of an older format and points at "the warnings above"), else the one it raised."""
    try:
        with warnings.catch_warnings(), _log_captured(EXPORT_LOAD_LOGGER) as records:
            warnings.simplefilter("ignore")
            return torch.export.load(str(p), **kwargs)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is bad input
        logged = [r.exc_info[1] for r in records if r.exc_info and r.exc_info[1] is not None]
        cause = logged[0] if logged else exc
        text = str(cause).split(". ")[0].strip().rstrip(".")  # torch's first sentence; the rest is advice
        raise UsageError(f"{where}: not a loadable torch.export (.pt2) file ({type(cause).__name__}: {text}); "
                         "export the model again (deepseek export)") from exc
