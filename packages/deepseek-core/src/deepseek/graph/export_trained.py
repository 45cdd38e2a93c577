"""A trained run's model as a deployment file: ``deepseek.export`` and ``deepseek export``.

:func:`export_trained` is the one implementation: it loads the model of a run folder, checkpoint
folder or exported weights and writes a ``torch.export`` program (``.pt2``), an ONNX file, or a
Hugging Face GPT-2 folder (``hf``). A language model is traced on a ``(batch, seq)`` tensor of
token ids; a model with capability ``serving`` on the first rows of its run's first validation
batch (:mod:`deepseek.graph.serving`). The command prints its report from what this returns;
:func:`export` is the Python entry, which checks its arguments first. Messages name the command's
options under :func:`deepseek.arguments.command_line` (``--out``), else the keywords (``out``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.arguments import given, spelled
from deepseek.dtypes import DTYPE_NAMES
from deepseek.errors import UsageError

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

FORMATS = ("pt2", "onnx", "hf")
DEFAULT_BATCH = 2
"""The example's rows when none are given: a dynamic export traces at least 2 (torch.export
fixes a dimension traced at 1)."""
DEFAULT_SEQ = 16
"""The example's token positions for an export."""


@dataclass(frozen=True)
class Note:
    """A line for the reader of an export, made once: ``deepseek export`` prints it as it always
    did; :func:`export` warns it as ``category`` (``None``: a report line, printed only)."""

    text: str
    category: type[Warning] | None


@dataclass(frozen=True)
class Exported:
    """What :func:`export_trained` wrote: the file (or ``hf`` folder), the parent folders it
    created for it, and notes for the reader (a traced dimension raised to 2, the tokenizer)."""

    path: Path
    format: str
    created: list[Path]
    notes: list[Note]


def export_trained(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                   fmt: str = "pt2", batch: int | None = None, seq: int = DEFAULT_SEQ, static: bool = False,
                   dtype: str | None = None, host: PluginHost) -> Exported:
    """Export the model ``checkpoint`` holds to ``out`` (default: ``model.<fmt>`` in the run
    folder, or its ``hf/`` folder: :func:`export_home`). ``batch`` ``None``:
    :data:`DEFAULT_BATCH` rows, or fewer where a serving model's first validation batch holds fewer. Batch and seq stay dynamic unless
    ``static``; a dimension traced at 1 is traced at 2 instead (a note says so). Nothing is left
    behind when it is refused."""
    if fmt == "hf":
        return _export_hf(checkpoint, out, dtype or "fp32", host)
    if dtype is not None:
        raise UsageError(f"{spelled('--dtype', 'dtype')} applies to {spelled('--format hf', 'format=' + repr('hf'))} "
                         f"only; leave it out for {spelled('--format ' + fmt, 'format=' + repr(fmt))}")
    from deepseek.graph.export import check_onnx_packages, export_model, token_dims

    if fmt == "onnx":
        check_onnx_packages()
    from deepseek.builtins.commands import export_run_file
    from deepseek.config.ineffective import IneffectiveSettingWarning
    from deepseek.models.capabilities import model_capabilities
    from deepseek.paths import check_output, folders_made
    from deepseek.training.inference import load_trained, served_calls
    from deepseek.training.weights_source import read_source, with_data

    src, where = Path(checkpoint), spelled("--out", "out")
    target = Path(out) if out is not None else export_home(src) / f"model.{fmt}"
    missing = check_output(target, where=where, folder=False, file_name=f"model.{fmt}", host=host,
                           replaces=export_run_file(host, f"model.{fmt}"))  # its declared file: a re-export replaces it
    if target.suffix != f".{fmt}":  # an existing file is replaced: only one of this format's
        raise UsageError(f"{where}: {target} does not end in .{fmt}; name the {fmt} file like model.{fmt} "
                         f"(an existing .{fmt} file is replaced)")
    source = read_source(checkpoint)
    model, config, _ = load_trained(source, "cpu", host=host)
    info = {"name": config.model.name, **dataclasses.asdict(config.model.options)}
    metadata = {"model": info, "checkpoint": os.fspath(checkpoint)}
    serving, notes = "serving" in model_capabilities(model), list[Note]()
    rows = DEFAULT_BATCH if batch is None else batch
    if not static:  # torch.export specializes dims of size 0/1: trace dynamic dims at >= 2
        raised = [given(f"--{name}", name, value) for name, value in (("batch", rows), ("seq", seq))
                  if value < 2 and (name == "batch" or not serving)]  # a serving model has no seq
        if raised:
            dims = "batch" if serving else "batch and seq"
            notes.append(Note(f"{' and '.join(raised)} traced as 2 (torch.export fixes a dimension traced at 1); the "
                              f"file takes any {dims} from 1 ({spelled('--static', 'static=True')} fixes the shape "
                              "instead)", IneffectiveSettingWarning))
        rows, seq = max(rows, 2), max(seq, 2)
    if serving:  # a model over a batch of inputs: traced on its run's data
        from deepseek.graph.serving import export_serving

        example = example_batch(with_data(source, config, None, host), host, rows, static=static,
                                rows_given=batch is not None, source=source)
        with folders_made(missing, where=where):  # a refused export leaves no folder behind
            path = export_serving(model, example, target, name=info["name"], fmt=fmt, static=static, metadata=metadata)
    else:
        x = example_tokens(model, rows, seq, "cpu", name=info["name"], command="export",
                           calls=served_calls(model, config, host))
        dims = None if static else [token_dims(info.get("max_seq_len"))]
        with folders_made(missing, where=where):
            path = export_model(model, (x,), target, fmt=fmt, dynamic=dims, metadata=metadata)
    return Exported(path, fmt, missing, notes)


