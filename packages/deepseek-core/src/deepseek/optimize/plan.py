"""What the optimizer decides: stages (final candidates) and the per-signature :class:`Plan`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from deepseek.optimize.passes import GraphPass, PassReport

STATS: Counter[str] = Counter()
"""Process-wide counters: ``searches`` (auto searches run), ``cache_hits``, ``dropped``."""


class OptimizerWarning(UserWarning):
    """A pass or stage was dropped (it raised or changed the numbers); the optimizer went on."""


@dataclass
class Stage:
    """A final candidate: passes applied after the graph passes (none: run the fx graph as is)."""

    name: str
    passes: tuple[GraphPass, ...] = ()


def all_stages(device: torch.device) -> tuple[list[Stage], list[Stage]]:
    """``(default, extra)`` stage candidates on ``device``: ``auto`` times the defaults; the extras
    run only when named in ``stages=``."""
    from deepseek.optimize.attention_bmm import AttentionBMM
    from deepseek.optimize.inductor import InductorStage
    from deepseek.optimize.onednn import OneDNNLinear

    default = [Stage("fx"), Stage("inductor", (InductorStage(),))]
    extra: list[Stage] = []
    if device.type == "cpu":
        default[1:1] = [Stage("onednn", (OneDNNLinear(),)), Stage("onednn-bmm", (OneDNNLinear(), AttentionBMM()))]
        extra = [
            Stage("onednn-inductor", (OneDNNLinear(), InductorStage())),
            Stage("inductor-cpp-gemm", (InductorStage(config=InductorStage.CPP_GEMM),)),
        ]
    return default, extra


@dataclass
class Plan:
    """What the optimizer decided for one input signature, and why."""

    signature: str
    precision: str
    tolerance: float
    capture: str = "none"
    passes: list[PassReport] = field(default_factory=list)
    stage: str = "eager"
    stage_passes: list[PassReport] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    max_rel_error: float = 0.0
    top1_agreement: float | None = None
    cache_hit: bool = False
    cache_path: str | None = None
    seconds: float = 0.0

    @property
    def pipeline(self) -> list[str]:
        """Kept graph passes, then the stage (just ``["eager"]`` when eager won)."""
        if self.stage == "eager":
            return ["eager"]
        return [r.name for r in self.passes if r.status == "applied"] + [self.stage]

    def timing(self, name: str) -> float | None:
        """Median ms of candidate ``name`` measured during the search (if it was timed)."""
        for c in self.candidates:
            if c["name"] == name:
                return c.get("median_ms")
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "signature": self.signature,
            "precision": self.precision,
            "tolerance": self.tolerance,
            "capture": self.capture,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "passes": [r.as_dict() for r in self.passes],
            "stage_passes": [r.as_dict() for r in self.stage_passes],
            "candidates": self.candidates,
            "max_rel_error": self.max_rel_error,
            "top1_agreement": self.top1_agreement,
            "cache_hit": self.cache_hit,
            "cache_path": self.cache_path,
            "seconds": round(self.seconds, 3),
        }
