"""The Optuna parts a ``deepseek tune`` study is made of: its sampler and pruner by name (the
names ``--sampler`` and ``--pruner`` take), and Optuna's notices kept out of the output. Optuna is
imported only when a part is made, so that ``deepseek tune --help`` stays fast."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")


def create_sampler(name: str, seed: int | None) -> Any:
    """TPE (Optuna's default, seeded: the same trial sequence for the same results) or random."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True, constant_liar=True)


def create_pruner(name: str) -> Any:
    """Median (stop a trial worse than the median of earlier ones at the same step) or
    successive halving; the median pruner waits for five finished trials."""
    import optuna

    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's experimental/deprecation notices about the APIs used here, and its per-trial
    log lines, kept out of the output (the study prints its own line per trial) while the block
    runs; Optuna's log level and the warning filters are put back after it, so that a study run
    in a caller's process (``main([...])``, a notebook) leaves Optuna as it found it."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")  # said by _run_study
            yield
    finally:
        optuna.logging.set_verbosity(previous)