def export_home(checkpoint: Path) -> Path:
    """Where an export of ``checkpoint`` goes by default: the run folder of a run or of one of
    its checkpoints (``RUN`` for ``RUN/checkpoints/step-N``: a file inside a checkpoint folder is
    the run's, pruned with it), else the folder of exported weights. Only a run folder
    (:func:`~deepseek.run_files.is_run_folder`) counts: a run or exported weights kept in a folder
    that happens to be named ``checkpoints`` export into their own folder, not beside it."""
    from deepseek.run_files import CHECKPOINTS, is_run_folder

    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if is_run_folder(folder):
        return folder
    for inside, run in ((folder.parent, folder.parent.parent), (folder, folder.parent)):
        if inside.name == CHECKPOINTS and is_run_folder(run):
            return run
    return folder


def _export_hf(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str] | None, dtype: str,
               host: PluginHost) -> Exported:
    from deepseek.interop.hf_folder import default_export_folder, export_hf

    path = Path(out) if out is not None else default_export_folder(Path(checkpoint))
    created, notes = export_hf(os.fspath(checkpoint), path, dtype, host=host, where=spelled("--out", "out"),
                               default=out is None)
    return Exported(path, "hf", created, notes)


def example_tokens(model: Any, batch: int, seq: int | None, device: str, *, name: str, command: str,
                   calls: Any = None, default_seq: int = DEFAULT_SEQ) -> Any:
    """A ``(batch, seq)`` tensor of token ids to trace ``model`` with (``seq`` ``None``:
    ``default_seq``, or the model's ``max_seq_len`` when that is shorter); a model whose forward
    does not take one such tensor (a classifier over features and labels, a multimodal model) is
    refused in one line saying what does export or optimize it. ``calls``: the model's block
    (:func:`~deepseek.training.inference.served_calls`) its declared limits are read in."""
    import inspect

    import torch

    from deepseek.models.checks import parameter_list

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params and (not positional or len(required) > 1):
        how = ("a model over a batch of inputs is exported through its capability 'serving' (serving_inputs and "
               "serving_forward: what a deployed model reads and returns), which it does not offer "
               "(docs/interop.md, 'Deployment files')") if command == "export" else (
               "a model over a batch of inputs is optimized on its run's own inputs through its capability 'serving' "
               "(serving_inputs and serving_forward: what a prediction reads and returns), which it does not offer "
               "(docs/plugins.md, 'Models')")
        raise UsageError(f"{command}: model {name!r} takes forward({parameter_list(params)}), not one tensor of token "
                         f"ids, which {command} traces it with; {how}")

    from deepseek.models.declared import token_input_limits

    vocab, max_len = token_input_limits(model, calls=calls)
    if seq is None:
        seq = default_seq if max_len is None else min(default_seq, max_len)
    if max_len is not None and seq > max_len:
        raise UsageError(f"{given('--seq', 'seq', seq)} exceeds the model's max_seq_len {max_len}; use "
                         f"{spelled('--seq', 'seq')} <= {max_len}")
    from deepseek.data.loader import check_fits_memory

    # past this machine's memory (or int64: an overflow inside torch, an internal error): one line
    check_fits_memory(batch * seq, ("--batch", given("--batch", "batch", batch)), ("--seq", given("--seq", "seq", seq)))
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)


