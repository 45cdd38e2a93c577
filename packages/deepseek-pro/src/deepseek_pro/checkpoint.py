"""Portable checkpoints for the distributed strategies: writing both layouts, loading them
under any strategy and world size, and export.

Two layouts of one checkpoint folder (both hold ``trainer.json`` and ``rng-<rank>.safetensors``):

``full`` (the canonical format of :mod:`deepseek.training.checkpoint`)
    ``model.safetensors`` + ``optimizer.safetensors`` gathered on rank 0 with
    ``torch.distributed.checkpoint.state_dict.get_state_dict(full_state_dict=True)``.

``sharded``
    ``model/`` and ``optimizer/``: every rank writes its own shards through
    ``torch.distributed.checkpoint`` with the safetensors storage writer (no pickle: the shard
    offsets live in each file's safetensors metadata), plus ``sharded.json`` (parameter groups,
    non-tensor optimizer state and tied-parameter aliases). Optimizer tensors are keyed
    ``state/<param>/<key>`` as in the canonical file. Loading reshards to any world size;
    :func:`export_checkpoint` turns it into ``full``.

The reading side of both layouts lives in core (``deepseek.training.checkpoint.read_full_state``,
:mod:`deepseek.training.checkpoint_sharded`): deepseek-core alone loads both layouts (strategy
``single``, ``deepseek generate`` / ``eval``).

Every pro strategy loads both layouts, whatever strategy and world size wrote them, so a run can
hop zero3@2 -> single@1 -> ddp@2 -> deepspeed@2. What carries over: weights, AdamW/SGD state
(``exp_avg``, ``exp_avg_sq``, ``step``, momentum), parameter-group hyper-parameters, trainer state,
data position, fp16 loss scale. What does not: DDP's PowerSGD error-feedback memory (restarted).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.errors import CheckpointError, UsageError
from deepseek.paths import usual_mode
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_io import HINT as _HINT
from deepseek.training.checkpoint_io import first_nonfinite, jsonable_tree
from deepseek.training.checkpoint_sharded import (
    MODEL_DIR,
    OPTIMIZER_DIR,
    SHARDED_META,
    check_sharded_files,
    flatten_optimizer_state,
    sharded_reader_error,
    unflatten_optimizer_state,
)
from deepseek.training.hyper_parameters import live_hyper_parameters
from deepseek.training.optimizers import builder_of
from deepseek.training.param_groups import tied_aliases

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deepseek_pro.strategies.base import DistributedStrategy
    from deepseek_pro.strategies.tp_layout import FusedRows

__all__ = ["export_checkpoint", "load_checkpoint", "raise_if_any", "save_checkpoint", "tied_aliases"]



# ----------------------------------------------------------------------------- save / load (DCP)


def save_checkpoint(
    strategy: DistributedStrategy,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    directory: Path,
    trainer_state: dict[str, Any],
    *,
    sharded: bool,
    fused: FusedRows | None = None,
) -> None:
    """Write ``module`` (plain, DDP-wrapped inside, FSDP2-sharded or tensor-parallel) and
    ``optimizer`` into ``directory`` in the ``sharded`` or full layout; every rank must call it.
    ``fused``: the fused rows a tensor-parallel module keeps rank-major (full layout only), put
    back in canonical order before writing."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    directory = Path(directory)
    if sharded and fused is not None:
        raise ValueError("a reordered (tensor-parallel) layout is written in the full layout only")
    if not sharded:
        msd, osd = get_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if strategy.is_global_zero:
            if fused is not None:
                msd, osd = fused.canonical(msd, osd)
            ckpt.save_model_state(directory / ckpt.MODEL_FILE, msd)
            ckpt.save_optimizer_state(directory / ckpt.OPTIMIZER_FILE, osd)
            ckpt.write_trainer_state(directory, {**trainer_state, "layout": "full"})
        strategy.barrier()
        return
    msd, osd = get_state_dict(module, optimizer)
    aliases = tied_aliases(module)
    msd = {k: v for k, v in msd.items() if k not in aliases}
    dcp.save(msd, storage_writer=HuggingFaceStorageWriter(str(directory / MODEL_DIR), save_distributed=True))
    tensors, scalars = flatten_optimizer_state(osd["state"])
    dcp.save(tensors, storage_writer=HuggingFaceStorageWriter(str(directory / OPTIMIZER_DIR), save_distributed=True))
    if strategy.is_global_zero:
        groups = [{k: ckpt.jsonable(v) for k, v in g.items()} for g in osd["param_groups"]]
        # Every rank's shards are on disk once dcp.save returns (its last step gathers every
        # rank's write results): the list lets a reader name a shard file that went missing.
        files = {sub: sorted(p.name for p in (directory / sub).glob("*.safetensors")) for sub in (MODEL_DIR, OPTIMIZER_DIR)}
        body = {"param_groups": groups, "scalars": jsonable_tree(scalars), "aliases": aliases, "files": files}
        ckpt.atomic_write_text(directory / SHARDED_META, json.dumps(body, indent=1, sort_keys=True))  # as core's
        ckpt.write_trainer_state(directory, {**trainer_state, "layout": "sharded", "world_size": strategy.world_size})
    strategy.barrier()


