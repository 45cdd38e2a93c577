"""``single``: one process on one device (CPU or CUDA), core's built-in strategy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from deepseek.errors import ConfigError
from deepseek.training import checkpoint as ckpt
from deepseek.training.strategy import OptimizerFactory, StepSettings, Strategy

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _check_device(value: str) -> str | None:
    if _DEVICE_RE.match(value):
        return None
    return "is not allowed; allowed values: 'auto', 'cpu', 'cuda', 'cuda:N'"


@dataclass(frozen=True)
class SingleOptions:
    """``[strategy]`` keys of ``single``."""

    device: str = field(default="auto", metadata={"check": _check_device})
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""


def pick_device(spec: str, where: str = "strategy.device") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda[:N]`` into a device, with a clear error (naming
    ``where``) when it is absent."""
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {spec!r} but no CUDA device is available; use 'cpu' or 'auto'")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        device = torch.device("cuda", index)
    return device


class SingleDeviceStrategy(Strategy):
    """Everything in this process on one device: no wrapping; the base class's step."""

    name: ClassVar[str] = "single"
    Options: ClassVar[type] = SingleOptions

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self._device = torch.device("cpu")
        self._param_names: list[str] = []

    @property
    def device(self) -> torch.device:
        return self._device

    def setup_environment(self) -> None:
        self._device = pick_device(self.options.device)
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)
        self.precision.bind(self._device)

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        self.settings = settings
        self.model = model.to(self._device)
        self.optimizer = optimizer_factory(self.model.parameters())
        self._param_names = ckpt.optimizer_param_names(self.optimizer, self.model)

    def unwrapped_model(self) -> nn.Module:
        assert self.model is not None
        return self.model

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None
        directory = Path(directory)
        ckpt.save_model_state(directory / ckpt.MODEL_FILE, self.model.state_dict())
        ckpt.save_optimizer_state(directory / ckpt.OPTIMIZER_FILE, self.optimizer, self._param_names)
        ckpt.write_trainer_state(directory, trainer_state)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        """Restore from a checkpoint of either layout: ``full`` (any strategy) or the ``sharded``
        one of deepseek-pro, reassembled in this process (any world size)."""
        assert self.model is not None and self.optimizer is not None
        directory = Path(directory)
        state = ckpt.read_trainer_state(directory)
        ckpt.load_into_model(self.model, directory)
        ckpt.load_optimizer_state(directory, self.optimizer, self._param_names)
        return state
