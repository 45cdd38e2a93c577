"""Optimizer state in a checkpoint, keyed by parameter name (``optimizer.safetensors``): state
tensors under ``state/<param name>/<key>``, the parameter groups (hyper-parameters, parameters by
name) and scalar state as JSON metadata, so it loads into any strategy's optimizer over the same
model. Part of the checkpoint API: import these from :mod:`deepseek.training.checkpoint`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.errors import CheckpointError
from deepseek.parsing import loads_json
from deepseek.training.checkpoint_dirs import OPTIMIZER_FILE
from deepseek.training.checkpoint_io import (
    HINT,
    check_group_members,
    check_groups_fit,
    check_saved_groups,
    cpu_unshared,
    deepspeed_adam_group,
    from_jsonable,
    from_jsonable_tree,
    jsonable,
    jsonable_tree,
    load_tensors,
    resumed_group,
    save_tensors,
)
from deepseek.training.checkpoint_sharded import (
    OPTIMIZER_DIR,
    layout_of,
    name_map,
    read_sharded_meta,
    read_sharded_optimizer,
    unflatten_optimizer_state,
)
from deepseek.training.checkpoint_state import FORMAT_VERSION
from deepseek.training.hyper_parameters import live_hyper_parameters, saved_hyper_parameters
from deepseek.training.optimizer_state import check_state_fit

if TYPE_CHECKING:
    import torch
    from torch import nn


def optimizer_param_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """Canonical names of the optimizer's parameters, in the optimizer's own order."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in by_id:
                raise ValueError("optimizer holds a parameter that is not in the model")
            names.append(by_id[id(p)])
    return names


def save_optimizer_state(
    path: str | os.PathLike[str],
    optimizer: torch.optim.Optimizer | Mapping[str, Any],
    param_names: list[str] | None = None,
) -> Path:
    """Write optimizer state keyed by parameter name.

    ``optimizer`` is an optimizer (then ``param_names`` lists its parameters in order, see
    :func:`optimizer_param_names`) or a full state dict already keyed by name (what
    ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` returns).
    """
    import torch

    sd = optimizer.state_dict() if hasattr(optimizer, "state_dict") else dict(optimizer)
    state, groups = sd["state"], sd["param_groups"]

    def name_of(key: Any) -> str:
        if isinstance(key, str):
            return key
        if param_names is None:
            raise ValueError("save_optimizer_state: pass param_names for an index-keyed state")
        return param_names[key]

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for key, values in state.items():
        name = name_of(key)
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state/{name}/{k}"] = v
            else:
                scalars.setdefault(name, {})[k] = v
    plain_groups = [
        {**{k: jsonable(v) for k, v in g.items() if k != "params"}, "params": [name_of(i) for i in g["params"]]}
        for g in groups
    ]
    # Non-tensor state as the sharded layout writes it (jsonable_tree: a tuple comes back a tuple).
    # Keys sorted: a resumed optimizer's groups hold the same settings in another order (the run's
    # own keys put back last, resumed_group), which wrote other bytes than a run never resumed.
    meta = {
        "format": "deepseek-optimizer",
        "format_version": str(FORMAT_VERSION),
        "param_groups": json.dumps(plain_groups, sort_keys=True),
        "scalars": json.dumps(jsonable_tree(scalars), sort_keys=True),
    }
    target = Path(path)
    save_tensors(target, cpu_unshared(tensors), meta)
    return target


