"""Fusion methods: how a multimodal model combines its modalities' encoder outputs.

A fusion method (hook ``deepseek_register_fusions``, kind ``fusion``) is a :class:`Fusion`
subclass with ``Options``, created as ``cls(options, dims=..., num_classes=...)`` where ``dims``
maps each modality to its encoder's ``output_dim``. Its ``forward(features, present)`` takes each
modality's :class:`~deepseek.models.encoder.EncoderOutput` and a ``(B,)`` bool tensor per
modality, False where a sample lacks that modality (missing at inference, or dropped in training),
and returns a :class:`FusionOutput`. Every fusion handles any subset of modalities per sample.

The base class gives every method the same two parts: ``pooled`` embeddings in one space of
width ``d_model`` (masked mean over a modality's tokens, projected; used by the contrastive
objective and retrieval), and one linear classifier per modality on them (``modality_logits``:
the unimodal predictions, used by ``late`` and by per-modality auxiliary losses).

- ``concat``: the present modalities' pooled embeddings (zeros for missing ones) and presence
  flags, concatenated, through an MLP.
- ``late``: the mean of the present modalities' logits.
- ``cross_attention``: each modality's tokens, projected to ``d_model`` with a learned modality
  embedding, attend to the tokens of the other present modalities (plus one learned null token,
  so a sample with nothing to attend to stays defined), in ``layers`` residual blocks. The
  attended tokens are pooled per modality, projected, and added to that modality's pooled
  embedding through a learned gate ``tanh(g)`` with ``g = 0`` at the start (the gated
  cross-attention of Flamingo); these (zeros for missing ones) with the presence flags go
  through the same MLP as ``concat``'s. So training starts from ``concat``'s function and the
  two differ only in what attention adds. ``queries`` chooses which modalities attend (the
  product document sketches text querying vision); the default is every direction.

``concat`` and ``cross_attention`` take ``joint`` (default off): their fused logits also get
``log(J @ softmax(T))``, where ``J`` is the joint of the modality classifiers' predictions (the
outer product of their softmaxes, ``num_classes ** modalities`` cells; a missing modality's
prediction is uniform, which marginalises it out) and ``T`` a learned table from each joint cell
to the classes, zero at the start (so the term starts constant and the MLP's function is
unchanged). When each modality's classifier learns the modality's own content (per-modality
auxiliary losses on the dataset's ``modality_labels``), this head only has to learn how the
contents combine, which an MLP over pooled embeddings learns slowly when the combination is an
arbitrary table (the complementary digits task: ``(a op b) mod 10``).

They also take ``late_residual`` (default off): ``late``'s output (the mean of the present
modalities' own logits) is added to the fused logits, and the MLP's output layer starts at zero,
so the model starts as late fusion of its modality classifiers and learns corrections to it
(with ``joint``, whose term starts constant, too). With modality classifiers that start from
unimodal models (``[model] pretrained``) the fused model starts as the ensemble of those models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from deepseek.config.validate import probability
from deepseek.errors import ConfigError
from deepseek.models.encoder import EncoderOutput
from deepseek.plugins.calls import broken_answer
from deepseek_enterprise.shape_rules import heads_problem


class FusionOutput(NamedTuple):
    """What a fusion method returns."""

    logits: torch.Tensor
    """``(B, num_classes)``: the fused prediction."""
    modality_logits: dict[str, torch.Tensor]
    """``(B, num_classes)`` per modality: its own classifier's prediction."""
    pooled: dict[str, torch.Tensor]
    """``(B, d_model)`` per modality: pooled embeddings in the shared space."""


