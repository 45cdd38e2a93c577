"""``single``: one process on one device (CPU or CUDA), core's built-in strategy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from deepseek.devices import device_problem, resolve_device
from deepseek.training import checkpoint as ckpt
from deepseek.training import master_weights
from deepseek.training.strategy import OptimizerFactory, StepSettings, Strategy


@dataclass(frozen=True)
class SingleOptions:
    """``[strategy]`` keys of ``single``."""

    device: str = field(default="auto", metadata={"check": device_problem})
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    sync_batchnorm: bool = False
    """Accepted so that one config serves ``single`` and the data-parallel strategies (``ddp``,
    ``fsdp`` of deepseek-pro synchronise BatchNorm statistics over their ranks with it); one
    process already normalises over the whole batch, so ``true`` does nothing here (a warning)."""


class SingleDeviceStrategy(Strategy):
    """Everything in this process on one device: no wrapping; the base class's step."""

    name: ClassVar[str] = "single"
    Options: ClassVar[type] = SingleOptions
    supports_master_weights: ClassVar[bool] = True

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        return "single"

    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        return None if options.device == "auto" else "cpu" if options.device == "cpu" else "cuda"

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self._device = torch.device("cpu")
        self._param_names: list[str] = []

    @property
    def device(self) -> torch.device:
        return self._device

    def setup_environment(self) -> None:
        self._device = resolve_device(self.options.device)
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)
        self.precision.bind(self._device)

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        self.model = model.to(self._device)
        self.optimizer = optimizer_factory(self.model.named_parameters())
        self._param_names = ckpt.optimizer_param_names(self.optimizer, self.model)

    def unwrapped_model(self) -> nn.Module:
        assert self.model is not None
        return self.model

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None
        directory = Path(directory)
        ckpt.save_model_state(directory / ckpt.MODEL_FILE, master_weights.model_state(self.model, self.optimizer))
        ckpt.save_optimizer_state(directory / ckpt.OPTIMIZER_FILE, self.optimizer, self._param_names)
        ckpt.write_trainer_state(directory, trainer_state)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        """Restore from a checkpoint of either layout: ``full`` (any strategy) or the ``sharded``
        one of deepseek-pro, reassembled in this process (any world size; its ``sharded.json`` read,
        and its groups held to the run's optimizer on the run's host, once for weights and state)."""
        assert self.model is not None and self.optimizer is not None
        directory = Path(directory)
        state = ckpt.read_trainer_state(directory)
        if ckpt.layout_of(directory) == "sharded":
            meta: dict[str, Any] | None = ckpt.read_sharded_meta(directory, self.host)
            weights = ckpt.read_sharded_model(directory, meta)
        else:
            meta, weights = None, ckpt.load_model_state(directory, self.host)
        ckpt.check_fits_module(weights, self.model, directory)
        self.model.load_state_dict(weights, strict=True)
        ckpt.load_optimizer_state(directory, self.optimizer, self._param_names, self.host, sharded_meta=meta)
        master_weights.restore_masters(self.optimizer, weights, self._param_names)
        return state
