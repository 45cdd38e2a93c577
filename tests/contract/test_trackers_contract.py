"""Contract every registered experiment tracker meets, whoever registered it: a
:class:`deepseek.tracking.Tracker` subclass whose ``Options`` is a dataclass with a default for
every key; with those defaults, in an empty folder and with no network, it either refuses in one
line (``check`` when its library is missing, or ``start``) or goes through the whole lifecycle:
``start``, ``log_metrics`` in step order, ``log_artifact`` of each kind, ``finish``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _pairing import qualified_names

import deepseek  # noqa: F401  (the process's host is built from the installed plugins)
from deepseek.config.components import build_options, options_class
from deepseek.errors import UsageError
from deepseek.plugins.host import get_host
from deepseek.tracking import ARTIFACT_KINDS, RunInfo, Tracker

TRACKERS = qualified_names("tracker")


def test_core_trackers_registered() -> None:
    assert {"deepseek-core:tensorboard", "deepseek-core:mlflow", "deepseek-core:wandb"} <= set(TRACKERS)


@pytest.mark.parametrize("name", TRACKERS, ids=TRACKERS)
def test_tracker_contract(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    component = get_host().resolve("tracker", name)
    cls, table = component.load(), f"trackers.{component.name}"  # a config's table of it
    assert isinstance(cls, type) and issubclass(cls, Tracker), f"{name}: not a deepseek.tracking.Tracker"
    options_cls = options_class(cls, kind="tracker", name=name)
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(options_cls)), f"{name}: every [{table}] key needs a default"
    options = build_options(cls, {}, kind="tracker", name=name, path=table)
    monkeypatch.chdir(tmp_path)  # a default local store lands here
    for var in ("MLFLOW_TRACKING_URI", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    try:
        cls.check(options)
    except UsageError as exc:  # its library is not installed here: one line that says so
        assert "\n" not in str(exc) and "install" in str(exc)
        return
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracker = cls(options)
    tracker.start(RunInfo(run_dir, "run", {"train.lr": 0.001, "model.name": "tiny", "train.compile": False}))
    tracker.log_metrics(0, {"val_loss": 5.5})
    tracker.log_metrics(1, {"loss": 5.6, "lr": 0.001})
    tracker.log_metrics(2, {"loss": 5.4, "lr": 0.001, "val_loss": 5.3})
    files = {"plot": ("loss.png", b""), "config": ("config.toml", b"[train]\nlr = 0.001\n"),
             "checkpoint": ("final_checkpoint.json", b'{"path": "/x/step-2", "step": 2}\n')}
    assert set(files) == set(ARTIFACT_KINDS)
    for kind, (file, content) in files.items():
        if kind == "plot":
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(1, 1))
            fig.savefig(run_dir / file)
            plt.close(fig)
        else:
            (run_dir / file).write_bytes(content)
        tracker.log_artifact(run_dir / file, kind)
    tracker.finish("succeeded")
