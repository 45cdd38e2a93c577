"""Pro's strategies declare where their ranks compute before any process starts
(``StrategyRules.device_type``, what ``deepseek tune``'s system tuner estimates a trial for): from
``strategy.backend``, as ``DistributedStrategy.setup_environment`` picks the device; the checks made
before launch (``resolved_device_type``) read the same rule. ``backend`` is a key of
``DistributedOptions``, which every ``DistributedStrategy``'s ``Options`` must extend: checked where
the class is defined."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.config.components import load_checked
from deepseek.config.validate import build_dataclass
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.settings import PluginSettings
from deepseek.training.mixed_precision import Precision
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.ddp import DDPOptions, DDPStrategy

PRO_STRATEGIES = sorted(c.name for c in get_host().components("strategy") if c.dist == "deepseek-pro")


def test_every_pro_strategy_is_checked() -> None:
    assert {"ddp", "fsdp", "deepspeed", "pipeline", "hybrid", "tp"} <= set(PRO_STRATEGIES)


@pytest.mark.parametrize("name", PRO_STRATEGIES)
def test_device_type_follows_the_backend(name: str) -> None:
    """gloo's ranks compute on the CPU, NCCL's on their CUDA device; ``auto`` picks at set-up."""
    cls = get_host().resolve("strategy", name).load()
    kinds = {backend: cls.device_type(build_dataclass(cls.Options, {"backend": backend}, path="strategy"))
             for backend in ("gloo", "nccl", "auto")}
    assert kinds == {"gloo": "cpu", "nccl": "cuda", "auto": None}, name


@pytest.mark.parametrize("name", PRO_STRATEGIES)
@pytest.mark.parametrize("cuda", [False, True])
def test_the_checks_device_is_the_one_the_backend_runs_on(name: str, cuda: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What the checks made before any process starts read (``resolved_device_type``: DeepSpeed's
    ``check_launch``, ``sync_batchnorm``'s) is the device of the process group ``backend`` joins at
    set-up, for every backend, with and without CUDA: the two rules never diverge."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cls = get_host().resolve("strategy", name).load()
    for backend in ("gloo", "nccl", "auto"):
        strategy = cls({"backend": backend}, precision=Precision("fp32"))
        device = cls.resolved_device_type(strategy.options, cuda_available=cuda)
        assert device == {"gloo": "cpu", "nccl": "cuda"}[strategy.backend], (name, backend, cuda)


def test_a_distributed_strategys_options_must_extend_distributed_options(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Options without ``timeout_s`` / ``backend`` are refused where the class is defined, in one
    line naming it, not at set-up as an AttributeError; a registered one's lazy target is that
    strategy's PluginError when it loads."""

    @dataclass(frozen=True)
    class Loose:
        backend: str = "gloo"

    with pytest.raises(TypeError) as info:
        class Stray(DDPStrategy):
            Options = Loose
    line = str(info.value)
    assert line.startswith(f"{__name__}.test_a_distributed_strategys_options_must_extend_distributed_options."
                           "<locals>.Stray.Options: <class ") and "\n" not in line
    assert "does not subclass deepseek_pro.strategies.base.DistributedOptions" in line
    with pytest.raises(TypeError, match=r"\.Odd\.Options: None does not subclass"):
        class Odd(DistributedStrategy):
            Options = None

    @dataclass(frozen=True)
    class Wider(DDPOptions):
        extra: int = 1

    class Kept(DDPStrategy):  # inherits DDPOptions
        pass

    class Widened(DDPStrategy):
        Options = Wider

    assert (Kept.Options, Widened.device_type(Wider(backend="gloo"))) == (DDPOptions, "cpu")

    (tmp_path / "acme_loose.py").write_text(
        "from dataclasses import dataclass\n"
        "from deepseek_pro.strategies.ddp import DDPStrategy\n\n"
        "@dataclass(frozen=True)\nclass LooseOptions:\n    timeout_s: float = 60.0\n\n"
        "class LooseStrategy(DDPStrategy):\n    Options = LooseOptions\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_loose", raising=False)

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
            register("acme.loose", "acme_loose:LooseStrategy")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-loose", version="0.1").status == "ok"
    with pytest.raises(PluginError) as loaded:
        load_checked("strategy", host.resolve("strategy", "acme.loose"))
    assert str(loaded.value).startswith("strategy 'acme.loose' from acme-loose 0.1 could not be loaded from "
                                        "'acme_loose:LooseStrategy': TypeError: acme_loose.LooseStrategy.Options: "
                                        "<class 'acme_loose.LooseOptions'> does not subclass "
                                        "deepseek_pro.strategies.base.DistributedOptions")


