"""A model declaring ``TrainableModel.skips_parameters`` (experts a batch routes no row to get no
gradient; ``_skips_fit.py``) against ``single``: ``ddp`` (``find_unused_parameters``) and ``fsdp``
leave such a parameter alone as torch's optimizers do and train the same weights; ``deepspeed``
would step it as if its gradient were zero (stages 1 and 2: losses 1e-3 to 5e-3 off after 6 steps,
weights up to 0.12; stage 3 hangs when ranks run different experts), so it refuses the model, by
``deepseek launch`` before any process starts and by each rank at set-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import deepseek_cli, run_torchrun
from _skips_fit import RoutedExperts, train

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

SCRIPT = Path(__file__).with_name("_skips_fit.py")
REFUSED = ("model {model!r}: declares skips_parameters (some steps leave trainable parameters without a gradient), "
           "but strategy 'deepspeed' steps every parameter in every step, one without a gradient as if it were zero "
           "(Adam's moments and weight decay move it, where single leaves it alone); use ")
STRATEGIES = {"ddp": {"name": "ddp", "find_unused_parameters": True}, "fsdp": {"name": "fsdp"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("skips")
    run_torchrun([str(SCRIPT), str(out), *(json.dumps(t) for t in STRATEGIES.values())], timeout=600)
    single_losses, single_weights = train({"name": "single"}, out / "single")
    got = {"single": {"losses": single_losses, "weights": single_weights}}
    for i, name in enumerate(STRATEGIES):
        got[name] = json.loads((out / f"{i}.json").read_text())
    return got


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_parameters_without_a_gradient_are_left_alone_as_by_single(runs: dict[str, dict], strategy: str) -> None:
    single, got = runs["single"], runs[strategy]
    assert len(got["losses"]) == len(single["losses"]) == 6
    assert got["losses"] == pytest.approx(single["losses"], rel=0, abs=1e-6)
    assert sorted(got["weights"]) == sorted(single["weights"])
    for name, values in single["weights"].items():
        assert got["weights"][name] == pytest.approx(values, rel=0, abs=1e-6), name


def test_deepspeed_refuses_the_model_at_set_up_on_every_rank(tmp_path: Path) -> None:
    table = json.dumps({"name": "deepspeed", "stage": 2})
    out = deepseek_cli("launch", "-n", "2", "--", "run", str(SCRIPT), str(tmp_path), table, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "declares skips_parameters" in line]
    assert lines and all(REFUSED.format(model="script") in line for line in lines), out.stderr[-3000:]
    assert not (tmp_path / "run-0" / "metrics.jsonl").exists()


class _Experts:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.experts", RoutedExperts, description="routed experts")


def _config(strategy: dict, host: PluginHost):  # noqa: ANN202
    return config_from_dict({"model": {"name": "acme.experts"}, "strategy": strategy,
                             "data": {"batch_size": 8}, "precision": {"dtype": "fp32"}}, host=host)


def test_deepseek_launch_refuses_it_before_any_process_starts() -> None:
    from deepseek_pro.launch.checks import check_launch

    host = PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))
    assert host.register_plugin(_Experts(), dist="acme-experts").status == "ok"
    with pytest.raises(UsageError) as info:
        check_launch(_config({"name": "deepspeed", "stage": 1}, host), 2, cuda_devices=0, nproc_per_node=2, host=host)
    assert str(info.value).startswith(REFUSED.format(model="acme.experts"))
    assert "ddp" in str(info.value).split("; use ")[1] and "fsdp" in str(info.value).split("; use ")[1]
    for strategy in STRATEGIES.values():
        check_launch(_config(strategy, host), 2, cuda_devices=0, nproc_per_node=2, host=host)
