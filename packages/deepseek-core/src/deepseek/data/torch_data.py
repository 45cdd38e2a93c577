"""A user's own PyTorch dataset as a deepseek :class:`~deepseek.data.dataset.Dataset`.

:class:`TorchData` wraps a ``torch.utils.data.Dataset`` (map-style: ``len`` and ``[i]``) or an
``IterableDataset`` without copying it: samples are read one by one when a batch needs them and
collated (``torch.utils.data.default_collate`` unless ``collate_fn`` is given) into the global
batches the trainer takes. A sample that is a mapping keeps its keys; a tuple/list (what
``TensorDataset`` yields) or a bare tensor gets its keys from ``names``, which must then match
the model's ``forward`` arguments (``model(**batch)``).

Order and resume:

- map-style: epoch ``e`` visits every index once, in a permutation seeded by ``(seed, e)``
  (``shuffle=False``: in order); batches run on across epoch ends, so every batch is full. The
  position is ``(epoch, index into the epoch's order)``.
- iterable: epoch ``e`` is one pass of ``iter(dataset)`` (after ``dataset.set_epoch(e)`` where
  the dataset has it); the position is ``(epoch, samples read in it)``, and resuming re-reads the
  epoch's first samples to skip them. Resume is exact when the dataset yields the same samples in
  the same order for the same epoch (its own shuffling must be seeded by the epoch).

``num_workers`` (map-style only) reads the samples of each batch in that many DataLoader worker
processes, ahead of the step, in the same order (the batch sampler is this order), and collates
them here: the same batches as reading in the main process, and the same resume; ``pin_memory``
page-locks each batch on a CUDA machine. An iterable dataset is read in the main process.

Random draws in a map-style dataset's ``__getitem__`` (a random augmentation: torch's, Python's
``random`` or numpy's generator) are seeded per sample by ``(seed, epoch, index)`` (validation
reads: epoch -1), wherever the sample is read, and the reading process's generators are left as
they were (:class:`~deepseek.data.torch_reads.SeededReads`). So a sample's augmentation is the same with or without workers
and after a resume, and reading data never moves training's own draws (dropout).

Both positions are saved in checkpoints with the data's length (map-style) and kind, and checked
on load like user input. Validation: ``val`` (a dataset of the same kind of samples), read in
order; without it, a map-style training set holds out ``val_fraction`` of its indices (a fixed
permutation, seed 0, so the split never depends on ``train.seed``); an iterable one needs ``val``.
Validation batches hold ``batch_size`` rows, the rest of the split a last, shorter one. ``validation=False``
(``deepseek.fit`` of a config with ``data.eval_batches = 0``, a run without validation): nothing is
held out and an iterable one needs no ``val``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from deepseek.api_args import flag, real
from deepseek.data.batch import Batch
from deepseek.data.dataset import Dataset
from deepseek.data.torch_reads import IndexSampler, SeededReads, ignore_stop_signals
from deepseek.errors import UsageError

STATE_KIND = "torch-data"
VAL_EPOCH = -1
"""The epoch in the seed of a validation read (:class:`~deepseek.data.torch_reads.SeededReads`)."""


def _is_map_style(data: Any) -> bool:
    return not isinstance(data, torch.utils.data.IterableDataset) and hasattr(data, "__getitem__") and hasattr(
        data, "__len__"
    )


def check_source(data: Any, what: str) -> None:
    """``data`` is a map-style or iterable torch dataset (one line naming ``what`` if not)."""
    if isinstance(data, (str, bytes, Mapping)) or not (
        _is_map_style(data) or isinstance(data, torch.utils.data.IterableDataset)
    ):
        raise UsageError(
            f"{what}: expected a torch.utils.data.Dataset (len() and [i]) or IterableDataset, got "
            f"{type(data).__name__}; wrap your data in one (e.g. torch.utils.data.TensorDataset)"
        )
    if _is_map_style(data):
        length = data.__len__()  # what len() would refuse, said here
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise UsageError(f"{what}: {type(data).__name__}.__len__ returned {length!r:.40}; it must return the "
                             "number of samples, a whole number >= 0")


def check_options(*, names: Any = None, collate_fn: Any = None, shuffle: Any = True, val_fraction: Any = 0.1,
                  num_workers: Any = 0, pin_memory: Any = False) -> None:
    """The reading options of :class:`TorchData` (``deepseek.fit``'s arguments of the same
    names), each of the right kind and range, or one line naming it."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UsageError(f"num_workers: must be a whole number >= 0, got {num_workers!r}")
    flag(pin_memory, "pin_memory")
    flag(shuffle, "shuffle")
    if names is not None and (not isinstance(names, (list, tuple))
                              or not all(isinstance(n, str) and n for n in names)):
        raise UsageError(f"names: expected a list of argument names such as ('x', 'y'), got {names!r:.80}")
    if names is not None and len(set(names)) != len(names):
        raise UsageError(f"names: {sorted({n for n in names if names.count(n) > 1})} given twice in {tuple(names)}; "
                         "give each part of a sample its own name")
    if not 0.0 < real(val_fraction, "val_fraction") < 1.0:
        raise UsageError(f"val_fraction: must be in (0, 1), got {val_fraction!r}")
    if collate_fn is not None and not callable(collate_fn):
        raise UsageError(f"collate_fn: expected a function of a list of samples, got {collate_fn!r:.60} "
                         f"({type(collate_fn).__name__})")


