"""The dataset contract: what every registered dataset provides.

A dataset (hook ``deepseek_register_datasets``) is a :class:`Dataset` subclass. ``Options`` is
the dataclass of its own ``[data]`` keys; the keys every dataset gets, ``data.batch_size`` and
``data.eval_batches``, are the trainer's. It is created on every rank, with the same arguments::

    dataset = cls(options, batch_size=config.data.batch_size, seed=config.train.seed)

and then:

- ``next(dataset)`` yields the next *global* training batch: a mapping of names to tensors (or
  nested lists, tuples and mappings of tensors), every tensor with ``batch_size`` rows along its
  first dimension. Every rank draws the same batch; :meth:`Dataset.shard` takes a data-parallel
  rank's rows (by default rows ``rank::size`` of every tensor).
- :meth:`Dataset.validation_batches` returns a fixed list of global validation batches, the same
  every time it is called and on every rank. A run with ``data.eval_batches = 0`` (validation
  off) never calls it: data without a validation split may raise there.
- :meth:`Dataset.state_dict` / :meth:`Dataset.load_state_dict`: the position as JSON-ready data;
  a dataset that loads a saved state yields exactly the batches the saved one would have yielded
  next, so a resumed run sees the same data.
- :meth:`Dataset.count_tokens`: tokens in a batch, for ``tokens/s``; ``None`` (the default) when
  the data has no tokens (``samples/s`` is always logged). :attr:`Dataset.vocab_size`: how many
  token ids the data uses, when it has tokens (models check theirs against it).
- :meth:`Dataset.model_vocab_size` (a classmethod, from the options alone, at config loading):
  the vocabulary a model gets when its config sets none (a tokenizer's size); a config setting a
  smaller one is refused. :meth:`Dataset.model_num_classes` likewise: the class count of labelled
  data, which a model's ``num_classes`` must cover. :meth:`Dataset.run_files`: files the run folder keeps a copy of (the
  tokenizer), copied by rank 0 when the run starts. :attr:`Dataset.written_files`: names of the files a
  plugin's hooks write into the folder of a run on this dataset (a report per evaluation), which
  every command's output option then refuses to overwrite, as it does the run's ``config.toml``.
- :meth:`Dataset.predicted_text`: how many tokens a batch's loss averages over and how many
  UTF-8 bytes of text they stand for; evaluation then reports ``val_bits_per_byte``. ``None``
  (the default): the data is not text, or its bytes per token are not known.
- :meth:`Dataset.text_codec` (a classmethod, from the options alone): how the data's token ids
  map to text and back, a :class:`~deepseek.data.tokenizer.Tokenizer`, for data whose tokens are
  not a ``data.tokenizer`` (a separator id of its own); ``deepseek generate`` finds it from the
  run's recorded dataset name and options (:mod:`deepseek.data.codec`). ``None`` (the default):
  the run's tokenizer (its ``tokenizer.json`` copy, else bytes).
- :meth:`Dataset.sequence_length` (a classmethod, from the options alone): the tokens per row of
  token data, which ``deepseek tune``'s system tuner measures at. The default reads a declared
  ``seq_len`` field of ``Options`` (the conventional key), else ``None``: no token sequences.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from deepseek.config.components import NoOptions
from deepseek.data.batch import Batch, shard_rows

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from deepseek.data.tokenizer import Tokenizer


class PredictedText(NamedTuple):
    """What a batch's loss is averaged over, as text: ``tokens`` predicted (targets the loss
    does not ignore) and the UTF-8 ``bytes`` of text those target tokens decode to."""

    tokens: int
    bytes: int


class Dataset(ABC):
    """Base class of every registered dataset (see the module docstring)."""

    Options: ClassVar[type] = NoOptions
    vocab_size: int | None = None
    """Number of distinct token ids the data may hold (ids ``0 .. vocab_size - 1``), or ``None``
    when it has no tokens."""
    label: str | None = "dataset"
    """How errors name this dataset: the run sets its registered name and distribution
    (``dataset 'acme.bars' (acme 0.1, registered by acme.plugin)``); ``None`` for a script's data
    (:func:`deepseek.fit`), whose exceptions pass as they are. Only a plugin's dataset is blamed
    for what its code raises (:func:`dataset_calls`); core's own (``text``, ``hf``) are named by
    their label in the contract checks' messages, but their bugs are core's internal error."""
    written_files: ClassVar[tuple[str, ...]] = ()
    """Names of files (directly in the run folder; a folder's name ends in ``/``, everything in it
    then the run's) that a run on this dataset writes besides core's, e.g. by a plugin's
    ``deepseek_evaluate`` hook: a command's output option naming one of them is refused (as one
    naming ``config.toml`` is), and a folder in their place is refused when the run starts
    (:mod:`deepseek.run_files`; a model declares its own the same way,
    :attr:`deepseek.models.protocol.TrainableModel.written_files`). Each name is one
    distribution's: core's, another distribution's, or one the run's model of another
    distribution declares too is a ``PluginError`` (:func:`deepseek.run_files.run_written_files`),
    raised where a run or an output check reads the class, and, for a class registered as a class
    (not lazily), when it is registered (its plugin then skipped)."""

    def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
        self.options = options
        self.batch_size = batch_size
        self.seed = seed

    def __iter__(self) -> Iterator[Batch]:
        return self

    @abstractmethod
    def __next__(self) -> Batch:
        """The next global training batch (``batch_size`` rows)."""

    @abstractmethod
    def validation_batches(self, limit: int) -> list[Batch]:
        """At most ``limit`` global validation batches, always the same ones: ``batch_size`` rows
        each, except the last, which may hold fewer (the rest of the split)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The training position as JSON-ready data."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; raise :class:`~deepseek.errors.UsageError` naming
        what differs when the state belongs to other data or settings."""

    def epochs_done(self) -> int | None:
        """How many complete passes over the training data the batches drawn so far cover (0
        until the first pass ends; a batch that holds the last sample of a pass completes it),
        or ``None`` (the default) when the data has no passes (samples drawn at random, an
        endless source). The trainer reads it after drawing each step's batch and calls
        ``deepseek_train_epoch_end`` when it grows; after a resume it must give what it gave
        when the position was saved (it follows from :meth:`state_dict`)."""
        return None

    def shard(self, batch: Batch, rank: int, size: int) -> Batch:
        """Data-parallel rank ``rank``'s rows of a global batch (of ``size`` ranks)."""
        return shard_rows(batch, rank, size)

    def count_tokens(self, batch: Batch) -> int | None:
        """Tokens in ``batch`` (for tokens/s), or ``None`` when the data has no tokens."""
        return None

    def predicted_text(self, batch: Batch) -> PredictedText | None:
        """Tokens predicted in ``batch`` and the bytes of text they stand for (validation bits
        per byte), or ``None`` (the default) when the data is not text or that is unknown."""
        return None

    @classmethod
    def model_vocab_size(cls, options: Any) -> int | None:
        """The vocabulary size a model should take for this data when its config sets none
        (``model.vocab_size``), known from the options alone; ``None`` (the default): the
        model keeps its own default."""
        return None

    @classmethod
    def model_num_classes(cls, options: Any) -> int | None:
        """How many classes the data's labels take (labels ``0 .. n - 1``, a batch's ``label``
        entry by convention; the contract tests check it), known from the options
        alone: a model whose options have ``num_classes`` gets it when its config sets none, and a
        config setting fewer is refused (``model.num_classes``). ``None`` (the default): the data
        has no class labels, or their count is not known."""
        return None

    @classmethod
    def text_codec(cls, options: Any) -> Tokenizer | None:
        """How this data's token ids map to text and back, known from the options alone (no
        data read): a :class:`~deepseek.data.tokenizer.Tokenizer` whose ``vocab_size`` and
        ``separator`` (the id between documents) are the data's. Checked when the run creates
        the dataset and when ``deepseek generate`` reads the run (:func:`deepseek.data.codec.dataset_codec`).
        ``None`` (the default): the tokenizer the run folder holds (``tokenizer.json``), else bytes."""
        return None

    @classmethod
    def sequence_length(cls, options: Any) -> int | None:
        """Tokens per row of every batch (a token dataset's ``input_ids`` rows), known from the
        options alone: ``deepseek tune``'s system tuner measures ``bench train`` at this length.
        The default: ``options.seq_len`` where ``Options`` declares a ``seq_len`` field (the
        conventional key: core's ``text`` and ``hf``, a plugin's token data keeping it), else
        ``None``: the rows are no token sequences of one length. Data whose length is another
        key returns that key's value (:func:`checked_sequence_length` checks the answer)."""
        if dataclasses.is_dataclass(cls.Options) and "seq_len" in {f.name for f in dataclasses.fields(cls.Options)}:
            length: int | None = options.seq_len
            return length
        return None

    def run_files(self) -> dict[str, Path]:
        """Files the run folder keeps a copy of: name in the run folder -> source file (a regular
        file of at most :data:`~deepseek.data.bpe.MAX_TOKENIZER_BYTES`, as a tokenizer is)."""
        return {}

    def close(self) -> None:
        """Release what reading holds open (reader processes, files, connections). The trainer
        calls it once when its loop ends, after a failure too; it may be called again, and a
        later ``next()`` may read on (from the position reached). The default holds nothing."""


