"""What docs/plugins.md section 12 and docs/hooks.md tell a strategy or hook author, checked
against the code: the topology properties' defaults, the base-class members the table names and
the attributes their defaults read, and the ``step`` key of ``deepseek_evaluate``'s metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.launcher_env import launcher_env
from deepseek.training.mixed_precision import Precision
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.strategy import StepSettings, Strategy
from deepseek.training.trainer import Trainer

DOC = " ".join((Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text(encoding="utf-8").split())


class Rank3Of4(SingleDeviceStrategy):
    """Overrides only ``rank`` and ``world_size``, as the docs say a multi-process strategy does."""

    @property
    def rank(self) -> int:
        return 3

    @property
    def world_size(self) -> int:
        return 4


def test_topology_defaults_follow_rank_and_world_size() -> None:
    assert "override `rank` and `world_size` as properties, `dp_rank` and `dp_size` follow them" in DOC
    one = SingleDeviceStrategy(precision=Precision("fp32"))
    assert (one.rank, one.world_size, one.dp_rank, one.dp_size, one.is_global_zero) == (0, 1, 0, 1, True)
    other = Rank3Of4(precision=Precision("fp32"))
    assert (other.dp_rank, other.dp_size, other.is_global_zero) == (3, 4, False)


def test_the_members_the_table_names_exist_and_read_model_and_optimizer() -> None:
    for member in ("place_for_training", "place_for_inference", "eval_module", "setup_inference", "discard_step",
                   "weights_finite", "step_metrics", "resolved_options", "engine_held"):
        assert f"`{member}" in DOC, member
        assert hasattr(Strategy, member), member
    strategy = SingleDeviceStrategy({"device": "cpu"}, precision=Precision("fp32"))
    model = torch.nn.Linear(2, 2)
    strategy.place_for_training(model, lambda params: torch.optim.SGD([p for _, p in params], lr=0.1), strategy.settings)
    assert strategy.model is model and strategy.eval_module is model and strategy.optimizer is not None
    model.weight.grad = torch.ones_like(model.weight)
    strategy.discard_step()                          # drops the step's gradients
    assert model.weight.grad is None
    assert strategy.weights_finite()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert not strategy.weights_finite()
    settings = StepSettings(model_name="linear")
    placed = strategy.place_for_inference(torch.nn.Linear(2, 2).train(), settings)
    assert not placed.training and strategy.settings is settings  # kept, as setup keeps its settings


def test_launcher_env_gives_typed_attributes() -> None:
    env = launcher_env("acme.x", environ={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                                          "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (1, 2, 1, "127.0.0.1", 29500)


class Seen:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl
    def deepseek_evaluate(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        self.records.append(dict(metrics, argument=step))


def test_evaluate_hook_metrics_hold_the_step(tmp_path: Path) -> None:
    hooks = (Path(__file__).resolve().parents[3] / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert 'it also holds ``"step"``' in hooks or 'it also holds `"step"`' in hooks
    seen = Seen()
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(seen, dist="deepseek-seen").status == "ok"
    config = config_from_dict({
        "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
        "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2},
        "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}, host=host)
    Trainer(config, run_dir=tmp_path / "run", host=host).fit()
    assert [(r["step"], r["argument"]) for r in seen.records] == [(0, 0), (2, 2)]
    assert all(type(r["step"]) is int and "val_loss" in r for r in seen.records)


def _loss(output: Any) -> torch.Tensor:
    return output["loss"] if isinstance(output, dict) else output


def test_gpt_weighs_tokens_as_the_padding_note_says() -> None:
    """docs/plugins.md section 11 "Padding for a GPT": the GPT ignores -100 targets and declares
    them in loss_items, so the micro-batches' weights make its halves' token means the batch's
    token mean; packed rows count alike, so weighing by rows (pipeline) stays exact for them."""
    import deepseek
    from deepseek.training.loss_items import item_weights

    assert "**Padding for a GPT.**" in DOC and "and declare `loss_items` (section 10)" in DOC
    torch.manual_seed(0)
    model = deepseek.create_model("tiny").eval()
    items = item_weights(model, "model 'tiny'")
    assert items is not None
    ids = torch.randint(1, 256, (2, 8))
    targets = ids.roll(-1, dims=1)
    targets[1, 2:] = -100                               # row 0 counts 8 tokens, row 1 two
    batch = {"input_ids": ids, "targets": targets}
    halves = [{k: v[i:i + 1] for k, v in batch.items()} for i in (0, 1)]
    assert items.step_weights(batch, halves, 1, 1) == [0.8, 0.2]
    assert items.uneven_rows(batch, "batch") == (8, 2)
    with torch.no_grad():
        whole = _loss(model(**batch))
        first, second = (_loss(model(**half)) for half in halves)
    assert torch.allclose(whole, 0.8 * first + 0.2 * second, atol=1e-5)   # the mean over the 10 tokens
    assert not torch.allclose(whole, (first + second) / 2, atol=1e-3)      # what weighing by rows gave
    packed = {"input_ids": ids, "targets": ids.roll(-1, dims=1)}
    assert items.uneven_rows(packed, "batch") is None
    assert items.step_weights(packed, [{k: v[i:i + 1] for k, v in packed.items()} for i in (0, 1)], 1, 1) == [0.5, 0.5]
