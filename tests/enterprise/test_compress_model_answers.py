"""``deepseek compress`` calls the model it was given in the model's block, as ``deepseek eval``
does: measuring it, and ``prune.ffn``'s Taylor scores (its training forward on the calibration
batches). A plugin model whose output holds no 0-dim loss there is its plugin's one
``PluginError`` line naming the model, its distribution and ``forward``, exit code 1, nothing
written (was: the measure's ``BrokenAnswer`` outside any block, an internal error blaming
deepseek; the scores' blamed on enterprise's ``prune.ffn`` compressor). Its batch-1 latency
(``compare.p50_ms``, ``deepseek bench latency``'s timing, shared with ``deepseek compare``) runs
in that block too: a bug of the model's code there is its line (was: an internal error)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from _hosts import enterprise_host, registering
from _inprocess import deepseek_here
from torch import nn

from deepseek import hookimpl
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import PLUGIN_BUG
from deepseek.training.trainer import Trainer
from deepseek_enterprise.compress.compressor import Compressed, Compressor

pytestmark = pytest.mark.usefixtures("one_thread")


class Bigram(TrainableModel):
    """A bigram model on byte tokens; its loss per row where ``PER_ROW``."""

    Options = NoOptions
    PER_ROW: ClassVar[bool] = False
    ONE_ROW_BUG: ClassVar[bool] = False
    """Raise on a batch of one row (the batch-1 latency's), a bug in the model's code."""

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if type(self).ONE_ROW_BUG and input_ids.size(0) == 1:
            raise RuntimeError("a batch of one row")
        logits = self.head(self.embed(input_ids))
        per_row = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)
        return per_row if type(self).PER_ROW else per_row.mean()


class RowGPT(GPT):
    """A plugin's GPT whose training forward gives its loss per row where ``PER_ROW``."""

    PER_ROW: ClassVar[bool] = False

    def __init__(self, options: GPTConfig) -> None:
        super().__init__(options)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None or not (self.training and type(self).PER_ROW):
            return super().forward(input_ids, targets)
        logits = super().forward(input_ids)
        return nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)


class Same(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        return Compressed(copy.deepcopy(model), config.to_dict()["model"])


class Models:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.bigram", Bigram, description="a bigram model")
        register("acme.rowgpt", RowGPT, description="a GPT")


def _trained(tmp_path: Path, model: dict[str, Any]) -> Any:
    """The host (the editions, the plugin's models and ``acme.same``) and a one-step run of ``model``
    in ``tmp_path / "run"``."""
    host = enterprise_host((Models(), "deepseek-acme"),
                           (registering("deepseek_register_compressors", {"acme.same": Same}), "acme-compressors"))
    config = config_from_dict({"model": model, "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1},
                               "train": {"max_steps": 1, "warmup_steps": 0}, "strategy": {"device": "cpu"},
                               "logging": {"progress": False, "plot": False}}, host=host)
    Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    return host


LOSS_PER_ROW = ("forward returned a tensor of shape (4,) for a batch; it must return the mean loss (a 0-dim tensor: "
                "loss.mean(), or reduction='mean' in the loss function) or a mapping with the key 'loss' "
                f"(docs/plugins.md, 'Models'); {PLUGIN_BUG}")


@pytest.mark.parametrize(("model", "cls", "method"), [
    ({"name": "acme.bigram"}, Bigram, ["--method", "acme.same", "--calibration-batches", "0"]),  # its measure
    # prune.ffn's Taylor scores: a plugin GPT's training forward on the calibration batches
    ({"name": "acme.rowgpt", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16, "d_ff": 64}, RowGPT,
     ["--method", "prune.ffn", "--set", "score=taylor", "--calibration-batches", "1"]),
])
def test_a_models_output_without_a_0_dim_loss_is_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         model: dict[str, Any], cls: type, method: list[str]) -> None:
    host = _trained(tmp_path, model)
    monkeypatch.setattr(cls, "PER_ROW", True)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", *method, "--out", "out",
                                 "--latency-runs", "0", host=host)
    assert (code, err.splitlines()) == (1, [f"error: model '{model['name']}' (deepseek-acme 1.0, registered by "
                                            f"{__name__}): {LOSS_PER_ROW}"])
    assert not (tmp_path / "out").exists()


def test_a_models_bug_while_its_latency_is_timed_is_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = _trained(tmp_path, {"name": "acme.bigram"})
    monkeypatch.setattr(Bigram, "ONE_ROW_BUG", True)
    line = (f"error: model 'acme.bigram' (deepseek-acme 1.0, registered by {__name__}): forward raised RuntimeError: "
            f"a batch of one row; {PLUGIN_BUG}")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "acme.same",
                                 "--calibration-batches", "0", "--out", "out", "--latency-runs", "20", host=host)
    assert code == 1, err
    assert err.splitlines()[-1].startswith(line)