def dataset_calls(dataset: Dataset | type[Dataset], label: str | None, call: str) -> AbstractContextManager[None]:
    """The block calling ``call`` on ``dataset`` (a created dataset, or its class for a classmethod
    such as ``text_codec``): what a plugin's dataset raises in its own code is one line naming it by
    ``label`` (:attr:`Dataset.label`, which names it in the contract checks' messages too). Whether
    it is blamed is :func:`~deepseek.plugins.calls.instance_calls`' rule, as for schedules and
    models: not core's own datasets (``text``, ``hf``: their bugs are ours, core's internal error
    with its traceback), nor a script's data (``label`` ``None``)."""
    from deepseek.plugins.calls import instance_calls

    return instance_calls(dataset, label, call)


def checked_sequence_length(cls: type[Dataset], options: Any, label: str | None) -> int | None:
    """``cls.sequence_length(options)``: ``None`` or a whole number >= 1, else one
    :class:`~deepseek.errors.PluginError` naming the dataset by ``label`` (its component label);
    what the call raises is named the same way."""
    from deepseek.errors import PluginError

    with dataset_calls(cls, label, "sequence_length"):
        length = cls.sequence_length(options)
    if length is None or (isinstance(length, int) and not isinstance(length, bool) and length >= 1):
        return length
    named = label or f"dataset {cls.__name__}"
    raise PluginError(f"{named}: sequence_length() returned {length!r:.80}; return the tokens per row of its "
                      "batches (a whole number >= 1), or None when its rows are no token sequences "
                      "(docs/plugins.md section 11)")


