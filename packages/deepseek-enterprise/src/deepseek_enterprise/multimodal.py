"""``multimodal.classifier``: registered encoders per modality, a registered fusion method, one
classification head; any subset of modalities, in training and at inference.

A batch holds, per modality, its encoder's inputs, and for every modality a presence flag::

    {"vision": {"inputs": (B, 1, 8, 8)},
     "audio":  {"inputs": (B, T, 13), "padding_mask": (B, T)},
     "text":   {"inputs": (B, L) int64, "padding_mask": (B, L)},
     "present": {"vision": (B,) bool, "audio": (B,) bool, "text": (B,) bool},
     "label": (B,) int64,
     "modality_labels": {"vision": (B,) int64, ...}}     # optional

The loss is the fused cross-entropy, plus ``aux_loss_weight`` x the mean of each present modality's
own classifier's cross-entropy against that modality's own label (``modality_labels``, -100 where a
sample has none; the class where the batch gives none), a mean over the batch's rows in which a row
without the modality adds 0 (so it is the same however the trainer splits the batch; under modality
dropout in training, the mean over the rows that show the modality, as the random draws make the
split matter there anyway), plus ``contrastive_weight`` x InfoNCE between the pooled embeddings of
every pair of modalities present in the same samples (temperature ``temperature``), which also
reports in-batch cross-modal recall@1 (``recall_vision_audio`` ...).

``modality_dropout`` hides each modality of each training sample with that probability (never all
of a sample's modalities). The model reports ``accuracy`` and, per modality, the accuracy of its
own classifier against the modality's own label (``accuracy_vision`` ...): a training step over the
batch, an evaluation over the whole set's samples that have the modality, leaving out a modality
none has and saying the loss lacks its terms (``loss_excludes_<modality>``;
:mod:`deepseek_enterprise.modality_metrics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepseek.config.components import OPTIONS_OF, prefix_problem, resolve_at
from deepseek.errors import ConfigError
from deepseek.models.encoder import EncoderOutput, check_output, encoder_label
from deepseek.models.protocol import Batch, BuildsComponents, TrainableModel
from deepseek.names import name_list_problem
from deepseek.training.totals import TOTALS
from deepseek_enterprise import modality_metrics
from deepseek_enterprise.alignment import contrastive_loss, retrieval_recall
from deepseek_enterprise.fusion import Fusion, FusionOutput, check_declared_output, fusion_label
from deepseek_enterprise.fusion import check_output as check_fusion_output
from deepseek_enterprise.modulation import check_alpha, coefficients, modulate
from deepseek_enterprise.plugin_calls import blamed_on

MODALITIES = ("vision", "audio", "text")
IGNORE = -100
"""A ``modality_labels`` entry for a sample whose modality has no label of its own."""
ENCODERS = {"vision": "vision.swin", "audio": "audio.conv_transformer", "text": "text.transformer"}


TEXT_SHAPE = {"d_model": 64, "n_heads": 4, "n_layers": 2, "max_seq_len": 32}
"""``[model.text]`` when a config gives none and the text encoder is core's ``text.transformer``
(whose own defaults are sized for a language model). Another text encoder gets ``{}``: its own
defaults, not keys it may not take."""

MAX_CLASSES = 100_000
"""Upper bound of ``num_classes``: every modality's classifier and the fused one hold
``d_model x num_classes`` weights, so a mistyped huge value would exhaust memory rather than fail."""


def unknown_logit_weight(weights: Mapping[str, float], modalities: Sequence[str]) -> str | None:
    """The first name in ``weights`` that is neither ``fused`` nor one of ``modalities`` (None: all
    are known): the names ``logit_weights`` takes."""
    return next((k for k in weights if k != "fused" and k not in modalities), None)


def _probability(value: float) -> str | None:
    return None if 0.0 <= value < 1.0 else "must be in [0, 1)"


def _encoder_table(modality: str) -> Any:
    """The ``options_of`` rule of ``[model.<modality>]``: the keys of the encoder that
    ``<modality>_encoder`` names, where the model uses that modality; that name must start with
    ``<modality>.`` (a refusal names the registered ones that do: ``components.prefix_problem``)."""
    return lambda o: ("encoder", f"{modality}_encoder", None, f"{modality}.") if modality in o.modalities else None


MIN_TEMPERATURE = 0.01
"""The least ``temperature``: the InfoNCE logits are cosine similarities (in [-1, 1]) divided by
it, and their gradients reach the embeddings multiplied by 1/temperature; CLIP caps that logit
scale at 100 for stable training. Far below it (1e-30) the gradient norm overflows at the first
step, which the trainer could only blame on the data or the forward pass."""
MAX_LOGIT_WEIGHT = 1000.0
"""The largest ``logit_weights`` magnitude (fitted weights are near 1; past this the weighted
logits overflow and every sample gets one class)."""


def logit_weight_problem(weight: float) -> str | None:
    """What is wrong with one ``logit_weights`` value, or ``None``."""
    if abs(weight) <= MAX_LOGIT_WEIGHT:
        return None
    return f"{weight:g} is outside [-{MAX_LOGIT_WEIGHT:g}, {MAX_LOGIT_WEIGHT:g}] (fitted weights are near 1)"


def all_zero_logit_weights(weights: Mapping[str, float]) -> str | None:
    """What is wrong with a non-empty ``logit_weights`` table whose every weight is 0, or ``None``:
    the weighted logits are then 0 for every sample, and every prediction is class 0."""
    if weights and all(w == 0 for w in weights.values()):
        return ("every weight is 0: the logits would be 0 for every sample and every prediction class 0; "
                "give at least one nonzero weight (fused=1 is the model as trained)")
    return None


@dataclass(frozen=True)
class MultimodalOptions:
    """``[model]`` keys of ``multimodal.classifier``."""

    modalities: tuple[str, ...] = MODALITIES
    """The modalities the model uses (a subset of vision, audio, text): one gives a unimodal model."""
    num_classes: int = field(default=10, metadata={"check": lambda v: None if 2 <= v <= MAX_CLASSES else
                                                   f"must be in 2..{MAX_CLASSES:,}"})
    """Classes of the task (labels ``0 .. num_classes - 1``); left out, the dataset's
    (``Dataset.model_num_classes``: 10 for ``multimodal.digits``)."""
    fusion: str = "cross_attention"
    """A registered fusion method: ``concat``, ``late``, ``cross_attention`` or a plugin's."""
    fusion_options: dict[str, Any] = field(default_factory=dict, metadata={OPTIONS_OF: lambda o: ("fusion", "fusion", lambda t, label: Fusion.check_registered(t, fusion_label(label)))})
    """The fusion method's own keys (its ``Options``; checked as the build checks them, and filled in, on load)."""
    vision_encoder: str = ENCODERS["vision"]
    """A registered ``vision.*`` encoder."""
    vision: dict[str, Any] = field(default_factory=dict, metadata={OPTIONS_OF: _encoder_table("vision")})
    """The vision encoder's keys."""
    audio_encoder: str = ENCODERS["audio"]
    """A registered ``audio.*`` encoder."""
    audio: dict[str, Any] = field(default_factory=dict, metadata={OPTIONS_OF: _encoder_table("audio")})
    """The audio encoder's keys."""
    text_encoder: str = ENCODERS["text"]
    """A registered ``text.*`` encoder."""
    text: dict[str, Any] | None = field(default=None, metadata={OPTIONS_OF: _encoder_table("text")})
    """The text encoder's keys; left out, :data:`TEXT_SHAPE` for ``text.transformer`` and the
    encoder's own defaults for another text encoder."""
    modality_dropout: float = field(default=0.0, metadata={"check": _probability})
    """Training only: hide each modality of each sample with this probability."""
    aux_loss_weight: float = field(default=0.0, metadata={"check": lambda v: None if v >= 0 else "must be >= 0"})
    """Weight of the per-modality classifiers' losses."""
    contrastive_weight: float = field(default=0.0, metadata={"check": lambda v: None if v >= 0 else "must be >= 0"})
    """Weight of the InfoNCE alignment between modalities' pooled embeddings."""
    temperature: float = field(default=0.1, metadata={"check": lambda v: None if v >= MIN_TEMPERATURE else
                                                       f"must be >= {MIN_TEMPERATURE} (the logit scale 1/temperature "
                                                       f"is capped at {1 / MIN_TEMPERATURE:g}, as CLIP caps it)"})
    """InfoNCE temperature, at least :data:`MIN_TEMPERATURE`."""
    pretrained: dict[str, str] = field(default_factory=dict)
    """Per modality, a run folder or checkpoint folder of a unimodal ``multimodal.classifier`` of
    that modality (same encoder and keys) whose encoder, projection and own classifier this model
    starts from (``{vision = "runs/v", ...}``; docs/multimodal.md); empty: random weights."""
    freeze_pretrained: bool = False
    """Keep the parameters copied from ``pretrained`` fixed (they do not train)."""
    gradient_modulation: float = field(default=0.0, metadata={"check": check_alpha})
    """Training: on-the-fly gradient modulation's ``alpha`` (:mod:`deepseek_enterprise.modulation`); 0: off."""
    logit_weights: dict[str, float] = field(default_factory=dict)
    """Calibrated output: the model's logits become ``sum_k w_k * logits_k`` over ``fused`` (the
    fusion method's prediction) and each modality (its own classifier's logits, counted only where
    the sample has that modality), ``w_k`` these weights, a key left out counting 0
    (``{fused = 1.0, audio = -0.4}``). The study's ``calibrated`` recipe fits them on held-out
    data (``deepseek_enterprise.calibration``); empty: the fusion method's prediction as it is."""

    def __post_init__(self) -> None:
        if self.text is None:
            shape = TEXT_SHAPE if self.text_encoder.rpartition(":")[2] == ENCODERS["text"] else {}
            object.__setattr__(self, "text", dict(shape))
        problem = name_list_problem(self.modalities, MODALITIES, "modality") if self.modalities else "is empty"
        if problem:
            raise ConfigError(f"model.modalities: {list(self.modalities)} {problem}; give distinct modalities among "
                              f"{', '.join(MODALITIES)}")
        for m, path in self.pretrained.items():
            if m not in self.modalities:
                raise ConfigError(f"model.pretrained.{m}: not a modality of this model ({list(self.modalities)}); "
                                  "name runs for its modalities only")
            if not isinstance(path, str) or not path:
                raise ConfigError(f"model.pretrained.{m}: {path!r} is not a path; give a run folder (runs/<name>)")
        key = unknown_logit_weight(self.logit_weights, self.modalities)  # values: numbers, by the config layer
        if key is not None:
            raise ConfigError(f"model.logit_weights.{key}: not 'fused' or a modality of this model "
                              f"({list(self.modalities)}); name those only")
        for key, weight in self.logit_weights.items():
            problem = logit_weight_problem(weight)
            if problem:
                raise ConfigError(f"model.logit_weights.{key}: {problem}")
        problem = all_zero_logit_weights(self.logit_weights)
        if problem:
            raise ConfigError(f"model.logit_weights: {problem}")
        if self.freeze_pretrained and not self.pretrained:
            raise ConfigError("model.freeze_pretrained: true without model.pretrained; name the runs to start from "
                              "or set it to false")


