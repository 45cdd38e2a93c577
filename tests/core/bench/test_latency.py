"""``deepseek bench latency``: rows, statistics, errors and JSON (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import deepseek
from deepseek.bench.latency import run_latency
from deepseek.cli.main import cli
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import BrokenAnswer


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_CACHE_DIR", str(tmp_path / "cache"))


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return deepseek.create_model("tiny", n_layers=2, d_model=64)


@pytest.mark.parametrize("mode", ["forward", "decode"])
def test_rows_have_consistent_statistics_and_errors(mode: str) -> None:
    result = run_latency(
        tiny(), batch=1, seq=16, mode=mode, runs=20, warmup=1,
        only=["deepseek.optimize"], optimize_kwargs={"stages": ["fx"], "runs": 2, "warmup": 1},
    )
    names = [r.name for r in result.rows]
    assert names == ["eager", "deepseek.optimize"]
    for r in result.rows:
        assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
        assert r.max_rel_error <= 1e-4
    assert result.rows[0].max_rel_error == 0.0 and result.rows[0].speedup_vs_eager == 1.0
    info = result.info
    assert info["mode"] == mode and info["runs"] == 20 and info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__ and info["cpu"]


def test_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "lat.json"
    args = ["bench", "latency", "--model", "tiny", "--seq", "8", "--runs", "20", "--warmup", "1",
            "--only", "eager", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["eager"]
    row = data["rows"][0]
    assert {"name", "median_ms", "max_rel_error", "p10_ms", "p90_ms"} <= set(row)
    assert data["info"]["model"] == "tiny" and data["info"]["seq"] == 8
    assert "eager" in result.output


def test_an_in_process_bench_latency_leaves_the_thread_count_and_random_state_as_it_found_them() -> None:
    """`--threads` and the bench's seed are the bench's: a caller of the CLI in this process keeps
    its own intra-op thread count and CPU random state, whether the bench passed or failed."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for args, measured in ((["--seq", "8"], True), (["--seq", "4096"], False)):  # refused: too long
            torch.manual_seed(1234)
            state = torch.random.get_rng_state()
            result = CliRunner().invoke(cli, ["bench", "latency", "--model", "tiny", "--runs", "20", "--warmup", "1",
                                              "--only", "eager", "--threads", "1", *args])
            assert (result.exit_code == 0) == measured, result.output
            assert torch.get_num_threads() == 3
            assert torch.equal(torch.random.get_rng_state(), state)
    finally:
        torch.set_num_threads(before)


def test_cli_rejects_too_long_sequences_and_missing_cuda() -> None:
    result = CliRunner().invoke(cli, ["bench", "latency", "--model", "tiny", "--seq", "4096"])
    assert result.exit_code != 0 and "at most 128 positions" in str(result.exception or result.output)
    if not torch.cuda.is_available():
        result = CliRunner().invoke(cli, ["bench", "latency", "--model", "tiny", "--device", "cuda"])
        assert result.exit_code == 2 and "no CUDA device is available" in result.output


def test_bench_help_lists_train_without_importing_it() -> None:
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0
    assert "latency" in result.output and "train" in result.output


class SmallVocab(TrainableModel):
    """A token model with fewer ids (100) and positions (12) than the defaults, which it declares."""

    def __init__(self, limits: object = (100, 12)) -> None:
        super().__init__()
        self.limits = limits
        self.wte, self.wpe = torch.nn.Embedding(100, 8), torch.nn.Embedding(12, 8)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.wte(idx) + self.wpe(torch.arange(idx.size(1)))

    def token_input_limits(self) -> object:
        return self.limits


def test_example_ids_stay_within_the_ids_the_model_declares() -> None:
    result = run_latency(SmallVocab(), batch=1, seq=12, runs=2, warmup=1, only=["eager"])  # ids < 100, not < 256
    assert [r.name for r in result.rows] == ["eager"]
    result = CliRunner().invoke(cli, ["bench", "latency", "--model", "tiny", "--seq", "129", "--only", "eager"])
    assert isinstance(result.exception, UsageError) and "at most 128 positions" in str(result.exception)  # tiny's 128


@pytest.mark.parametrize("limits", [100, (0, 12), (100, 0), (True, None), (100.0, None)])
def test_a_malformed_token_limits_declaration_is_refused_in_one_line(limits: object) -> None:
    """The model's broken answer (was: a UsageError, the user's fault): run_latency, called from
    Python with no model block, raises the BrokenAnswer itself (a plugin model's PluginError under
    ``bench latency``: test_declared_answers)."""
    with pytest.raises(BrokenAnswer, match=r"^token_input_limits\(\) returned .*; it must return \(ids, "):
        run_latency(SmallVocab(limits), batch=1, seq=12, runs=2, warmup=1, only=["eager"])


class Classifier(TrainableModel):
    """A classifier over a batch dict whose forward reports the loss and accuracy, no logits,
    and which offers ``serving`` (as docs/plugins.md's MLP does)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 3)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(features)
        return {"loss": torch.nn.functional.cross_entropy(logits, label),
                "accuracy": (logits.argmax(-1) == label).float().mean()}

    def serving_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": batch["features"]}

    def serving_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["features"])


def test_a_model_without_logits_is_timed_and_compared_on_its_serving_prediction() -> None:
    """It was compared on its loss, one number (top-1 agreement always 100%), and timed with the
    loss and the labels: for a model that offers ``serving``, what ``deepseek export`` deploys."""
    from torch.utils import _pytree as pytree

    from deepseek.bench.latency import BatchCall

    torch.manual_seed(0)
    model = Classifier().eval()
    batch = {"features": torch.randn(5, 4), "label": torch.randint(0, 3, (5,))}
    leaves, spec = pytree.tree_flatten(batch)
    call = BatchCall(model, spec, tuple(leaves))
    with torch.no_grad():
        assert torch.equal(call(*leaves), model.net(batch["features"]))  # (5, 3) logits, not the loss
    result = run_latency(model, batch=5, seq=1, runs=20, warmup=1, only=["eager"], batches=[batch, batch])
    (eager,) = result.rows
    assert eager.max_rel_error == 0.0 and eager.top1_agreement == 1.0
