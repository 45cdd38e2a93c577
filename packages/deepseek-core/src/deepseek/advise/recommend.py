"""Pick the edition and strategy from the memory estimates, the GPU count and the modalities.

Rules (docs/advise.md): enterprise when any modality beyond text is asked; otherwise core for one
device when plain ``single`` fits, pro for more than one GPU or when only a sharded / offloaded
strategy fits. Among the strategies that fit, the fastest kind wins: no sharding, then sharded
optimizer, gradients, parameters, then tensor parallelism (within one node; it also splits each
layer's activations, which ZeRO does not), then CPU offload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from deepseek.advise.estimate import Estimate, ModelShape, TrainSetup, estimate_all
from deepseek.errors import UsageError
from deepseek.plugins.install import install_command

MODALITIES: tuple[str, ...] = ("text", "vision", "speech")

# Fastest first. One device: single, then ZeRO-Offload, then parameter offload.
_ORDER_ONE = ("single", "single+offload", "zero3+offload")
_ORDER_MANY = ("ddp", "zero1", "zero2", "zero3", "tp", "tp+sp", "zero1+offload", "zero2+offload", "zero3+offload")


def parse_modalities(text: str | None) -> tuple[str, ...]:
    """``"text,vision"`` -> ``("text", "vision")``; unknown names raise :class:`UsageError`."""
    if text is None:
        return ("text",)
    from deepseek.names import split_names

    names = tuple(dict.fromkeys(p.lower() for p in split_names(text, where="--modalities")))
    for name in names:
        if name not in MODALITIES:
            from deepseek.config.validate import did_you_mean

            raise UsageError(
                f"--modalities: unknown modality {name!r}{did_you_mean(name, MODALITIES)}; "
                f"choose from {', '.join(MODALITIES)}"
            )
    return names


@dataclass(frozen=True)
class Recommendation:
    """The advice: edition, strategy row (``None`` when nothing fits), reasons and notes."""

    edition: str
    strategy: str | None
    engine: str | None
    reasons: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    seed_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "edition": self.edition, "strategy": self.strategy, "engine": self.engine,
            "install": install_command(f"deepseek-{self.edition}"),
            "installed": _installed(f"deepseek-{self.edition}"), "reasons": self.reasons,
            "suggestions": self.suggestions, "seed_notes": self.seed_notes,
        }


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def _best(estimates: list[Estimate], gpus: int) -> Estimate | None:
    by_key = {e.key: e for e in estimates}
    order = ("single",) if gpus == 0 else _ORDER_ONE if gpus == 1 else _ORDER_MANY
    for key in order:
        est = by_key.get(key)  # with master weights only the rows that offer them are estimated
        if est is not None and est.applicable and est.fits:
            return est
    return None


def seed_notes(n_params: int, modalities: tuple[str, ...], gpu_memory: int, gpus: int) -> list[str]:
    """The product document's selection rules that apply to this model (quoted as its claims,
    each line marked ``product guide:``)."""
    notes = []
    if n_params < 5e9:
        notes.append("product guide: ~1B-parameter models -> V1 core; a start-up may stay on V1 while under 5B parameters")
    elif n_params < 1e11:
        notes.append("product guide: ~10B-parameter models -> V2 pro (multi-GPU cluster, e.g. 8 x A100)")
    else:
        notes.append("product guide: 100B-parameter models -> V2 pro / V3 enterprise on A100/H100 clusters")
    if n_params > 3.4e9:
        notes.append("product guide: V1 core cannot train models above 3.4B parameters")
    if len(modalities) > 1:
        notes.append("product guide: multimodal -> V3 is the only choice; pilot with two modalities first")
        if len(modalities) >= 3 and gpus and gpu_memory < 48 * 1000**3:
            notes.append("product guide: the full three-modality model needs at least 48 GB of GPU memory")
    return notes


def _suggest(shape: ModelShape, setup: TrainSetup, kw: dict[str, Any]) -> list[str]:
    """What would make some strategy fit: checkpointing, a smaller micro-batch, more GPUs (not
    with master weights: one device), or the fp32 parameters of plain autocast."""
    out: list[str] = []
    gpus = setup.gpus
    if not setup.activation_checkpointing:
        with_ckpt = replace(setup, activation_checkpointing=True)
        best = _best(estimate_all(shape, with_ckpt, **kw), gpus)
        if best is not None:
            out.append(f"fits with --activation-checkpointing ({best.label})")
    b = setup.micro_batch // 2
    while b >= 1:
        accum = setup.grad_accum * -(-setup.micro_batch // b)  # the same rows per optimizer step
        best = _best(estimate_all(shape, replace(setup, micro_batch=b, grad_accum=accum), **kw), gpus)
        if best is not None:
            out.append(f"fits with --batch {b} per GPU ({best.label}); keep the global batch with "
                       f"--grad-accum {accum}")
            break
        b //= 2
    if setup.master_weights:
        best = _best(estimate_all(shape, replace(setup, master_weights=False), **kw), gpus)
        if best is not None:
            out.append(f"fits without --master-weights ({best.label})")
    elif gpus >= 1:
        n = max(2, gpus * 2)
        while n <= 4096:
            best = _best(estimate_all(shape, replace(setup, gpus=n), **kw), n)
            if best is not None:
                out.append(f"fits on {n} GPUs of this size ({best.label})")
                break
            n *= 2
    if setup.master_weights:
        return out or ["no strategy fits even with checkpointing or micro-batch 1, with or without master weights"]
    return out or ["no strategy fits even with checkpointing, micro-batch 1 or 4096 GPUs"]


def recommend(
    shape: ModelShape, setup: TrainSetup, modalities: tuple[str, ...], estimates: list[Estimate],
    **estimate_kw: Any,
) -> Recommendation:
    """Edition and strategy for this model and machine (``estimate_kw``: as :func:`estimate_all`)."""
    gpus = setup.gpus
    best = _best(estimates, gpus)
    reasons: list[str] = []
    suggestions: list[str] = []
    extra = [m for m in modalities if m != "text"]
    if best is None:
        where = "the CPU's memory" if gpus == 0 else f"{gpus} GPU(s)"
        reasons.append(f"no strategy fits in {where} at micro-batch {setup.micro_batch}, sequence {setup.seq_len}")
        suggestions = _suggest(shape, setup, estimate_kw)
    elif gpus == 0:
        reasons.append("no GPU: train on the CPU with core's single strategy (slow beyond small models)")
    elif best.key == "single":
        reasons.append("the model trains on one device without sharding")
    else:
        reasons.append(f"{best.label} is the fastest strategy that fits")
        if best.key in ("tp", "tp+sp"):
            reasons.append("ZeRO shards weights, gradients and optimizer state but not activations; tensor "
                           f"parallelism also splits each layer's activations over the {gpus} GPUs of the node")
        if gpus == 1:
            reasons.append("plain single-device training does not fit; offload needs the pro edition")
    if extra:
        edition = "enterprise"
        reasons.append(f"modalities beyond text ({', '.join(extra)}) need the enterprise edition's encoders")
    elif gpus > 1:
        edition = "pro"
        reasons.append(f"{gpus} GPUs need a distributed strategy from the pro edition")
    elif best is None:  # pro's offload rows for one GPU; master weights are core's single only
        edition = "pro" if gpus == 1 and not setup.master_weights else "core"
    elif best.key != "single":
        edition = "pro"
    else:
        edition = "core"
    return Recommendation(
        edition=edition,
        strategy=best.key if best else None,
        engine=best.engine if best else None,
        reasons=reasons,
        suggestions=suggestions,
        seed_notes=seed_notes(shape.n_params, modalities, estimate_kw.get("gpu_memory", 0), gpus),
    )
