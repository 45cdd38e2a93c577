"""The pipeline models of ``_pipeline_metric_rules.py`` (test helper), each with two stages
(``split_stages``), whose metrics and evaluations follow ``single``'s rules.

``Padded``: labels -1 are padding; ``accuracy`` counts the rows that are not, so it is NaN (0 / 0)
for a micro-batch of padding only (step 1's second), and ``late``, the accuracy on label 2, is
returned only for a micro-batch holding a 2: first in step 2, and there by one of its two
micro-batches only, then by neither in step 3. ``EvalRefusal`` raises a UsageError in ``pipeline_loss`` (the last stage) and
``FirstStageRefusal`` in its first stage's forward, each for the second validation batch only:
on the first evaluation after training began, when the metric names are agreed on already.
``EvalBug`` and ``FirstStageBug`` raise a plain ``RuntimeError`` (a bug in model code) there instead;
``PluginEvalShape``'s ``pipeline_loss`` returns a loss per row there (``PluginEvalNoLoss``'s a
mapping without ``"loss"``), ``PluginTrainShape``'s on every
batch (its first training step); ``TrainShape`` is the latter as a script's model.
:data:`DECODING_MODELS`: plugin models whose code raises on one stage while ``deepseek generate
--strategy pipeline`` decodes, or whose stages answer against the ``cached_decoding`` contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel

FIRST_STAGE_LINE = "model 'acme.marked': a row's first feature is 99; features are below 10"
LAST_STAGE_LINE = "model 'acme.refusing': a row has label -2; labels are 0, 1, 2 or -1 (padding)"
BUG_LINE = "index 99 is out of bounds for dimension 0 with size 8"
"""The line of a plain ``RuntimeError`` (a bug in model code, not a refusal)."""


class First(nn.Module):
    """The first stage: refuses a marked row (first feature 99) when ``refuses``."""

    def __init__(self, refuses: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.refuses = refuses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.refuses and bool((x[:, 0] == 99).any()):
            raise UsageError(FIRST_STAGE_LINE)
        if bool((x[:, 0] == 77).any()):
            raise RuntimeError(BUG_LINE)
        return self.net(x)


class Stage(TrainableModel):
    """A stage keeping its module under the model's name for it (a checkpoint then holds the
    model's names, and loads into it), without ``cached_decoding``: ``deepseek eval --strategy
    pipeline`` (``_pipeline_metric_rules.served_attempt``) never decodes, and does not ask for it."""

    def __init__(self, **named: nn.Module) -> None:
        super().__init__()
        ((self.key, module),) = named.items()
        self.add_module(self.key, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self.key)(x)


class Padded(TrainableModel):
    """Two linear stages; ``forward`` and ``pipeline_loss`` compute the same values."""

    refuses_first = False

    def __init__(self) -> None:
        super().__init__()
        self.first = First(self.refuses_first)
        self.last = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        return self.pipeline_loss(self.last(self.first(x)), label)

    def split_stages(self, n: int) -> list[nn.Module]:
        return [Stage(first=self.first), Stage(last=self.last)]

    def pipeline_batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return (batch["x"],), batch["label"]

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        kept = target >= 0
        hit = (output.argmax(-1) == target) & kept
        out = {"loss": F.cross_entropy(output, target.clamp(min=0)),
               "accuracy": hit.float().sum() / kept.float().sum()}
        twos = target == 2
        if bool(twos.any()):
            out["late"] = hit[twos].float().mean()
        return out


class EvalRefusal(Padded):
    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        if bool((target == -2).any()):
            raise UsageError(LAST_STAGE_LINE)
        return super().pipeline_loss(output, target)


class FirstStageRefusal(Padded):
    refuses_first = True


class EvalBug(Padded):
    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        if bool((target == -3).any()):
            raise RuntimeError(BUG_LINE)
        return super().pipeline_loss(output, target)


class FirstStageBug(Padded):
    """Its first stage raises :data:`BUG_LINE` for a row whose first feature is 77."""


class PluginEvalBug(EvalBug):
    """:class:`EvalBug` as a plugin registers it: created from its options."""

    def __init__(self, options: Any = None) -> None:
        super().__init__()


class PluginFirstStageBug(FirstStageBug):
    """:class:`FirstStageBug` as a plugin registers it: created from its options."""

    def __init__(self, options: Any = None) -> None:
        super().__init__()


class EvalShape(Padded):
    """``pipeline_loss`` returns its loss per row (no 0-dim tensor) for a batch holding label -4 (the
    second validation batch of ``_pipeline_metric_rules.val_rows``), or for every batch where ``always``."""

    always = False

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        if self.always or bool((target == -4).any()):
            return F.cross_entropy(output, target.clamp(min=0), reduction="none")
        return super().pipeline_loss(output, target)


class PluginEvalShape(EvalShape):
    """:class:`EvalShape` as a plugin registers it: its second validation batch's loss per row."""

    def __init__(self, options: Any = None) -> None:
        super().__init__()


class PluginEvalNoLoss(PluginEvalShape):
    """Its ``pipeline_loss`` returns a mapping without ``"loss"`` for :class:`EvalShape`'s marked
    validation batch."""

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        if bool((target == -4).any()):
            return {"accuracy": (output.argmax(-1) == target).float().mean()}
        return super().pipeline_loss(output, target)


