"""The base classes' ``__init__`` as docs/plugins.md ('Models') and docs/tracking.md (section 5) state it.

A plugin author writes ``super().__init__(...)`` from these sentences: a model's base takes no
options, a tracker's takes them and keeps ``self.options``, and a trainer's values are on the
result ``fit()`` returns (docs/tune.md, 'Writing a tuner').
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from deepseek.models.protocol import TrainableModel
from deepseek.tracking import Tracker
from deepseek.training.result import TrainResult
from deepseek.training.trainer import Trainer

DOCS = Path(__file__).resolve().parents[3] / "docs"


@dataclass(frozen=True)
class _Opts:
    width: int = 3


def test_a_models_base_takes_no_options_as_the_models_section_says():
    class Takes(TrainableModel):
        def __init__(self, options):
            super().__init__(options)

    class Keeps(TrainableModel):
        def __init__(self, options):
            super().__init__()
            self.options = options

    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        Takes(_Opts())
    assert Keeps(_Opts(width=5)).options.width == 5
    assert "calls\n`super().__init__()` with no arguments" in (DOCS / "plugins.md").read_text()


def test_a_trackers_base_keeps_the_options_as_tracking_md_says():
    class Mine(Tracker):
        Options = _Opts

        def __init__(self, options):
            super().__init__(options)

    assert Mine(_Opts(width=7)).options.width == 7
    assert "first calls `super().__init__(options)`" in (DOCS / "tracking.md").read_text()


def test_val_metrics_are_on_the_train_result_not_the_trainer_as_tune_md_says():
    assert "val_metrics" in {f.name for f in fields(TrainResult)}
    assert not hasattr(Trainer, "val_metrics")
    assert "fit().val_metrics[trial.objective]" in (DOCS / "tune.md").read_text().replace("\n", " ")