def example_batch(config: Any, host: Any, rows: int, *, static: bool, rows_given: bool, source: Any) -> Any:
    """The first ``rows`` rows of the first validation batch of ``config``'s data (the run's own: a
    model with capability ``serving`` is traced on real inputs of the shapes it trained on). A
    dynamic export takes fewer when the batch holds fewer (its rows stay free), and so does a
    static one whose rows were not given (``rows_given``); a static one of ``rows`` given (the file's
    rows are those) refuses fewer in one line, as does a dynamic export from a batch of one row.
    ``source``: the weights' ``read_source``; data reading the run's tokenizer is held to its check
    (``weights_source.check_data_tokenizer``)."""
    from deepseek.data.batch import batch_rows, head_rows
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import validation_set
    from deepseek.training.weights_source import check_data_tokenizer

    dataset = build_dataset(config, host)
    check_data_tokenizer(source, config, dataset)
    first = validation_set(config, dataset, 1).batches[0]
    held = batch_rows(first)
    where = (f"the run's first validation batch holds {held} row{'s' if held > 1 else ''} "
             f"(data.batch_size = {config.data.batch_size})")
    static_export = spelled("a --static export", "a static export")
    if static and rows_given and rows > held:
        raise UsageError(f"{given('--batch', 'batch', rows)}: {where}, and {static_export} fixes the rows to those "
                         f"traced; give {given('--batch', 'batch', held)} or less, or leave out "
                         f"{spelled('--static', 'static=True')} (the rows stay dynamic)")
    if not static and held < 2:
        raise UsageError(f"export: {where}; a dynamic export traces at least 2 rows (torch.export fixes a dimension "
                         f"of size 1): {spelled('export --static', 'export with static=True')}, which fixes the rows "
                         "to 1")
    return head_rows(first, min(rows, held))


def export(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, format: str = "pt2",  # noqa: A002
           batch: int | None = None, seq: int = DEFAULT_SEQ, static: bool = False, dtype: str | None = None,
           host: PluginHost | None = None) -> Path:
    """``deepseek.export``: what ``deepseek export --checkpoint CHECKPOINT`` writes, from Python.
    ``checkpoint`` a run folder, checkpoint folder or exported ``.safetensors``; ``out`` the file
    (``.pt2``/``.onnx``) or, for ``format="hf"``, a new folder (default: ``model.<format>`` in
    the run folder, or its ``hf/`` folder); ``batch``/``seq`` the example's shape (dynamic unless
    ``static``); ``dtype`` the ``hf`` weights' dtype; ``host`` the plugin host the model resolves
    on (default: the process's). Returns the path written. Bad input is one ``UsageError`` (or
    ``CheckpointError``) line, with nothing written. The notes the command prints are warnings
    here (:class:`Note`): a ``batch`` or ``seq`` of 1 traced at 2 an
    :class:`~deepseek.config.ineffective.IneffectiveSettingWarning`, an ``hf`` folder without a
    tokenizer a ``UserWarning``."""
    import warnings

    from deepseek import api_args

    checkpoint = api_args.path(checkpoint, "checkpoint")
    out = None if out is None else api_args.path(out, "out")
    fmt = api_args.choice(format, "format", FORMATS)
    batch = None if batch is None else api_args.whole(batch, "batch", minimum=1)
    seq = api_args.whole(seq, "seq", minimum=1)
    static = api_args.flag(static, "static")
    dtype = None if dtype is None else api_args.choice(dtype, "dtype", tuple(DTYPE_NAMES))
    from deepseek.plugins.host import get_host

    host = api_args.host(host) or get_host()  # the documented default, resolved here at the API's edge
    done = export_trained(checkpoint, out, fmt=fmt, batch=batch, seq=seq, static=static, dtype=dtype, host=host)
    for note in done.notes:
        if note.category is not None:
            warnings.warn(note.text, note.category, stacklevel=2)
    return done.path
