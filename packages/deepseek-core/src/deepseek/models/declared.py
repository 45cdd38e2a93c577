"""Reading what a model declares about itself: the optional declarations of
:class:`~deepseek.models.protocol.TrainableModel` (``generation_vocab_size``,
``token_input_limits``, ``encoder_modules``, ``not_trainable``), each checked here, in one place, when a command reads it. A model that is
not a ``TrainableModel`` declares nothing; no attribute of it (such as a ``config.vocab_size``) is
read in place of a declaration.

A declaration is the model's answer, never the user's input: each is read in ``calls``, the
model's block (``model_calls``, :func:`~deepseek.plugins.calls.model_blame`; ``None``: nothing
blamed), under the declaration's name, so what its code raises, and a declaration against its
contract (a :class:`~deepseek.plugins.calls.BrokenAnswer` saying what it returned and what it
must return), are a plugin model's one-line ``PluginError`` naming its distribution (exit code
1); core's own model's, an internal error; a script's, the exception itself."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from torch import nn

from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import BrokenAnswer

Blame = Callable[[str], contextlib.AbstractContextManager[None]]
"""A model's ``model_calls``: the block blaming what its code raises or answers wrong."""

BYTE_IDS = 256
"""The ids a model that declares no token limits is given (the byte tokenizer's)."""


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def answer_block(calls: Blame | None, call: str) -> contextlib.AbstractContextManager[None]:
    """The model's block ``calls(call)`` in which one of its answers is read and checked (a
    declaration here; ``metric_names`` and ``check_data`` in :mod:`deepseek.models.checks`);
    ``calls`` ``None``: no block of its own, what is raised reaches the caller's."""
    return contextlib.nullcontext() if calls is None else calls(call)


def generation_vocab_size(model: nn.Module, *, calls: Blame | None = None) -> int | None:
    """The vocabulary ``model`` declares for generation (:meth:`TrainableModel.generation_vocab_size`),
    ``None`` for a model that declares none or is not a :class:`TrainableModel`; a declared value
    that is not a positive int is the model's broken answer naming the method (read in ``calls``:
    the module docstring)."""
    if not isinstance(model, TrainableModel):
        return None
    with answer_block(calls, "generation_vocab_size"):
        vocab = model.generation_vocab_size()
        if vocab is not None and not _positive(vocab):
            raise BrokenAnswer(f"generation_vocab_size() returned {vocab!r:.80}; it must return the number of token "
                               "ids its logits cover (a positive int) or None when unknown")
    return vocab


def token_input_limits(model: nn.Module, *, calls: Blame | None = None) -> tuple[int, int | None]:
    """``(ids, positions)``: how many token ids ``model``'s ``forward`` embeds and the most positions
    it takes (``None``: no limit), as :meth:`TrainableModel.token_input_limits` declares them;
    ``(256, None)`` for a model that declares none. A declaration that is not ``None`` or a pair of
    a positive int and a positive int or ``None`` is the model's broken answer naming the method
    (read in ``calls``: the module docstring)."""
    if not isinstance(model, TrainableModel):
        return BYTE_IDS, None
    with answer_block(calls, "token_input_limits"):
        declared = model.token_input_limits()
        if declared is not None and (not isinstance(declared, tuple) or len(declared) != 2 or not _positive(declared[0])
                                     or not (declared[1] is None or _positive(declared[1]))):
            raise BrokenAnswer(
                f"token_input_limits() returned {declared!r:.80}; it must return (ids, positions): the number of "
                "token ids forward embeds (a positive int) and the most positions it takes (a positive int, or None "
                "for no limit), or None when unknown")
    return (BYTE_IDS, None) if declared is None else declared


def encoder_modules(model: nn.Module, *, calls: Blame | None = None) -> dict[str, nn.Module]:
    """The encoders ``model`` declares it is built from (:meth:`TrainableModel.encoder_modules`),
    by the ``[model]`` key of each one's options; ``{}`` for a model that declares none. A
    declaration that is not a mapping of such keys to :class:`~deepseek.models.encoder.Encoder`
    modules is the model's broken answer naming the method (read in ``calls``: the module
    docstring)."""
    from deepseek.models.encoder import Encoder

    if not isinstance(model, TrainableModel):
        return {}
    with answer_block(calls, "encoder_modules"):
        declared = model.encoder_modules()
        items = list(declared.items()) if isinstance(declared, Mapping) else None
        bad = next((f"{k!r}: {type(v).__name__}" for k, v in items or []
                    if not (isinstance(k, str) and k.isidentifier()) or not isinstance(v, Encoder)), None)
        if items is None or bad is not None:
            raise BrokenAnswer(
                f"encoder_modules() returned {bad or type(declared).__name__}; it must return a mapping of the "
                "[model] key holding each encoder's options to that Encoder (docs/plugins.md, 'Models')")
    return dict(items)


def training_refusal(model: nn.Module, *, model_name: str, calls: Blame | None = None) -> str | None:
    """The one line that refuses to train ``model`` when it declares that it does not train
    (:attr:`TrainableModel.not_trainable`), else ``None`` (a model that is not a
    :class:`TrainableModel` trains). A declaration that is not ``None`` or one line of text is the
    model's broken answer naming the attribute (read in ``calls``: the module docstring)."""
    if not isinstance(model, TrainableModel):
        return None
    with answer_block(calls, "not_trainable"):
        reason = model.not_trainable
        if reason is not None and (not isinstance(reason, str) or not reason.strip() or "\n" in reason):
            raise BrokenAnswer(f"not_trainable is {reason!r:.80}; it must be None (the model trains) or one line "
                               "saying why the model does not train (docs/plugins.md, 'Models')")
    return None if reason is None else f"model {model_name!r} does not train: {reason}"