def blamed_label(dataset: Dataset) -> str | None:
    """:attr:`Dataset.label` where what ``dataset`` hands back against the contract (a batch of
    tensors that disagree on their rows, or not of ``data.batch_size`` rows) is its plugin's bug:
    a plugin's dataset, which :func:`dataset_calls` blames too. ``None`` for a script's data
    (:func:`deepseek.fit`: the user's own iterable or class, label ``None``) and core's own
    datasets (``text``, ``hf``: the batches are of the user's files), whose batches are the
    user's to fix."""
    from deepseek.plugins.calls import code_package

    return dataset.label if code_package(dataset) is not None else None  # a script's label is None


def checked_state_dict(dataset: Dataset) -> dict[str, Any]:
    """``dataset.state_dict()``, which a checkpoint's ``trainer.json`` records: a dict of
    JSON-ready values, else one :class:`~deepseek.errors.PluginError` naming the dataset (a tensor
    in it failed in the middle of writing the first checkpoint, as the framework's internal
    error). What the call raises is named the same way."""
    import json

    from deepseek.errors import PluginError

    label = dataset.label
    with dataset_calls(dataset, label, "state_dict"):
        state = dataset.state_dict()
    if not isinstance(state, dict):
        problem = f"returned a {type(state).__name__}, not a dict"
    else:
        try:
            json.dumps(state, allow_nan=False)
            return state
        except (TypeError, ValueError) as exc:
            problem = f"returned a value that is not JSON-ready ({exc})"
    named = label or f"dataset {type(dataset).__name__}"
    raise PluginError(f"{named}: state_dict() {problem}; return numbers, strings, lists and dicts (int(t) or "
                      "t.tolist() for a tensor): a checkpoint's trainer.json records it (docs/plugins.md section 11)")


