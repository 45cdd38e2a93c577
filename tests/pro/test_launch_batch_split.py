"""``deepseek launch`` refuses a batch that does not split over the data-parallel ranks before any
process starts: one line, exit 2, no worker (docs/distributed.md, "Checked before any process
starts"). The rule is core's ``check_batch_split``, the one every rank runs at set-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
from hostile_cli import invoke  # noqa: E402

from deepseek.config.load import load_config  # noqa: E402
from deepseek.errors import ConfigError  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402
from deepseek.training.engine import check_batch_split  # noqa: E402
from deepseek_pro.launch import runner  # noqa: E402
from deepseek_pro.launch.cli import validate_train  # noqa: E402

TINY = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=2",
        "--set", "model.max_seq_len=32", "--set", "data.seq_len=16"]
COMMON = {"world_size": 2, "nproc_per_node": 2, "cuda_devices": 0, "timeout": 300.0}


@pytest.fixture(scope="module")
def pro_host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))


@pytest.fixture
def no_workers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every launch the launcher would start (none may start)."""
    started: list[Any] = []
    monkeypatch.setattr(runner, "run", lambda spec: started.append(spec))
    return started


def test_the_rule_names_ranks_accumulation_and_the_multiple() -> None:
    config = load_config(None, ["data.batch_size=12", "train.grad_accum=4"])
    check_batch_split(config, 1)
    check_batch_split(config, 3)  # 4 rows per rank, one per micro-batch
    with pytest.raises(ConfigError, match=r"^data\.batch_size: 12 rows must split evenly over 2 data-parallel "
                                          r"rank\(s\) x train\.grad_accum=4; use a multiple of 8$"):
        check_batch_split(config, 2)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed"])
def test_data_parallel_strategies_check_the_split_before_launch(strategy: str, pro_host: PluginHost) -> None:
    args = ["--strategy", strategy, *TINY]
    with pytest.raises(ConfigError, match=r"^data\.batch_size: 33 rows must split evenly over 2 data-parallel "
                                          r"rank\(s\) x train\.grad_accum=1; use a multiple of 2$"):
        validate_train([*args, "--set", "data.batch_size=33"], host=pro_host, **COMMON)
    with pytest.raises(ConfigError, match=r"over 2 data-parallel rank\(s\) x train\.grad_accum=4; use a multiple of 8$"):
        validate_train([*args, "--set", "data.batch_size=12", "--set", "train.grad_accum=4"], host=pro_host, **COMMON)
    validate_train([*args, "--set", "data.batch_size=16", "--set", "train.grad_accum=4"], host=pro_host, **COMMON)


def test_strategies_without_data_parallel_ranks_are_not_held_to_it(pro_host: PluginHost) -> None:
    """``tp`` and ``pipeline`` give every rank the whole batch: 33 rows do not need to split over 2."""
    validate_train(["--strategy", "tp", *TINY, "--set", "data.batch_size=33"], host=pro_host, **COMMON)
    validate_train(["--strategy", "pipeline", *TINY, "--set", "data.batch_size=34",
                    "--set", "strategy.microbatches=2"], host=pro_host, **COMMON)


def test_launch_prints_one_line_and_starts_no_worker(
    pro_host: PluginHost, no_workers: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = invoke(["launch", "-n", "2", "--", "train", "--strategy", "ddp", *TINY, "--set", "data.batch_size=33",
                   "--run-dir", "run"], pro_host)
    assert done.code == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: data.batch_size: 33 rows must split evenly over 2 data-parallel rank(s) x train.grad_accum=1; "
        "use a multiple of 2"]
    assert no_workers == []
    assert list(tmp_path.iterdir()) == []


def test_hybrid_checks_the_split_over_its_replicas(pro_host: PluginHost) -> None:
    """Its micro-batch count may split the rows while train.grad_accum does not (6 rows over 2
    replicas: 3 each, in 3 micro-batches but not 2 accumulation steps): each rank's engine would
    refuse that at set-up, so the launcher refuses it first."""
    args = ["--strategy", "hybrid", *TINY, "--set", "strategy.pp_size=2", "--set", "data.batch_size=6",
            "--set", "train.grad_accum=2", "--set", "strategy.microbatches=3"]
    world = {**COMMON, "world_size": 4, "nproc_per_node": 4}
    with pytest.raises(ConfigError, match=r"^data\.batch_size: 6 rows must split evenly over 2 data-parallel rank\(s\) "
                                          r"x train\.grad_accum=2; use a multiple of 4$"):
        validate_train(args, host=pro_host, **world)
    validate_train([*args, "--set", "data.batch_size=12", "--set", "strategy.microbatches=2"], host=pro_host, **world)
