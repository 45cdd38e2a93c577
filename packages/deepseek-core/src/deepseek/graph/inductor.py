"""The ``inductor`` stage: compile the (rewritten) graph with torch.compile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import fx, nn

from deepseek.devices import hold_back_cuda_home_note
from deepseek.graph.passes import GraphPass
from deepseek.graph.verify import device_of, has_subclass_weights


class CompiledModule(nn.Module):
    """A ``torch.compile``-d module whose every call runs under fixed inductor settings.

    Settings such as ``freezing`` are read from the global inductor config while compiling, and
    a later recompilation (a guard failure) must see the same ones, so each call patches them.
    """

    def __init__(self, module: nn.Module, compiled: Any, config: dict[str, Any]) -> None:
        super().__init__()
        self.module = module
        self._compiled = compiled
        self._config = dict(config)

    def forward(self, *args: Any) -> Any:
        """Run the compiled module."""
        if not self._config:
            return self._compiled(*args)
        import torch._inductor.config as inductor_config

        with inductor_config.patch(**self._config):
            return self._compiled(*args)


class InductorStage(GraphPass):
    """``torch.compile(backend="inductor")`` with the settings that suit the device.

    CPU: ``freezing`` (parameters become constants, Linear weights are pre-packed for MKL/oneDNN
    and constant sub-graphs are folded), except for weights that are tensor subclasses (torchao
    quantized weights: freezing made a 2-layer torchao int8 GPT take 19 s per call against
    9.7 ms compiled without it). GPU: ``mode="reduce-overhead"`` (CUDA graphs).
    ``config`` adds inductor settings (e.g. :attr:`CPP_GEMM`). Compilation happens here, on the
    example inputs, under ``torch.no_grad()`` (freezing applies only to inference graphs); the
    result is specialized to the example shapes (``dynamic=False``).
    """

    name = "inductor"
    description = "torch.compile (inductor) with freezing on CPU, CUDA graphs on GPU"
    terminal = True

    CPP_GEMM: ClassVar[dict[str, Any]] = {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}
    """Autotune each GEMM between MKL/oneDNN and inductor's C++ micro-kernel templates (which
    fuse bias, activation and residual epilogues into the GEMM)."""

    def __init__(self, *, mode: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.mode = mode
        self.config = dict(config or {})

    def settings(self, device: torch.device, module: nn.Module | None = None) -> tuple[str | None, dict[str, Any]]:
        """The ``mode`` and inductor config used for ``module`` on ``device``."""
        config = dict(self.config)
        mode = self.mode
        if device.type == "cpu":
            config.setdefault("freezing", module is None or not has_subclass_weights(module))
        elif device.type == "cuda" and mode is None:
            mode = "reduce-overhead"
        return mode, config

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> nn.Module | None:
        hold_back_cuda_home_note()
        device = device_of(gm, example_inputs)
        mode, config = self.settings(device, gm)
        compiled = torch.compile(gm, backend="inductor", mode=mode, dynamic=False)
        result = CompiledModule(gm, compiled, config)
        with torch.no_grad():
            result(*example_inputs)  # compile now, on the example inputs
        shown = "".join(f", {k}={v}" for k, v in sorted(config.items()))
        self.record(f"compiled with inductor on {device.type} (mode={mode or 'default'}{shown})")
        return result
