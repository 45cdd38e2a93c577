"""Reading and writing one safetensors file of a checkpoint: atomic writes, errors that name the
file and what to do, and the JSON form of optimizer hyper-parameters kept in file metadata (and
which of a saved parameter group's keys a resumed optimizer keeps its own: :func:`resumed_group`;
the canonical keys of a group DeepSpeed's own optimizer ran: :func:`canonical_group`;
whether saved groups hold sane values, :func:`check_saved_groups`, and fit the live optimizer:
:func:`check_groups_fit`; the optimizer's state: :mod:`deepseek.training.optimizer_state`);
:func:`cpu_unshared` readies a state dict for safetensors."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.errors import CheckpointError
from deepseek.paths import usual_mode
from deepseek.training.hyper_parameters import COMMON, HyperParameter

if TYPE_CHECKING:
    import torch

WRITER_MODULES = ("safetensors.torch",)
"""The libraries :func:`save_tensors` imports, checked by ``train`` before it creates anything."""

HINT = "use an earlier checkpoint of the run (pass its checkpoints/step-N folder) or start a fresh run"

IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")
"""Keys of a torch optimizer's parameter group that say how this process's optimizer computes,
not what: a resumed optimizer keeps its own (a checkpoint written on the CPU, or with master
weights, has no ``fused = True``; torch's fused AdamW that took the saved ``None`` would run its
foreach path, which refuses the clip's deferred ``grad_scale``)."""


RUN_KEYS = ("lr_scale",)
"""Keys of a parameter group that this run's config sets (``[[optimizer.groups]]``'s
``lr_scale``): a resumed optimizer keeps its own, so a changed factor takes effect on resume
under every strategy."""


REQUIRED_KEYS = ("lr", "weight_decay")
"""Keys every saved parameter group holds (torch keeps ``lr`` in every group, and every group the
run builds carries ``weight_decay``: :mod:`deepseek.training.param_groups`): a group without one
is damage, not a default to take from the live optimizer."""


def resumed_group(saved: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """A saved parameter group (hyper-parameters, ``params``) with the live optimizer's
    :data:`IMPLEMENTATION_KEYS` and :data:`RUN_KEYS` in place of the saved ones (left out where
    the live group has none); ``params`` stays as saved (callers set their own)."""
    own = (*IMPLEMENTATION_KEYS, *RUN_KEYS)
    kept = {k: v for k, v in saved.items() if k not in own}
    return {**kept, **{k: live[k] for k in own if k in live}}


DEEPSPEED_ADAM_KEYS = frozenset({"lr", "betas", "eps", "weight_decay", "bias_correction", "amsgrad", "step"})
"""The parameter-group keys of DeepSpeed's own Adam classes (FusedAdam: ``bias_correction`` and a
group ``step``; DeepSpeedCPUAdam: ``bias_correction`` and ``amsgrad``), how DeepSpeed computes
rather than what: a checkpoint holds the run's [optimizer] keys instead (:func:`canonical_group`)."""


def canonical_group(group: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``group``'s values under the keys of ``settings`` (the parameter group the run's [optimizer]
    builds; its values where ``group`` lacks the key), ``params`` left out: how a checkpoint holds
    the groups of an optimizer DeepSpeed built, whose own keys torch's AdamW would refuse as
    another optimizer's. The ``deepspeed`` strategy writes its groups so; a checkpoint written
    before it did is read so (:func:`deepspeed_adam_group`)."""
    return {k: v for k, v in {**settings, **{k: v for k, v in group.items() if k in settings}}.items()
            if k != "params"}


def deepspeed_adam_group(group: Mapping[str, Any]) -> dict[str, Any] | None:
    """A saved group that holds DeepSpeed's own Adam's keys (:data:`DEEPSPEED_ADAM_KEYS`, with its
    ``bias_correction``) and no others, as :func:`canonical_group` writes it for the run's AdamW
    (torch's AdamW group for those values; the run's :data:`RUN_KEYS` kept), ``params`` kept;
    ``None`` for any other group."""
    keys = set(group) - {"params", *RUN_KEYS}
    if "bias_correction" not in keys or not keys <= DEEPSPEED_ADAM_KEYS:
        return None
    import torch

    adamw = torch.optim.AdamW([torch.zeros(1)]).param_groups[0]
    settings = {**adamw, **{k: group[k] for k in RUN_KEYS if k in group}}
    return {**canonical_group(group, settings), "params": group.get("params")}


def group_settings(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The hyper-parameters of each optimizer group that a resume takes from the checkpoint
    (:func:`resumed_group`): not ``params``, the scheduled ``lr`` or the keys the run sets; tuples
    and tensors as lists, to compare a group built from the config with one read back."""
    skip = {"params", "lr", "initial_lr", *IMPLEMENTATION_KEYS, *RUN_KEYS}

    def plain(value: Any) -> Any:
        value = value.tolist() if hasattr(value, "tolist") else value
        return list(value) if isinstance(value, tuple) else value

    return [{k: plain(v) for k, v in g.items() if k not in skip} for g in groups]


def settings_kept(config_groups: Sequence[Mapping[str, Any]], resumed: Sequence[Mapping[str, Any]]) -> list[str]:
    """``"group 0 weight_decay 0.1 (the config gives 0.05)"`` for every hyper-parameter that a
    resumed optimizer took from its checkpoint where the run's config now gives another value
    (both from :func:`group_settings`)."""
    return [f"group {i} {key} {old[key]!r} (the config gives {new[key]!r})"
            for i, (new, old) in enumerate(zip(config_groups, resumed, strict=False))
            for key in sorted(new.keys() & old.keys()) if new[key] != old[key]]


def check_groups_fit(saved: list[Mapping[str, Any]], live: list[Mapping[str, Any]], path: Any,
                     declared: Mapping[str, HyperParameter] = COMMON) -> None:
    """Saved parameter groups against the live optimizer's, group by group: a saved group that
    lacks hyper-parameters the live one has while holding others it lacks was written by another
    optimizer (AdamW's ``betas`` where SGD wants ``momentum``), which the first step would fail
    on; a CheckpointError naming ``path`` and ``optimizer.name``. A key only the live group holds (a
    torch version that added a hyper-parameter) is no mismatch: torch fills it in; one only the saved
    group holds is taken where the live optimizer ``declared`` it (a torch version that dropped it),
    and otherwise refused (a key ``foo`` would be carried into the optimizer and saved again): a
    CheckpointError naming ``path``, the group and the key. A key both hold is
    held to what the live optimizer ``declared`` of it (its builder's ``hyper_parameters``:
    :func:`~deepseek.training.hyper_parameters.live_hyper_parameters`; a signed ``momentum`` may
    be negative), an undeclared one to the kind of the live value (numbers finite, ``eps``,
    ``momentum``, ... not below 0): a CheckpointError naming ``path``, the group and the key."""
    ignored = {"params", *IMPLEMENTATION_KEYS, *RUN_KEYS}
    for i, (old, new) in enumerate(zip(saved, live, strict=False)):
        foreign, lacking = sorted(set(old) - set(new) - ignored), sorted(set(new) - set(old) - ignored)
        if foreign and lacking:
            raise CheckpointError(
                f"{path}: the optimizer state was written by another optimizer (hyper-parameters "
                f"{foreign[:3]}, this run's optimizer has {lacking[:3]}); resume with the [optimizer] "
                f"name of the run that wrote it (optimizer.name), or {HINT}"
            )
        unknown = sorted(set(old) - set(new) - ignored - set(declared))
        if unknown:
            raise CheckpointError(f"{path}: optimizer group {i} holds {unknown[0]!r}, which this run's optimizer "
                                  f"neither has nor declares; the checkpoint is damaged, {HINT}")
        for key in sorted(set(old) & set(new) - ignored):
            problem = declared[key].problem(old[key]) if key in declared else _value_problem(old[key], new[key], key)
            if problem:
                raise CheckpointError(f"{path}: optimizer group {i} {key} is {old[key]!r}, {problem}; the "
                                      f"checkpoint is damaged, {HINT}")


_NON_NEGATIVE = frozenset({"lr", "initial_lr", "weight_decay", "eps", "momentum", "dampening"})


def _number_problem(value: Any, key: str) -> str | None:
    """What is wrong with a saved hyper-parameter where a number belongs, else None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "where a finite number belongs"
    return "below 0" if key in _NON_NEGATIVE and value < 0 else None


def check_saved_groups(groups: Any, path: Any, declared: Mapping[str, HyperParameter] = COMMON) -> None:
    """Saved parameter groups on their own, as read from a checkpoint before any optimizer is
    built (``checkpoint export`` builds none): a list of tables, each with ``params`` (parameter
    names, each in one group only) and the :data:`REQUIRED_KEYS`, every key the optimizer ``declared`` of its declared type
    (:mod:`deepseek.training.hyper_parameters`; :data:`~deepseek.training.hyper_parameters.COMMON`
    for one that declares nothing or is not installed here) and any other numeric hyper-parameter
    finite (``eps``, ``momentum``, ... not below 0); a CheckpointError naming ``path``, the group,
    the key and what belongs there otherwise."""
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise CheckpointError(f"{path}: the optimizer's param_groups is {type(groups).__name__} where a list of "
                              f"groups belongs; the checkpoint is damaged, {HINT}")
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        params = group.get("params")
        if not isinstance(params, list) or not all(isinstance(n, str) for n in params):
            raise CheckpointError(f"{path}: optimizer group {i} params is not a list of parameter names; the "
                                  f"checkpoint is damaged, {HINT}")
        again = next((n for n in params if n in seen), None)
        if again is not None:
            raise CheckpointError(f"{path}: parameter {again!r} is in optimizer groups {seen[again]} and {i}; the "
                                  f"checkpoint is damaged, {HINT}")
        seen.update(dict.fromkeys(params, i))
        missing = next((k for k in REQUIRED_KEYS if k not in group), None)
        if missing is not None:
            raise CheckpointError(f"{path}: optimizer group {i} has no {missing!r} (every group holds "
                                  f"{' and '.join(REQUIRED_KEYS)}); the checkpoint is damaged, {HINT}")
        for key, value in group.items():
            if key in declared:
                problem = declared[key].problem(value)
            elif key in (*IMPLEMENTATION_KEYS, *RUN_KEYS) or not isinstance(value, (int, float)):
                continue
            else:  # an undeclared number: finite, and not below 0 where torch's optimizers never are
                problem = None if isinstance(value, bool) else _number_problem(value, key)
            if problem:
                raise CheckpointError(f"{path}: optimizer group {i} {key} is {value!r}, {problem}; the checkpoint "
                                      f"is damaged, {HINT}")


def _value_problem(saved: Any, live: Any, key: str) -> str | None:
    """What is wrong with a saved hyper-parameter, judged by the kind of the live optimizer's
    value for it (a bool, a number, a sequence of numbers, a string), else None."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(live, bool):
        return None if isinstance(saved, bool) else "where true or false belongs"
    if isinstance(live, (int, float)):
        return _number_problem(saved, key)
    if isinstance(live, (tuple, list)) and all(number(v) for v in live):
        if not isinstance(saved, (tuple, list)) or len(saved) != len(live) or not all(number(v) for v in saved):
            return f"where {len(live)} finite numbers belong"
        return None
    if isinstance(live, str):
        return None if isinstance(saved, str) else "where a string belongs"
    return None


def check_group_members(saved: Sequence[Mapping[str, Any]], live: Sequence[Iterable[str]], path: Any, *,
                        part: bool = False) -> None:
    """The saved parameter groups' members (parameter names) against this run's, group by group
    (``part``: this rank holds part of the model, a pipeline stage, so each live group need only
    be within its saved one): a CheckpointError naming ``path``, a parameter in another group and
    the fix, when the count or the members differ (``[[optimizer.groups]]`` or ``[model]``
    changed), before the optimizer would load hyper-parameters and state into the wrong groups."""
    fix = "resume with the [model] config and [[optimizer.groups]] of the run that wrote it"
    if len(saved) != len(live):
        raise CheckpointError(f"{path}: the checkpoint's optimizer has {len(saved)} parameter groups, this run's "
                              f"{len(live)}; {fix}")
    there = {n: i for i, g in enumerate(saved) for n in g["params"]}
    here = {n: i for i, names in enumerate(live) for n in names}
    moved = sorted(n for n in here if there.get(n) != here[n])
    if not part:
        moved += sorted(n for n in there if n not in here)
    if moved:
        n = moved[0]
        where = f"group {there[n]}" if n in there else "no group"
        now = f"group {here[n]}" if n in here else "no group"
        raise CheckpointError(f"{path}: the checkpoint's optimizer groups differ from this run's ({n!r}: {where} "
                              f"there, {now} here; {len(moved)} parameter(s) in all); {fix}")


def cpu_unshared(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; safetensors refuses tensors that share storage (tied weights)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, value in state_dict.items():
        t = value.detach()
        if hasattr(t, "full_tensor"):  # a DTensor handed over unsharded by mistake
            t = t.full_tensor()
        t = t.to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add((t.untyped_storage().data_ptr(), t.storage_offset()))
        out[name] = t
    return out


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` and string ``metadata`` to ``path`` via a temporary file and a rename."""
    from safetensors.torch import save_file  # one of WRITER_MODULES

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    _sort_metadata(tmp)
    usual_mode(tmp)  # safetensors writes 0600
    durable.replace(tmp, path)


def _sort_metadata(path: Path) -> None:
    """Rewrite the safetensors header of ``path`` in place with its ``__metadata__`` keys sorted.
    safetensors writes them in its hash map's order, which changes from process to process, so
    two runs that saved equal tensors wrote different bytes (``cmp`` of a resumed run's final
    checkpoint against an uninterrupted one's failed). Left as it is where the sorted header
    would not fit in the bytes the header has."""
    import json

    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or list(meta) == sorted(meta):
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) <= size:
            fh.seek(8)
            fh.write(text.ljust(size, b" "))


@contextlib.contextmanager
def _opened(path: Path, what: str) -> Iterator[Any]:
    """``path`` opened once (:func:`deepseek.safetensors_file.open_safetensors`: no check of the
    path before, which a FIFO put in its place after would pass); a missing file, something else
    in its place (a folder, a FIFO: never waited on) or a corrupt one (also one whose tensors fail
    to read in the block) is a :class:`CheckpointError` naming ``what`` it holds."""
    from deepseek.parsing import UnreadableFile
    from deepseek.paths import not_a_file
    from deepseek.safetensors_file import open_safetensors

    try:
        with open_safetensors(path) as fh:
            yield fh
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} file is missing; the checkpoint is incomplete, {HINT}") from None
    except (IsADirectoryError, UnreadableFile):
        there = not_a_file(path) or "is not a regular file"
        raise CheckpointError(f"{path}: {what} file {there}; the checkpoint is damaged, {HINT}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: {what} file is corrupt or truncated ({exc}); {HINT}"
        ) from exc


def load_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of ``path``; a missing or corrupt file is a :class:`CheckpointError`
    naming ``what`` the file holds."""
    with _opened(path, what) as fh:
        metadata = fh.metadata()
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    check_finite(tensors, path)
    return tensors, metadata


def check_tensors(path: Path, what: str) -> None:
    """:func:`load_tensors`' refusal of a missing or corrupt ``path`` without reading a tensor:
    opening the file parses its header and checks that the tensors' byte ranges fit their dtypes
    and shapes and cover the data exactly (safetensors' own checks, made by
    :mod:`deepseek.safetensors_file`), so a file of garbage, cut
    short or grown is refused; values (a NaN, say) are left to the load."""
    with _opened(path, what):
        pass


def check_finite(tensors: dict[str, torch.Tensor], where: Any) -> None:
    """:class:`CheckpointError` naming ``where`` and the first tensor that holds a NaN or an
    infinity: the trainer never saves non-finite weights or optimizer state
    (``train.on_nonfinite``), so such a value read back is damage, which would otherwise show up
    only as a NaN loss or NaN metrics after the model loaded."""
    found = first_nonfinite(tensors)
    if found is not None:
        raise CheckpointError(f"{where}: {found}; the checkpoint is damaged, {HINT}")


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """``tensor 'NAME' holds K NaN or infinite value(s) of N`` for the first floating tensor of
    ``tensors`` that holds one, else ``None``."""
    import torch

    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        values = tensor.float() if tensor.element_size() == 1 else tensor  # isfinite has no float8 kernel
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).sum())
            return f"tensor {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}"
    return None


def jsonable(value: Any) -> Any:
    """An optimizer hyper-parameter as JSON (tuples tagged so :func:`from_jsonable` restores them)."""
    if isinstance(value, tuple):
        return {"__tuple__": [jsonable(v) for v in value]}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`jsonable`."""
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(from_jsonable(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def jsonable_tree(value: Any) -> Any:
    """Nested tables (``sharded.json``'s ``scalars``: parameter name -> state key -> value) as
    JSON: keys as strings, every other value by :func:`jsonable`. Read back by
    :func:`from_jsonable_tree`."""
    if isinstance(value, dict):
        return {str(k): jsonable_tree(v) for k, v in value.items()}
    return jsonable(value)


def from_jsonable_tree(value: Any) -> Any:
    """Inverse of :func:`jsonable_tree`: tables kept, the values in them by :func:`from_jsonable`
    (a tuple comes back a tuple, not its tagged table)."""
    if isinstance(value, dict) and "__tuple__" not in value:
        return {k: from_jsonable_tree(v) for k, v in value.items()}
    return from_jsonable(value)