def load_optimizer_state(
    path: str | os.PathLike[str],
    optimizer: torch.optim.Optimizer | None = None,
    param_names: list[str] | None = None,
    host: Any = None,
    *,
    sharded_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read optimizer state (a file written by :func:`save_optimizer_state`, or a checkpoint
    folder of either layout); returns ``{"state": {name: {...}}, "param_groups": [...]}`` keyed by
    parameter name, its groups held to the hyper-parameter types of the optimizer the checkpoint
    names, looked up on ``host`` (the run's; default: the process's). With ``optimizer`` and
    ``param_names`` it is also loaded into the optimizer, once the state is checked against what
    the optimizer's builder declares it keeps
    (:func:`~deepseek.training.optimizer_state.check_state_fit`). ``sharded_meta``: a sharded
    checkpoint's ``sharded.json`` as :func:`read_sharded_meta` returned it on ``host`` to a caller that
    reads the weights too (:func:`~deepseek.training.checkpoint.read_full_state`): read once."""
    p = Path(path)
    if p.is_dir() and layout_of(p) == "sharded":
        named = read_sharded_optimizer(p, host, sharded_meta)  # its groups checked as sharded.json is read
    else:
        if p.is_dir() and not (p / OPTIMIZER_FILE).exists() and _weights_only(p):
            raise CheckpointError(f"{p}: holds model weights only, no optimizer state (a compressed or exported model, "
                                  "committed that way): it cannot be resumed; train from its weights with --set "
                                  f"train.init_from=\"{p}\" (a quantized model does not train: evaluate or "
                                  "serve it as it is)")
        p = p / OPTIMIZER_FILE if p.is_dir() else p
        named = _read_optimizer_file(p)
        check_saved_groups(named["param_groups"], p, saved_hyper_parameters(p.parent, host))
    # DeepSpeed's own AdamW wrote its groups under its own keys before it wrote the canonical ones
    named["param_groups"] = [deepspeed_adam_group(g) or g for g in named["param_groups"]]
    if optimizer is not None:
        if param_names is None:
            raise ValueError("load_optimizer_state: pass param_names together with optimizer")
        optimizer.load_state_dict(_to_indexed(named, optimizer, param_names, p))
    return named


def check_resumed_groups(directory: str | os.PathLike[str], members: list[list[str]], host: Any = None) -> None:
    """Before any strategy builds its optimizer (or engine) to resume checkpoint ``directory``:
    the saved parameter groups' members against ``members``, the names this run's config puts in
    each group (:func:`~deepseek.training.param_groups.group_members`), as every strategy's load
    checks them (:func:`check_group_members`, one message), read from the metadata alone. A
    folder without optimizer metadata, or with damaged metadata or groups, is left to the
    strategy's load, whose messages name what is wrong. The groups' types are those of the
    optimizer the checkpoint names, looked up on ``host`` (the run's; default: the process's)."""
    from deepseek.safetensors_file import open_safetensors

    d = Path(directory)
    try:
        if layout_of(d) == "sharded":
            path, groups = d / OPTIMIZER_DIR, read_sharded_meta(d, host)["param_groups"]  # checked as read
        else:
            path = d / OPTIMIZER_FILE
            with open_safetensors(path) as fh:  # a FIFO in its place is refused, never waited on
                groups = [_restore_group(g) for g in loads_json(fh.metadata()["param_groups"])]
            check_saved_groups(groups, path, saved_hyper_parameters(d, host))
    except (CheckpointError, OSError, KeyError, ValueError, TypeError, AttributeError):
        return
    check_group_members(groups, members, path)


def check_full_groups(directory: str | os.PathLike[str], host: Any = None) -> None:
    """The parameter groups of the full-layout checkpoint ``directory``'s ``optimizer.safetensors``
    (its metadata; no tensor is read), checked as a load checks them: :func:`check_saved_groups`
    with the hyper-parameter types the run's optimizer declares (looked up on ``host``). What
    ``deepseek checkpoint info`` checks of them: a CheckpointError naming the file otherwise."""
    from deepseek.safetensors_file import open_safetensors

    path = Path(directory) / OPTIMIZER_FILE
    try:
        with open_safetensors(path) as fh:  # a FIFO in its place is refused, never waited on
            groups = [_restore_group(g) for g in loads_json(fh.metadata()["param_groups"])]
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: optimizer metadata is missing or corrupt ({exc}); {HINT}") from exc
    check_saved_groups(groups, path, saved_hyper_parameters(directory, host))


def _read_optimizer_file(p: Path) -> dict[str, Any]:
    """``optimizer.safetensors`` as :func:`save_optimizer_state` wrote it: its non-tensor state a
    map of names to maps, decoded as the sharded layout's (:func:`from_jsonable_tree`; a file
    written before tuples were tagged holds plain lists, read as they are)."""
    tensors, meta = load_tensors(p, "optimizer state")
    try:
        groups = loads_json(meta["param_groups"])
        scalars = from_jsonable_tree(name_map(loads_json(meta.get("scalars", "{}")), "scalars"))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{p}: optimizer metadata is missing or corrupt ({exc}); {HINT}") from exc
    return {"state": unflatten_optimizer_state(tensors, scalars, p),
            "param_groups": [_restore_group(g) for g in groups]}


def _to_indexed(named: dict[str, Any], optimizer: Any, names: list[str], path: Path) -> dict[str, Any]:
    index = {n: i for i, n in enumerate(names)}
    current = optimizer.state_dict()["param_groups"]
    from deepseek.training.optimizers import builder_of

    builder = builder_of(optimizer)
    check_group_members(named["param_groups"], [[names[i] for i in cur["params"]] for cur in current], path)
    check_groups_fit(named["param_groups"], current, path, live_hyper_parameters(builder))
    groups = [{**resumed_group(saved, cur), "params": list(cur["params"])}
              for saved, cur in zip(named["param_groups"], current, strict=True)]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    check_state_fit(named["state"], {n: tuple(p.shape) for n, p in zip(names, params, strict=True)}, path, builder)
    state = {index[n]: v for n, v in named["state"].items() if n in index}
    return {"state": state, "param_groups": groups}


def _restore_group(group: dict[str, Any]) -> dict[str, Any]:
    return {k: from_jsonable(v) for k, v in group.items()}


def _weights_only(directory: Path) -> bool:
    """Whether the checkpoint ``directory``'s commit record lists no optimizer state: written
    without one (``deepseek compress``), not a checkpoint that lost it."""
    from deepseek.parsing import loads_json, read_text

    try:
        files = loads_json(read_text(directory / "commit.json")).get("files")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(files, dict) and OPTIMIZER_FILE not in files
