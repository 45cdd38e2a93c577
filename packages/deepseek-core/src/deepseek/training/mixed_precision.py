"""Mixed precision: autocast on the compute device, dynamic loss scaling for fp16.

Parameters and optimizer state stay fp32; matmuls run in the compute dtype under
``torch.autocast``. A strategy uses one :class:`Precision` like this::

    with precision.autocast():
        loss = model(x, y)
    precision.backward(loss / n_micro)
    ...
    precision.unscale_(optimizer)           # before clipping: gradients in true units
    norm = clip_grad_norm_(params, max_norm)
    stepped = precision.step(optimizer)     # False when fp16 found inf/NaN and skipped the step
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deepseek.errors import ConfigError

if TYPE_CHECKING:
    import torch

from deepseek.training import clip

NAMES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def resolved_name(requested: str, device: torch.device) -> str:
    """The precision ``requested`` (a name of :data:`NAMES`) is on ``device``: ``auto`` is bf16 on a
    CUDA device that supports it, fp32 otherwise; any other name is itself."""
    if requested != "auto":
        return requested
    import torch

    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


class Precision:
    """One of ``fp32``, ``bf16``, ``fp16`` (or ``auto``, resolved by :meth:`bind`).

    ``bind(device)`` fixes the device type autocast runs on and resolves ``auto`` (bf16 on a
    CUDA device that supports it, fp32 otherwise). Before ``bind`` the CPU is assumed.
    """

    def __init__(
        self, name: str = "fp32", *, init_scale: float = 2.0**16, growth_interval: int = 2000
    ) -> None:
        if name not in NAMES:
            from deepseek.config.validate import did_you_mean

            raise ConfigError(
                f"precision.dtype: {name!r} is not allowed{did_you_mean(name, NAMES)}; "
                f"allowed values: {', '.join(NAMES)}"
            )
        self.requested = name
        self.name = "fp32" if name == "auto" else name
        self.device_type = "cpu"
        self.init_scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self._scaler: Any = None
        self._unscaled = False
        self._last_skipped = False
        self._bound = False

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device_type={self.device_type!r})"

    # ------------------------------------------------------------------ set-up

    def bind(self, device: torch.device | str) -> Precision:
        """Fix the device type and resolve ``auto``; creates the fp16 loss scaler. Returns self."""
        import torch

        device = torch.device(device)
        self.device_type = device.type
        self.name = resolved_name(self.requested, device)
        self._scaler = None
        self._bound = True
        if self.name == "fp16":
            self._scaler = torch.amp.GradScaler(
                self.device_type, init_scale=self.init_scale, growth_interval=self.growth_interval
            )
        return self

    def _ensure_bound(self) -> None:
        if not self._bound:
            self.bind("cpu")

    @property
    def is_bound(self) -> bool:
        """Whether :meth:`bind` has fixed the device type."""
        return self._bound

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype under autocast (``torch.float32`` for fp32)."""
        from deepseek.dtypes import torch_dtype

        return torch_dtype(self.name)

    @property
    def scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` (fp16 only), else ``None``."""
        self._ensure_bound()
        return self._scaler

    def use_scaler(self, scaler: Any) -> None:
        """Replace the fp16 loss scaler, e.g. by a ``ShardedGradScaler`` whose inf check is
        all-reduced so that every rank skips the same steps. Call it after :meth:`bind`, before
        the first step; only fp16 has a scaler to replace."""
        self._ensure_bound()
        if self._scaler is None:
            raise ValueError(f"use_scaler: precision {self.name!r} uses no loss scaler; only fp16 does")
        self._scaler = scaler
        self._unscaled = False

    @property
    def loss_scale(self) -> float:
        """Current fp16 loss scale (1.0 without scaling)."""
        return float(self._scaler.get_scale()) if self._scaler is not None else 1.0

    @property
    def last_step_skipped(self) -> bool:
        """Whether the last :meth:`step` skipped the optimizer (inf/NaN gradients)."""
        return self._last_skipped

    # ------------------------------------------------------------------ the step

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to the compute dtype on the bound device type; nothing for fp32."""
        import torch

        self._ensure_bound()
        if self.name == "fp32":
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` times the fp16 loss scale (unchanged otherwise)."""
        self._ensure_bound()
        return self._scaler.scale(loss) if self._scaler is not None else loss

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of the (scaled) loss; gradients accumulate."""
        self.scale(loss).backward()
        self._unscaled = False

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide gradients by the loss scale in place (once per step; before clipping)."""
        if self._scaler is not None and not self._unscaled:
            self._scaler.unscale_(optimizer)
            self._unscaled = True

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Step the optimizer; with fp16, skip it when gradients are inf/NaN and lower the scale.

        Returns True if the parameters were updated.
        """
        self._ensure_bound()
        if self._scaler is None:
            try:
                optimizer.step()  # applies a grad_scale deferred by training.clip, if any
            finally:
                clip.release(optimizer)
            self._last_skipped = False
            return True
        self.unscale_(optimizer)
        before = self._scaler.get_scale()
        self._scaler.step(optimizer)
        self._scaler.update()
        self._unscaled = False
        # update() backs off the scale exactly when some gradient was inf/NaN.
        self._last_skipped = self._scaler.get_scale() < before
        return not self._last_skipped

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (the fp16 scaler's scale and growth tracker)."""
        state: dict[str, Any] = {"name": self.name}
        if self._scaler is not None:
            sd = self._scaler.state_dict()
            state["scaler"] = {k: (float(v) if isinstance(v, float) else v) for k, v in sd.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a scaler state is ignored when not running fp16)."""
        self._ensure_bound()
        scaler_state = state.get("scaler")
        if self._scaler is not None and scaler_state:
            self._scaler.load_state_dict(dict(scaler_state))
