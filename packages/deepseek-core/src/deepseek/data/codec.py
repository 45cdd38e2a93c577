"""A dataset's text codec: how its token ids map to text and back (:meth:`Dataset.text_codec`).

A dataset whose tokens are not the run's ``data.tokenizer`` (a plugin's byte data with a
separator token of its own, id 256 of 257) declares them with the classmethod
:meth:`~deepseek.data.dataset.Dataset.text_codec`, from its options alone: a
:class:`~deepseek.data.tokenizer.Tokenizer` (``encode``, ``decode``, ``vocab_size``,
``separator``). The run records the dataset's name and options in its config, so ``deepseek
generate`` finds the codec again from the run folder (the plugin installed, the data's files
not needed). :func:`dataset_codec` is the one place the codec is asked for and checked: when a
run creates its dataset, and when generate reads a run folder. What the plugin's codec returns
later is checked on every call by :class:`CheckedCodec`, so a ``decode`` that returns bytes is
one line naming the dataset, not a failure deep in the sampler.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deepseek.data.tokenizer import Tokenizer

PROBE = "A probe, 1 2 3."
"""Text each codec encodes and decodes when it is created (its ids must be in range, its text a str)."""
HINT = "docs/plugins.md section 11, a dataset's text codec"


class CheckedCodec(Tokenizer):
    """A dataset's codec whose every answer is checked: ``encode`` gives whole numbers in
    ``0 .. vocab_size - 1``, ``decode`` a str; anything else, or what the codec raises, is one
    :class:`~deepseek.errors.PluginError` naming the dataset (``named``); what the codec raises
    is blamed on the dataset class ``owner`` as its ``text_codec`` is, by ``label``
    (:func:`~deepseek.data.dataset.dataset_calls`)."""

    def __init__(self, codec: Tokenizer, named: str, owner: type, label: str | None) -> None:
        self.codec, self.named, self.owner, self.label = codec, named, owner, label
        self.vocab_size, self.separator = codec.vocab_size, codec.separator
        self.identity = codec.identity or f"codec:{type(codec).__qualname__}"

    def encode(self, text: str) -> list[int]:
        from deepseek.data.dataset import dataset_calls

        with dataset_calls(self.owner, self.label, "text_codec().encode"):
            ids = self.codec.encode(text)
        if not isinstance(ids, list | tuple) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.vocab_size for i in ids
        ):
            self._refuse(f"encode({text[:20]!r}) returned {ids!r:.60}", f"a list of token ids in 0..{self.vocab_size - 1}")
        return list(ids)

    def decode(self, ids: Iterable[int] | Any) -> str:
        from deepseek.data.dataset import dataset_calls

        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        with dataset_calls(self.owner, self.label, "text_codec().decode"):
            text = self.codec.decode(ids)
        if not isinstance(text, str):
            self._refuse(f"decode({ids[:8]!r:.40}) returned {type(text).__name__} {text!r:.40}", "the text, a str")
        return text

    def token_bytes(self) -> tuple[int, ...] | None:
        return self.codec.token_bytes()

    def _refuse(self, what: str, want: str) -> None:
        from deepseek.errors import PluginError

        raise PluginError(f"{self.named}: text_codec() {what}; return {want} ({HINT})")


def dataset_codec(cls: type, options: Any, label: str | None) -> Tokenizer | None:
    """``cls.text_codec(options)`` checked (``label``: the dataset's component label, ``None``
    for a script's data): ``None`` (the run's tokenizer), or a
    :class:`~deepseek.data.tokenizer.Tokenizer` with a whole ``vocab_size`` > 0 and a separator
    below it that encodes and decodes :data:`PROBE`, returned as a :class:`CheckedCodec`;
    anything else is one :class:`~deepseek.errors.PluginError` naming the dataset."""
    from deepseek.data.dataset import dataset_calls
    from deepseek.errors import PluginError

    named = label or f"dataset {cls.__name__}"
    with dataset_calls(cls, label, "text_codec"):
        codec = cls.text_codec(options)
    if codec is None:
        return None
    if not isinstance(codec, Tokenizer):
        raise PluginError(f"{named}: text_codec() returned {type(codec).__name__} {codec!r:.40}; return None (the "
                          "run's data.tokenizer) or a deepseek.data.tokenizer.Tokenizer subclass with encode, decode, "
                          f"vocab_size and separator ({HINT})")
    vocab, sep = codec.vocab_size, codec.separator
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise PluginError(f"{named}: text_codec().vocab_size is {vocab!r:.40}; set it to the number of token ids "
                          f"(a whole number >= 1) ({HINT})")
    if not isinstance(sep, int) or isinstance(sep, bool) or not 0 <= sep < vocab:
        raise PluginError(f"{named}: text_codec().separator is {sep!r:.40}; set it to the id between documents, "
                          f"in 0..{vocab - 1} ({HINT})")
    checked = CheckedCodec(codec, named, cls, label)
    checked.decode(checked.encode(PROBE))
    return checked


def round_trip_problem(codec: Tokenizer, batch: Any, *, rows: int = 4) -> str | None:
    """What is wrong with ``codec`` on a batch of its own data (the contract suite's check), or
    ``None``: the text of each of the first ``rows`` rows of ``batch["input_ids"]`` must encode to
    ids that decode to the same text (text -> ids -> text), as ``deepseek generate`` encodes a
    prompt and decodes what follows. A batch without ``input_ids`` has nothing to check."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else None
    if ids is None:
        return None
    for i, row in enumerate(ids[:rows].tolist() if hasattr(ids, "tolist") else ids[:rows]):
        text = codec.decode(row)
        again = codec.decode(codec.encode(text))
        if again != text:
            return (f"row {i}: decode gives {text[:40]!r}, whose encode decodes to {again[:40]!r}; encode and "
                    "decode must be inverse on the data's text")
    return None
