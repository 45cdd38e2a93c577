"""Contract every installed distribution's training lifecycle hooks meet (``deepseek_train_start``,
``deepseek_train_step_end``, ``deepseek_train_epoch_end``, ``deepseek_evaluate``,
``deepseek_checkpoint_saved``, ``deepseek_train_end``: docs/plugins.md section 6), whoever
implements them. For each distribution whose plugins implement one, a tiny GPT trains on a host of
core, the installed editions, that distribution and the installed plugin distributions it requires
(a plugin built on another plugin's own hookspecs loads only with it), and the hooks must let it:

- run a fresh run through every hook (evaluations, checkpoints, passes over a small text file): what the
  host checks of each call holds (``None`` returned; ``metrics`` only extended, by single numbers
  or strings; ``trainer.should_stop`` left a ``bool``), and nothing else raises;
- resume that run from its checkpoint in a new trainer (a requeued job is a new process: a hook's
  state in memory starts over) and train on to the end;
- end a run that fails with the run's own error, not one of theirs: ``deepseek_train_end`` is
  called after an error too (here the first step), with no step's metrics.

A hook that sets ``trainer.should_stop = True`` ends the run as complete; that passes (a run it
ended is not resumed). Ids are ``DISTRIBUTION:lifecycle``, so ``-k "acme-extras:"`` selects them
with the distribution's other contract tests. The module skips, saying so, when no installed
distribution implements a lifecycle hook."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import DeepseekError, RunComplete
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.records import TRAINER_HOOKS
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer

EDITIONS = ("deepseek-pro", "deepseek-enterprise")
IMPLEMENTERS = sorted(dist for dist, record in get_host().records.items()
                      if record.status == "ok" and set(record.hooks) & set(TRAINER_HOOKS))
if not IMPLEMENTERS:
    pytest.skip("no installed distribution implements a training lifecycle hook", allow_module_level=True)

TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32},
    "data": {"seq_len": 32, "batch_size": 8, "eval_batches": 1, "shuffle_buffer": 64},
    "train": {"max_steps": 4, "warmup_steps": 1, "eval_interval": 2, "lr": 3e-3, "min_lr": 3e-4},
    "precision": {"dtype": "fp32"},
    "checkpoint": {"interval": 2},
    "logging": {"progress": False, "plot": False},
}
IDS = [f"{dist}:lifecycle" for dist in IMPLEMENTERS]


class Failing:
    """An in-process plugin whose error ends the run at step 1, after the distribution's hooks."""

    @hookimpl(trylast=True)
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        raise _RunFailed(f"the run's own error at step {step}")


class _RunFailed(DeepseekError):
    pass


def _plugins_required(dist: str) -> set[str]:
    """The loaded plugin distributions ``dist`` requires (its ``Requires-Dist``, extras' left out), and
    theirs: a plugin implementing hooks another third-party plugin specifies loads only with it."""
    from deepseek.plugins.compat import required_dists

    loaded, found, todo = set(get_host().records), set(), [dist]
    while todo:
        for name in required_dists(todo.pop()):
            if name in loaded and name not in found:
                found.add(name)
                todo.append(name)
    return found


def _host(dist: str) -> PluginHost:
    """Core, the installed editions, ``dist`` and the plugins it requires: what a user of the plugin
    runs with."""
    editions = {e for e in EDITIONS if get_host().records.get(e) is not None and get_host().records[e].status == "ok"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        host = PluginHost(PluginSettings(allow=frozenset({dist, *editions, *_plugins_required(dist)})))
    assert host.records[dist].status == "ok", f"{dist}: {host.records[dist].reason}"
    return host


def _config(host: PluginHost, tmp_path: Path, **train: Any) -> Any:
    """The tiny GPT on a small text file, whose passes end every few steps (``deepseek_train_epoch_end``)."""
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(12)))
    logging = {**TINY["logging"], "runs_dir": str(tmp_path / "runs")}
    data = {**TINY["data"], "path": str(corpus), "val_fraction": 0.25, "shuffle_buffer": 8}
    return config_from_dict({**TINY, "data": data, "train": {**TINY["train"], **train}, "logging": logging},
                            host=host)


def _fit(host: PluginHost, config: Any, run: Path, **kwargs: Any) -> Any:
    trainer = Trainer(config, quiet=True, host=host, **kwargs) if "resume" in kwargs else \
        Trainer(config, run_dir=run, quiet=True, host=host)
    result = trainer.fit()
    assert all(math.isfinite(loss) for loss in result.losses), result.losses
    assert result.ended_early is not None or trainer.epochs_done, "no pass over the data ended: epoch_end untested"
    return result


@pytest.mark.parametrize("dist", IMPLEMENTERS, ids=IDS)
def test_hooks_through_a_run_and_its_resume(dist: str, tmp_path: Path) -> None:
    host = _host(dist)
    run = tmp_path / "run"
    first = _fit(host, _config(host, tmp_path, max_steps=2), run)
    if first.ended_early is not None:  # a hook ended it as complete: a resume would train nothing
        assert first.step <= 2 and first.checkpoint is not None
        return
    assert first.step == 2 and first.checkpoint == run / "checkpoints" / "step-2"
    try:
        resumed = _fit(host, _config(host, tmp_path, max_steps=4), run, resume=run)
    except RunComplete:
        pytest.fail(f"{dist}: a run its hooks did not end was found complete on resume")
    assert resumed.step == 4 or resumed.ended_early is not None, resumed


@pytest.mark.parametrize("dist", IMPLEMENTERS, ids=IDS)
def test_a_failing_run_ends_with_its_own_error(dist: str, tmp_path: Path) -> None:
    host = _host(dist)
    assert host.register_plugin(Failing(), dist="deepseek-contract-failing").status == "ok"
    with pytest.raises(_RunFailed, match=r"the run's own error at step 1"):
        _fit(host, _config(host, tmp_path), tmp_path / "run")
