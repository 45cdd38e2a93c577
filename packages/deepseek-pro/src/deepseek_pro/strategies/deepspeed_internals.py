"""Every use of DeepSpeed's private attributes, in one place (written against DeepSpeed 0.19.8).

The ``deepspeed`` strategy writes checkpoints in the canonical full format and loads them under
any ZeRO stage. DeepSpeed's public helpers (``deepspeed.utils.safe_get_full_fp32_param``,
``safe_set_full_fp32_param``, ``safe_get_full_optimizer_state``, ``safe_set_full_optimizer_state``)
move the tensors, but three things have no public API, so this module reaches into DeepSpeed's
ZeRO optimizers for them:

1. the flat fp32 master partitions that the wrapped torch optimizer steps
   (:func:`flat_masters`: reads ``fp32_partitioned_groups_flat`` of ZeRO-3 and
   ``single_partition_of_fp32_groups`` of ZeRO-1/2), to create optimizer state before the first
   step and to read the step count (:func:`masters_finite` checks them, without ZeRO-3's
   uninitialised padding);
2. re-linking each parameter's optimizer-state fragments after that state was created
   (:func:`relink_optimizer_state`: the one *write* to a private attribute, see there);
3. copying the fp32 masters into the module's low-precision weights after loading
   (:func:`sync_lp_from_hp`: ZeRO-3 has no public call for it);
4. writing a whole tensor into a ZeRO-3 parameter's share (:func:`set_zero3_share`): DeepSpeed
   0.19.8's ``set_full_hp_param`` reads past the end of a parameter whose size the ranks do not
   divide (a bias of 3 on 2 ranks), so a resume failed.

And one switch of DeepSpeed's module table of compatible ops, for the CPU
(:func:`skip_shm_comm_build`).

:data:`PRIVATE_ATTRIBUTES` lists every private name used; ``tests/pro/test_deepspeed.py`` checks
that the installed DeepSpeed still has each one, so an upgrade that removes one fails a test
instead of a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

PRIVATE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "deepspeed.runtime.zero.stage_1_and_2:DeepSpeedZeroOptimizer": (
        "single_partition_of_fp32_groups",
        "_lazy_init_hp_params_optimizer_state",
        "_hp_optimizer_states_linked",
    ),
    "deepspeed.runtime.zero.stage3:DeepSpeedZeroOptimizer_Stage3": (
        "fp32_partitioned_groups_flat",
        "fp16_groups",
        "persistent_parameters",
        "_reassign_or_swap_out_partitioned_parameters",
        "_get_fp32_opt_state_partition",
        "_get_param_partition_rank",
    ),
}
"""Class -> the private (or undocumented) attributes of it that this module uses."""

SHM_COMM_OP = "deepspeed_shm_comm"
"""The key of DeepSpeed's shared-memory all-reduce op in ``deepspeed.ops.__compatible_ops__``."""


def skip_shm_comm_build() -> None:
    """Keep DeepSpeed's comm backend from JIT-building its shared-memory all-reduce op.

    On the CPU accelerator, DeepSpeed 0.19's ``TorchBackend`` compiles the C++ op
    ``deepspeed_shm_comm`` when it starts (60-185 s on two cores, once per environment: the build
    folder is keyed by the environment's absolute paths), yet only ``inference_all_reduce`` (its
    tensor-parallel inference) uses the op: the collectives of training go through
    torch.distributed. ``build_shm_op`` builds nothing for an op its table of compatible ops
    marks False, and that table (``deepspeed.ops.__compatible_ops__``, undocumented) is the one
    switch it reads; this sets it before the backend starts.
    """
    import deepspeed.ops

    if SHM_COMM_OP not in deepspeed.ops.__compatible_ops__:
        raise RuntimeError(f"deepspeed.ops.__compatible_ops__ has no {SHM_COMM_OP!r}; update deepspeed_internals")
    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False


def forget_process_groups() -> None:
    """Drop DeepSpeed's module-level references to the process groups of a run that has destroyed
    them, so that the next ``deepspeed.initialize`` in this process (a second ``deepseek.fit``)
    uses its own group: DeepSpeed caches the world group it cloned (``groups._WORLD_GROUP``) and
    asked torch for its ranks again, which failed ("Group ... is not registered"). DeepSpeed 0.19
    releases them itself when its own ``destroy_process_group`` runs
    (``groups._release_process_group_references``); earlier versions: the cached groups are reset."""
    from deepspeed.utils import groups

    release = getattr(groups, "_release_process_group_references", None)
    if release is not None:
        release(group=None)
        return
    for name in ("_WORLD_GROUP", "_ZERO_PARAM_INTRA_PARALLEL_GROUP", "_TENSOR_MODEL_PARALLEL_GROUP",
                 "_MODEL_PARALLEL_GROUP", "_DATA_PARALLEL_GROUP", "mpu"):
        if hasattr(groups, name):
            setattr(groups, name, None)
    for name in ("_EXPERT_PARALLEL_GROUP", "_EXPERT_DATA_PARALLEL_GROUP", "_ALL_TO_ALL_GROUP"):
        cached = getattr(groups, name, None)
        if isinstance(cached, dict):
            cached.clear()