class MultimodalClassifier(BuildsComponents, TrainableModel):
    """Encoders -> fusion -> loss and metrics (see the module docstring)."""

    Options = MultimodalOptions

    def __init__(self, options: MultimodalOptions, *, host: Any) -> None:
        super().__init__()
        from deepseek.models.factory import instantiate_model

        lookups = host  # the run's host: its encoders and fusion methods, with its preferences
        self.options = options
        self.modalities = list(options.modalities)
        encoders = {}
        self.encoder_labels: dict[str, str] = {}  # how errors name each modality's encoder
        for m in self.modalities:
            name = getattr(options, f"{m}_encoder")
            problem = prefix_problem(lookups, "encoder", name, f"{m}.")  # as the config load checks it
            if problem is not None:
                raise ConfigError(f"model.{m}_encoder: {problem}")
            component = resolve_at(lookups, "encoder", name, f"model.{m}_encoder")
            encoders[m] = instantiate_model(component.load(), getattr(options, m), name=name, kind="encoder",
                                            path=f"model.{m}", host=lookups, label=component.label)
            self.encoder_labels[m] = encoder_label(name, component.label, f"model.{m}")
        self.encoders = nn.ModuleDict(encoders)
        fusion_component = resolve_at(lookups, "fusion", options.fusion, "model.fusion")
        fusion_cls = fusion_component.load()
        self.fusion_label = fusion_label(fusion_component.label)
        Fusion.check_registered(fusion_cls, self.fusion_label)
        check_declared_output(fusion_cls, self.fusion_label)
        from deepseek.config.components import build_options

        fusion_options = build_options(fusion_cls, dict(options.fusion_options), kind="fusion", name=options.fusion,
                                       path="model.fusion_options")
        dims = {m: int(enc.output_dim) for m, enc in self.encoders.items()}
        with blamed_on(self.fusion_label, "__init__"):
            self.fusion = fusion_cls(fusion_options, dims=dims, num_classes=options.num_classes)
        if options.pretrained:
            from deepseek_enterprise.pretrained import load_pretrained

            load_pretrained(self, options.pretrained, options, freeze=options.freeze_pretrained, host=lookups)

    # ------------------------------------------------------------------ forward

    def encode(self, batch: Mapping[str, Any]) -> dict[str, EncoderOutput]:
        """Each modality's encoder output, held to the encoder output contract (``encoder.check_output``);
        what a plugin encoder's code raises names it and its distribution (``calls.model_calls``)."""
        from deepseek.plugins.calls import model_calls

        out = {}
        compiling = torch.compiler.is_compiling()  # no try block in a compiled graph
        for m in self.modalities:
            enc, inputs = self.encoders[m], batch[m]["inputs"]
            with contextlib.nullcontext() if compiling else model_calls(enc, self.encoder_labels[m]):
                features = enc(inputs, batch[m].get("padding_mask"))
            out[m] = check_output(enc, features, inputs, self.encoder_labels[m])
        return out

    def fuse(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusionOutput:
        """The fusion method's output, held to its output contract (``fusion.check_output``); what
        its forward raises names the method and its distribution (``plugin_calls.blamed_on``)."""
        batch = next(iter(present.values())).shape[0]
        if torch.compiler.is_compiling():  # no try block in a compiled graph; the check still runs
            out = self.fusion(features, present)
        else:
            with blamed_on(self.fusion_label, "forward"):
                out = self.fusion(features, present)
        return check_fusion_output(self.fusion, out, batch, self.options.num_classes, self.fusion_label)

    def presence(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Which samples have each modality, after modality dropout in training."""
        present = {m: batch["present"][m].bool() for m in self.modalities}
        p = self.options.modality_dropout
        if self.training and p > 0 and len(self.modalities) > 1:
            stacked = torch.stack([present[m] for m in self.modalities], 1)  # (B, M)
            dropped = stacked & (torch.rand(stacked.shape, device=stacked.device) < p)
            # A sample that would be left with no modality keeps them all.
            dropped &= (stacked & ~dropped).any(1, keepdim=True)
            present = {m: stacked[:, i] & ~dropped[:, i] for i, m in enumerate(self.modalities)}
        return present

    def metric_names(self) -> tuple[str, ...]:
        """``accuracy``, ``accuracy_<modality>``, ``recall_<a>_<b>`` per pair (``contrastive_weight``, 2+
        modalities), ``loss_excludes_<modality>`` with auxiliary or contrastive terms (``modality_metrics``)."""
        return modality_metrics.metric_names(self.modalities, aux_loss_weight=self.options.aux_loss_weight,
                                             contrastive_weight=self.options.contrastive_weight)

    def metrics_from_totals(self, totals: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """An evaluation's ``accuracy_<modality>``, ``recall_<a>_<b>`` over the samples that have them and
        ``loss_excludes_<modality>`` for a modality none has (``modality_metrics.whole_set_metrics``)."""
        return modality_metrics.whole_set_metrics(totals, self.modalities, aux_loss_weight=self.options.aux_loss_weight,
                                                  contrastive_weight=self.options.contrastive_weight)

    def forward(self, label: torch.Tensor, present: Mapping[str, torch.Tensor],
                modality_labels: Mapping[str, torch.Tensor] | None = None, **inputs: Any) -> dict[str, torch.Tensor]:
        batch = {**inputs, "present": present}
        avail = self.presence(batch)
        features = self.encode(batch)
        out = self.apply_logit_weights(self.fuse(features, avail), avail)
        loss = F.cross_entropy(out.logits.float(), label)
        result: dict[str, torch.Tensor] = {"accuracy": (out.logits.argmax(-1) == label).float().mean()}
        # An evaluation counts what each modality's classifier and each pair got right over the rows
        # that have them, summed over the set (metrics_from_totals: a modality no sample has is left
        # out); a training step reports per-batch means (without the modality: NaN, left out).
        totals: dict[str, torch.Tensor] = {}
        aux, owns, masks = [], {}, {}
        # Modality dropout in training draws which modalities each row shows, so its figures depend
        # on how a batch is split anyway: there the auxiliary loss stays the mean over the rows
        # that show the modality (the studies' recipes were measured so); elsewhere a mean over rows.
        dropping = self.training and self.options.modality_dropout > 0 and len(self.modalities) > 1
        for m in self.modalities:
            # A modality's own classifier learns (and is scored on) the modality's own label where
            # the batch gives one (-100: none for that sample), else the class.
            own = (modality_labels or {}).get(m, label)
            mask = masks[m] = avail[m] & (own != IGNORE)
            owns[m] = own
            logits = out.modality_logits[m].float()
            scored = mask.float().sum()
            count = scored.clamp_min(1.0)
            # Training: a mean over the batch's samples that have the modality, not additive over
            # rows, so it depends on how a batch is split (docs/multimodal.md, "Metrics"); NaN (0/0)
            # where none has it: not measured, left out of the step record (MetricSums).
            if self.training:
                result[f"accuracy_{m}"] = ((logits.argmax(-1) == own) & mask).float().sum() / scored
            else:
                totals.update(modality_metrics.accuracy_totals(m, logits.argmax(-1) == own, mask))
            # Summed over the samples that have the modality (and a label), divided by all the
            # batch's rows: a mean over rows (a row without the modality adds 0), which the trainer
            # may combine over micro-batches and ranks by their rows (docs/plugins.md section 10).
            # The same as the mean over those samples when every row has it.
            per = F.cross_entropy(logits, own.clamp_min(0), reduction="none")
            aux.append((per * mask.float()).sum() / (count if dropping else label.shape[0]))
        # At aux_loss_weight = 0 the term stays in the graph at weight 0: the loss is the same
        # number, and the modality classifiers that only modality_logits reach still get a (zero)
        # gradient, which DDP needs of every parameter (find_unused_parameters off by default).
        loss = loss + self.options.aux_loss_weight * torch.stack(aux).mean()
        if self.training and self.options.gradient_modulation > 0 and len(self.modalities) > 1:
            factors = coefficients(out.modality_logits, owns, masks, self.options.gradient_modulation)
            modulate({m: features[m].features for m in self.modalities}, factors)
        if self.options.contrastive_weight and len(self.modalities) > 1:
            loss = loss + self.options.contrastive_weight * contrastive_loss(
                out.pooled, avail, self.modalities, self.options.temperature)
            if self.training:
                result.update(retrieval_recall(out.pooled, avail, self.modalities))
            else:
                totals.update(modality_metrics.recall_totals(out.pooled, avail, self.modalities))
        extra = {} if self.training else {TOTALS: totals}
        return {"loss": loss, **result, **extra, "logits": out.logits}  # logits: not a metric (not a scalar)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], *, calibrated: bool = True) -> FusionOutput:
        """The fusion output for a batch (eval mode as set by the caller): logits per modality
        and fused, pooled embeddings; ``calibrated``: the fused logits with ``logit_weights``
        applied (False: the fusion method's own)."""
        present = {m: batch["present"][m].bool() for m in self.modalities}
        out = self.fuse(self.encode(batch), present)
        return self.apply_logit_weights(out, present) if calibrated else out

    def serving_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Capability ``serving``: each modality's inputs and which rows have it (no labels)."""
        return {**{m: dict(batch[m]) for m in self.modalities}, "present": {m: batch["present"][m] for m in self.modalities}}

    def serving_forward(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The fused logits (calibrated) of :meth:`serving_inputs`, ``(batch, num_classes)``."""
        return self.predict(inputs).logits

    def apply_logit_weights(self, out: FusionOutput, present: Mapping[str, torch.Tensor]) -> FusionOutput:
        """``out`` with its fused logits weighted with the modalities' by ``logit_weights`` (as it
        is when there are none)."""
        weights = self.options.logit_weights
        if not weights:
            return out
        logits = out.logits * float(weights.get("fused", 0.0))
        for m in self.modalities:
            if m in weights:
                scale = present[m].to(logits.dtype) * float(weights[m])
                logits = logits + out.modality_logits[m].to(logits.dtype) * scale.unsqueeze(-1)
        return out._replace(logits=logits)

    # ------------------------------------------------------------------ capabilities

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The encoders, by modality (the ``[model]`` key of each one's options)."""
        return dict(self.encoders)

    def block_modules(self) -> list[nn.Module]:
        """Every encoder's blocks (FSDP units)."""
        return [b for enc in self.encoders.values() for b in enc.block_modules()]

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Each encoder recomputes what it can in backward (``Encoder.set_activation_checkpointing``:
        text and vision recompute their blocks; an encoder without it keeps its activations)."""
        for enc in self.encoders.values():
            enc.set_activation_checkpointing(enabled)

    def check_data(self, batch: Batch, dataset: Any) -> None:
        """Every modality this model uses, in a form its encoder takes (``multimodal_data.check_batch``)."""
        from deepseek_enterprise.multimodal_data import check_batch
        check_batch(self, batch, dataset)

    @classmethod
    def keys_for_batch(cls, batch: Batch, build: Any) -> dict[str, Any]:
        """The modalities ``batch`` carries and its encoders' keys (``multimodal_data.keys_for_batch``)."""
        from deepseek_enterprise.multimodal_data import keys_for_batch
        return keys_for_batch(batch, build)