def checked_epochs_done(dataset: Dataset) -> int | None:
    """``dataset.epochs_done()``: ``None`` or a whole number >= 0, else one
    :class:`~deepseek.errors.PluginError` naming the dataset. What the call raises is named the
    same way."""
    from deepseek.errors import PluginError

    with dataset_calls(dataset, dataset.label, "epochs_done"):
        done = dataset.epochs_done()
    if done is None or (isinstance(done, int) and not isinstance(done, bool) and done >= 0):
        return done
    named = dataset.label or f"dataset {type(dataset).__name__}"
    raise PluginError(f"{named}: epochs_done() returned {done!r:.80}; return the number of complete passes over "
                      "the training data (a whole number >= 0), or None when the data has no passes "
                      "(docs/plugins.md section 11)")


def checked_validation_batches(dataset: Dataset, limit: int) -> list[Any]:
    """``dataset.validation_batches(limit)`` as a list: a list, tuple or other iterable of batches
    (a generator) is read once. Anything else, or more than ``limit`` batches, is one
    :class:`~deepseek.errors.PluginError` naming the dataset; what the call raises is named the
    same way. The batches themselves are checked by the caller (:func:`deepseek.data.batch.check_global_batch`)."""
    from collections.abc import Iterable, Mapping
    from itertools import islice

    from deepseek.errors import PluginError

    named = dataset.label or f"dataset {type(dataset).__name__}"
    with dataset_calls(dataset, dataset.label, "validation_batches"):  # reading a generator runs the dataset's code too
        returned = dataset.validation_batches(limit)
        if not isinstance(returned, Iterable) or isinstance(returned, str | bytes | Mapping):
            raise PluginError(f"{named}: validation_batches({limit}) returned {type(returned).__name__} "
                              f"{returned!r:.60}; return a list of at most {limit} global batches (docs/plugins.md "
                              "section 11)")
        batches = list(islice(returned, limit + 1))  # an endless generator is not read to its end
    if len(batches) > limit:
        raise PluginError(f"{named}: validation_batches({limit}) returned more than {limit} batches; return at most "
                          "limit (data.eval_batches, or deepseek eval --batches): the first ones of its fixed "
                          "validation split (docs/plugins.md section 11)")
    return batches


def labelled(dataset: Dataset, label: str | None) -> Dataset:
    """``dataset`` with :attr:`Dataset.label` set to ``label``, as a run or ``create_dataset`` names
    a dataset after creating it. A dataset whose ``__init__`` stored a value of its own as
    ``self.label`` (a natural name for the class labels of its samples) is refused in one
    :class:`~deepseek.errors.PluginError` line, instead of having its data replaced by a string."""
    if "label" in vars(dataset):
        from deepseek.errors import PluginError

        own = vars(dataset)["label"]
        named = label or f"dataset {type(dataset).__name__}"
        raise PluginError(f"{named}: __init__ set self.label (a {type(own).__name__}), which the Dataset base class "
                          "keeps to name the dataset in errors; store the data under another name, such as "
                          "self.labels (docs/plugins.md section 11)")
    dataset.label = label
    return dataset
