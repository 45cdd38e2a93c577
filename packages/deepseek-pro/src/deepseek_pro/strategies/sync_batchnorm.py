"""``strategy.sync_batchnorm`` of the data-parallel strategies (``ddp``, ``fsdp``/``zero3``).

Under data parallelism each rank's BatchNorm layers normalise with the mean and variance of that
rank's rows alone, so N ranks of ``B / N`` rows train differently from one process on the
global batch of ``B`` rows (and differently from each other, before rank 0's running statistics
are broadcast: :mod:`deepseek_pro.strategies.base`). With ``sync_batchnorm = true`` every
``BatchNorm1d/2d/3d`` of the model becomes a :class:`torch.nn.SyncBatchNorm` before the strategy
wraps it (:func:`convert_batchnorm`): in training its statistics are those of the whole global
batch (an all-gather of the per-rank sums in forward and backward), so the run matches
single-device training on the same global batch (Lightning's ``Trainer(sync_batchnorm=True)``).
The state dict keeps its names and kinds, so checkpoints load into the plain model anywhere.
Evaluation uses the running statistics and communicates nothing.

torch's SyncBatchNorm runs only on CUDA (and XPU/HPU) tensors: its forward refuses CPU tensors
(torch 2.11: ``ValueError: SyncBatchNorm expected input tensor to be on GPU``), so a run whose
process group is gloo, i.e. on CPU, is refused in one line when the config is loaded
(:func:`sync_batchnorm_problem`), before any process starts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from deepseek_pro.strategies.base import DistributedOptions


@dataclass(frozen=True)
class DataParallelOptions(DistributedOptions):
    """Keys of ``[strategy]`` of the strategies whose ranks each run the whole model on their own
    rows (ddp, fsdp)."""

    sync_batchnorm: bool = False
    """Turn the model's BatchNorm layers into ``torch.nn.SyncBatchNorm`` before wrapping it:
    statistics over the global batch, not each rank's rows, as one device would compute them
    (CUDA only: torch's SyncBatchNorm refuses CPU tensors, so with gloo it is refused)."""


def sync_batchnorm_problem(options: Any, *, device_type: str) -> str | None:
    """One line when ``options.sync_batchnorm`` cannot run: the ranks compute on the CPU
    (``device_type``, the strategy's
    :meth:`~deepseek_pro.strategies.base.DistributedStrategy.resolved_device_type`: gloo's
    process group, ``backend = "gloo"`` or ``auto`` without CUDA)."""
    if not options.sync_batchnorm or device_type != "cpu":
        return None
    where = "strategy.backend = \"gloo\"" if options.backend == "gloo" else "no CUDA device here, so gloo"
    return ("strategy.sync_batchnorm: torch's SyncBatchNorm runs only on GPUs (its forward refuses CPU tensors), "
            f"and this run computes on the CPU ({where}); set strategy.sync_batchnorm = false, or train on CUDA "
            "devices with backend \"nccl\" or \"auto\"")


def convert_batchnorm(model: Any, options: Any, *, process_group: Any = None, warn: bool = True) -> Any:
    """``model`` with its BatchNorm layers turned into :class:`torch.nn.SyncBatchNorm` over
    ``process_group`` (default: every rank) when ``options.sync_batchnorm``; otherwise ``model``
    unchanged. A model without BatchNorm layers is returned as it is, with an
    :class:`~deepseek.config.ineffective.IneffectiveSettingWarning` when ``warn`` (rank 0)."""
    if not options.sync_batchnorm:
        return model
    import torch

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        if warn:
            from deepseek.config.ineffective import IneffectiveSettingWarning

            warnings.warn(f"strategy.sync_batchnorm: the model ({type(model).__name__}) has no BatchNorm1d/2d/3d "
                          "layers, so there is nothing to synchronise; remove sync_batchnorm",
                          IneffectiveSettingWarning, stacklevel=2)
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)
