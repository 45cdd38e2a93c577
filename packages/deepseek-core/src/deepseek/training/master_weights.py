"""bf16 parameters with fp32 master weights kept by the optimizer (``precision.master_weights``).

Under plain autocast the parameters are fp32 and every step casts each weight to bf16 for its
matmuls, and each bf16 weight gradient back to fp32 for ``.grad``: two passes over every
parameter that do no arithmetic. Megatron and DeepSpeed keep the model itself in bf16 and the
fp32 copy (the *master weights*) in the optimizer instead. :class:`MasterWeightAdamW` does that:

- at construction it copies each fp32 parameter into an fp32 master tensor, then turns the
  parameter itself to bf16 (``param.data``: the module keeps the same ``Parameter`` objects);
- ``step()`` reads the bf16 gradients and updates master weights and AdamW moments in fp32 (torch
  AdamW's arithmetic), then writes the rounded master back into the bf16 parameter, all in one
  pass per parameter: a Triton kernel on CUDA (:mod:`deepseek.training.master_kernel`; it
  compiles in seconds, where ``torch.compile`` of the same loop took minutes for a 1.3b model),
  launched once per parameter (``update="per_parameter"``) or once per group and step count over
  all its parameters (``"multi_tensor"``, bit-identical), eager torch ops elsewhere. The step
  count, learning rate and bias corrections stay on the host, as in torch's default AdamW. The
  forward under autocast then casts nothing: its weights are bf16 already, and the rounding is
  the same one autocast would do, so the forward computes the same values;
- it takes a ``grad_scale`` the way torch's fused AdamW does (set by
  :func:`deepseek.training.clip.clip_gradients`), so clipping costs no pass over the gradients.

Checkpoints keep the layout of the fp32 path: :meth:`state_dict` holds ``step``, ``exp_avg`` and
``exp_avg_sq`` in fp32 (not the masters), and the strategy writes the masters as the model's
weights (:meth:`master_weights`), so a checkpoint resumes with or without master weights and
under any strategy; :meth:`load_state_dict` keeps the moments fp32 (the base class would cast them
to the bf16 parameters' dtype) and :meth:`load_master_weights` restores the masters.
With gradient accumulation (``accumulation > 1``, ``train.grad_accum``) the micro-batches'
gradients add up in an fp32 buffer per parameter, not in bf16: a hook after each backward folds
the parameter's bf16 gradient into it and clears ``.grad``; at the end of the step's last
backward (counted once per backward, not per parameter: a micro-batch may not reach every
parameter) every parameter that had a gradient in any micro-batch gets the sum rounded to bf16
once as ``.grad`` (what clipping and the step read). A backward inside the backward (reentrant
activation checkpointing) would end early and is refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from deepseek.errors import ConfigError

if TYPE_CHECKING:  # master_kernel imports Triton, which only torch's CUDA builds bring
    from deepseek.training.master_kernel import MultiTensorUpdate

UpdateForm = Literal["per_parameter", "multi_tensor"]
"""How the Triton update is launched: once per parameter, or once over a group's parameters."""

STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
"""What a parameter's saved state holds: torch AdamW's keys, so checkpoints stay interchangeable."""