def test_deepseek_launch_reads_the_strategys_device_rule() -> None:
    """``deepseek launch``'s one-process-per-GPU check asks the strategy where its ranks compute
    (``resolved_device_type``), not the backend's name: a strategy whose ranks sit on their CUDA
    device under gloo too is held to the visible devices; ddp under gloo is not."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek_pro.launch.checks import check_launch

    class OnCuda(DDPStrategy):
        @classmethod
        def device_type(cls, options: DDPOptions) -> str:
            return "cuda"

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
            register("acme.on_cuda", OnCuda)

    host = PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))
    assert host.register_plugin(Plugin(), dist="acme-on-cuda").status == "ok"

    def launch(name: str, cuda_devices: int) -> None:
        config = config_from_dict({"strategy": {"name": name, "backend": "gloo"}, "data": {"batch_size": 8},
                                   "precision": {"dtype": "fp32"}}, host=host)
        check_launch(config, 4, cuda_devices=cuda_devices, nproc_per_node=4, host=host)

    launch("ddp", 2)
    with pytest.raises(ConfigError) as info:
        launch("acme.on_cuda", 2)
    assert str(info.value) == ("launch: -n 4 processes per node but only 2 CUDA device(s) are visible; "
                               "use -n 2 or fewer (one process per GPU)")
    with pytest.raises(ConfigError) as info:
        launch("acme.on_cuda", 0)
    assert str(info.value) == (  # not "use 'gloo' or 'auto'": it is on CUDA under those too
        "strategy.name: 'acme.on_cuda' computes on CUDA devices under every backend (its device_type) and none is "
        "visible; launch it where CUDA devices are visible, or use a strategy whose ranks run on the CPU "
        "(ddp with strategy.backend = 'gloo')")
    with pytest.raises(ConfigError) as info:  # pro's own strategies: the backend's line as before
        config = config_from_dict({"strategy": {"name": "ddp", "backend": "nccl"}, "data": {"batch_size": 8},
                                   "precision": {"dtype": "fp32"}}, host=host)
        check_launch(config, 1, cuda_devices=0, nproc_per_node=1, host=host)
    assert str(info.value) == "strategy.backend: 'nccl' needs CUDA devices and none is visible; use 'gloo' or 'auto'"


def test_a_strategy_on_cuda_under_gloo_alone_is_told_the_backend_that_runs_it_on_the_cpu() -> None:
    """A strategy whose ranks sit on CUDA under gloo but on the CPU under auto without CUDA is
    told to use auto (the backend that puts it on the CPU), not gloo, which it already uses."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek_pro.launch.checks import check_launch

    class GlooOnCuda(DDPStrategy):
        @classmethod
        def device_type(cls, options: DDPOptions) -> str | None:
            return "cuda" if options.backend == "gloo" else super().device_type(options)

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
            register("acme.gloo_on_cuda", GlooOnCuda)

    host = PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))
    assert host.register_plugin(Plugin(), dist="acme-gloo-on-cuda").status == "ok"
    config = config_from_dict({"strategy": {"name": "acme.gloo_on_cuda", "backend": "gloo"},
                               "data": {"batch_size": 8}, "precision": {"dtype": "fp32"}}, host=host)
    with pytest.raises(ConfigError) as info:
        check_launch(config, 1, cuda_devices=0, nproc_per_node=1, host=host)
    assert str(info.value) == ("strategy.backend: strategy 'acme.gloo_on_cuda' computes on CUDA devices under 'gloo' "
                               "(its device_type) and none is visible; use 'auto'")


class _GlooOnCuda(DDPStrategy):
    """Its ranks compute on their CUDA device under gloo (gloo's CUDA collectives)."""

    @classmethod
    def device_type(cls, options: DDPOptions) -> str | None:
        return "cuda" if options.backend == "gloo" else super().device_type(options)


def test_set_up_places_the_ranks_on_the_device_the_strategy_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """``setup_environment`` picks the device by ``resolved_device_type``, the rule the checks
    before launch read, not by the backend's name: a strategy declaring CUDA under gloo, run by
    torchrun directly where no CUDA device is visible, is refused in one line before it joins a
    group (it was put on the CPU without a word); pro's own strategies under gloo stay on the CPU."""
    import torch.distributed as dist
    from _prohelpers import one_rank_group

    from deepseek.errors import UsageError

    one_rank_group(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    strategy = _GlooOnCuda({"backend": "gloo"}, precision=Precision("fp32"))
    with pytest.raises(UsageError) as info:
        strategy.setup_environment()
    assert str(info.value) == ("strategy 'ddp' computes on CUDA devices (its device_type) and none is visible to "
                               "rank 0; run it where CUDA devices are")
    assert not dist.is_initialized()
    plain = DDPStrategy({"backend": "gloo"}, precision=Precision("fp32"))
    plain.setup_environment()
    try:
        assert plain.device == torch.device("cpu")
    finally:
        plain.teardown()


@pytest.mark.parametrize("base", ["ddp", "tp"])
def test_a_device_type_that_is_no_device_is_the_plugins_bug_at_launch(base: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin strategy whose ``device_type`` answers "gpu" (no device type) is refused by
    ``deepseek launch`` in one line naming it and its distribution, exit 1, before any worker starts:
    not read as CUDA, nor as neither device. ddp's ``check_config`` reads the answer when the config
    loads; tp's first read is the launch's device rule."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
    from hostile_cli import invoke

    from deepseek_pro.launch import runner
    from deepseek_pro.strategies.tp import TPStrategy

    class OnGpu(DDPStrategy if base == "ddp" else TPStrategy):  # type: ignore[misc]
        @classmethod
        def device_type(cls, options: DDPOptions) -> str:
            return "gpu"

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
            register("acme.on_gpu", OnGpu)

    host = PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))
    assert host.register_plugin(Plugin(), dist="acme-on-gpu").status == "ok"
    started: list[object] = []
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: started.append(args))
    monkeypatch.chdir(tmp_path)
    done = invoke(["launch", "-n", "1", "--", "train", "--strategy", "acme.on_gpu", "--set", "model.name=tiny",
                   "--set", "data.batch_size=8", "--run-dir", "run"], host)
    assert done.code == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: strategy 'acme.on_gpu' (acme-on-gpu"), lines
    assert ": device_type() returned 'gpu'; it must return 'cpu' or 'cuda' where the options fix the device, or None " \
           "where the strategy picks it at set-up (docs/plugins.md section 12); a bug in the plugin" in lines[0], lines
    assert started == [] and list(tmp_path.iterdir()) == []