def set_zero3_share(param: Any, value: torch.Tensor, key: str | None = None) -> None:
    """Copy this rank's share of the whole tensor ``value`` into ZeRO-3 parameter ``param``'s fp32
    master (``key``: that optimizer state instead), the share's padding past the end zeroed.
    What ``safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state`` do, for any size."""
    zero = param._z3_optimizer
    share, _ = zero._get_fp32_opt_state_partition(param, release_swap_buffers=False, optim_state_key=key)
    width = share.numel()
    piece = value.detach().flatten()[width * zero._get_param_partition_rank(param):][:width]
    with torch.no_grad():
        share.view(-1)[: piece.numel()].copy_(piece)
        share.view(-1)[piece.numel():].zero_()


def whole_value(param: Any) -> torch.Tensor:
    """A parameter's whole value on the CPU, gathered from its ZeRO-3 partitions (a frozen one:
    not the optimizer's, so it has no fp32 master to read)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters([param]):
        return param.detach().cpu().clone()


def set_whole_value(param: Any, value: torch.Tensor) -> None:
    """Write a parameter's whole value (into its ZeRO-3 partitions, from rank 0's copy)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters([param], modifier_rank=0), torch.no_grad():
        param.copy_(value.to(param.device, param.dtype))


def flat_masters(zero_optimizer: Any) -> tuple[Any, list[Any]]:
    """``(the torch optimizer ZeRO drives, its flat fp32 partitions: one per (sub-)group)``."""
    inner = getattr(zero_optimizer, "optimizer", zero_optimizer)
    flats = getattr(zero_optimizer, "fp32_partitioned_groups_flat", None)  # ZeRO 3
    if flats is None:
        flats = getattr(zero_optimizer, "single_partition_of_fp32_groups", None)  # ZeRO 1/2
    if flats is None:
        flats = [p for g in inner.param_groups for p in g["params"]]
    return inner, list(flats)


def masters_finite(zero_optimizer: Any, module: Any) -> bool:
    """Whether this rank's fp32 master weights are finite, padding excluded.

    ZeRO-1/2 pad their flat partitions with zeros, so the flats are checked whole. ZeRO-3 pads
    each parameter's partition to an equal share per rank and leaves the padding uninitialised
    (``torch.empty``): it may hold any bits, NaN included, so only each partition's first
    ``ds_numel - rank * share`` elements (the real ones) are checked, through DeepSpeed's public
    ``safe_get_local_fp32_param``.
    """
    import torch

    if not hasattr(zero_optimizer, "fp32_partitioned_groups_flat"):
        _, flats = flat_masters(zero_optimizer)
        return all(bool(torch.isfinite(p).all()) for p in flats)
    import torch.distributed as dist
    from deepspeed.utils import safe_get_local_fp32_param

    for param in module.parameters():
        local = safe_get_local_fp32_param(param)
        if local is None:  # frozen: not stepped
            continue
        share = local.numel()
        rank = dist.get_rank(group=getattr(param, "ds_process_group", None))
        real = max(0, min(share, param.ds_numel - rank * share))
        if not bool(torch.isfinite(local.reshape(-1)[:real]).all()):
            return False
    return True


def relink_optimizer_state(zero_optimizer: Any) -> None:
    """Link each parameter's optimizer-state fragments to the inner optimizer's current state.

    ZeRO-1/2 link them once, lazily, right after the first parameter group's first step, when the
    later groups have no state yet; after we create or load state ourselves they must be linked
    again. DeepSpeed 0.19 guards ``_lazy_init_hp_params_optimizer_state`` with the private flag
    ``_hp_optimizer_states_linked`` and offers no public way to re-run it, so the flag is reset
    here. ZeRO-3 keeps no such links (nothing to do).
    """
    if hasattr(zero_optimizer, "_lazy_init_hp_params_optimizer_state"):
        zero_optimizer._hp_optimizer_states_linked = False
        zero_optimizer._lazy_init_hp_params_optimizer_state()


def sync_lp_from_hp(zero_optimizer: Any) -> None:
    """Copy the fp32 masters into the module's (low-precision, partitioned) weights."""
    if hasattr(zero_optimizer, "update_lp_params"):  # ZeRO 1/2: public
        zero_optimizer.update_lp_params()
        return
    for i in range(len(zero_optimizer.fp16_groups)):  # ZeRO 3
        zero_optimizer._reassign_or_swap_out_partitioned_parameters(i)
    if zero_optimizer.persistent_parameters:
        zero_optimizer.persistent_parameters[0].all_gather(zero_optimizer.persistent_parameters)
    if hasattr(zero_optimizer, "invalidate_secondary_tensor"):
        zero_optimizer.invalidate_secondary_tensor()


def inner_states(optimizer: Any) -> list[dict[str, Any]]:
    """The inner optimizer's state of each flat fp32 partition that has one (none before a step)."""
    inner, flats = flat_masters(optimizer)
    return [inner.state[p] for p in flats if inner.state.get(p)]


def state_keys(optimizer: Any) -> list[str]:
    """The per-element state the inner optimizer keeps (``exp_avg``, ...): its non-scalar tensors."""
    states = inner_states(optimizer)
    return [k for k, v in states[0].items() if torch.is_tensor(v) and v.dim() > 0] if states else []


def step_count(optimizer: Any) -> Any:
    """The inner optimizer's ``step`` (torch keeps a tensor, DeepSpeed's own Adam an int), or ``None``."""
    states = inner_states(optimizer)
    return states[0].get("step") if states else None


def set_step_count(optimizer: Any, step: Any) -> None:
    """Set every partition's ``step`` to ``step``, in the type the inner optimizer keeps it."""
    for st in inner_states(optimizer):
        if "step" in st:
            if torch.is_tensor(st["step"]):
                st["step"] = torch.as_tensor(step, dtype=st["step"].dtype).clone()
            else:
                st["step"] = int(step)
