"""What the optimizer decides: stages (final candidates) and the per-signature :class:`Plan`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from deepseek.graph.passes import GraphPass, PassReport

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
    from deepseek.graph.attention_bmm import AttentionBMM
    from deepseek.graph.inductor import InductorStage
    from deepseek.graph.onednn import OneDNNLinear

    default = [Stage("fx"), Stage("inductor", (InductorStage(),))]
    extra: list[Stage] = []
    if device.type == "cpu":
        default[1:1] = [Stage("onednn", (OneDNNLinear(),)), Stage("onednn-bmm", (OneDNNLinear(), AttentionBMM()))]
        extra = [
            Stage("onednn-inductor", (OneDNNLinear(), InductorStage())),
            Stage("inductor-cpp-gemm", (InductorStage(config=InductorStage.CPP_GEMM),)),
        ]
    return default, extra


CANDIDATE_STATUSES: dict[str, str] = {
    "ok": "verified and timed (median_ms)",
    "dropped": "its outputs, or those of one of its passes, differ from eager's by more than the tolerance",
    "slow": "its first call took over 3x the best median so far; median_ms is that one call",
    "skipped": "needs a captured graph and the model could not be captured",
    "no-op": "every pass of the stage declined: it would equal the plain graph",
    "error": "a pass of the stage raised",
}
"""Every ``status`` of a :attr:`Plan.candidates` entry, with its meaning."""


@dataclass
class Plan:
    """What the optimizer decided for one input signature, and why (JSON: :meth:`as_dict`)."""

    signature: str
    """Shapes, dtypes and devices of the inputs this plan is for."""
    precision: str
    """``fp32``, ``bf16`` or ``int8`` as asked."""
    tolerance: float
    """Max relative error accepted (the precision pass's own once it was applied)."""
    capture: str = "none"
    """``fx.symbolic_trace``, ``torch.export``, ``graph`` (the model was a GraphModule),
    ``failed (why)``, or ``none`` (nothing captured: eager replayed from the cache)."""
    passes: list[PassReport] = field(default_factory=list)
    """Every graph pass considered, in pipeline order: graph passes, tried passes, precision."""
    stage: str = "eager"
    """The chosen final stage: ``eager``, ``fx``, ``onednn``, ``onednn-bmm``, ``inductor``..."""
    stage_passes: list[PassReport] = field(default_factory=list)
    """Reports of the chosen stage's own passes (e.g. ``onednn-linear``)."""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """``auto``: each stage considered: ``name``, ``status`` (:data:`CANDIDATE_STATUSES`),
    ``max_rel_error``, ``top1_agreement``, ``changes``, ``median_ms`` (timed ones), ``error``."""
    max_rel_error: float = 0.0
    """Of the chosen pipeline's outputs against eager's, on the example inputs."""
    top1_agreement: float | None = None
    """Share of positions whose argmax over the last dim matches eager's (first output)."""
    cache_hit: bool = False
    cache_path: str | None = None
    seconds: float = 0.0
    """Time spent optimizing this signature."""

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
