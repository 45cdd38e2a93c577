"""The canonical checkpoint format: safetensors + JSON, no pickle anywhere.

A checkpoint is a directory ``checkpoints/step-N/`` holding

- ``model.safetensors``: the full model state dict under unwrapped parameter names;
- ``optimizer.safetensors``: optimizer state tensors keyed ``state/<param name>/<key>``, with
  the param groups (hyper-parameters, parameters by name) and scalar state as JSON metadata;
- ``trainer.json``: step, data position, schedule, precision state, config, metrics, format;
- ``rng-<rank>.safetensors``: torch CPU/CUDA generator states as tensors, python's and
  numpy's as tensors + JSON metadata.

It is written into ``step-N.tmp-XXXX`` and renamed into place (:func:`commit_checkpoint`) with a
commit record (``commit.json``: sequence number, every file's size), then the ``latest`` pointer
file is replaced atomically; resume takes the newest complete checkpoint (see
:mod:`deepseek.training.checkpoint_dirs` for the crash-consistency rules). Anything missing, truncated or corrupt raises
:class:`~deepseek.errors.CheckpointError` naming the file and what to do. Sharded strategies
reuse :func:`save_model_state` / :func:`save_optimizer_state` with full (gathered) state dicts;
deepseek-pro's ``sharded`` layout is read by :mod:`deepseek.training.checkpoint_sharded`, and the
``load_*`` / :func:`read_full_state` functions here take a checkpoint folder of either layout.

This module is the checkpoint API; ``checkpoint_dirs`` (folders, atomic commit, ``latest``),
``checkpoint_lookup`` (which checkpoint a passed path means), ``checkpoint_io`` (one safetensors
file), ``checkpoint_optimizer`` (optimizer state by parameter name), ``checkpoint_rng`` and ``checkpoint_sharded`` are its parts, and callers outside them
import from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.arguments import spelled
from deepseek.errors import CheckpointError, PluginError, UsageError
from deepseek.parsing import loads_json, read_text
from deepseek.paths import out_of_space
from deepseek.plugins.calls import PLUGIN_BUG
from deepseek.training.checkpoint_dirs import (
    BEST_FILE,
    COMMIT_FILE,
    LATEST_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    TRAINER_FILE,
    atomic_write_text,
    best_checkpoint,
    commit_checkpoint,
    ctrl_c_deferred,
    discard,
    list_checkpoints,
    list_stale,
    new_temp_dir,
    prunable,
    prune_checkpoints,
    remove_stale,
)
from deepseek.training.checkpoint_io import HINT as _HINT
from deepseek.training.checkpoint_io import (
    canonical_group,
    check_group_members,
    check_groups_fit,
    cpu_unshared,
    from_jsonable,
    jsonable,
    resumed_group,
)
from deepseek.training.checkpoint_io import load_tensors as _load_tensors
from deepseek.training.checkpoint_io import save_tensors as _save_tensors
from deepseek.training.checkpoint_lookup import resolve_checkpoint
from deepseek.training.checkpoint_names import committed_path, step_dir_name
from deepseek.training.checkpoint_optimizer import (
    check_resumed_groups,
    load_optimizer_state,
    optimizer_param_names,
    save_optimizer_state,
)
from deepseek.training.checkpoint_pointers import pointer_updates, update_pointers
from deepseek.training.checkpoint_rng import load_rng_state, rng_snapshot, save_rng_state
from deepseek.training.checkpoint_sharded import (
    layout_of,
    read_sharded_meta,
    read_sharded_model,
)
from deepseek.training.checkpoint_state import FORMAT, FORMAT_VERSION, check_trainer_state
from deepseek.training.optimizer_state import check_state_fit

if TYPE_CHECKING:
    import torch
    from torch import nn


__all__ = [
    "BEST_FILE",
    "COMMIT_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "LATEST_FILE",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "TRAINER_FILE",
    "atomic_write_text",
    "best_checkpoint",
    "canonical_group",
    "check_group_members",
    "check_resumed_groups",
    "check_groups_fit",
    "check_fits_module",
    "check_model_fit",
    "check_state_fit",
    "commit_checkpoint",
    "committed_path",
    "discard",
    "export_weights",
    "from_jsonable",
    "jsonable",
    "layout_of",
    "list_checkpoints",
    "load_into_model",
    "load_model_state",
    "load_optimizer_state",
    "load_rng_state",
    "new_temp_dir",
    "optimizer_param_names",
    "pointer_updates",
    "prunable",
    "prune_checkpoints",
    "read_full_state",
    "read_trainer_state",
    "read_weights_metadata",
    "list_stale",
    "remove_stale",
    "update_pointers",
    "resolve_checkpoint",
    "resumed_group",
    "rng_snapshot",
    "save_model_state",
    "save_optimizer_state",
    "save_rng_state",
    "step_dir_name",
    "write_checkpoint",
    "write_trainer_state",
]


# ----------------------------------------------------------------------------- model


def save_model_state(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a full (unsharded) model state dict as safetensors under canonical names."""
    target = Path(path)
    meta = {"format": "deepseek-model", "format_version": str(FORMAT_VERSION), **(metadata or {})}
    _save_tensors(target, cpu_unshared(state_dict), meta)
    return target


