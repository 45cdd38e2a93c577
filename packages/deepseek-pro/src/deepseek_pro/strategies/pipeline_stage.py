"""torch's pipeline stage as the pipeline strategy runs it, and where a tied parameter lives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.errors import UsageError

if TYPE_CHECKING:
    from deepseek.training.step import StepSettings


def neutral_stage_class() -> type:
    """torch's ``PipelineStage`` whose shape inference leaves the random generators and the
    stage's buffers as it found them. The stage infers shapes on the first schedule step with an
    extra forward in train mode, which draws dropout masks and may update buffers (BatchNorm's
    statistics): a run resumed at step k would do so at step k+1, a run from the start only at step
    1, and every later step would differ. On a forked random state, with the buffers put back,
    neither does, so resume is bit-exact (tests/pro/test_resume_dropout.py and
    test_hybrid_buffers.py fail if a torch release moves this method)."""
    from torch.distributed.pipelining import PipelineStage

    class RngNeutralStage(PipelineStage):
        def _shape_inference(self, args: Any, kwargs: Any = None) -> Any:
            cuda = [self.device] if self.device.type == "cuda" else []
            kept = [(b, b.detach().clone()) for b in self.submod.buffers()]
            with torch.random.fork_rng(devices=cuda, device_type=self.device.type):
                out = super()._shape_inference(args, kwargs)
            with torch.no_grad():
                for buf, value in kept:
                    buf.copy_(value)
            return out

    return RngNeutralStage


def locate_param(stages: list[nn.Module], param: nn.Parameter) -> tuple[int, str]:
    """``(stage index, name in that stage)`` of ``param``."""
    for i, stage in enumerate(stages):
        for name, p in stage.named_parameters(remove_duplicate=False):
            if p is param:
                return i, name
    raise UsageError("pipeline: a tied parameter returned by the model's tied_parameters() is in no stage")


def checked_stages(model: nn.Module, n: int, settings: StepSettings, strategy: str) -> list[nn.Module]:
    """``model.split_stages(n)`` for training, refused by :func:`check_stage_names` where the stages
    do not keep the model's names. The model's code (its ``split_stages``, the model's and the
    stages' ``state_dict``) runs in ``settings.model_calls``: a plugin model's bug there is its one
    line naming the model and the call, as in ``single``'s calls of the model."""
    with settings.model_calls("split_stages"):
        stages = model.split_stages(n)  # type: ignore[operator]
    with settings.model_calls("state_dict"):
        check_stage_names(model, stages, settings.model_name, strategy)
    return stages


def check_stage_names(model: nn.Module, stages: list[nn.Module], model_name: str, strategy: str) -> None:
    """Refuse, before training, ``stages`` (``model.split_stages(n)``) whose state-dict keys are
    not ``model``'s: the merged checkpoint holds the stages' keys (``pipeline_state``), which
    would load back into neither the model nor another strategy. One line naming the model and
    the first key that differs (keys only: no tensor is copied)."""
    own = model.state_dict(keep_vars=True).keys()
    held = [(i, key) for i, stage in enumerate(stages) for key in stage.state_dict(keep_vars=True)]
    stray = next(((i, key) for i, key in held if key not in own), None)
    kept = {key for _, key in held}
    missing = next((key for key in own if key not in kept), None)
    if stray is None and missing is None:
        return
    said = (f"stage {stray[0]} holds {stray[1]!r}, which is no key of the model's state_dict" if stray is not None
            else f"the model's {missing!r} is in no stage")
    raise UsageError(f"strategy {strategy!r}: model {model_name!r}: the stages its split_stages returns do not "
                     f"keep the model's parameter names ({said}), so its checkpoints would not load back; make each "
                     "stage hold the model's own modules under their names in the model (docs/plugins.md, "
                     "capability 'pipeline')")