def load_checkpoint(
    strategy: DistributedStrategy,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    directory: Path,
    *,
    fused: FusedRows | None = None,
) -> dict[str, Any]:
    """Restore ``module`` and ``optimizer`` from either layout (any strategy, any world size);
    returns the trainer state. Every rank must call it; a bad checkpoint fails on every rank.
    ``fused``: the fused rows a tensor-parallel module keeps rank-major (see :func:`save_checkpoint`);
    with it, a sharded checkpoint is read whole on every rank and loaded like a full one."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import (
        CheckpointException,  # a BaseException: named to be caught
    )
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_model_state_dict,
    )

    directory = Path(directory)
    problem: str | None = None
    try:
        state = ckpt.read_trainer_state(directory)
        layout = ckpt.layout_of(directory)
    except CheckpointError as exc:
        problem = str(exc)
    raise_if_any(strategy, problem)
    live = module.state_dict()
    shapes = {k: tuple(v.shape) for k, v in live.items()}
    dtypes = {k: v.dtype for k, v in live.items()}  # integers read into float weights: truncated values
    if layout == "full" or fused is not None:
        # Every rank reads the files (the checkpoint folder is on storage all ranks see, as for
        # saving) and keeps its own part; every rank agrees on a failure before any collective.
        msd: dict[str, Any] = {}
        osd: dict[str, Any] = {}
        try:
            if layout == "full":
                msd = ckpt.load_model_state(directory / ckpt.MODEL_FILE)
                ckpt.check_model_fit(msd, shapes, directory / ckpt.MODEL_FILE, dtypes)
                osd = ckpt.load_optimizer_state(directory / ckpt.OPTIMIZER_FILE, host=strategy.host)
            else:  # a sharded checkpoint, gathered whole (core's reader)
                msd, osd = ckpt.read_full_state(directory, strategy.host)
                ckpt.check_model_fit(msd, shapes, directory, dtypes)
            _check_optimizer_fit(osd, optimizer, module, directory / ckpt.OPTIMIZER_FILE)
        except CheckpointError as exc:
            problem = str(exc)
        raise_if_any(strategy, problem)
        if fused is not None:
            msd, osd = fused.sharded(msd, osd)
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(module, msd, options=opts)
        groups = [{**ckpt.resumed_group(saved, live), "params": saved["params"]}
                  for saved, live in zip(osd["param_groups"], optimizer.param_groups, strict=True)]
        load_optimizer_groups(module, optimizer, {**osd, "param_groups": groups}, options=opts)
        return state
    # sharded: DCP reshards every tensor onto this run's layout
    try:
        # torch's reader leaves a missing piece's values as they were, and a stored name taken as
        # tied unread: check_sharded_files checks both first (and reads sharded.json)
        meta = check_sharded_files(directory, strategy.host)
        msd, osd = get_state_dict(module, optimizer)
        stored = {k: v for k, v in msd.items() if k not in meta["aliases"]}
        ckpt.check_model_fit(_stored_headers(directory / MODEL_DIR), {k: tuple(v.shape) for k, v in stored.items()},
                             directory, {k: v.dtype for k, v in stored.items()})  # DCP casts what it reads
        # everything sharded.json and the shards' headers tell is checked before the first read
        # into the live module (dcp.load writes into its tensors in place): a refused checkpoint
        # leaves a Python API caller's model as it was
        groups, scalars = meta["param_groups"], meta["scalars"]
        ckpt.check_group_members(groups, [g["params"] for g in osd["param_groups"]], directory / OPTIMIZER_DIR)
        builder = builder_of(optimizer)
        ckpt.check_groups_fit(groups, osd["param_groups"], directory / OPTIMIZER_DIR, live_hyper_parameters(builder))
        tensors, _ = flatten_optimizer_state(osd["state"])
        shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}  # a DTensor's is the whole one's
        headers = _stored_headers(directory / OPTIMIZER_DIR) if tensors else {}
        # keys, dtypes and shapes from the headers: torch's reader casts to the live tensors' dtype
        ckpt.check_state_fit(unflatten_optimizer_state(headers, scalars, directory / SHARDED_META), shapes,
                             directory / OPTIMIZER_DIR, builder)
        dcp.load(stored, storage_reader=HuggingFaceStorageReader(str(directory / MODEL_DIR)))
        problem = _nonfinite_part(strategy, stored, directory / MODEL_DIR)
        set_model_state_dict(module, msd)
        dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(directory / OPTIMIZER_DIR)))
        problem = (problem or _nonfinite_part(strategy, tensors, directory / OPTIMIZER_DIR)
                   or _state_part(tensors, scalars, shapes, builder, directory / OPTIMIZER_DIR))
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - torch's reader errors: damaged/mismatched files
        raise CheckpointError(
            f"{directory}: sharded checkpoint does not fit this model or is damaged ({sharded_reader_error(exc)}); use "
            f"the [model] config of the run that wrote it, or {_HINT}"
        ) from exc
    raise_if_any(strategy, problem)  # a damaged shard may reach one rank only: every rank raises
    new_groups = [{**ckpt.resumed_group(saved, cur), "params": cur["params"]}
                  for saved, cur in zip(groups, osd["param_groups"], strict=True)]
    saved = unflatten_optimizer_state(tensors, scalars, directory / SHARDED_META)
    load_optimizer_groups(module, optimizer, {"state": saved, "param_groups": new_groups})
    return state


def load_optimizer_groups(module: nn.Module, optimizer: Any, osd: Mapping[str, Any], options: Any = None) -> None:
    """torch's ``set_optimizer_state_dict`` of ``osd`` (groups in the optimizer's order, parameters
    by name) with the optimizer's empty groups set aside while it runs (it accepts at most one,
    and ``[[optimizer.groups]]`` layouts keep every group, empty ones included), then put back
    in place with their saved settings. torch's call turns a tuple setting (AdamW's ``betas``) into
    a list; each is made the tuple it was saved as again, so the optimizer saves what a run never
    resumed saves (the same bytes: ``{"__tuple__": ...}``, not a list)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    live = optimizer.param_groups
    empty = [i for i, g in enumerate(live) if not g["params"]]
    aside = {i: {**osd["param_groups"][i], "params": []} for i in empty}
    optimizer.param_groups[:] = [g for i, g in enumerate(live) if i not in aside]
    kept = {**osd, "param_groups": [g for i, g in enumerate(osd["param_groups"]) if i not in aside]}
    try:
        set_optimizer_state_dict(module, optimizer, kept, options=options)
        for group, saved in zip(optimizer.param_groups, kept["param_groups"], strict=True):
            for key, value in saved.items():
                if isinstance(value, tuple) and isinstance(group.get(key), list):
                    group[key] = tuple(group[key])
    finally:
        groups = list(optimizer.param_groups)
        for i in empty:
            groups.insert(i, aside[i])
        optimizer.param_groups[:] = groups


