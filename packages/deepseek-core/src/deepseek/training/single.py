"""``single``: one process on one device (CPU or CUDA), core's built-in strategy."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from deepseek.errors import ConfigError
from deepseek.training import checkpoint as ckpt
from deepseek.training import clip
from deepseek.training.strategy import Batch, OptimizerFactory, Strategy

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
    """Everything in this process on one device: no wrapping, plain gradient accumulation."""

    name: ClassVar[str] = "single"
    Options: ClassVar[type] = SingleOptions

    def __init__(self, options: Any = None, *, precision: Any) -> None:
        super().__init__(options, precision=precision)
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

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory) -> None:
        self.model = model.to(self._device)
        self.optimizer = optimizer_factory(self.model.parameters())
        self._param_names = ckpt.optimizer_param_names(self.optimizer, self.model)

    def _to_device(self, batch: Batch) -> Batch:
        x, y = batch
        non_blocking = self._device.type == "cuda"
        return x.to(self._device, non_blocking=non_blocking), y.to(self._device, non_blocking=non_blocking)

    def forward_backward(self, micro_batches: Sequence[Batch]) -> torch.Tensor:
        assert self.model is not None, "call setup() first"
        self.model.train()
        rows = sum(int(x.size(0)) for x, _ in micro_batches)
        total = torch.zeros((), device=self._device)
        for batch in micro_batches:
            x, y = self._to_device(batch)
            with self.precision.autocast():
                loss = self.model(x, y)
            # Weight each micro-batch by its rows so the gradient is that of the batch mean.
            weighted = loss * (x.size(0) / rows)
            self.precision.backward(weighted)
            total += weighted.detach().float()
        return total

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        assert self.model is not None and self.optimizer is not None
        self.precision.unscale_(self.optimizer)
        fused_ok = self.precision.scaler is None
        return clip.clip_gradients(self.model.parameters(), max_norm, optimizer=self.optimizer if fused_ok else None)

    @torch.no_grad()
    def evaluate_loss(self, batch: Batch) -> torch.Tensor:
        assert self.model is not None
        was_training = self.model.training
        self.model.eval()
        try:
            x, y = self._to_device(batch)
            with self.precision.autocast():
                return self.model(x, y).detach().float()
        finally:
            self.model.train(was_training)

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
