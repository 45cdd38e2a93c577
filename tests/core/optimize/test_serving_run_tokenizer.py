"""``deepseek export`` and ``optimize`` of a model with capability ``serving`` hold the run data
they trace on to the run tokenizer they checked, as ``deepseek eval`` does
(tests/ecosystem/test_tokenizer.py): each read the checkpoint once (``read_source`` checks the run
folder's ``tokenizer.json`` against the checkpoint's record), then built the run's dataset for an
example batch, which read the file again by path: a file replaced in between was used unchecked.
Now the identity the dataset parsed is held to the record (``weights_source.check_data_tokenizer``).

The BPE parser (``tokenizers``) is not in core's environment, so the data is a plugin dataset that
reads its ``data.tokenizer`` file by path, keeps it in the run folder and records its identity in
its data position, as core's text data does (tests/core/_tokfile.py); the commands' own code is
what runs."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _tokfile import TokFile
from torch import nn

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.data.tokenizer import TOKENIZER_FILE
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer


class TokenRows(TokFile):
    """Rows of 6 token ids and a label (their first id's parity)."""

    def rows(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, 32, (self.batch_size, 6), generator=generator)
        return {"ids": ids, "label": ids[:, 0] % 2}


@dataclass(frozen=True)
class BagOptions:
    width: int = 8


class Bag(TrainableModel):
    """A bag of token embeddings, classified; capability ``serving``."""

    Options = BagOptions

    def __init__(self, options: BagOptions) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(32, options.width), nn.Linear(options.width, 2)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(1))

    def forward(self, ids: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(ids), label)

    def serving_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"ids": batch["ids"]}

    def serving_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits(inputs["ids"])


class Acme:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.bag", Bag, description="a bag of token embeddings")

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("acme.tokfile", TokenRows, description="token rows under a tokenizer file's identity")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PluginHost, Path]:
    """A 2-step run of the plugin model on the plugin data, under one tokenizer file."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Acme(), dist="deepseek-acme", version="1.0").status == "ok"
    work = tmp_path_factory.mktemp("serving_tok")
    (work / TOKENIZER_FILE).write_text('{"model": {"vocab": {"a": 0}}}')
    config = config_from_dict({
        "model": {"name": "acme.bag"}, "data": {"name": "acme.tokfile", "tokenizer": str(work / TOKENIZER_FILE),
                                                "batch_size": 4, "eval_batches": 2},
        "train": {"max_steps": 2, "warmup_steps": 0, "eval_interval": 0}, "strategy": {"name": "single", "device": "cpu"},
        "logging": {"plot": False, "progress": False, "runs_dir": str(work / "runs")}}, host=host)
    Trainer(config, run_dir=work / "run", quiet=True, host=host).fit()
    return host, work / "run"


@pytest.mark.parametrize("command", [("export", "--format", "pt2", "--out", "model.pt2"), ("optimize", "--json")])
def test_a_serving_trace_holds_its_data_to_the_run_tokenizer_it_checked(
        trained: tuple[PluginHost, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        command: tuple[str, ...]) -> None:
    import deepseek.parsing
    from deepseek.data.bpe import file_digest

    host, run = trained
    copy = run / TOKENIZER_FILE
    own, other, reads = copy.read_bytes(), b'{"model": {"vocab": {"b": 0}}}', []
    real = deepseek.parsing.read_file

    def read_file(path: Any, *args: Any, **kwargs: Any) -> bytes:
        data = real(path, *args, **kwargs)
        if Path(path) == copy:
            reads.append(copy)
            if len(reads) == 1:
                copy.write_bytes(other)  # replaced right after the check's read
        return data

    monkeypatch.setattr(deepseek.parsing, "read_file", read_file)
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main([command[0], "--checkpoint", str(run), *command[1:]], host=host)
        assert len(reads) >= 2 and copy.read_bytes() == other, err.getvalue()  # replaced after its check's read
    finally:
        copy.write_bytes(own)
    assert exited.value.code == 2 and not list(tmp_path.iterdir())
    assert err.getvalue().strip() == (
        f"error: {copy}: is not the tokenizer this run was trained with (the data read it as bpe:{file_digest(other)}, "
        f"after its check: it was replaced meanwhile, the checkpoint recorded bpe:{file_digest(own)}); put back the "
        "run's own tokenizer.json (token ids would mean other text)")
