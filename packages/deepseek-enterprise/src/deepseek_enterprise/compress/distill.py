"""Knowledge distillation through the ordinary trainer: the ``distill`` model and the
``distill.student`` compressor that takes its student out.

``[model] name = "distill"`` trains a student GPT (``student``: any registered GPT and its
options, e.g. ``{ name = "tiny", d_model = 64 }``) against a trained teacher (``teacher``: a run
folder, checkpoint folder or exported weights of a GPT). Per batch the loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, targets)

(Hinton et al. 2015: the soft targets at temperature T, their gradients scaled back by T^2), and
the model reports ``ce`` (the student's own cross-entropy, comparable with a plain model's
loss) and ``kl``. Because it is a registered model, every strategy trains it; the teacher is
frozen, replicated on every rank, kept out of the module tree (so it is neither in checkpoints
nor in the optimizer) and moved to the student's device on first use.

``deepseek compress --checkpoint DISTILL_RUN --method distill.student --out DIR`` writes the
student alone as an ordinary run folder that deepseek-core loads (the compressor is in
:mod:`.student`, which imports no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from deepseek.errors import ConfigError, UsageError
from deepseek.models.protocol import BuildsComponents, TrainableModel


def _temperature(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def _alpha(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be in [0, 1] (the weight of the soft-target loss)"


@dataclass(frozen=True)
class DistillOptions:
    """``[model]`` keys of ``distill``."""

    teacher: str = ""
    """The trained teacher: a run folder, checkpoint folder or exported ``.safetensors`` of a GPT."""
    student: dict[str, Any] = field(default_factory=lambda: {"name": "tiny"})
    """The student's ``[model]`` table: a registered GPT's ``name`` and its options (ignored with
    ``student_from``)."""
    student_from: str = ""
    """Start the student from a trained GPT instead (run folder, checkpoint folder or exported
    ``.safetensors``): its ``[model]`` table and its weights, e.g. a ``prune.ffn`` output that
    distillation then recovers."""
    temperature: float = field(default=2.0, metadata={"check": _temperature})
    """Softmax temperature of the soft targets."""
    alpha: float = field(default=0.5, metadata={"check": _alpha})
    """Weight of the soft-target (KL) loss; ``1 - alpha`` weighs the hard-label cross-entropy."""


class Distill(BuildsComponents, TrainableModel):
    """A student GPT trained on a frozen teacher's soft targets and the data's labels."""

    Options: ClassVar[type] = DistillOptions

    def __init__(self, options: DistillOptions, *, host: Any) -> None:
        super().__init__()
        from deepseek.models.factory import instantiate_model
        from deepseek.models.gpt import GPT

        shapes_only = torch.empty(0).is_meta  # built on the meta device: no teacher to run
        if not options.teacher and not shapes_only:
            raise ConfigError("model.teacher: distill needs a trained teacher; give its run folder, e.g. "
                              "teacher = \"runs/small\"")
        if options.student_from:
            self.student, self.student_table = load_student(options.student_from, host)
        else:
            table = dict(options.student)
            name = table.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError("model.student.name: name the student model, e.g. student = { name = \"tiny\" }")
            target = host.resolve("model", name).load()
            self.student = instantiate_model(target, table, name=name, path="model.student", host=host)
            self.student_table = {"name": name, **table}
        if not isinstance(self.student, GPT):
            raise ConfigError(f"model.student: distill trains GPT students on logits; {self.student_table['name']!r} "
                              f"is {type(self.student).__name__}")
        self.options = options
        if shapes_only and not options.teacher:
            return
        teacher = load_teacher(options.teacher, host)
        if teacher.config.vocab_size != self.student.config.vocab_size:
            raise ConfigError(f"model.student: vocab_size {self.student.config.vocab_size} differs from the "
                              f"teacher's {teacher.config.vocab_size}; distillation matches token distributions")
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: no checkpoint, no optimizer

    @property
    def config(self) -> Any:
        """The student's GPT config (what shapes and vocabulary the run has)."""
        return self.student.config

    def check_data(self, batch: Any, dataset: Any) -> None:
        from deepseek.models.checks import check_model_data

        check_model_data(self.student, batch, dataset)

    def teacher_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        teacher = self._teacher
        if next(teacher.parameters()).device != input_ids.device:
            teacher.to(input_ids.device)
        with torch.no_grad():
            return teacher(input_ids).float()

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        logits = self.student(input_ids)
        if targets is None:
            return logits
        t = self.options.temperature
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        soft = F.log_softmax(self.teacher_logits(input_ids) / t, dim=-1)
        kl = F.kl_div(F.log_softmax(logits.float() / t, dim=-1), soft, log_target=True, reduction="batchmean")
        kl = kl / logits.size(1) * t * t  # batchmean over rows, then per position: comparable with ce
        a = self.options.alpha
        # Training descends the mix; an evaluation scores the student by its own cross-entropy, so
        # val_loss, val_bits_per_byte, val_perplexity and train.monitor judge the student, as after
        # distill.student takes it out (the mix is no property of the student's predictions).
        loss = a * kl + (1 - a) * ce if self.training else ce
        return {"loss": loss, "ce": ce.detach(), "kl": kl.detach()}


def load_student(path: str, host: Any) -> tuple[nn.Module, dict[str, Any]]:
    """``student_from``: a trained GPT to go on training (weights and ``[model]`` table)."""
    from deepseek.training.inference import load_trained

    try:
        student, config, _ = load_trained(path, "cpu", host=host)
    except UsageError as exc:
        raise ConfigError(f"model.student_from: {exc}") from None
    student.train()
    table = config.to_dict()["model"]
    return student, table


def load_teacher(path: str, host: Any) -> nn.Module:
    """The teacher GPT of a trained run, frozen, in eval mode, on the CPU."""
    from deepseek.models.gpt import GPT
    from deepseek.training.inference import load_trained

    try:
        teacher, config, _ = load_trained(path, "cpu", host=host)
    except UsageError as exc:
        raise ConfigError(f"model.teacher: {exc}") from None
    if not isinstance(teacher, GPT):
        raise ConfigError(f"model.teacher: {path} holds a {config.model.name!r} model; the teacher must be a GPT")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()