def masked_mean(out: EncoderOutput) -> torch.Tensor:
    """Mean of an encoder's features over its non-padding tokens, ``(B, D)``."""
    keep = (~out.padding_mask).unsqueeze(-1).to(out.features.dtype)
    return (out.features * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def present_mean(values: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the present modalities of per-modality ``(B, ...)`` values (zeros where none is)."""
    names = list(values)
    weights = torch.stack([present[m].to(values[m].dtype) for m in names], 0)  # (M, B)
    stacked = torch.stack([values[m] for m in names], 0)  # (M, B, ...)
    shape = weights.shape + (1,) * (stacked.dim() - 2)
    return (stacked * weights.view(shape)).sum(0) / weights.sum(0).clamp_min(1.0).view(shape[1:])


@dataclass(frozen=True)
class FusionBaseOptions:
    """Keys every fusion method takes."""

    d_model: int = field(default=64, metadata={"check": lambda v: None if v >= 1 else "must be >= 1"})
    """Width of the shared embedding space."""


class Fusion(nn.Module):
    """Base class of fusion methods (see the module docstring)."""

    @classmethod
    def check_registered(cls, target: object, label: str) -> None:
        """The one-line :class:`~deepseek.errors.PluginError` of
        :func:`~deepseek.plugins.calls.broken_answer` naming ``label`` (:func:`fusion_label`: the
        fusion method and its distribution) unless ``target`` is a subclass of this class whose
        ``Options`` extend :class:`FusionBaseOptions`: what the plugin registered is at fault,
        not the config that names it."""
        if not (isinstance(target, type) and issubclass(target, Fusion)):
            raise broken_answer(label, f"registered as {target!r}, not a subclass of deepseek_enterprise.fusion.Fusion; "
                                       "a fusion plugin registers a Fusion subclass (docs/multimodal.md section 3)")
        options = target.Options
        if not (isinstance(options, type) and issubclass(options, FusionBaseOptions)):
            raise broken_answer(label, f"declares Options {options!r}, which does not extend "
                                       "deepseek_enterprise.fusion.FusionBaseOptions (a fusion's Options are a dataclass "
                                       "extending it, or left out: docs/multimodal.md section 3)")

    Options: ClassVar[type] = FusionBaseOptions
    """A subclass's keys: :class:`FusionBaseOptions` or a dataclass extending it."""

    def __init__(self, options: FusionBaseOptions, *, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        if not dims:
            raise ConfigError("model.modalities: a multimodal model needs at least one modality")
        self.options = options
        self.modalities = list(dims)
        d = options.d_model
        self.project = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in dims.items()})
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m in dims})

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusionOutput:
        """The fused prediction (see the module docstring); every method overrides it."""
        raise NotImplementedError(f"{type(self).__name__} does not override Fusion.forward")

    def pool(self, features: Mapping[str, EncoderOutput]) -> dict[str, torch.Tensor]:
        """Each modality's masked mean, projected to the shared space."""
        return {m: self.project[m](masked_mean(features[m])) for m in self.modalities}

    def classify(self, pooled: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's own prediction."""
        return {m: self.heads[m](pooled[m]) for m in self.modalities}


def fusion_label(label: str) -> str:
    """How errors name a model's fusion method: ``model.fusion: <label>``, ``label`` its
    registration's (``fusion 'acme.gated' (<distribution> <version>, registered by <module>)``:
    :attr:`deepseek.plugins.records.Component.label`)."""
    return f"model.fusion: {label}"


OUTPUT_CONTRACT = ("return FusionOutput(logits (B, num_classes), modality_logits {modality: (B, num_classes)}, "
                   "pooled {modality: (B, d_model)}) (docs/multimodal.md section 3)")
"""The fix every output-contract error names."""


def output_problem(out: object, modalities: Sequence[str], batch: int, num_classes: int, d_model: int) -> str | None:
    """What breaks the output contract in ``out`` (a fusion method's return for a batch of
    ``batch`` samples), or ``None``; shapes only (no data is read)."""
    if not isinstance(out, FusionOutput):
        return f"returned a {type(out).__name__}, not a FusionOutput"
    expected = {"logits": (batch, num_classes), "modality_logits": (batch, num_classes), "pooled": (batch, d_model)}
    for field_name, value in zip(FusionOutput._fields, out, strict=True):
        want = expected[field_name]
        parts = {"": value} if field_name == "logits" else value
        if field_name != "logits" and (not isinstance(parts, Mapping) or set(parts) != set(modalities)):
            got = sorted(parts) if isinstance(parts, Mapping) else type(parts).__name__
            return f"returned {field_name} {got}, not one entry per modality {list(modalities)}"
        for m, t in parts.items():
            where = f"{field_name}[{m!r}]" if m else field_name
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                what = f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
                return f"returned {where} that is {what}, not a floating-point tensor"
            if tuple(t.shape) != want:
                return f"returned {where} of shape {tuple(t.shape)}, expected {want}"
    return None


def check_output(fusion: Fusion, out: object, batch: int, num_classes: int, label: str) -> FusionOutput:
    """``out`` when it keeps the output contract (:func:`output_problem`), else the plugin's bug: a
    one-line :class:`~deepseek.errors.PluginError` (:func:`~deepseek.plugins.calls.broken_answer`)
    naming ``label`` (:func:`fusion_label`), what was wrong and the fix."""
    problem = output_problem(out, fusion.modalities, batch, num_classes, fusion.options.d_model)
    if problem is not None:
        raise broken_answer(label, f"forward {problem}; {OUTPUT_CONTRACT}")
    return out  # type: ignore[return-value]


def check_declared_output(cls: type, label: str) -> None:
    """The plugin's bug, a one-line :class:`~deepseek.errors.PluginError`
    (:func:`~deepseek.plugins.calls.broken_answer`), when ``cls.forward`` declares a return type
    other than :class:`FusionOutput` (an undeclared or unresolvable one is checked on each call
    instead)."""
    import typing

    try:
        declared = typing.get_type_hints(cls.forward).get("return", FusionOutput)
    except Exception:  # noqa: BLE001 - names the plugin's module does not define at run time
        return
    if declared is not FusionOutput:
        raise broken_answer(label, f"{cls.__name__}.forward declares it returns {declared!r}, not FusionOutput; "
                                   f"{OUTPUT_CONTRACT}")


JOINT_LIMIT = 1_000_000
"""The most parameters a ``joint`` table may have (``num_classes ** (modalities + 1)``)."""


class JointHead(nn.Module):
    """``log(J @ softmax(T))``: the joint ``J`` of the per-modality predictions (outer product of
    their softmaxes, uniform for a missing modality) through a learned table ``T`` from each
    joint cell to the classes (zeros: a constant at the start)."""

    def __init__(self, modalities: list[str], num_classes: int) -> None:
        super().__init__()
        cells = num_classes ** len(modalities)
        if cells * num_classes > JOINT_LIMIT:
            raise ConfigError(f"model.fusion_options.joint: {len(modalities)} modalities of {num_classes} classes make "
                              f"a table of {cells * num_classes:,} parameters (limit {JOINT_LIMIT:,}); "
                              "set joint = false or use fewer modalities")
        self.modalities = modalities
        self.table = nn.Parameter(torch.zeros(cells, num_classes))

    def forward(self, logits: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> torch.Tensor:
        joint = None
        for m in self.modalities:
            p = logits[m].float().softmax(-1)
            p = torch.where(present[m].bool().unsqueeze(-1), p, torch.full_like(p, 1.0 / p.size(-1)))
            joint = p if joint is None else (joint.unsqueeze(-1) * p.unsqueeze(1)).flatten(1)
        assert joint is not None
        return (joint @ self.table.float().softmax(-1)).clamp_min(1e-12).log()


class PresenceMLP(nn.Module):
    """Per-modality vectors (zeroed where the modality is missing) and presence flags,
    concatenated, then ``Linear -> GELU -> Linear``; plus, with ``joint``, a :class:`JointHead`
    over the modalities' own predictions (``modality_logits`` of ``forward``)."""

    def __init__(self, modalities: list[str], width: int, hidden: int, num_classes: int, *, joint: bool = False,
                 late_residual: bool = False) -> None:
        super().__init__()
        self.modalities = modalities
        self.mlp = nn.Sequential(nn.Linear(len(modalities) * (width + 1), hidden), nn.GELU(),
                                 nn.Linear(hidden, num_classes))
        self.joint = JointHead(modalities, num_classes) if joint else None
        self.late_residual = late_residual
        if late_residual:  # start as late fusion of the modality classifiers
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                modality_logits: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        parts = []
        for m in self.modalities:
            flag = present[m].to(vectors[m].dtype).unsqueeze(-1)
            parts += [vectors[m] * flag, flag]
        out = self.mlp(torch.cat(parts, -1))
        if (self.joint is not None or self.late_residual) and modality_logits is None:
            raise ValueError("PresenceMLP with joint or late_residual needs the modalities' own logits")
        if self.joint is not None:
            out = out + self.joint(modality_logits, present).to(out.dtype)
        if self.late_residual:
            out = out + present_mean(dict(modality_logits), present).to(out.dtype)
        return out


@dataclass(frozen=True)
class HeadOptions(FusionBaseOptions):
    """Keys of the fused head of ``concat`` and ``cross_attention``."""

    hidden: int = field(default=128, metadata={"check": lambda v: None if v >= 1 else "must be >= 1"})
    """Hidden width of the fused MLP."""
    joint: bool = False
    """Add the joint-prediction head (module docstring): a learned table over the combinations of
    the modality classifiers' predictions."""
    late_residual: bool = False
    """Add ``late``'s output (the mean of the present modalities' own logits) to the fused logits
    and start the MLP's output layer at zero, so the model starts as late fusion of its modality
    classifiers (module docstring)."""


@dataclass(frozen=True)
class ConcatOptions(HeadOptions):
    """Keys of ``concat``."""


class ConcatFusion(Fusion):
    """Pooled embeddings and presence flags concatenated, then an MLP."""

    Options = ConcatOptions

    def __init__(self, options: ConcatOptions, *, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__(options, dims=dims, num_classes=num_classes)
        self.mlp = PresenceMLP(self.modalities, options.d_model, options.hidden, num_classes, joint=options.joint,
                               late_residual=options.late_residual)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusionOutput:
        pooled = self.pool(features)
        own = self.classify(pooled)
        return FusionOutput(self.mlp(pooled, present, own), own, pooled)


class LateFusion(Fusion):
    """The mean of the present modalities' own predictions."""

    Options = FusionBaseOptions

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusionOutput:
        pooled = self.pool(features)
        logits = self.classify(pooled)
        return FusionOutput(present_mean(logits, present), logits, pooled)


@dataclass(frozen=True)
class CrossAttentionOptions(HeadOptions):
    """Keys of ``cross_attention``."""

    layers: int = field(default=2, metadata={"check": lambda v: None if v >= 1 else "must be >= 1"})
    """Cross-attention blocks."""
    heads: int = field(default=4, metadata={"check": lambda v: None if v >= 1 else "must be >= 1"})
    """Attention heads."""
    dropout: float = field(default=0.0, metadata={"check": probability})
    """Dropout in training."""
    queries: tuple[str, ...] = ()
    """Modalities whose tokens attend to the others (empty: every modality)."""

    def __post_init__(self) -> None:
        problem = heads_problem("d_model", self.d_model, "heads", self.heads)
        if problem is not None:
            raise ConfigError(f"model.fusion_options.heads: {problem}")


class CrossBlock(nn.Module):
    """Queries attend to keys/values (pre-norm), then a feed-forward layer; both residual."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=kv_mask, need_weights=False)[0]
        return q + self.ff(self.norm_ff(q))


class CrossAttentionFusion(Fusion):
    """Each modality attends to the others (see the module docstring)."""

    Options = CrossAttentionOptions

    def __init__(self, options: CrossAttentionOptions, *, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__(options, dims=dims, num_classes=num_classes)
        unknown = [q for q in options.queries if q not in dims]
        if unknown:
            raise ConfigError(f"model.fusion_options.queries: {unknown} are not modalities of the model ({list(dims)})")
        d = options.d_model
        self.queries = list(options.queries) or list(dims)
        self.tokens = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in dims.items()})
        self.modality_embedding = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * 0.02) for m in dims})
        self.null = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(CrossBlock(d, options.heads, options.dropout) for _ in range(options.layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.ModuleDict({m: nn.Linear(d, d) for m in self.queries})
        # tanh(0) = 0: training starts from concat's function and opens each gate as attention helps.
        self.gate = nn.ParameterDict({m: nn.Parameter(torch.zeros(1)) for m in self.queries})
        self.head = PresenceMLP(self.modalities, d, options.hidden, num_classes, joint=options.joint,
                                late_residual=options.late_residual)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusionOutput:
        pooled = self.pool(features)
        tokens = {m: self.tokens[m](features[m].features) + self.modality_embedding[m] for m in self.modalities}
        # A token is hidden when it is padding or its modality is missing for that sample.
        hidden = {m: features[m].padding_mask | ~present[m].bool().unsqueeze(-1) for m in self.modalities}
        batch = next(iter(tokens.values())).size(0)
        fused = dict(pooled)
        for m in self.queries:
            others = [o for o in self.modalities if o != m]
            null = self.null.expand(batch, 1, -1)
            kv = torch.cat([null, *(tokens[o] for o in others)], 1)
            kv_mask = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=kv.device),
                                 *(hidden[o] for o in others)], 1)
            q = tokens[m]
            for block in self.blocks:
                q = block(q, kv, kv_mask)
            attended = masked_mean(EncoderOutput(self.norm(q), hidden[m]))
            fused[m] = pooled[m] + torch.tanh(self.gate[m]) * self.out[m](attended)
        own = self.classify(pooled)
        return FusionOutput(self.head(fused, present, own), own, pooled)