def load_model_state(path: str | os.PathLike[str], host: Any = None) -> dict[str, torch.Tensor]:
    """Read a model state dict (CPU tensors) written by :func:`save_model_state`, or the weights
    of a checkpoint folder of either layout (:mod:`deepseek.training.checkpoint_sharded`; a sharded
    one's ``sharded.json`` groups checked on ``host``, the run's or command's; default: the process's)."""
    p = Path(path)
    if p.is_dir():
        if layout_of(p) == "sharded":
            return read_sharded_model(p, host=host)
        p = p / MODEL_FILE
    tensors, _ = _load_tensors(p, "model weights")
    return tensors


def check_model_fit(
    state: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], where: Any,
    dtypes: Mapping[str, torch.dtype] | None = None, *, fix: str = "use the [model] config of the run that wrote "
    "the checkpoint",
) -> None:
    """:class:`CheckpointError` naming the keys when ``state`` (name -> tensor) does not fit a
    model whose state has ``shapes`` (name -> shape) and, where given, ``dtypes`` (name -> dtype:
    a floating-point tensor must not be loaded from integers, which would truncate its values,
    nor an integer one from floats); ``where`` names the file in the message, ``fix`` ends it."""
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    bad_shapes = [k for k in shapes if k in state and tuple(state[k].shape) != tuple(shapes[k])]
    if missing or unexpected or bad_shapes:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shape mismatch {bad_shapes[:3]}" if bad_shapes else "",
            )
            if part
        )
        raise CheckpointError(
            f"{where}: weights do not fit this model ({detail}); {fix}"
        )
    for name, dtype in (dtypes or {}).items():
        if name in state and state[name].is_floating_point() != dtype.is_floating_point:
            raise CheckpointError(
                f"{where}: {name!r} holds {state[name].dtype} values where the model keeps {dtype}; the "
                f"checkpoint is damaged, {_HINT}"
            )


def load_into_model(model: nn.Module, path: str | os.PathLike[str], host: Any = None) -> None:
    """Load ``path`` (a weights file, or a checkpoint, ``checkpoints`` or run folder: the newest
    complete checkpoint, see :func:`resolve_checkpoint`) into ``model`` strictly; a mismatch names
    the keys and the fix. ``host``: the command's plugin host (:func:`load_model_state`)."""
    p = Path(path)
    state = load_model_state(p if p.is_file() else resolve_checkpoint(p), host)
    check_fits_module(state, model, path, fix="give the model the run trained (the same class and sizes)")
    model.load_state_dict(state, strict=True)


def check_fits_module(state: Mapping[str, Any], module: nn.Module, where: Any, **fix: str) -> None:
    """:func:`check_model_fit` of ``state`` against ``module``'s own state: its names, shapes and
    dtypes (a ``meta``-device module costs no memory); ``fix``: the message's end, as there."""
    live = module.state_dict()
    check_model_fit(state, {k: tuple(v.shape) for k, v in live.items()}, where, {k: v.dtype for k, v in live.items()},
                    **fix)