class PluginTrainShape(PluginEvalShape):
    """Its loss per row on every batch: the first training step's."""

    always = True


class TrainShape(EvalShape):
    """:class:`EvalShape` of a script, its loss per row on every batch: blamed on no plugin."""

    always = True


MODELS = {"Padded": Padded, "EvalRefusal": EvalRefusal, "FirstStageRefusal": FirstStageRefusal,
          "EvalBug": EvalBug, "FirstStageBug": FirstStageBug, "TrainShape": TrainShape}


PLUGIN_MODELS = {"PluginEvalBug": PluginEvalBug, "PluginFirstStageBug": PluginFirstStageBug,
                 "PluginEvalShape": PluginEvalShape, "PluginTrainShape": PluginTrainShape,
                 "PluginEvalNoLoss": PluginEvalNoLoss}
"""The bugs of a plugin's model, registered as ``acme.<name>`` by distribution ``deepseek-acme``
(``_pipeline_metric_rules.Acme``) and trained on the script's rows by ``_pipeline_metric_rules.plugin_attempt``."""


class DecodingStage(Stage):
    """A :class:`Stage` offering ``cached_decoding``: the first stage's module on the token ids one
    hot (ids mod 4), the last's on the hidden states; the cache counts positions only. ``bug``: its
    ``decode_window`` or ``new_cache`` raises :data:`BUG_LINE`, or its ``forward_cached`` on the
    second token; ``"other_window"``: its ``decode_window`` is 8, not 16; ``"lambda_window"``: its
    ``decode_window`` returns a lambda (which cannot be pickled); ``"stuck_length"``: its
    ``forward_cached`` never advances ``cache.length``."""

    def __init__(self, bug: str | None, **named: nn.Module) -> None:
        super().__init__(**named)
        self.bug = bug

    def new_cache(self, batch: int, window: int) -> Any:
        if self.bug == "new_cache":
            raise RuntimeError(BUG_LINE)
        return SimpleNamespace(length=0)

    def decode_window(self) -> int:
        if self.bug == "decode_window":
            raise RuntimeError(BUG_LINE)
        if self.bug == "lambda_window":
            return lambda: 16  # type: ignore[return-value]
        return 8 if self.bug == "other_window" else 16

    def forward_cached(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        if self.bug == "forward_cached" and cache.length:
            raise RuntimeError(BUG_LINE)
        cache.length += 0 if self.bug == "stuck_length" else x.size(1)
        if x.is_floating_point():
            return self.get_submodule(self.key)(x)
        return self.get_submodule(self.key).net(F.one_hot(x % 4, 4).float())


class Decoding(Padded):
    """:class:`Padded` as a plugin registers it, its stages decoding (:class:`DecodingStage`), the
    stage ``bug_stage``'s call ``bug`` raising; ``new_tokens``: the tokens ``_pipeline_metric_rules.generated_attempt`` asks for."""

    bug_stage, bug = 0, "forward_cached"
    new_tokens = 3

    def __init__(self, options: Any = None) -> None:
        super().__init__()

    def split_stages(self, n: int) -> list[nn.Module]:
        return [DecodingStage(self.bug if i == self.bug_stage else None, **{key: module})
                for i, (key, module) in enumerate((("first", self.first), ("last", self.last)))]


class FirstStageDecodeBug(Decoding):
    """The first stage's ``forward_cached`` raises on the second token (the last stage waits for it)."""


class LastStageDecodeBug(Decoding):
    """The last stage's ``new_cache`` raises (the first stage has sent it the prompt's hidden states)."""

    bug_stage, bug = 1, "new_cache"


class WindowDecodeBug(Decoding):
    """The first stage's ``decode_window`` raises (before any message of the decoding)."""

    bug = "decode_window"


class NoTokensWindowDecodeBug(WindowDecodeBug):
    """:class:`WindowDecodeBug` asked for no new token (no logits are exchanged)."""

    new_tokens = 0


class UnequalWindows(Decoding):
    """The last stage's ``decode_window`` is 8, the first's 16: their caches would be rebuilt at
    different tokens."""

    bug_stage, bug = 1, "other_window"


class LambdaWindow(Decoding):
    """The last stage's ``decode_window`` returns a lambda, which ``all_gather_object`` cannot
    pickle."""

    bug_stage, bug = 1, "lambda_window"


class StuckLength(Decoding):
    """The first stage's ``forward_cached`` never advances ``cache.length`` (its output is right)."""

    bug = "stuck_length"


DECODING_MODELS = {"FirstStageDecodeBug": FirstStageDecodeBug, "LastStageDecodeBug": LastStageDecodeBug,
                   "WindowDecodeBug": WindowDecodeBug, "NoTokensWindowDecodeBug": NoTokensWindowDecodeBug,
                   "UnequalWindows": UnequalWindows, "LambdaWindow": LambdaWindow, "StuckLength": StuckLength}
"""Plugin models (``_pipeline_metric_rules.Acme`` registers them too) whose code raises on one stage while
``deepseek generate --strategy pipeline`` decodes (``_pipeline_metric_rules.generated_attempt``)."""
