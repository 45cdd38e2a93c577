"""Reading the ``sharded`` checkpoint layout in one process, without a process group.

A checkpoint folder holds ``trainer.json`` and ``rng-<rank>.safetensors`` plus its weights in one
of two layouts:

``full``
    ``model.safetensors`` + ``optimizer.safetensors`` (:mod:`deepseek.training.checkpoint`).

``sharded`` (written by deepseek-pro's ddp / fsdp with ``checkpoint = "sharded"``)
    ``model/`` and ``optimizer/``: every rank's shards, written by ``torch.distributed.checkpoint``
    with its safetensors storage writer (the shard offsets live in each file's safetensors
    metadata, no pickle); optimizer tensors keyed ``state/<param>/<key>`` as in the full
    layout; and ``sharded.json``: parameter groups, non-tensor optimizer state, tied-parameter
    aliases (``lm_head.weight`` -> ``wte.weight``; a tied tensor is stored once) and the shard
    files written (``files``: ``{"model": [...], "optimizer": [...]}``).

Before any tensor is read, the shard files present are checked against ``files`` (a missing or a
foreign one is named) and every tensor's stored pieces against its size: torch's reader takes a
tensor's size from the pieces it finds and would leave a missing piece's values as they were
(:func:`check_sharded_files`). Checkpoints written before ``files`` was recorded get the second
check only.

Everything here reassembles full CPU tensors with ``torch.distributed.checkpoint``'s
``no_dist`` mode, so deepseek-core alone (strategy ``single``, ``deepseek generate`` / ``eval``)
reads a checkpoint whatever strategy and world size wrote it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.errors import CheckpointError
from deepseek.parsing import loads_json, read_text
from deepseek.training.checkpoint_dirs import MODEL_FILE, OPTIMIZER_FILE
from deepseek.training.checkpoint_io import HINT as _HINT
from deepseek.training.checkpoint_io import (
    check_finite,
    check_saved_groups,
    check_tensors,
    from_jsonable,
    from_jsonable_tree,
)

if TYPE_CHECKING:
    import torch

MODEL_DIR = "model"
OPTIMIZER_DIR = "optimizer"
SHARDED_META = "sharded.json"

__all__ = [
    "MODEL_DIR",
    "OPTIMIZER_DIR",
    "SHARDED_META",
    "flatten_optimizer_state",
    "layout_of",
    "read_sharded_meta",
    "read_sharded_model",
    "read_sharded_optimizer",
    "read_sharded_tensors",
    "check_aliases",
    "check_sharded_files",
    "check_weights_files",
    "sharded_reader_error",
    "unflatten_optimizer_state",
]


def layout_of(directory: str | os.PathLike[str]) -> str:
    """``"full"`` or ``"sharded"``; :class:`CheckpointError` if the folder holds neither."""
    d = Path(directory)
    if (d / MODEL_FILE).is_file():
        return "full"
    if (d / MODEL_DIR).is_dir():
        return "sharded"
    raise CheckpointError(
        f"{d}: no model weights ({MODEL_FILE} or {MODEL_DIR}/ shards); the checkpoint is "
        f"incomplete, {_HINT}"
    )


def flatten_optimizer_state(state: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{name: {key: value}}`` -> (``{"state/<name>/<key>": tensor}``, non-tensor values)."""
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, values in state.items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{name}/{key}"] = value
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, scalars


def unflatten_optimizer_state(
    tensors: Mapping[str, Any], scalars: Mapping[str, Mapping[str, Any]], where: Any
) -> dict[str, dict[str, Any]]:
    """Inverse of :func:`flatten_optimizer_state`, for both layouts (``scalars``: ``sharded.json``'s,
    or the metadata's of ``optimizer.safetensors``). A state key both stored as a tensor and among the
    non-tensor values is a :class:`CheckpointError` naming ``where`` (the writer splits them: one is
    damage, and the tensor silently replaced the other)."""
    state: dict[str, dict[str, Any]] = {name: dict(v) for name, v in scalars.items()}
    for key, value in tensors.items():
        name, _, k = key.removeprefix("state/").rpartition("/")
        values = state.setdefault(name, {})
        if k in values:
            raise CheckpointError(f"{where}: optimizer state {name}/{k} is stored twice, as a tensor and among the "
                                  f"non-tensor values (scalars); the checkpoint is damaged, {_HINT}")
        values[k] = value
    return state


