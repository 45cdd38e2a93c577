"""PowerSGD's state in a checkpoint, so that a resumed ``compression = "powersgd"`` run goes on
bit for bit.

torch's :class:`~torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook.PowerSGDState` keeps,
per DDP gradient bucket, the error feedback (a flat tensor as long as the bucket), the warm-start
``P`` and ``Q`` (the low-rank factors of the bucket's compressed matrices, concatenated), plus an
iteration count and a numpy generator (the seeds of the first random ``Q``). The count decides
which steps are plain all-reduces: a resumed run that started it afresh ran ``start_iter`` plain
steps again, without the error it had accumulated, and parted from the uninterrupted run.

The bucket tensors are keyed by bucket index and laid out in the bucket's parameter order, and
that order is not stable: DDP builds its buckets in the parameters' order, then rebuilds them once,
after the first step, in the order the gradients became ready (the reverse, roughly). A resumed
process's first step runs on the first layout, the checkpoint's state was made in the rebuilt
one. So the state is saved per parameter (``error.<i>``, ``p.<i>``, ``q.<i>``: parameter ``i`` of
the model's ``parameters()``), and :class:`PowerSGDTracker` lays it out again for whatever layout
a bucket has when the hook sees it, on restore and whenever DDP rebuilds a bucket.

The random factors are a second place the layout shows: torch's hook draws one seed per bucket
and fills the bucket's ``Q`` in its packing order, on the first compressed step and, with
``warm_start = False``, on every one. A run resumed at such a step draws them in the first layout,
the uninterrupted run in the rebuilt one: other numbers for the same parameters, so the two part.
The tracker therefore draws them itself, per parameter, from a generator seeded by the step's
iteration count and the parameter's index (the same on every rank), and hands them to the hook as
its warm-start memory (torch's state is created with ``warm_start = True``; the tracker keeps the
user's setting and, without warm start, draws new factors for every compressed step). The hook
orthogonalises a warm-start ``Q`` before use and a random one not; ``P = M Q`` is orthogonalised
next, and ``Q`` and ``Q R`` (``R`` upper triangular) give the same ``P``, so this is PowerSGD as
torch runs it, with other random numbers.

Each rank writes its own ``powersgd-<rank>.safetensors`` (the error feedback is the rank's own).
It is restored only by a run with the same world size and the same PowerSGD settings; any other
resume starts PowerSGD afresh (``start_iter`` plain steps), on every rank alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FILE = "powersgd-{rank}.safetensors"
_SETTINGS = ("matrix_approximation_rank", "start_powerSGD_iter", "min_compression_rate", "use_error_feedback",
             "warm_start", "batch_tensors_with_same_shape")


@dataclass(frozen=True)
class _Slot:
    """One parameter of a bucket: its index in the model, where its gradient sits in the bucket's
    flat buffer, and the ``n x r`` / ``m x r`` sizes of its factors when PowerSGD compresses it."""

    param: int
    offset: int
    numel: int
    p_size: int  # 0: sent uncompressed
    q_size: int
    p_offset: int = 0  # where its factors sit in the bucket's P and Q
    q_offset: int = 0


class PowerSGDTracker:
    """Follows the bucket layouts PowerSGD's state is laid out in; saves and restores the state."""

    def __init__(self, state: Any, params: list[Any]) -> None:
        self.state = state
        self.warm_start = bool(state.warm_start)  # the user's setting; the hook always finds a memory
        state.warm_start = True
        self._index = {id(p): i for i, p in enumerate(params)}
        self._layouts: dict[int, tuple[_Slot, ...]] = {}
        self._pending: dict[str, Any] | None = None  # restored pieces, laid out on first sight of a bucket

    def before_hook(self, bucket: Any) -> None:
        """Called with every bucket before PowerSGD's hook runs on it: lays the state out for the
        bucket's current layout (a restored state, or one made before DDP rebuilt the bucket)."""
        b = bucket.index()
        layout = self._layout(bucket)
        old = self._layouts.get(b)
        if old is not None and old != layout:
            self._put(b, layout, self._pieces(b, old), bucket.buffer().device)
        if self._pending is not None:
            self._put(b, layout, self._pending, bucket.buffer().device)
        self._layouts[b] = layout
        s = self.state
        if s.iter >= s.start_powerSGD_iter and (not self.warm_start or b not in s.q_memory_dict):
            self._draw_factors(b, layout, bucket.buffer())

    def _draw_factors(self, b: int, layout: tuple[_Slot, ...], buffer: Any) -> None:
        """Fresh factors for bucket ``b``'s compressed parameters: ``Q`` standard normal from a
        generator seeded by (iteration, parameter index), ``P`` its room (the hook overwrites it)."""
        import torch

        packed = sorted((x for x in layout if x.p_size), key=lambda x: x.p_offset)
        if not packed:
            return
        qs = []
        for slot in packed:
            generator = torch.Generator().manual_seed(self.state.iter * 1_000_003 + slot.param + 1)
            qs.append(torch.randn(slot.q_size, generator=generator, dtype=buffer.dtype))
        self.state.q_memory_dict[b] = torch.cat(qs).to(buffer.device)
        self.state.p_memory_dict[b] = torch.empty(sum(x.p_size for x in packed), dtype=buffer.dtype,
                                                  device=buffer.device)

    def after_hook(self, bucket: Any) -> None:
        if self._pending is not None and bucket.is_last():  # every bucket has been laid out
            self._pending = None

    def _layout(self, bucket: Any) -> tuple[_Slot, ...]:
        from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import _should_compress

        slots, offset, shapes = [], 0, {}
        for p in bucket.parameters():
            numel = p.numel()
            n = p.shape[0] if p.dim() else 1
            m = numel // n if n else 0
            r = min(n, m, self.state.matrix_approximation_rank)
            compress = p.dim() > 0 and _should_compress(n, m, r, self.state.min_compression_rate)[0]
            slots.append(_Slot(self._index.get(id(p), -1), offset, numel, n * r if compress else 0,
                               m * r if compress else 0))
            if compress:
                shapes.setdefault((n, m), []).append(len(slots) - 1)
            offset += numel
        # The hook packs the factors grouped by matrix shape (shapes in order of first appearance,
        # then bucket order), whether or not it batches same-shaped matrices.
        po = qo = 0
        for group in shapes.values():
            for i in group:
                slots[i] = replace(slots[i], p_offset=po, q_offset=qo)
                po, qo = po + slots[i].p_size, qo + slots[i].q_size
        return tuple(slots)

    def _pieces(self, b: int, layout: tuple[_Slot, ...]) -> dict[str, Any]:
        """Bucket ``b``'s state, split per parameter."""
        s, out = self.state, {}
        error, p, q = s.error_dict.get(b), s.p_memory_dict.get(b), s.q_memory_dict.get(b)
        for slot in layout:
            if error is not None:
                out[f"error.{slot.param}"] = error[slot.offset:slot.offset + slot.numel]
            if slot.p_size and p is not None and q is not None:
                out[f"p.{slot.param}"] = p[slot.p_offset:slot.p_offset + slot.p_size]
                out[f"q.{slot.param}"] = q[slot.q_offset:slot.q_offset + slot.q_size]
        return out

    def _put(self, b: int, layout: tuple[_Slot, ...], pieces: dict[str, Any], device: Any) -> None:
        """Set bucket ``b``'s state from per-parameter ``pieces``, laid out as ``layout``; a part
        some parameter lacks (a piece of another model) is left out: PowerSGD starts it afresh."""
        import torch

        s = self.state
        packed = sorted((x for x in layout if x.p_size), key=lambda x: x.p_offset)
        parts = {"error": [f"error.{x.param}" for x in layout],
                 "p": [f"p.{x.param}" for x in packed], "q": [f"q.{x.param}" for x in packed]}
        sizes = {"error": [x.numel for x in layout], "p": [x.p_size for x in packed], "q": [x.q_size for x in packed]}
        for kind, store in (("error", s.error_dict), ("p", s.p_memory_dict), ("q", s.q_memory_dict)):
            names = parts[kind]
            store.pop(b, None)
            if not names or not all(k in pieces and pieces[k].numel() == n for k, n in zip(names, sizes[kind], strict=True)):
                continue
            store[b] = torch.cat([pieces[k].reshape(-1) for k in names]).to(device)
        if (b in s.p_memory_dict) != (b in s.q_memory_dict):  # warm start needs both factors
            s.p_memory_dict.pop(b, None)
            s.q_memory_dict.pop(b, None)

    def _settings(self) -> dict[str, Any]:
        """The PowerSGD settings a saved state belongs to (``warm_start``: the user's)."""
        return {k: self.warm_start if k == "warm_start" else getattr(self.state, k) for k in _SETTINGS}

    def save(self, directory: Path, rank: int, world_size: int) -> None:
        """Write this rank's ``powersgd-<rank>.safetensors`` into checkpoint ``directory``."""
        from deepseek.training.checkpoint_io import save_tensors

        tensors: dict[str, Any] = dict(self._pending or {})  # restored, not laid out yet (no step since)
        for b, layout in self._layouts.items():
            tensors.update({k: v.detach().cpu().contiguous() for k, v in self._pieces(b, layout).items()})
        if not self.warm_start:  # the next compressed step draws new factors: only the error is state
            tensors = {k: v for k, v in tensors.items() if not k.startswith(("p.", "q."))}
        kind, keys, pos, has_gauss, cached = self.state.rng.get_state()
        import torch

        tensors["rng"] = torch.from_numpy(keys.astype("int64"))
        meta = {"format": "deepseek-powersgd", "iter": str(self.state.iter), "world_size": str(world_size),
                "rng": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
                "settings": json.dumps(self._settings())}
        save_tensors(Path(directory) / FILE.format(rank=rank), tensors, meta)

    def restore(self, directory: Path, rank: int, world_size: int) -> bool:
        """Take this rank's saved state from checkpoint ``directory`` when it was saved by a run of
        ``world_size`` ranks with these settings; False (nothing changed) otherwise."""
        import numpy as np

        from deepseek.errors import CheckpointError
        from deepseek.parsing import loads_json
        from deepseek.training.checkpoint_io import HINT, load_tensors
        from deepseek.training.checkpoint_rng import MT_WORDS, numpy_rng_state, state_words
        from deepseek.training.checkpoint_state import COUNTER_LIMIT

        path = Path(directory) / FILE.format(rank=rank)
        if not path.is_file():
            return False
        tensors, meta = load_tensors(path, "PowerSGD state")
        try:
            settings = loads_json(meta["settings"])
            if int(meta["world_size"]) != world_size or settings != self._settings():
                return False
            iteration = int(meta["iter"])
            if not 0 <= iteration < COUNTER_LIMIT:
                raise ValueError(f"iter {meta['iter']} is not a whole count of steps")
            kind, pos, has_gauss, cached = numpy_rng_state(meta["rng"], "rng")  # as the checkpoint's rng files
            keys = np.asarray(state_words(tensors.pop("rng"), "rng", MT_WORDS), dtype=np.uint32)
            self.state.rng.set_state((kind, keys, pos, has_gauss, cached))
            self.state.iter = iteration
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: PowerSGD state is corrupt ({exc}); {HINT}") from exc
        self.state.error_dict.clear()
        self.state.p_memory_dict.clear()
        self.state.q_memory_dict.clear()
        self._layouts.clear()
        self._pending = tensors
        return True
