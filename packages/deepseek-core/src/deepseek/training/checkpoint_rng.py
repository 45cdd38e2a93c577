"""Random generator state of one rank in a checkpoint: ``rng-<rank>.safetensors`` holds torch's
CPU and CUDA generator states, python's and numpy's (as tensors plus JSON metadata)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.errors import CheckpointError
from deepseek.parsing import loads_json
from deepseek.training.checkpoint_io import HINT, load_tensors, save_tensors

if TYPE_CHECKING:
    from collections.abc import Callable


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
        "format": "deepseek-rng",
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
    try:
        torch.set_rng_state(tensors["torch_cpu"])
        version, gauss = loads_json(meta["python"])
        random.setstate((version, tuple(int(v) for v in tensors["python"].tolist()), gauss))
        kind, pos, has_gauss, cached = loads_json(meta["numpy"])
        np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: random generator state is corrupt ({exc}); {HINT}") from exc
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


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
