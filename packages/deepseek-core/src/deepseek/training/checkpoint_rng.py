"""Random generator state of one rank in a checkpoint: ``rng-<rank>.safetensors`` holds torch's
CPU and CUDA generator states, python's and numpy's (as tensors plus JSON metadata).

Read back like user input: every field is checked (:func:`python_rng_state`,
:func:`numpy_rng_state`, the one rule of numpy's state that PowerSGD's saved state is held to as
well) before any generator is set, so a damaged file sets none of them. numpy and python take a
position past their 624 words, a Gaussian flag of 7, a NaN or a string as the cached Gaussian, and
draw from them (numpy reads past its key array).
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.errors import CheckpointError
from deepseek.parsing import loads_json
from deepseek.training.checkpoint_io import HINT, load_tensors, save_tensors

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

FORMAT = "deepseek-rng"
MT_WORDS = 624
"""Words of the Mersenne Twister's state (python's and numpy's legacy generator)."""
_PYTHON_VERSION = 3
"""``random.getstate()``'s version, the one this python writes and reads."""


def save_rng_state(directory: str | os.PathLike[str], rank: int = 0) -> Path:
    """Write this process's torch, CUDA, python and numpy generator states."""
    import numpy as np
    import torch

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    tensors["python"] = torch.tensor(internal, dtype=torch.int64)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    meta = {
        "format": FORMAT,
        "python": json.dumps([version, gauss]),
        "numpy": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
    }
    path = Path(directory) / f"rng-{rank}.safetensors"
    save_tensors(path, tensors, meta)
    return path


def load_rng_state(directory: str | os.PathLike[str], rank: int = 0, saved_world_size: int | None = None) -> None:
    """Restore what :func:`save_rng_state` wrote: this rank's file, or rank 0's for a rank the
    checkpoint's run did not have (``saved_world_size``, its ``trainer.json``'s ``world_size``:
    a rank it had must find its own file, else the checkpoint is damaged)."""
    import numpy as np
    import torch

    path = Path(directory) / f"rng-{rank}.safetensors"
    if not path.exists():
        if saved_world_size is not None and rank < saved_world_size:
            raise CheckpointError(f"{path}: missing, though the checkpoint's run had {saved_world_size} rank(s) "
                                  f"and saved one per rank; {HINT}")
        path = Path(directory) / "rng-0.safetensors"
    tensors, meta = load_tensors(path, "random generator state")
    try:  # every field checked before any generator is set: a damaged file sets none
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {str(meta.get('format'))[:40]!r}, not {FORMAT!r}")
        python = python_rng_state(meta["python"], tensors["python"])
        kind, pos, has_gauss, cached = numpy_rng_state(meta["numpy"], "numpy")
        keys = np.asarray(state_words(tensors["numpy"], "numpy", MT_WORDS), dtype=np.uint32)
        put_back = rng_snapshot()
        try:
            torch.set_rng_state(tensors["torch_cpu"])  # torch checks its own state's size
            random.setstate(python)
            np.random.set_state((kind, keys, pos, has_gauss, cached))
        except BaseException:
            put_back()
            raise
    except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: random generator state is corrupt ({exc}); {HINT}") from exc
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def python_rng_state(text: str, words: torch.Tensor) -> tuple[int, tuple[int, ...], float | None]:
    """``random.setstate``'s argument from ``rng-<rank>.safetensors``' ``python`` metadata
    (``[version, cached Gaussian]``, JSON) and tensor (the 624 words and the position); a
    ``ValueError`` naming the field otherwise. Python took a cached Gaussian of any type (a string
    came back from ``random.gauss``) and the version 2 state of Python 2."""
    value = loads_json(text)
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"python is {text[:80]}, not [version, cached Gaussian]")
    version, gauss = value
    if version != _PYTHON_VERSION or type(version) is not int:
        raise ValueError(f"python version is {version!r:.40}, not {_PYTHON_VERSION}")
    if gauss is not None and not (type(gauss) in (int, float) and math.isfinite(gauss)):
        raise ValueError(f"python cached Gaussian is {gauss!r:.40}, not a finite number or null")
    state = state_words(words, "python", MT_WORDS + 1)
    if not 0 <= state[-1] <= MT_WORDS:
        raise ValueError(f"python position is {state[-1]}, not 0 to {MT_WORDS}")
    return version, state, None if gauss is None else float(gauss)


def numpy_rng_state(text: str, field: str) -> tuple[str, int, int, float]:
    """numpy's legacy generator state but its key words, as a checkpoint writes it in JSON
    (``[kind, position, has Gaussian, cached Gaussian]``: ``rng-<rank>.safetensors``' ``numpy``,
    PowerSGD's ``rng``: ``field``), checked: ``MT19937``, a position of 0 to 624, a flag of 0 or 1, a finite
    Gaussian; a ``ValueError`` saying what is wrong otherwise."""
    value = loads_json(text)
    if not (isinstance(value, list) and len(value) == 4):
        raise ValueError(f"{field} is {text[:80]}, not [kind, position, has_gauss, cached]")
    kind, pos, has_gauss, cached = value
    if not (kind == "MT19937" and type(pos) is int and 0 <= pos <= MT_WORDS and type(has_gauss) is int
            and has_gauss in (0, 1) and type(cached) in (int, float) and math.isfinite(cached)):
        raise ValueError(f"{field} {text[:80]} is not a random generator's state (MT19937, a position of 0 to "
                         f"{MT_WORDS}, a flag of 0 or 1, a finite number)")
    return kind, pos, has_gauss, float(cached)


def state_words(tensor: torch.Tensor, field: str, count: int) -> tuple[int, ...]:
    """A generator's state words (``count`` of them, each 32 bits) as a checkpoint stores them."""
    if tensor.dim() != 1 or tensor.numel() != count or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{field} holds {list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')} values, "
                         f"not {count} whole numbers")
    values = tuple(int(v) for v in tensor.tolist())
    if not all(0 <= v < 2**32 for v in values):
        raise ValueError(f"{field} holds a value out of 0 to 2**32 - 1")
    return values


def rng_snapshot() -> Callable[[], None]:
    """This process's torch (CPU and initialised CUDA), python and numpy generator states now, as
    a function that puts them back. A resumed run restores the checkpoint's states when its set-up
    is over, just before its first step (``Trainer._loop``): what its set-up drew after reading the
    checkpoint (rich's first import takes a python ``getrandbits``, a plugin's start hook may draw)
    was drawn once already by the run that wrote the checkpoint, in that process's set-up."""
    import numpy as np
    import torch

    cpu, py, npy = torch.get_rng_state(), random.getstate(), np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def put_back() -> None:
        torch.set_rng_state(cpu)
        random.setstate(py)
        np.random.set_state(npy)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    return put_back
