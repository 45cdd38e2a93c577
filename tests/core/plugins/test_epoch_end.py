"""``deepseek_train_epoch_end``: called once per complete pass over the training data, after
the step_end hook of the step whose batch completed it and before that step's evaluation, with
``trainer.epochs_done`` in step; a resumed run calls it only for passes after its checkpoint; an
IterableDataset's pass is seen with the next draw; data counting no passes never calls it; a
dataset's bad ``epochs_done`` is one PluginError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.data.dataset import Dataset
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.layer(x), label)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    @deepseek.hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):  # noqa: ANN001, ANN201
        self.events.append(("step", step))

    @deepseek.hookimpl
    def deepseek_train_epoch_end(self, trainer, epoch, step):  # noqa: ANN001, ANN201
        self.events.append(("epoch", epoch, step, trainer.epochs_done))

    @deepseek.hookimpl
    def deepseek_evaluate(self, trainer, step, metrics):  # noqa: ANN001, ANN201
        self.events.append(("evaluate", step))

    def epochs(self) -> list[tuple[object, ...]]:
        return [e[1:] for e in self.events if e[0] == "epoch"]


def rows(n: int, seed: int = 0) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, n: int) -> None:
        self.data = rows(n)

    def __iter__(self):  # noqa: ANN204
        return iter(self.data)


def fit(tmp_path: Path, data: object, recorder: Recorder, run: str = "run", **kwargs: object) -> object:
    host = PluginHost()
    host.register_plugin(recorder, dist="epoch-recorder")
    config = {"logging": {"progress": False, "plot": False}, "precision": {"dtype": "fp32"}, **kwargs.pop("config", {})}
    return deepseek.fit(Net, data, val_data=rows(8, seed=1), names=("x", "label"), batch_size=8, host=host,
                        run_dir=tmp_path / run, quiet=True, config=config, **kwargs)


def test_each_pass_ends_after_the_step_whose_batch_completes_it(tmp_path: Path) -> None:
    recorder = Recorder()
    result = fit(tmp_path, rows(90), recorder, max_epochs=3)  # 90 samples, batches of 8: passes end in steps 12, 23, 34
    assert result.step == 34
    assert recorder.epochs() == [(1, 12, 1), (2, 23, 2), (3, 34, 3)]
    at_12 = recorder.events.index(("step", 12))
    assert recorder.events[at_12:at_12 + 3] == [("step", 12), ("epoch", 1, 12, 1), ("evaluate", 12)]


def test_a_resumed_run_calls_it_for_the_passes_after_its_checkpoint(tmp_path: Path) -> None:
    first, resumed = Recorder(), Recorder()
    fit(tmp_path, rows(90), first, config={"train": {"max_steps": 20}, "checkpoint": {"interval": 10}})
    assert first.epochs() == [(1, 12, 1)]
    fit(tmp_path, rows(90), resumed, resume=tmp_path / "run", config={"train": {"max_steps": 34}})
    assert resumed.epochs() == [(2, 23, 2), (3, 34, 3)]


def test_an_iterable_pass_is_seen_when_the_next_sample_is_asked_for(tmp_path: Path) -> None:
    recorder = Recorder()
    fit(tmp_path, Stream(16), recorder, config={"train": {"max_steps": 6}})  # passes end with steps 2 and 4
    assert recorder.epochs() == [(1, 3, 1), (2, 5, 2)]


class Drawn(Dataset):
    """Samples drawn at random: no passes (the default epochs_done)."""

    def __next__(self) -> dict[str, torch.Tensor]:
        return {"x": torch.randn(self.batch_size, 4), "label": torch.randint(0, 3, (self.batch_size,))}

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(1)
        return [{"x": torch.randn(self.batch_size, 4, generator=g), "label": torch.zeros(self.batch_size, dtype=torch.long)}]

    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass


class Miscounted(Drawn):
    def epochs_done(self) -> object:
        return "1"


def _fit_class(tmp_path: Path, cls: type, recorder: Recorder) -> object:
    host = PluginHost()
    host.register_plugin(recorder, dist="epoch-recorder")
    return deepseek.fit(Net, cls, batch_size=8, host=host, run_dir=tmp_path / cls.__name__, quiet=True,
                        config={"train": {"max_steps": 3}, "logging": {"progress": False, "plot": False}})


def test_data_without_passes_never_calls_it(tmp_path: Path) -> None:
    recorder = Recorder()
    _fit_class(tmp_path, Drawn, recorder)
    assert [e[0] for e in recorder.events].count("step") == 3 and recorder.epochs() == []


def test_a_bad_epochs_done_is_one_line_naming_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"^dataset Miscounted: epochs_done\(\) returned '1'; return the number "
                                          r"of complete passes .* \(a whole number >= 0\), or None") as caught:
        _fit_class(tmp_path, Miscounted, Recorder())
    assert "\n" not in str(caught.value)


def test_text_data_counts_its_passes_and_resumes_the_count(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(40)))
    data = deepseek.create_dataset("text", batch_size=4, seed=0, path=str(corpus), seq_len=16, shuffle_buffer=8)
    seen = []
    for _ in range(60):
        next(data)
        seen.append(data.epochs_done())
    # ~2,200 bytes, 64 tokens a batch: a pass every ~35 batches, counted at the end of a shuffle block (8 rows)
    assert seen[0] == 0 and seen == sorted(seen) and seen[-1] == 1
    assert 30 <= seen.index(1) <= 40
    saved, count = data.state_dict(), data.epochs_done()
    again = deepseek.create_dataset("text", batch_size=4, seed=0, path=str(corpus), seq_len=16, shuffle_buffer=8)
    again.load_state_dict(saved)
    assert again.epochs_done() == count