def raise_if_any(strategy: DistributedStrategy, problem: str | None) -> None:
    """Raise ``problem`` (or another rank's) as CheckpointError on every rank, or nothing."""
    import torch.distributed as dist

    problems: list[Any] = [problem]
    if dist.is_initialized() and strategy.world_size > 1:
        problems = [None] * strategy.world_size
        dist.all_gather_object(problems, problem)
    first = next((p for p in problems if p), None)
    if first:
        raise CheckpointError(first)


def _stored_headers(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors a shard folder stores, as ``meta`` tensors of their full shape and dtype (from
    the files' headers: no values are read), for core's ``check_model_fit``."""
    import torch
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    header = HuggingFaceStorageReader(str(folder)).read_metadata()
    return {k: torch.empty(md.size, dtype=md.properties.dtype, device="meta")
            for k, md in header.state_dict_metadata.items() if isinstance(md, TensorStorageMetadata)}


def _nonfinite_part(strategy: DistributedStrategy, tensors: Mapping[str, Any], where: Path) -> str | None:
    """Core's check of values read back (``checkpoint_io.check_finite``: the trainer never saves a
    NaN or an infinity, so one is damage) for the tensors DCP loaded into this rank: a DTensor's
    local part, so the count is of what this rank holds. The one line, or None."""
    import torch
    from torch.distributed.tensor import DTensor

    parts = {k: v.to_local() if isinstance(v, DTensor) else v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    found = first_nonfinite(parts)
    if found is None:
        return None
    return f"{where}: {found} (as rank {strategy.rank} loaded it); the checkpoint is damaged, {_HINT}"


def _state_part(tensors: Mapping[str, Any], scalars: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], builder: Any, where: Path) -> str | None:
    """Core's check of optimizer state read back (``optimizer_state.check_state_fit``: what the
    run's optimizer declares it keeps) of the values DCP loaded into this rank (a DTensor's local
    part: counts are of that part); the one line, or None."""
    import torch
    from torch.distributed.tensor import DTensor

    parts = {k: v.to_local() if isinstance(v, DTensor) else v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    try:
        ckpt.check_state_fit(unflatten_optimizer_state(parts, scalars, where), shapes, where, builder, local=True)
    except CheckpointError as exc:
        return str(exc)
    return None


def _check_optimizer_fit(osd: Mapping[str, Any], optimizer: Any, module: nn.Module, where: Path) -> None:
    by_id = {id(p): n for n, p in module.named_parameters()}
    ckpt.check_group_members(osd["param_groups"], [[by_id.get(id(p), "") for p in g["params"]]
                                                   for g in optimizer.param_groups], where)
    builder = builder_of(optimizer)
    ckpt.check_groups_fit(osd["param_groups"], optimizer.param_groups, where, live_hyper_parameters(builder))
    ckpt.check_state_fit(osd["state"], {n: tuple(p.shape) for n, p in module.named_parameters()}, where, builder)


# ----------------------------------------------------------------------------- export


def _check_saved_optimizer(source: Path, state: dict[str, Any], model: dict[str, torch.Tensor],
                           optim: dict[str, Any], host: Any) -> None:
    """The optimizer state an export would copy, held to what the run's optimizer declares it keeps
    (``OptimizerBuilder.state_spec``; the generic rule where its optimizer is not installed here),
    as a resume from the export would hold it."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import create_optimizer_builder

    try:
        builder = create_optimizer_builder(config_from_dict(state.get("config") or {}, host=host), host)
    except UsageError:  # a plugin's optimizer or model not installed here
        builder = None
    where = source / (ckpt.OPTIMIZER_FILE if (source / ckpt.OPTIMIZER_FILE).is_file() else "optimizer")
    ckpt.check_state_fit(optim.get("state") or {}, {k: tuple(v.shape) for k, v in model.items()}, where, builder)