def read_sharded_tensors(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of a sharded (DCP safetensors) folder as full CPU tensors, in this process."""
    import torch

    d = Path(directory)
    if not d.is_dir() or not any(d.glob("*.safetensors")):
        raise CheckpointError(f"{d}: sharded checkpoint folder is missing or empty; {_HINT}")
    try:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import HuggingFaceStorageReader
        from torch.distributed.checkpoint.api import (
            CheckpointException,  # a BaseException: named to be caught
        )
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    except ImportError as exc:
        raise CheckpointError(
            f"{d}: reading a sharded checkpoint needs torch.distributed.checkpoint's safetensors "
            f"reader, absent from torch {torch.__version__} ({exc}); upgrade torch to 2.8 or newer"
        ) from exc
    try:
        meta = HuggingFaceStorageReader(str(d)).read_metadata()
        _check_coverage(d, meta)
        full: dict[str, torch.Tensor] = {}
        for fqn, md in meta.state_dict_metadata.items():
            if isinstance(md, TensorStorageMetadata):
                full[fqn] = torch.empty(md.size, dtype=md.properties.dtype)
        with warnings.catch_warnings():  # no_dist is what we ask for, not a fallback to warn about
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            dcp.load(full, storage_reader=HuggingFaceStorageReader(str(d)), no_dist=True)
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - any reader failure is a damaged checkpoint
        raise CheckpointError(f"{d}: sharded checkpoint is corrupt or incomplete ({sharded_reader_error(exc)}); "
                              f"{_HINT}") from exc
    check_finite(full, d)
    return full


def _check_coverage(folder: Path, meta: Any) -> None:
    """Every tensor of a shard folder's metadata stored whole, once: each piece's offsets (from the
    DCP sharding info of its file's header) as many as the tensor's dimensions and none below 0,
    no two pieces overlapping, and the pieces holding exactly as many values as its size (DCP
    writes pieces that tile the tensor: torch's reader would leave a gap's values as they were)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    for fqn, md in meta.state_dict_metadata.items():
        if not isinstance(md, TensorStorageMetadata):
            continue
        for chunk in md.chunks:
            if len(chunk.offsets) != len(md.size) or len(chunk.sizes) != len(md.size) or min(chunk.offsets, default=0) < 0:
                raise CheckpointError(f"{folder}: tensor {fqn!r} has a piece at offsets {list(chunk.offsets)} for "
                                      f"{len(chunk.sizes)} dimension(s) (its shard's sharding info is damaged); "
                                      f"the checkpoint is damaged, {_HINT}")
        _check_disjoint(folder, fqn, md.chunks)
        need = math.prod(md.size)
        held = sum(math.prod(chunk.sizes) for chunk in md.chunks)
        if held < need:
            raise CheckpointError(f"{folder}: tensor {fqn!r} is only partly stored ({held} of {need} values): a shard "
                                  f"file is missing, or the metadata records a size the pieces do not make; the "
                                  f"checkpoint is incomplete or damaged, {_HINT}")


def _check_disjoint(folder: Path, fqn: str, chunks: list[Any]) -> None:
    """No two pieces of tensor ``fqn`` overlap: the same piece twice is a shard file copied in,
    another overlap damaged sharding info. Pieces sorted by their first offset, each is compared
    with those that start before it ends in that dimension (one neighbour where DCP shards a
    tensor's first dimension)."""
    order = sorted(chunks, key=lambda c: tuple(c.offsets))
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if a.offsets and b.offsets[0] >= a.offsets[0] + a.sizes[0]:
                break
            if all(bo < ao + asz and ao < bo + bsz for ao, asz, bo, bsz in zip(a.offsets, a.sizes, b.offsets, b.sizes,
                                                                                 strict=True)):
                if tuple(a.offsets) == tuple(b.offsets) and tuple(a.sizes) == tuple(b.sizes):
                    raise CheckpointError(f"{folder}: tensor {fqn!r} is stored more than once (the piece at "
                                          f"{list(a.offsets)} twice): a shard file was copied in; move the copy out "
                                          f"of the folder")
                raise CheckpointError(f"{folder}: tensor {fqn!r} has overlapping pieces (at {list(a.offsets)} and "
                                      f"{list(b.offsets)}; a shard's sharding info is damaged); the checkpoint is "
                                      f"damaged, {_HINT}")


def check_sharded_files(directory: str | os.PathLike[str], host: Any = None) -> dict[str, Any]:
    """The shard files of the sharded checkpoint ``directory`` against ``sharded.json``'s list
    (when it has one), every tensor's stored pieces against its size, and the tied names against
    the names ``model/`` stores (:func:`check_aliases`); :class:`CheckpointError` naming the first
    problem. Reads the files' headers only (and ``sharded.json``, its groups checked on ``host``:
    :func:`read_sharded_meta`, whose result it returns: a load reads and checks it once)."""
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import CheckpointException

    d = Path(directory)
    sharded = read_sharded_meta(d, host)
    for sub in (MODEL_DIR, OPTIMIZER_DIR):
        folder = d / sub
        present = _check_listed(folder, sharded["files"].get(sub))
        if not present:
            continue
        try:
            meta = HuggingFaceStorageReader(str(folder)).read_metadata()
        except (Exception, CheckpointException) as exc:  # noqa: BLE001 - a header torch cannot read
            raise CheckpointError(f"{folder}: sharded checkpoint is corrupt or incomplete "
                                  f"({sharded_reader_error(exc)}); {_HINT}") from exc
        _check_coverage(folder, meta)
        if sub == MODEL_DIR:
            check_aliases(sharded["aliases"], meta.state_dict_metadata, d)
    return sharded


def check_weights_files(directory: str | os.PathLike[str], host: Any = None) -> None:
    """The weights and optimizer files of checkpoint ``directory`` parse as safetensors, headers
    and tensor extents (:func:`~deepseek.training.checkpoint_io.check_tensors`; a sharded one's
    shards: :func:`check_sharded_files`, whose reader parses them so); :class:`CheckpointError`
    naming the first damaged file. No tensor is read: what ``deepseek checkpoint info`` checks
    beyond the commit record's checksums, which a file rewritten with its record passes. The saved
    optimizer groups are held to the types the run's optimizer declares (looked up on ``host``)."""
    d = Path(directory)
    if layout_of(d) == "sharded":
        check_sharded_files(d, host)
        return
    check_tensors(d / MODEL_FILE, "model weights")
    if (d / OPTIMIZER_FILE).exists():  # a canonical folder without one: its absence is the load's to name
        check_tensors(d / OPTIMIZER_FILE, "optimizer state")
        # imported here: checkpoint_optimizer imports this module
        from deepseek.training.checkpoint_optimizer import check_full_groups

        check_full_groups(d, host)


def _check_listed(folder: Path, listed: list[str] | None) -> list[str]:
    """The shard files in ``folder``, checked against the names ``sharded.json`` lists for it
    (``None``: written before the list was recorded, nothing to check)."""
    present = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if listed is None:
        return present
    missing = sorted(set(listed) - set(present))
    if missing:
        raise CheckpointError(
            f"{folder}: shard file {missing[0]} is missing ({len(missing)} of the {len(listed)} files "
            f"{SHARDED_META} lists); the checkpoint is incomplete, {_HINT}"
        )
    foreign = sorted(set(present) - set(listed))
    if foreign:
        raise CheckpointError(
            f"{folder}: {foreign[0]} is not one of the shard files {SHARDED_META} lists; it was not written "
            f"with this checkpoint: move it out of the folder"
        )
    return present


def sharded_reader_error(exc: BaseException) -> str:
    """torch's reader error in one line: a ``CheckpointException`` (what ``dcp.load`` raises on
    every rank, its text the tracebacks of all ranks) by its first rank's exception."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        rank = min(failures)
        first = failures[rank]
        inner = first[0] if isinstance(first, tuple) and first else first
        if isinstance(inner, BaseException):
            exc = inner
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def read_sharded_meta(directory: str | os.PathLike[str], host: Any = None) -> dict[str, Any]:
    """``sharded.json`` of a sharded checkpoint, read back like user input: ``param_groups``
    (:func:`~deepseek.training.checkpoint_io.check_saved_groups`), ``scalars`` (non-tensor
    optimizer state: parameter name -> key -> value, as the writer encoded them,
    :func:`~deepseek.training.checkpoint_io.jsonable_tree`, decoded: a tuple is a tuple), ``aliases`` (tied state-dict name -> the
    stored name) and ``files`` (the shard files of ``model/`` and ``optimizer/``; ``{}`` when the
    checkpoint predates the list). A :class:`CheckpointError` naming the file and what is wrong. The
    groups are held to the hyper-parameter types the run's optimizer declares, looked up on ``host``
    (default: the process's; :func:`~deepseek.training.hyper_parameters.saved_hyper_parameters`)."""
    from deepseek.training.hyper_parameters import saved_hyper_parameters

    path = Path(directory) / SHARDED_META
    try:
        body = loads_json(read_text(path))
        if not isinstance(body, dict):
            raise ValueError(f"a JSON {type(body).__name__} where an object belongs")
        groups = body["param_groups"]
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ValueError("'param_groups' is not a list of objects")
        meta = {
            "param_groups": [{k: from_jsonable(v) for k, v in g.items()} for g in groups],
            "scalars": from_jsonable_tree(name_map(body.get("scalars", {}), "scalars")),
            "aliases": name_map(body.get("aliases", {}), "aliases"),
            "files": _shard_lists(body.get("files", {})),
        }
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: sharded checkpoint metadata is missing or corrupt ({exc}); {_HINT}") from exc
    check_saved_groups(meta["param_groups"], path, saved_hyper_parameters(directory, host))
    return meta


def name_map(value: Any, key: str) -> dict[str, Any]:
    """A checkpoint's ``key`` read back: an object of parameter names whose every value is an
    object (``scalars``: non-tensor optimizer state, of ``sharded.json`` or ``optimizer.safetensors``)
    or a name (``aliases``: tied name -> stored name)."""
    def fits(v: Any) -> bool:
        return isinstance(v, dict) if key == "scalars" else isinstance(v, str) and v != ""

    if not isinstance(value, dict) or not all(isinstance(k, str) and k and fits(v) for k, v in value.items()):
        what = "a map of names to objects" if key == "scalars" else "a map of tied names to stored names"
        raise ValueError(f"{key!r} is {str(value)[:80]}, not {what}")
    return dict(value)


def check_aliases(aliases: Mapping[str, str], stored: Collection[str], where: Path) -> None:
    """The tied names of ``sharded.json`` (``aliases``: name -> the stored name) against the names
    ``model/`` stores: each points at one it stores and is not one itself (a stored weight taken for
    a tied one would be replaced by its partner, or under a sharded load left as it was)."""
    for alias, name in aliases.items():
        if alias in stored:
            raise CheckpointError(f"{where / SHARDED_META}: tied weight {alias!r} is also stored in {MODEL_DIR}/ (it "
                                  f"names {name!r} as its partner); the checkpoint is damaged, {_HINT}")
        if name not in stored:
            raise CheckpointError(f"{where / SHARDED_META}: tied weight {alias!r} points at {name!r}, which "
                                  f"{MODEL_DIR}/ does not hold; the checkpoint is damaged, {_HINT}")


def _shard_lists(value: Any) -> dict[str, list[str]]:
    """``sharded.json``'s ``files``: ``{"model"|"optimizer": [file names]}`` (``{}`` in checkpoints
    written before it was recorded)."""
    if not isinstance(value, dict) or set(value) - {MODEL_DIR, OPTIMIZER_DIR}:
        raise ValueError(f"'files' is {str(value)[:80]}, not a map of {MODEL_DIR!r} and {OPTIMIZER_DIR!r} to file lists")
    for key, names in value.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                                   for n in names):
            raise ValueError(f"'files.{key}' is not a list of file names")
    return {key: list(names) for key, names in value.items()}


def read_sharded_model(directory: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                       host: Any = None) -> dict[str, torch.Tensor]:
    """The full model state dict (CPU tensors, tied names included) of a sharded checkpoint;
    ``meta``: its ``sharded.json`` as :func:`read_sharded_meta` returned it to the caller (default:
    read here, its groups checked on ``host``, the run's or command's; default: the process's)."""
    d = Path(directory)
    meta = read_sharded_meta(d, host) if meta is None else meta
    _check_listed(d / MODEL_DIR, meta["files"].get(MODEL_DIR))
    model = read_sharded_tensors(d / MODEL_DIR)
    check_aliases(meta["aliases"], model, d)
    for alias, name in meta["aliases"].items():
        model[alias] = model[name]
    return model


def read_sharded_optimizer(directory: str | os.PathLike[str], host: Any = None,
                           meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The optimizer state ``{"state": {name: {...}}, "param_groups": [...]}`` keyed by parameter
    name, of a sharded checkpoint (its groups checked on ``host``: :func:`read_sharded_meta`, or
    ``meta``, what that returned to the caller)."""
    d = Path(directory)
    meta = read_sharded_meta(d, host) if meta is None else meta
    shards = d / OPTIMIZER_DIR
    if not shards.is_dir():
        raise CheckpointError(f"{shards}: optimizer shards folder is missing; the checkpoint is incomplete, {_HINT}")
    _check_listed(shards, meta["files"].get(OPTIMIZER_DIR))
    # An optimizer without tensor state (before its first step, SGD without momentum) writes an
    # empty folder.
    tensors = read_sharded_tensors(shards) if any(shards.glob("*.safetensors")) else {}
    return {"state": unflatten_optimizer_state(tensors, meta["scalars"], d / SHARDED_META),
            "param_groups": meta["param_groups"]}