def _update(p: torch.Tensor, g: torch.Tensor, w: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
            lr: float, scale: torch.Tensor | None, bias_correction1: float, bias_correction2_sqrt: float,
            beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW step in fp32 on master ``w`` (torch AdamW's order of operations), then the bf16
    parameter ``p`` rounded from it: the eager form, used off CUDA."""
    g32 = g.float()
    if scale is not None:
        g32 = g32 / scale
    w.mul_(1 - lr * weight_decay)
    m.lerp_(g32, 1 - beta1)
    v.mul_(beta2).addcmul_(g32, g32, value=1 - beta2)
    denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
    w.addcdiv_(m, denom, value=-lr / bias_correction1)
    p.copy_(w)


class MasterWeightAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) over bf16 parameters with fp32 master weights.

    Takes fp32 parameters (or groups, as ``torch.optim.AdamW`` does) and turns them to
    ``dtype``; see the module docstring. ``fused``: the update as a Triton kernel
    (:mod:`deepseek.training.master_kernel`; default: when the parameters are on CUDA), else the
    eager torch ops of :func:`_update`. ``update``: the Triton kernel's launches, one per
    parameter (``"per_parameter"``) or one per group and step count (``"multi_tensor"``: a group's
    parameters with a gradient share their step count unless some had none in an earlier step);
    the same numbers either way. No effect without ``fused``.
    """

    applies_grad_scale = True
    """Reads ``self.grad_scale`` (a 0-dim tensor, set before :meth:`step`) and divides each
    gradient by it; :func:`deepseek.training.clip.fusable` asks this."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, *, dtype: torch.dtype = torch.bfloat16,
                 fused: bool | None = None, accumulation: int = 1, update: UpdateForm = "per_parameter") -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        flat = [p for g in self.param_groups for p in g["params"]]
        if any(p.dtype != torch.float32 for p in flat):
            raise ValueError("MasterWeightAdamW takes fp32 parameters (it makes the bf16 copies itself)")
        self.dtype = dtype
        self._fused = bool(flat) and all(p.is_cuda for p in flat) if fused is None else fused
        if update not in ("per_parameter", "multi_tensor"):
            raise ValueError(f"MasterWeightAdamW: update {update!r}; use 'per_parameter' or 'multi_tensor'")
        self.update_form: UpdateForm = update
        self._multi: MultiTensorUpdate | None = None  # made at the first multi-tensor step
        with torch.no_grad():
            for p in flat:
                state = self.state[p]
                state["master"] = p.detach().clone()
                state["exp_avg"] = torch.zeros_like(state["master"])
                state["exp_avg_sq"] = torch.zeros_like(state["master"])
                state["step"] = torch.zeros((), dtype=torch.float32)  # on the host, as torch AdamW's
                p.data = p.data.to(dtype)
        self.accumulation = int(accumulation)
        self._hooks: list[Any] = []
        self._backwards = 0  # backward passes of this step so far
        self._queued = False  # the end-of-backward callback of the running backward is queued
        self._task = -1  # autograd's id of the backward (graph task) that queued it last
        if self.accumulation > 1:
            for p in flat:
                self.state[p]["grad_sum"] = torch.zeros_like(self.state[p]["master"])
                self._hooks.append(p.register_post_accumulate_grad_hook(self._fold))

    def _fold(self, p: torch.Tensor) -> None:
        """After a backward reached ``p``: add ``p.grad`` into its fp32 sum and clear it; the
        first parameter of each backward queues :meth:`_end_of_backward`."""
        task = torch._C._current_graph_task_id()
        if (task != self._task) if self._queued else (task < self._task):
            # A backward inside a backward (reentrant activation checkpointing): its end is not
            # the micro-batch's, and counting it would hand out partial sums as gradients.
            raise ConfigError("precision.master_weights with train.grad_accum > 1: the model runs a backward "
                              "inside its backward (reentrant activation checkpointing); use "
                              "torch.utils.checkpoint.checkpoint(..., use_reentrant=False) or grad_accum = 1")
        state = self.state[p]
        state["grad_sum"].add_(p.grad)
        state["folded"] = True
        p.grad = None
        if not self._queued:
            self._queued, self._task = True, task
            torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)

    def _end_of_backward(self) -> None:
        """Once per backward: after the step's last one, each parameter that had a gradient in
        any micro-batch gets its fp32 sum, rounded once, as ``.grad``."""
        self._queued = False
        self._backwards += 1
        if self._backwards < self.accumulation:
            return
        self._backwards = 0
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if state.get("folded"):
                    p.grad = state["grad_sum"].to(p.dtype)
                    state["grad_sum"].zero_()
                    state["folded"] = False

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients and any partial fp32 sums (a step left unfinished)."""
        super().zero_grad(set_to_none)
        self._backwards, self._queued, self._task = 0, False, -1
        if self.accumulation > 1:
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    if state.get("folded"):
                        state["grad_sum"].zero_()
                        state["folded"] = False

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient (``closure`` as in torch)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale = self.__dict__.get("grad_scale")
        if scale is not None:
            scale = scale.float()
        if self._fused and self.update_form == "multi_tensor" and self._multi is None:
            from deepseek.training.master_kernel import MultiTensorUpdate

            self._multi = MultiTensorUpdate()
        multi = self._multi if self._fused and self.update_form == "multi_tensor" else None
        if self._fused:
            from deepseek.training.master_kernel import fused_update as update
        else:
            update = _update
        for group in self.param_groups:
            beta1, beta2 = (float(b) for b in group["betas"])
            lr, eps, decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            launches: dict[tuple[Any, ...], list[torch.Tensor]] = {}  # multi-tensor: parameters by step and dtypes
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("MasterWeightAdamW does not take sparse gradients")
                state = self.state[p]
                state["step"] += 1  # a host tensor: no device work
                step = float(state["step"])
                if multi is not None:
                    launches.setdefault((step, p.dtype, p.grad.dtype, p.device), []).append(p)
                    continue
                update(p, p.grad, state["master"], state["exp_avg"], state["exp_avg_sq"], lr, scale,
                       1 - beta1**step, (1 - beta2**step) ** 0.5, beta1, beta2, eps, decay)
            for (step, *_), ps in launches.items():  # filled only when multi is set
                ws, ms, vs = ([self.state[p][k] for p in ps] for k in ("master", "exp_avg", "exp_avg_sq"))
                multi(ps, [p.grad for p in ps], ws, ms, vs, lr, scale,  # type: ignore[misc]
                      1 - beta1**step, (1 - beta2**step) ** 0.5, beta1, beta2, eps, decay)
        return loss

    # ------------------------------------------------------------------ checkpoints

    def master_weights(self) -> list[torch.Tensor]:
        """The fp32 master of every parameter, in the optimizer's order (what a checkpoint
        writes as the model's weights)."""
        return [self.state[p]["master"] for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def load_master_weights(self, tensors: Iterable[torch.Tensor]) -> None:
        """Set the masters (and the bf16 parameters rounded from them) from fp32 weights given
        in the optimizer's order, e.g. a checkpoint's model weights."""
        flat = [p for g in self.param_groups for p in g["params"]]
        values = list(tensors)
        if len(values) != len(flat):
            raise ValueError(f"load_master_weights: {len(values)} tensors for {len(flat)} parameters")
        for p, value in zip(flat, values, strict=True):
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"load_master_weights: shape {tuple(value.shape)} for a parameter of {tuple(p.shape)}")
            self.state[p]["master"].copy_(value)
            p.copy_(self.state[p]["master"])

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["state"] = {k: {n: v for n, v in s.items() if n in STATE_KEYS} for k, s in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load torch AdamW's layout (``step``, ``exp_avg``, ``exp_avg_sq``), keeping the moments
        fp32 on the parameters' device; the masters stay as they are (see
        :meth:`load_master_weights`)."""
        saved = state_dict["state"]
        masters = {id(p): self.state[p]["master"] for g in self.param_groups for p in g["params"]}
        super().load_state_dict({**state_dict, "state": {}})  # checks the groups, keeps hyperparameters
        flat = [p for g in self.param_groups for p in g["params"]]
        for index, p in enumerate(flat):
            values = saved.get(index)
            state = self.state[p]
            state["master"] = masters[id(p)]
            if self.accumulation > 1:
                state["grad_sum"] = torch.zeros_like(state["master"])
            if values is None:
                state["exp_avg"] = torch.zeros_like(state["master"])
                state["exp_avg_sq"] = torch.zeros_like(state["master"])
                state["step"] = torch.zeros((), dtype=torch.float32)
                continue
            missing = [k for k in STATE_KEYS if k not in values]
            if missing:
                raise ValueError(f"optimizer state of parameter {index} has no {', '.join(missing)}")
            for key in ("exp_avg", "exp_avg_sq"):
                value = torch.as_tensor(values[key])
                if tuple(value.shape) != tuple(p.shape):
                    raise ValueError(f"optimizer state {key} of parameter {index}: shape {tuple(value.shape)}, "
                                     f"parameter {tuple(p.shape)}")
                state[key] = value.to(device=p.device, dtype=torch.float32).clone()
            state["step"] = torch.as_tensor(values["step"]).to(device="cpu", dtype=torch.float32).reshape(())


def model_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with the fp32 masters in place of the bf16 parameters when
    ``optimizer`` keeps master weights (tied names included); unchanged otherwise."""
    state = model.state_dict(keep_vars=True)
    if isinstance(optimizer, MasterWeightAdamW):
        flat = [p for g in optimizer.param_groups for p in g["params"]]
        masters = {id(p): w for p, w in zip(flat, optimizer.master_weights(), strict=True)}
        state = {k: masters.get(id(v), v) for k, v in state.items()}
    return {k: v.detach() for k, v in state.items()}


def restore_masters(optimizer: torch.optim.Optimizer, weights: Mapping[str, torch.Tensor],
                    param_names: list[str]) -> None:
    """After a checkpoint's weights were loaded into the model (rounded to bf16), set the
    masters to the exact fp32 weights; ``param_names`` lists the optimizer's parameters in
    order. Nothing to do for an optimizer without master weights."""
    if isinstance(optimizer, MasterWeightAdamW):
        optimizer.load_master_weights(weights[name] for name in param_names)