def held_out_count(n: int, val_fraction: float) -> int:
    """Samples a map-style training set of ``n`` holds out for validation (no ``val`` given)."""
    return max(1, int(n * val_fraction))


def training_rows(data: Any, val: Any, val_fraction: float, validation: bool = True) -> int | None:
    """How many samples one epoch of ``data`` trains on (what :class:`TorchData` keeps of it for
    training); ``None`` for an iterable dataset, whose length is not known."""
    if not _is_map_style(data):
        return None
    n = len(data)
    return n if val is not None or not validation else n - held_out_count(n, val_fraction)


class TorchData(Dataset):
    """Global batches of ``batch_size`` samples of a torch dataset (see the module docstring)."""

    def __init__(
        self,
        train: Any,
        *,
        batch_size: int,
        seed: int,
        val: Any = None,
        names: Sequence[str] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        shuffle: bool = True,
        val_fraction: float = 0.1,
        val_name: str = "val_data",
        num_workers: int = 0,
        pin_memory: bool = False,
        validation: bool = True,
    ) -> None:
        super().__init__(None, batch_size=batch_size, seed=seed)
        check_options(names=names, collate_fn=collate_fn, shuffle=shuffle, val_fraction=val_fraction,
                      num_workers=num_workers, pin_memory=pin_memory)
        self.num_workers, self.pin_memory = num_workers, bool(pin_memory)
        self.val_name = val_name
        """How errors name ``val``: the argument it came in (``deepseek.evaluate``'s ``data``)."""
        check_source(train, "data")
        if val is not None:
            check_source(val, val_name)
        self.names = tuple(names) if names is not None else None
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        self.shuffle = bool(shuffle)
        self.map_style = _is_map_style(train)
        self.train, self.val = train, val
        self._train_reads = SeededReads(train, seed) if self.map_style else None
        self.train_indices: list[int] | None = None
        self.val_indices: list[int] | None = None
        if self.map_style:
            n = len(train)
            if val is None and validation:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
                held = held_out_count(n, val_fraction)
                self.val_indices, self.train_indices = sorted(order[:held]), sorted(order[held:])
            else:
                self.train_indices = list(range(n))
            if not self.train_indices and val is not train:  # deepseek.evaluate reads its data as validation only
                raise UsageError(f"data: the training set has {n} sample(s), none left for training; add data")
            if len(self.train_indices) < batch_size and val is not train:  # a batch of one sample read twice
                held = f" after the {len(self.val_indices or [])} held out for validation (val_fraction)" \
                    if self.val_indices else ""
                raise UsageError(f"batch_size: {batch_size} rows a batch, but data has {len(self.train_indices)} "
                                 f"training sample(s){held}, so every batch would repeat samples; use "
                                 f"batch_size <= {len(self.train_indices)} or add data")
        elif val is None and validation:
            raise UsageError(
                "val_data: an IterableDataset cannot be split for validation; pass val_data= (a dataset "
                "of held-out samples), or train without validation (config data.eval_batches = 0)"
            )
        if num_workers and not self.map_style:
            raise UsageError("num_workers: an IterableDataset read by several workers yields every sample once per "
                             "worker unless it splits itself by torch.utils.data.get_worker_info(); read it in the "
                             "main process (num_workers=0) or use a map-style dataset")
        self.epoch = 0
        self.cursor = 0
        self._orders: dict[int, list[int]] = {}
        self._iter: Iterator[Any] | None = None
        self._batches: Iterator[Any] | None = None

    # ------------------------------------------------------------------ samples and batches

    def _sample(self, item: Any, where: str) -> Mapping[str, Any]:
        if isinstance(item, Mapping):
            return item
        parts = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        if self.names is None:
            raise UsageError(
                f"{where}: samples are {type(item).__name__}s, not mappings; pass names=(...) naming "
                f"their {len(parts)} part(s) as the model's forward arguments, e.g. names=('x', 'y')"
            )
        if len(parts) != len(self.names):
            raise UsageError(
                f"{where}: a sample has {len(parts)} part(s) but names has {len(self.names)} "
                f"({', '.join(self.names)}); give one name per part"
            )
        return dict(zip(self.names, parts, strict=True))

    def _collate(self, samples: list[Any], where: str) -> Batch:
        rows = [self._sample(s, where) for s in samples]
        if self.collate_fn is torch.utils.data.default_collate:
            _refuse_python_lists(rows[0], where)
        try:
            batch = self.collate_fn(rows)
        except Exception as exc:  # noqa: BLE001 - the user's data: say where, keep the cause
            raise UsageError(f"{where}: collating {len(rows)} samples failed: {exc}") from exc
        if not isinstance(batch, Mapping):
            raise UsageError(f"{where}: collate_fn returned {type(batch).__name__}, expected a mapping of tensors")
        # A mapping of another type (Hugging Face collators return a BatchEncoding, a UserDict) as a
        # dict: what the batch functions traverse (torch's pytree enters dicts, not UserDicts)
        return batch if type(batch) is dict else dict(batch.items())

    def _epoch_order(self, epoch: int) -> list[int]:
        """The training indices in epoch ``epoch``'s order (kept for the epochs in use)."""
        if epoch not in self._orders:
            assert self.train_indices is not None
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm = torch.randperm(len(self.train_indices), generator=g).tolist()
                self._orders[epoch] = [self.train_indices[i] for i in perm]
            else:
                self._orders[epoch] = list(self.train_indices)
            for old in [e for e in self._orders if e < epoch - 1]:
                del self._orders[old]
        return self._orders[epoch]

    def _take(self, epoch: int, cursor: int) -> tuple[list[tuple[int, int]], int, int]:
        """The ``(epoch, index)`` of each sample of the batch at position ``(epoch, cursor)``, and
        the position after it: the epoch's order on from ``cursor``, into the next epoch's when it
        ends (every batch full)."""
        keys = []
        for _ in range(self.batch_size):
            order = self._epoch_order(epoch)
            if cursor >= len(order):
                epoch, cursor = epoch + 1, 0
                order = self._epoch_order(epoch)
            keys.append((epoch, order[cursor]))
            cursor += 1
        return keys, epoch, cursor

    def _index_batches(self) -> Iterator[list[tuple[int, int]]]:
        """Every batch's ``(epoch, index)`` keys from the current position on (the workers' batch
        sampler)."""
        epoch, cursor = self.epoch, self.cursor
        while True:
            keys, epoch, cursor = self._take(epoch, cursor)
            yield keys

    def _map_batches(self) -> Iterator[Any]:
        """Batches of the map-style data from the current position: read here, or with
        ``num_workers`` by a DataLoader's worker processes in the same order (the batch is collated
        here, so its errors are the same one line)."""
        reads = self._train_reads
        assert reads is not None
        if not self.num_workers:
            return ([reads[key] for key in keys] for keys in self._index_batches())
        # its own generator: the workers' seeds are not drawn from the global one, which training's
        # random draws (dropout) use, so those are the same as reading in the main process
        loader = torch.utils.data.DataLoader(reads, batch_sampler=IndexSampler(self._index_batches),
                                             num_workers=self.num_workers, collate_fn=list,
                                             generator=torch.Generator().manual_seed(self.seed),
                                             worker_init_fn=ignore_stop_signals)
        return iter(loader)

    def close(self) -> None:
        """Ends the ``num_workers`` reader processes now: dropping the loader's iterator shuts
        them down (it was kept alive by the run's reference cycles until a garbage collection,
        which then waited seconds for them). A later batch starts a new one at the position."""
        self._batches = None

    def _next_iterable(self) -> Any:
        for attempt in range(2):
            if self._iter is None:
                set_epoch = getattr(self.train, "set_epoch", None)
                if callable(set_epoch):
                    set_epoch(self.epoch)
                self._iter = iter(self.train)
                for _ in range(self.cursor):  # resuming inside an epoch: skip what was read
                    next(self._iter)
            try:
                item = next(self._iter)
            except StopIteration:
                if attempt or self.cursor == 0:
                    raise UsageError("data: the IterableDataset yielded no samples in an epoch; check the dataset") from None
                self.epoch, self.cursor, self._iter = self.epoch + 1, 0, None
                continue
            self.cursor += 1
            return item
        raise AssertionError("unreachable")

    def __next__(self) -> Batch:
        if self.map_style:
            if self._batches is None:
                self._batches = self._map_batches()
            samples = next(self._batches)
            _, self.epoch, self.cursor = self._take(self.epoch, self.cursor)
        else:
            samples = [self._next_iterable() for _ in range(self.batch_size)]
        batch = self._collate(samples, "data: training batch")
        if self.pin_memory and torch.cuda.is_available():  # page-locked: the copy to the GPU overlaps
            from torch.utils import _pytree as pytree

            batch = pytree.tree_map(lambda t: t.pin_memory() if isinstance(t, torch.Tensor) else t, batch)
        return batch

    def epochs_done(self) -> int:
        """Passes over the training samples the batches so far cover: map-style data knows its
        length, so the batch holding an epoch's last sample completes it; an iterable's pass ends
        when ``iter(data)`` runs out, which is seen when the sample after its last is asked for
        (with the next batch, where the pass ended with a batch)."""
        if self.map_style and self.cursor >= len(self.train_indices or ()):
            return self.epoch + 1
        return self.epoch

    def validation_batches(self, limit: int) -> list[Batch]:
        if self.val is None and self.val_indices is None:  # validation=False: nothing held out
            raise UsageError("val_data: none, and nothing held out (validation off: data.eval_batches = 0); pass "
                             "val_data=, or set data.eval_batches >= 1")
        if self.val is None:
            assert self._train_reads is not None
            source: Any = (self._train_reads[VAL_EPOCH, i] for i in self.val_indices or [])
        elif _is_map_style(self.val):
            reads = SeededReads(self.val, self.seed)
            source = (reads[VAL_EPOCH, i] for i in range(len(self.val)))
        else:
            source = iter(self.val)
        # without val_data, the validation samples are data's held-out share
        what = f"{self.val_name}: validation batch" if self.val is not None else \
            "data: validation batch (its held-out share)"
        out: list[Batch] = []
        rows: list[Any] = []
        for item in source:
            rows.append(item)
            if len(rows) == self.batch_size:
                out.append(self._collate(rows, what))
                rows = []
                if len(out) == limit:
                    break
        if rows and len(out) < limit:  # the rest of the split: a last, shorter batch, so every sample counts
            out.append(self._collate(rows, what))
        if not out and self.val is None:
            raise UsageError(
                "val_data: the held-out share of the training set (val_fraction) holds no sample; pass val_data= "
                "or a larger val_fraction"
            )
        if not out:
            raise UsageError(f"{self.val_name}: no validation samples; give at least one")
        return out

    # ------------------------------------------------------------------ resume

    def _length(self) -> int | None:
        return len(self.train) if self.map_style else None

    def state_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "map_style": self.map_style, "length": self._length(),
                "seed": self.seed, "shuffle": self.shuffle, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("kind") != STATE_KIND:
            raise UsageError("data position: it was not saved by deepseek's torch-data wrapper; resume with "
                             "the data the run was trained on, or start a new run")
        mine = self.state_dict()
        for key in ("map_style", "length", "seed", "shuffle"):
            if state.get(key) != mine[key]:
                raise UsageError(
                    f"data position: cannot resume: it was saved with {key}={state.get(key)!r}, this run has "
                    f"{mine[key]!r}; use the same data and settings, or start a new run"
                )
        limit = len(self.train_indices or []) if self.map_style else None
        for key in ("epoch", "cursor"):
            value = state.get(key)
            bad = not isinstance(value, int) or isinstance(value, bool) or value < 0
            if bad or (key == "cursor" and limit is not None and value > limit):
                bound = f" and <= {limit}" if key == "cursor" and limit is not None else ""
                raise UsageError(
                    f"data position: {key} is {value!r}, expected a whole number >= 0{bound}; the saved position "
                    "is corrupt: resume from an earlier checkpoint or start a new run"
                )
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._orders, self._iter, self._batches = {}, None, None


def _refuse_python_lists(sample: Mapping[str, Any], where: str) -> None:
    """A field holding a Python list of numbers: torch's default collate turns it into a list of
    one tensor per position, not a tensor of rows, and the model failed on it (a Hugging Face
    ``datasets.Dataset`` without a torch format gives such lists)."""
    for key, value in sample.items():
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, (int, float, bool)) or (isinstance(v, (list, tuple)) and v) for v in value):
            raise UsageError(
                f"{where}: sample field {key!r} is a Python {type(value).__name__}, which batches into "
                f"{len(value)} tensors (one per position), not a tensor of rows; give tensors (torch.tensor), "
                "for a Hugging Face datasets.Dataset: data.with_format(\"torch\")")