def check_weights_fit(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """:func:`load_into_model`'s check of names and shapes, made from the weights file's header
    alone against ``model`` (built on the ``meta`` device: no memory), so that a config that no
    longer matches its weights (an edited ``trainer.json`` asking for a huge model) is refused
    before the model is built for real. A sharded checkpoint, or a header that cannot be read,
    is left to :func:`load_into_model`, whose messages name what is wrong."""
    from deepseek.safetensors_file import open_safetensors

    p = Path(path)
    if p.is_dir():
        if layout_of(p) == "sharded":
            return
        p = p / MODEL_FILE

    class _Header:  # what check_model_fit reads of a tensor
        def __init__(self, shape: tuple[int, ...]) -> None:
            self.shape = shape

    try:  # opened once: a FIFO in its place is refused, never waited on
        with open_safetensors(p) as fh:
            state = {k: _Header(fh.shape(k)) for k in fh.keys()}
    except (OSError, ValueError):
        return
    check_model_fit(state, {k: tuple(v.shape) for k, v in model.state_dict().items()}, path)


def read_full_state(directory: str | os.PathLike[str], host: Any = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model state dict, named optimizer state ``{"state", "param_groups"}``) of a checkpoint
    folder of either layout, as full CPU tensors, without a process group; the optimizer's groups
    checked on ``host`` (the run's: :func:`load_optimizer_state`). A sharded checkpoint's
    ``sharded.json`` is read, and its groups checked (the run's optimizer resolved), once for both."""
    p = Path(directory)
    if p.is_dir() and layout_of(p) == "sharded":
        meta = read_sharded_meta(p, host)
        return read_sharded_model(p, meta), load_optimizer_state(p, host=host, sharded_meta=meta)
    return load_model_state(p), load_optimizer_state(p, host=host)


# ----------------------------------------------------------------------------- trainer state, RNG


def write_trainer_state(directory: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``trainer.json`` (format and version added) atomically."""
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    return atomic_write_text(Path(directory) / TRAINER_FILE, json.dumps(body, indent=1, sort_keys=True))


def read_trainer_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``trainer.json`` and check every field the trainer reads back
    (:func:`deepseek.training.checkpoint_state.check_trainer_state`)."""
    path = Path(directory) / TRAINER_FILE
    if not path.is_file():
        what = ("is a folder, not the trainer state file" if path.is_dir() else
                "is not a regular file" if path.exists() or path.is_symlink() else "trainer state file is missing")
        raise CheckpointError(f"{path}: {what}; the checkpoint is incomplete, {_HINT}")
    try:
        state = loads_json(read_text(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: trainer state is corrupt or truncated ({exc}); {_HINT}") from exc
    return check_trainer_state(state, path)


def export_weights(source: str | os.PathLike[str], out: str | os.PathLike[str], *, host: Any = None) -> Path:
    """Copy a run's (or checkpoint's) model weights into one self-describing safetensors file
    whose metadata carries the ``[model]`` config. ``host``: the caller's plugin host, on which a
    sharded checkpoint's ``sharded.json`` groups are checked (:func:`load_model_state`; default:
    the process's)."""
    ckpt = resolve_checkpoint(source)
    state = read_trainer_state(ckpt)
    weights = load_model_state(ckpt, host)
    model_cfg = (state.get("config") or {}).get("model", {})
    return save_model_state(
        out, weights, {"format": "deepseek-weights", "model": json.dumps(model_cfg), "step": str(state.get("step", 0))}
    )


def read_weights_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Metadata of a safetensors file (the ``[model]`` config of exported weights)."""
    from deepseek.parsing import UnreadableFile
    from deepseek.paths import not_a_file
    from deepseek.safetensors_file import open_safetensors

    p = Path(path)
    try:  # opened once: the path may be swapped after any check of it
        with open_safetensors(p) as fh:
            return fh.metadata()
    except FileNotFoundError:
        raise CheckpointError(f"{p}: weights file not found; check the path") from None
    except (IsADirectoryError, UnreadableFile):
        there = not_a_file(p) or "is not a regular file"
        raise CheckpointError(f"{p}: {there}, not a weights file; give a .safetensors file") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from exc


def write_checkpoint(
    strategy: Any, root: Path, step: int, trainer_state: Mapping[str, Any], *, keep_last: int, best: bool = False,
    label: str | None = None,
) -> Path:
    """Write ``root/step-N`` on every rank of ``strategy`` (a collective): into a temporary folder
    that rank 0 names, then committed by rank 0 (:func:`commit_checkpoint`; ``best``: and marked
    the best, kept from pruning) and pruned to ``keep_last``. On any error or Ctrl-C the temporary
    folder is removed and nothing of it is left; the folder of the last good checkpoint stays.
    ``label`` names the strategy in the refusal of a ``save_checkpoint`` that wrote no trainer state."""
    final = root / step_dir_name(step)
    tmp: Path | None = None
    try:
        with ctrl_c_deferred():  # a Ctrl-C right after the folder is made finds it named, to discard
            tmp = new_temp_dir(root, step) if strategy.is_global_zero else None
        tmp = Path(strategy.broadcast_object(str(tmp) if tmp else None))
        tmp.mkdir(parents=True, exist_ok=True)
        strategy.save_checkpoint(tmp, dict(trainer_state))
        save_rng_state(tmp, strategy.rank)
        strategy.barrier()
        if strategy.is_global_zero:
            if not (tmp / TRAINER_FILE).is_file():  # committed without it, no checkpoint of the run would count
                raise PluginError(f"{label or type(strategy).__name__}: save_checkpoint wrote no {TRAINER_FILE}; it "
                                  "must write the trainer state it is given (ckpt.write_trainer_state(directory, "
                                  f"trainer_state)); {PLUGIN_BUG}")
            commit_checkpoint(tmp, final, best=best)
            prune_checkpoints(root, keep_last)
    except BaseException as exc:
        if strategy.is_global_zero and tmp is not None:
            discard(tmp)
        if isinstance(exc, Exception) and out_of_space(exc):
            raise UsageError(
                f"{root}: the disk is full: checkpoint step-{step} could not be written, and nothing of it is kept (the "
                "run's earlier checkpoints are as they were); free space there or lower checkpoint.keep_last, then "
                f"{spelled('run it again with --resume', 'run it again with resume=')}, or train in a folder on a larger disk "
                f"({spelled('--run-dir', 'run_dir=')})"
            ) from exc
        raise
    strategy.barrier()
    return final
