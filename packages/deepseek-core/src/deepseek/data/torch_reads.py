"""How :class:`~deepseek.data.torch_data.TorchData` reads a map-style dataset's samples, in the
main process or in DataLoader workers: :class:`SeededReads` (each sample's random draws seeded by
``(seed, epoch, index)``, the reader's generators left as they were), :class:`IndexSampler` (the
batch sampler over TorchData's order) and :func:`ignore_stop_signals` (each worker's start: stop
signals are the training process's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch


class SeededReads:
    """A map-style dataset read by ``(epoch, index)`` keys: ``data[index]`` with the CPU's torch
    generator, Python's ``random`` and numpy's global generator seeded by ``(seed, epoch, index)``,
    and put back as they were after the read (picklable: the DataLoader workers' dataset).

    Seeding and putting back cost ~0.1 ms a sample, ten times a tensor dataset's own read; so the
    first :data:`PROBE` reads also check whether the dataset draws from any of the generators, and
    when none did, later reads are plain ``data[index]`` (a dataset that draws for some samples
    only, none of them among its first reads, is then read unseeded)."""

    PROBE = 16

    def __init__(self, data: Any, seed: int) -> None:
        self.data, self.seed = data, seed
        self.probed = 0
        self.draws = True

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        import random
        import sys

        epoch, index = key
        if not self.draws:
            return self.data[index]
        mixed = ((self.seed * 1_000_003 + epoch) * 1_000_000_007 + index) % 2**63
        np = sys.modules.get("numpy")  # seeded only where something imported it
        python_state, numpy_state = random.getstate(), np.random.get_state() if np is not None else None
        torch_state = torch.default_generator.get_state()
        try:
            torch.default_generator.manual_seed(mixed)  # the CPU's only: CUDA's draws are training's
            random.seed(mixed)
            if np is not None:
                np.random.seed(mixed % 2**32)
            if self.probed >= self.PROBE:
                return self.data[index]
            seeded = (torch.default_generator.get_state(), random.getstate(),
                      np.random.get_state()[1].copy() if np is not None else None)
            item = self.data[index]
            drew = not torch.equal(seeded[0], torch.default_generator.get_state()) or seeded[1] != random.getstate() \
                or (np is not None and not (seeded[2] == np.random.get_state()[1]).all())
            self.probed += 1
            if drew:
                self.probed = self.PROBE  # seeded from now on
            elif self.probed == self.PROBE:
                self.draws = False
            return item
        finally:
            torch.default_generator.set_state(torch_state)
            random.setstate(python_state)
            if np is not None and numpy_state is not None:
                np.random.set_state(numpy_state)


def ignore_stop_signals(_worker_id: int) -> None:
    """A DataLoader worker ignores the stop signals (SIGTERM, SIGUSR1) others send it: they are the
    training process's to handle (stop after the step, with a checkpoint;
    :mod:`deepseek.training.preemption`), and a scheduler may send them to every process of the job
    (Slurm signals the whole job step, ``kill -TERM -PGID`` a process group). A worker ended by one
    made the next batch raise "DataLoader worker ... exited unexpectedly": a traceback, exit code 1,
    no checkpoint of the stop. Its parent's SIGTERM (``Process.terminate()``, how the loader and
    multiprocessing's exit end a worker that did not stop by itself) still ends it at once: the
    signals are blocked, and a thread takes each one (``sigwaitinfo``) and ends the worker when the
    parent sent it (exit code 0: a worker ended by a signal, as multiprocessing's exit ends them,
    made torch's SIGCHLD check print "DataLoader worker ... is killed by signal" at the parent's
    exit). A worker also ends by itself when its parent dies (torch's own watchdog)."""
    import os
    import signal
    import threading

    from deepseek.training.preemption import STOP_SIGNALS

    numbers = {getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)}
    if not numbers or not hasattr(signal, "sigwaitinfo"):
        return
    parent = os.getppid()
    for number in numbers:  # the trainer's handlers came along with the fork
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, numbers)  # in every thread of the worker from here on

    def take() -> None:
        while True:
            info = signal.sigwaitinfo(numbers)
            if info.si_pid == parent:
                os._exit(0)  # not by the signal: torch's SIGCHLD check in the parent would call that a crash

    threading.Thread(target=take, name="deepseek-stop-signals", daemon=True).start()


class IndexSampler:
    """A DataLoader ``batch_sampler`` over :meth:`~deepseek.data.torch_data.TorchData._index_batches` (unending)."""

    def __init__(self, batches: Callable[[], Iterator[list[tuple[int, int]]]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return self.batches()
