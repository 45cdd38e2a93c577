"""The ``deepspeed`` strategy's state in the canonical full format: gathered from the engine for a
checkpoint (:func:`gather_full_state`) and scattered back into it on resume
(:func:`scatter_full_state`), through DeepSpeed's ``safe_get_full_*`` / ``safe_set_full_*`` helpers
and :mod:`.deepspeed_internals` where DeepSpeed has no public call. Each function takes the
:class:`~deepseek_pro.strategies.deepspeed.DeepSpeedStrategy` whose engine it reads or writes.
"""

from __future__ import annotations

from typing import Any

import torch

from deepseek.training import checkpoint as ckpt
from deepseek_pro.strategies import deepspeed_internals as internals


def gather_full_state(strategy: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model state dict, named optimizer state) with full fp32 tensors on CPU on every rank.
    A collective: call it on every rank."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    internals.relink_optimizer_state(strategy.engine.optimizer)
    keys = internals.state_keys(strategy.engine.optimizer)
    model: dict[str, Any] = {}
    state: dict[str, dict[str, Any]] = {}
    step = internals.step_count(strategy.engine.optimizer)
    canonical = strategy._template.state_dict()  # names and dtypes of the checkpoint's tensors
    for name, p in strategy._named_params():
        if not p.requires_grad:  # frozen: not the optimizer's, so it has no fp32 master
            model[name] = internals.whole_value(p).to(canonical[name].dtype)
            continue
        model[name] = safe_get_full_fp32_param(p).detach().cpu()
        if keys:
            state[name] = {k: safe_get_full_optimizer_state(p, k).detach().cpu() for k in keys}
            if step is not None:  # torch keeps a tensor, DeepSpeed's own Adam an int
                state[name]["step"] = torch.as_tensor(step, dtype=torch.float32).clone()
    for name, buf in strategy.engine.module.named_buffers():
        if name in canonical:  # in the model's own dtype: BatchNorm's step count stays an integer
            model[name] = buf.detach().cpu().to(canonical[name].dtype)
    for alias, name in strategy._aliases.items():
        model[alias] = model[name]
    # DeepSpeed keeps the non-empty groups only, in order: the empty ones (a rule of
    # [[optimizer.groups]] taking only matrices, say) are written with their own settings.
    # DeepSpeed's own optimizer's values are written under the keys of the run's [optimizer]
    # (the builder's groups, ``_group_settings``), so the checkpoint is the canonical one that
    # every strategy resumes: FusedAdam's and DeepSpeedCPUAdam's own keys (``bias_correction``,
    # a group ``step``) are how DeepSpeed computes, and torch's AdamW would refuse a group
    # holding them as another optimizer's.
    groups = []
    inner = iter(strategy.engine.optimizer.param_groups)
    own = strategy._own_optimizer()
    for group_names, settings in zip(strategy._group_names, strategy._group_settings, strict=True):
        src = {k: v for k, v in (next(inner) if group_names else settings).items() if k != "params"}
        if own:
            src = ckpt.canonical_group(src, settings)
        groups.append({**src, "params": group_names})
    return model, {"state": state, "param_groups": groups}



def scatter_full_state(strategy: Any, model: dict[str, Any], optim: dict[str, Any]) -> None:
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    saved = optim.get("state", {})
    # Hyper-parameters as saved (weight decay, betas: as every strategy resumes them), the
    # run's own keys (lr_scale) kept; DeepSpeed holds the non-empty groups only (the empty
    # ones' settings are what the next checkpoint writes for them).
    inner = iter(strategy.engine.optimizer.param_groups)
    for names, group, settings in zip(strategy._group_names, optim["param_groups"], strategy._group_settings, strict=True):
        live = next(inner) if names else settings
        live.update({k: v for k, v in ckpt.resumed_group(group, live).items() if k in live and k != "params"})
    init_optimizer_state(strategy)
    keys = internals.state_keys(strategy.engine.optimizer)
    for name, p in strategy._named_params():
        if not p.requires_grad:
            internals.set_whole_value(p, model[name])
            continue
        if hasattr(p, "ds_id"):  # ZeRO-3: DeepSpeed's setter fails where the ranks do not divide the size
            internals.set_zero3_share(p, model[name].to(strategy.device))
            for k in keys:
                if k in saved.get(name, {}):
                    internals.set_zero3_share(p, saved[name][k].to(strategy.device), k)
            continue
        safe_set_full_fp32_param(p, model[name].to(strategy.device))
        for k in keys:
            if k in saved.get(name, {}):
                safe_set_full_optimizer_state(p, saved[name][k].to(strategy.device), k)
    steps = [v["step"] for v in saved.values() if "step" in v]
    if steps:
        internals.set_step_count(strategy.engine.optimizer, steps[0])
    # Low-precision module weights follow the fp32 masters.
    with torch.no_grad():
        for name, buf in strategy.engine.module.named_buffers():
            if name in model:
                buf.copy_(model[name])
    internals.sync_lp_from_hp(strategy.engine.optimizer)



def init_optimizer_state(strategy: Any) -> None:
    """Create the inner optimizer's state as its first step would (zeros, step 0: the
    builder's ``initial_state`` of each flat partition; for DeepSpeed's own optimizer,
    :func:`own_initial_state`), so that DeepSpeed's optimizer-state fragments exist before any
    step has run."""
    inner, flats = internals.flat_masters(strategy.engine.optimizer)
    for p in flats:
        if inner.state.get(p):
            continue
        if not strategy._own_optimizer():
            assert strategy._builder is not None, "_check_resumable() first"
            inner.state[p] = strategy._builder.initial_state(p)
        else:
            state = own_initial_state(inner, p)
            assert state is not None, "_check_resumable() first"
            inner.state[p] = state
    internals.relink_optimizer_state(strategy.engine.optimizer)


def own_initial_state(inner: Any, flat: torch.Tensor) -> dict[str, Any] | None:
    """The state an optimizer DeepSpeed built (``strategy.optimizer = "deepspeed"``, or the
    ``optimizer`` of a ``config_path`` file) gives the flat fp32 partition ``flat`` on its first
    step, with the step count at 0: the Adam family, torch's ``Adam`` / ``AdamW`` (a tensor step)
    and DeepSpeed's ``FusedAdam`` / ``DeepSpeedCPUAdam`` (an int step; moments in the partition's
    fp32). ``None`` for any other optimizer: its state is not known before a step, so its run
    cannot resume here (a resume would load nothing into it and restart it from zero)."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam

    if isinstance(inner, torch.optim.AdamW | torch.optim.Adam):
        step: Any = torch.tensor(0.0)
    elif isinstance(inner, FusedAdam | DeepSpeedCPUAdam):
        step = 0
    else:
        return None
    return {"step": step, "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}