def export_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, host: Any = None) -> Path:
    """Turn any checkpoint (full or sharded; a run folder or a checkpoint folder) into a full,
    canonical checkpoint folder ``dst`` that deepseek-core alone loads. Written to a temp folder
    and renamed into place; ``dst`` must not exist. The weights are first checked against the
    model their config describes (``host``: where it resolves, and where a sharded checkpoint's
    ``sharded.json`` groups are held to its optimizer; default the process's)."""
    source = ckpt.resolve_checkpoint(src)
    target = Path(dst)
    if target.exists():
        raise CheckpointError(f"{target}: already exists; pick a new destination folder")
    inside = _inside_source(source, target)
    if inside is not None:
        raise CheckpointError(f"{target}: is inside {inside}, which the export reads (a checkpoint there would be "
                              "taken for one of the run's own); pick a destination outside it")
    state = ckpt.read_trainer_state(source)
    model, optim = ckpt.read_full_state(source, host)
    from deepseek.training.inference import check_trained_weights

    check_trained_weights(source, model, host=host)  # nothing is written that would not load
    _check_saved_optimizer(source, state, model, optim, host)
    rank_files = _rank_files(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        usual_mode(tmp, folder=True)
        ckpt.save_model_state(tmp / ckpt.MODEL_FILE, model)
        ckpt.save_optimizer_state(tmp / ckpt.OPTIMIZER_FILE, optim)
        for rank_file in rank_files:  # per-rank state, as it is
            shutil.copy2(rank_file, tmp / rank_file.name)
        body = {k: v for k, v in state.items() if k not in ("format", "format_version")}
        ckpt.write_trainer_state(tmp, {**body, "layout": "full", "exported_from": str(source)})
        durable.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _rank_files(source: Path) -> list[Path]:
    """The per-rank files of checkpoint folder ``source`` an export copies as they are (random
    generator state, PowerSGD's error feedback), each a regular file: one that is not (a FIFO,
    a folder, a broken link; a checkpoint writes none, and the copy would fail on it) is a
    :class:`CheckpointError` naming it, before anything is written."""
    found = sorted(f for pattern in ("rng-*.safetensors", "powersgd-*.safetensors") for f in source.glob(pattern))
    for rank_file in found:
        if not rank_file.is_file():  # follows a link: one to a regular file is copied as that file
            what = "a folder" if rank_file.is_dir() else "not a regular file (a FIFO, device, socket or broken link)"
            raise CheckpointError(f"{rank_file}: is {what}, not the per-rank state a checkpoint writes; the "
                                  f"checkpoint is damaged, {_HINT}")
    return found


def _inside_source(source: Path, target: Path) -> Path | None:
    """The folder of the source that ``target`` lies in: the checkpoint folder itself, or the
    ``checkpoints/`` folder of its run (whose ``step-N`` entries resume and pruning read)."""
    where = target.resolve()
    for folder in (source, source.parent if source.parent.name == "checkpoints" else None):
        if folder is not None and where.is_relative_to(folder.resolve()):
            return folder
    return None
