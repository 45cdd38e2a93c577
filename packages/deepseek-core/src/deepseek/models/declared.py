"""Reading what a model declares about itself: the optional declarations of
:class:`~deepseek.models.protocol.TrainableModel` (``generation_vocab_size``,
``token_input_limits``, ``encoder_modules``, ``not_trainable``), each checked here, in one place, when a command reads it. A model that is
not a ``TrainableModel`` declares nothing; no attribute of it (such as a ``config.vocab_size``) is
read in place of a declaration."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel

BYTE_IDS = 256
"""The ids a model that declares no token limits is given (the byte tokenizer's)."""


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def generation_vocab_size(model: nn.Module) -> int | None:
    """The vocabulary ``model`` declares for generation (:meth:`TrainableModel.generation_vocab_size`),
    ``None`` for a model that declares none or is not a :class:`TrainableModel`; a declared value
    that is not a positive int is refused in one line naming the method."""
    if not isinstance(model, TrainableModel):
        return None
    vocab = model.generation_vocab_size()
    if vocab is None:
        return None
    if not _positive(vocab):
        raise UsageError(
            f"model {type(model).__name__}: generation_vocab_size() returned {vocab!r:.80}; it must return the "
            "number of token ids its logits cover (a positive int) or None when unknown"
        )
    return vocab


def token_input_limits(model: nn.Module) -> tuple[int, int | None]:
    """``(ids, positions)``: how many token ids ``model``'s ``forward`` embeds and the most positions
    it takes (``None``: no limit), as :meth:`TrainableModel.token_input_limits` declares them;
    ``(256, None)`` for a model that declares none. A declaration that is not ``None`` or a pair of
    a positive int and a positive int or ``None`` is refused in one line naming the method."""
    declared = model.token_input_limits() if isinstance(model, TrainableModel) else None
    if declared is None:
        return BYTE_IDS, None
    if (not isinstance(declared, tuple) or len(declared) != 2 or not _positive(declared[0])
            or not (declared[1] is None or _positive(declared[1]))):
        raise UsageError(
            f"model {type(model).__name__}: token_input_limits() returned {declared!r:.80}; it must return "
            "(ids, positions): the number of token ids forward embeds (a positive int) and the most positions "
            "it takes (a positive int, or None for no limit), or None when unknown"
        )
    return declared


def encoder_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The encoders ``model`` declares it is built from (:meth:`TrainableModel.encoder_modules`),
    by the ``[model]`` key of each one's options; ``{}`` for a model that declares none. A
    declaration that is not a mapping of such keys to :class:`~deepseek.models.encoder.Encoder`
    modules is refused in one line naming the method."""
    from deepseek.models.encoder import Encoder

    declared = model.encoder_modules() if isinstance(model, TrainableModel) else {}
    items = list(declared.items()) if isinstance(declared, Mapping) else None
    bad = next((f"{k!r}: {type(v).__name__}" for k, v in items or [] if not (isinstance(k, str) and k.isidentifier())
                or not isinstance(v, Encoder)), None)
    if items is None or bad is not None:
        raise UsageError(
            f"model {type(model).__name__}: encoder_modules() returned {bad or type(declared).__name__}; it must "
            "return a mapping of the [model] key holding each encoder's options to that Encoder (docs/plugins.md, 'Models')"
        )
    return dict(items)


def training_refusal(model: nn.Module, *, model_name: str) -> str | None:
    """The one line that refuses to train ``model`` when it declares that it does not train
    (:attr:`TrainableModel.not_trainable`), else ``None`` (a model that is not a
    :class:`TrainableModel` trains). A declaration that is not ``None`` or one line of text is
    refused in one line naming the attribute."""
    reason = model.not_trainable if isinstance(model, TrainableModel) else None
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason.strip() or "\n" in reason:
        raise UsageError(
            f"model {type(model).__name__}: not_trainable is {reason!r:.80}; it must be None (the model trains) "
            "or one line saying why the model does not train (docs/plugins.md, 'Models')"
        )
    return f"model {model_name!r} does not train: {reason}"
