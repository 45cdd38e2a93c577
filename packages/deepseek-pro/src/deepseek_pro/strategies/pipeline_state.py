"""Checkpoint I/O of pipeline stages in the canonical format (used by ``pipeline`` and ``hybrid``).

A stage's state dict already uses the full model's parameter names (``blocks.7.attn.qkv.weight``),
so the union of the stages' state dicts is the model's state dict. Saving: every stage (its
data-parallel rank 0 under ``hybrid``) writes ``part-<stage>-model.safetensors`` and
``part-<stage>-optimizer.safetensors`` with core's writers, then rank 0 merges the parts into
``model.safetensors`` / ``optimizer.safetensors`` and deletes them — the files ``single`` writes.
Loading reads the canonical files and keeps this stage's names.

Tied weights split over two stages (``tied``: {copy name: source name}, e.g. the GPT's
``{"lm_head.weight": "wte.weight"}``): the model file keeps both names (as ``single``'s does); the
optimizer file keeps only the source (``single``'s optimizer has one parameter) and the copy is
restored from it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek.training import checkpoint as ckpt
from deepseek.training.optimizers import builder_of


def part_path(directory: Path, stage: int, filename: str) -> Path:
    """Where stage ``stage`` writes its part of ``filename``."""
    return Path(directory) / f"part-{stage}-{filename}"


class _SequentialGatherNote(logging.Filter):
    """Drops torch's warning that gathering a weight sharded over two mesh dimensions takes
    several sequential all-gathers ("While redistributing from (_StridedShard(dim=0, sf=2),
    Shard(dim=0)) to (Replicate(), Replicate()), 2 sequential all_gather operations ... may give
    inconsistent results between ranks due to different reduction orders"): ``hybrid`` with
    ``tp_size > 1`` holds each split weight in ``dp`` shards of ``tp`` shards, and its full state
    gathers them. An all-gather copies shards and reduces nothing, so every rank gets the same
    bytes; the warning named nothing a run can act on and showed as rank 0's last log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("While redistributing from") and "sequential all_gather operations" in message)


@contextlib.contextmanager
def _sequential_gather_note_held_back() -> Iterator[None]:
    """:class:`_SequentialGatherNote` on torch's DTensor redistribution logger for the block only."""
    log = logging.getLogger("torch.distributed.tensor._redistribute")
    note = _SequentialGatherNote()
    log.addFilter(note)
    try:
        yield
    finally:
        log.removeFilter(note)


def stage_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, *, tied: Mapping[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The stage's full (unsharded, CPU) model state and name-keyed optimizer state.

    Collective under FSDP (every data-parallel rank of the stage must call it).
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True)
    with _sequential_gather_note_held_back():
        model_sd = {k: v.detach().cpu() for k, v in get_model_state_dict(module, options=opts).items()}
        optim_sd = get_optimizer_state_dict(module, optimizer, options=opts)
    state = {
        name: {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in values.items()}
        for name, values in optim_sd["state"].items()
    }
    groups = [dict(g) for g in optim_sd["param_groups"]]
    for copy in tied:
        state.pop(copy, None)
        for g in groups:
            g["params"] = [p for p in g["params"] if p != copy]
    return model_sd, {"state": state, "param_groups": groups}


def merge_parts(directory: Path, n_parts: int, host: Any = None) -> None:
    """Merge the stages' part files into the canonical files and delete the parts (rank 0).
    ``host``: the run's plugin host, where the optimizer named by ``directory``'s ``trainer.json``
    (written before the merge) is looked up to check the parts' saved groups."""
    model: dict[str, torch.Tensor] = {}
    optim: dict[str, Any] = {"state": {}, "param_groups": []}
    paths = []
    for i in range(n_parts):
        mpath, opath = part_path(directory, i, ckpt.MODEL_FILE), part_path(directory, i, ckpt.OPTIMIZER_FILE)
        paths += [mpath, opath]
        model.update(ckpt.load_model_state(mpath))
        part = ckpt.load_optimizer_state(opath, host=host)
        optim["state"].update(part["state"])
        for g, group in enumerate(part["param_groups"]):
            if g == len(optim["param_groups"]):
                optim["param_groups"].append({**group, "params": []})
            optim["param_groups"][g]["params"] += group["params"]
    ckpt.save_model_state(directory / ckpt.MODEL_FILE, model)
    ckpt.save_optimizer_state(directory / ckpt.OPTIMIZER_FILE, optim)
    for p in paths:
        p.unlink()


def load_stage(
    module: nn.Module, optimizer: torch.optim.Optimizer, directory: Path, *, tied: Mapping[str, str],
    fused: Any = None, host: Any = None,
) -> None:
    """Load this stage's parameters and optimizer state from a checkpoint of either layout
    written by any strategy (collective under FSDP). ``fused``: the stage's fused rows kept
    rank-major under tensor parallelism (a ``FusedRows``), reordered from the canonical files.
    ``host``: the run's plugin host, where the saved groups' optimizer is looked up."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
    )

    from deepseek_pro.checkpoint import load_optimizer_groups

    model_path = directory / ckpt.MODEL_FILE
    full, named = ckpt.read_full_state(directory, host)  # either layout: full files or DCP shards
    if fused is not None:
        full, named = fused.sharded(full, named)
    own = module.state_dict()
    for copy, source in tied.items():
        if copy in own and copy not in full and source in full:
            full[copy] = full[source]
    # core's check (names, shapes, dtypes) of this stage's part; the other stages' weights are theirs
    ckpt.check_model_fit({k: full[k] for k in own if k in full}, {k: tuple(v.shape) for k, v in own.items()},
                         model_path, {k: v.dtype for k, v in own.items()})
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(module, {k: full[k] for k in own}, options=opts)
    optim_sd = _restrict_optimizer_state(named, module, optimizer, directory, tied=tied)
    load_optimizer_groups(module, optimizer, optim_sd, options=opts)


def _restrict_optimizer_state(
    named: dict[str, Any], module: nn.Module, optimizer: torch.optim.Optimizer, directory: Path,
    *, tied: Mapping[str, str],
) -> dict[str, Any]:
    """The saved optimizer state restricted to this stage's parameters, group by group."""
    path = directory / ckpt.OPTIMIZER_FILE
    names = ckpt.optimizer_param_names(optimizer, module)
    source = {n: tied.get(n, n) for n in names}
    saved_groups = named["param_groups"]
    sizes = [len(live["params"]) for live in optimizer.param_groups]
    mine = [names[sum(sizes[:g]) : sum(sizes[: g + 1])] for g in range(len(sizes))]
    ckpt.check_group_members(saved_groups, [[source[n] for n in group] for group in mine], path, part=True)
    groups, state = [], {}
    for saved, live, own in zip(saved_groups, optimizer.param_groups, mine, strict=True):
        groups.append({**ckpt.resumed_group(saved, live), "params": own})
        state.update({n: dict(named["state"][source[n]]) for n in own if source[n] in named["state"]})
    ckpt.check_state_fit(state, {n: tuple(p.shape) for n, p in module.named_parameters()}, path, builder_of(optimizer))
    return {"state": state, "param_groups": groups}


def rebuild_model(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A plain CPU copy of the meta ``template`` holding ``state`` (tied weights stay tied; no
    random numbers are drawn)."""
    from deepseek_pro.strategies.twin import materialize

    full = materialize(template, "cpu")
    full.load_state_dict(state, strict=True)
    return full
