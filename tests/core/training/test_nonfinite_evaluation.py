"""An evaluation whose ``val_loss`` is NaN (a NaN in the validation data) went by without a word,
under ``deepseek.fit`` and ``deepseek train`` alike: the run's first such evaluation now warns
once, naming its step and values (``NonfiniteEvaluationWarning``; one ``warning:`` line under a
command), and the later ones do not (docs/python-api.md, docs/config.md ``train.monitor``)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.components import NoOptions
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.guards import NonfiniteEvaluationWarning

SAID = "the evaluation at step 0 gave val_loss = nan"
HOW = ": check the validation data for NaN or infinite values"


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "accuracy": (logits.argmax(-1) == y).float().mean()}


def test_fit_warns_once_about_a_nan_validation_loss(tmp_path: Path) -> None:
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    train = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    held_out = torch.utils.data.TensorDataset(torch.full((8, 3), float("nan")), torch.zeros(8, dtype=torch.long))
    config = {"train": {"max_steps": 4, "warmup_steps": 0, "eval_interval": 2}, "data": {"eval_batches": 1},
              "logging": {"progress": False, "plot": False}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deepseek.fit(Linear, train, val_data=held_out, names=("x", "y"), batch_size=8, config=config,
                              run_dir=tmp_path / "run", quiet=True, host=PluginHost(PluginSettings(autoload=False)))
    assert [s for s, _ in result.val_losses] == [0, 2, 4] and all(math.isnan(v) for _, v in result.val_losses)
    said = [str(w.message) for w in caught if issubclass(w.category, NonfiniteEvaluationWarning)]
    assert len(said) == 1 and said[0].startswith(SAID + HOW), said  # three NaN evaluations, one warning


class NanWhenEvaluated(TrainableModel):
    """A bigram model on byte tokens whose evaluations give NaN (its training steps do not)."""

    Options = NoOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self.head(self.embed(input_ids)).transpose(1, 2), targets)
        return loss if self.training else loss * float("nan")


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.nan_eval", NanWhenEvaluated, description="evaluations of NaN")


def test_deepseek_train_says_it_in_one_line_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1").status == "ok"
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nname = "acme.nan_eval"\n[data]\nseq_len = 16\nbatch_size = 4\neval_batches = 1\n'
                    'shuffle_buffer = 16\n[train]\nmax_steps = 4\nwarmup_steps = 0\neval_interval = 2\n'
                    '[strategy]\ndevice = "cpu"\n[logging]\nprogress = false\nplot = false\n', encoding="utf-8")
    with pytest.raises(SystemExit) as ended:
        main(["train", str(toml), "--run-dir", str(tmp_path / "run"), "--quiet"], host=host)
    err = capsys.readouterr().err
    assert ended.value.code == 0, err
    lines = [line for line in err.splitlines() if "val_loss = nan" in line]
    # val_bits_per_byte, of the loss on text, with it
    assert len(lines) == 1 and lines[0].startswith(f"warning: {SAID}, val_bits_per_byte = nan{HOW}"), err
