"""``deepseek tune``'s system tuner without a study process: the bench arguments a trial hands
``bench train`` (precision, optimizer, attention, strategy options, device), its memory estimate,
and what it looks up of the config's components (a plugin dataset's sequence length, a plugin
strategy's device and memory row, the plugins' preference). The search space itself:
test_tune_space.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from deepseek.data.dataset import Dataset
from deepseek.training.single import SingleDeviceStrategy, SingleOptions


@pytest.mark.parametrize("master", [True, False])
def test_a_system_trial_measures_the_precision_it_was_given(master: bool) -> None:
    """Every setting of the trial's config reaches `bench train`, master weights included."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                               "precision": {"dtype": "bf16", "master_weights": master, "fp32_residual": False},
                               "strategy": {"name": "single", "device": "cpu"}})
    args = SystemTuner(SystemTunerOptions()).bench_args(config, "bench.json")
    assert ("--master-weights" if master else "--no-master-weights") in args
    assert "--no-fp32-residual" in args and args[args.index("--precision") + 1] == "bf16"


def test_a_system_trial_benches_the_optimizer_and_attention_of_its_config() -> None:
    """`bench train` measures the trial's optimizer (its own and shared keys, groups included), its
    attention kernel, compile scope and gradient clip, not bench's defaults (adamw, auto, blocks,
    1.0): the optimizer table bench builds from the arguments is the trial config's."""
    from deepseek.bench._train_config import BenchSettings, bench_config
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                               "train": {"attention": "math", "compile_scope": "model", "grad_clip": 0.25},
                               "optimizer": {"name": "lion", "weight_decay": 0.05,
                                             "groups": [{"match": "*.bias", "weight_decay": 0.0}]},
                               "strategy": {"name": "single", "device": "cpu"}})
    args = SystemTuner(SystemTunerOptions()).bench_args(config, "bench.json")
    assert (args[args.index("--attention") + 1], args[args.index("--compile-scope") + 1]) == ("math", "model")
    from deepseek.bench.train import train_command

    clip = train_command.make_context("train", args[2:], resilient_parsing=True).params["grad_clip"]
    assert bench_config(BenchSettings(model="tiny", seq=32, device="cpu", grad_clip=clip), None).train.grad_clip == 0.25
    items = tuple(args[i + 1] for i, arg in enumerate(args) if arg == "--optimizer-option")
    assert "weight_decay=0.05" in items
    benched = bench_config(BenchSettings(model="tiny", seq=32, device="cpu", optimizer=args[args.index("--optimizer") + 1],
                                         optimizer_options=items), None)
    assert benched.to_dict()["optimizer"] == config.to_dict()["optimizer"]


@dataclass(frozen=True)
class _BucketedOptions(SingleOptions):
    buckets: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0


class _Bucketed(SingleDeviceStrategy):
    Options = _BucketedOptions


def test_a_system_trial_hands_bench_its_strategys_table_options_as_toml() -> None:
    """A strategy option holding a table reaches `bench train` as the TOML value
    `--strategy-option` reads (core's toml_value), so the strategy table bench builds is the
    trial's (JSON's `{"embed": 2}` is no TOML value: it was read back as a string)."""
    from _hosts import enterprise_host, registering

    from deepseek.bench._train_config import BenchSettings, bench_config
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    host = enterprise_host((registering("deepseek_register_strategies", {"acme.bucketed": _Bucketed},
                                        {"memory_rows": ["single"]}), "deepseek-acme"))
    config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                               "strategy": {"name": "acme.bucketed", "device": "cpu",
                                            "buckets": {"embed": 2, "blocks": 8}, "scale": 0.5}},
                              host=host)
    args = SystemTuner(SystemTunerOptions(), host=host).bench_args(config, "bench.json")
    items = tuple(args[i + 1] for i, arg in enumerate(args) if arg == "--strategy-option")
    benched = bench_config(BenchSettings(model="tiny", seq=32, device="cpu", strategy="acme.bucketed",
                                         strategy_options=items), host)
    assert benched.to_dict()["strategy"] == config.to_dict()["strategy"]


def test_a_system_trials_memory_estimate_counts_master_weights_and_accumulation() -> None:
    """The tuner's fit check asks the advisor about the config as given: master weights hold
    16 B per parameter, 20 with an fp32 gradient sum under accumulation (docs/advise.md)."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    def total(master: bool, accum: int, optimizer: str = "adamw") -> int:
        config = config_from_dict({"model": {"name": "small"}, "data": {"seq_len": 64, "batch_size": 8},
                                   "train": {"grad_accum": accum}, "optimizer": {"name": optimizer},
                                   "precision": {"dtype": "bf16", "master_weights": master, "fp32_residual": False},
                                   "strategy": {"name": "single", "device": "cpu"}})
        return SystemTuner(SystemTunerOptions(device_memory="80GB")).fit(config).total

    params = 86_039_040  # small's parameters (deepseek.advise.shapes.shape_from_config)
    # + the fp32 gradient sum (4 B/param; the halved micro-batch's activations are ~1% of it at seq 64)
    assert total(True, 2) - total(True, 1) == pytest.approx(4 * params, rel=0.02)
    assert total(False, 1) - total(True, 1) == pytest.approx(2 * params, rel=0.02)  # autocast's fp32 gradients
    # the run's optimizer: sgd keeps one fp32 buffer per parameter where adamw keeps two
    assert total(False, 1) - total(False, 1, "sgd") == pytest.approx(4 * params, rel=0.02)


def test_the_system_tuner_refuses_data_of_no_token_sequences() -> None:
    """`bench train` measures token sequences of the data's declared length: a dataset whose
    Dataset.sequence_length answers None (the multimodal digits) is refused at check_config, naming
    the dataset and the declaration, not a key of core's data; a token dataset passes."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    tuner = SystemTuner(SystemTunerOptions())
    tuner.check_config(config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8}}))
    digits = config_from_dict({"model": {"name": "tiny"}, "data": {"name": "multimodal.digits", "batch_size": 8}})
    with pytest.raises(ConfigError, match=r"^data\.name: the system tuner needs token sequences; 'multimodal\.digits' "
                                          r"declares no sequence length \(Dataset\.sequence_length answers None\); "
                                          r"use token data such as 'text' with data\.seq_len$"):
        tuner.check_config(digits)


@dataclass(frozen=True)
class _BlockOptions:
    block_size: int = 64
    """Tokens per row: this plugin's name for what core's token data calls seq_len."""


@dataclass(frozen=True)
class _SeqOptions:
    seq_len: int = 48


class _Rows(Dataset):
    """A plugin's token data (the tuner reads only its class)."""

    def __next__(self) -> Any:
        raise NotImplementedError

    def validation_batches(self, limit: int) -> list[Any]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class _BlockRows(_Rows):
    Options = _BlockOptions

    @classmethod
    def sequence_length(cls, options: Any) -> int | None:
        return int(options.block_size)


class _SeqRows(_Rows):
    Options = _SeqOptions  # the conventional key: the base class's sequence_length reads it


class _TextLength(_Rows):
    Options = _BlockOptions

    @classmethod
    def sequence_length(cls, options: Any) -> Any:
        return str(options.block_size)


def test_the_system_tuner_reads_the_sequence_length_a_plugin_dataset_declares() -> None:
    """Dataset.sequence_length (docs/plugins.md section 11): a plugin's token data keeping its row
    length under a key of its own declares it, and `bench train` measures at that length; one with
    the conventional `seq_len` key needs no declaration; an answer that is no whole number is one
    PluginError naming the dataset."""
    from _hosts import enterprise_host, registering

    from deepseek.config.load import config_from_dict
    from deepseek.errors import PluginError
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    host = enterprise_host((registering("deepseek_register_datasets", {"acme.blocks": _BlockRows,
                                                                       "acme.seqs": _SeqRows,
                                                                       "acme.text": _TextLength}), "deepseek-acme"))
    tuner = SystemTuner(SystemTunerOptions(), host=host)

    def seq(data: dict[str, Any]) -> str:
        config = config_from_dict({"model": {"name": "tiny"}, "data": {**data, "batch_size": 8},
                                   "strategy": {"name": "single", "device": "cpu"}}, host=host)
        tuner.check_config(config)
        args = tuner.bench_args(config, "bench.json")
        return args[args.index("--seq") + 1]

    assert seq({"name": "acme.blocks", "block_size": 24}) == "24"
    assert seq({"name": "acme.seqs", "seq_len": 40}) == "40"
    assert seq({"seq_len": 32}) == "32"  # core's text data
    with pytest.raises(PluginError, match=r"acme\.text.*: sequence_length\(\) returned '64'; return the tokens per "
                                          r"row of its batches \(a whole number >= 1\)"):
        seq({"name": "acme.text"})


class _Spread(SingleDeviceStrategy):
    """Another distribution's `acme.s`: one process per device, as a launcher strategy is."""

    needs_launcher = True

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        return "ddp"


def _provider(datasets: dict[str, Any], strategies: dict[str, Any]) -> object:
    """A plugin registering `datasets` and `strategies` (one distribution's components)."""
    from deepseek import hookimpl

    class Provider:
        @hookimpl
        def deepseek_register_datasets(self, register: Any) -> None:
            for name, target in datasets.items():
                register(name, target, description=name)

        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            for name, target in strategies.items():
                register(name, target, description=name, declares={"memory_rows": ["single", "ddp"]})

    return Provider()


def test_the_system_tuner_resolves_the_configs_components_with_its_plugins_prefer() -> None:
    """Two distributions register a dataset `acme.rows` and a strategy `acme.s`. The loader records
    the preferred ones qualified (`deepseek-acme:acme.rows`); a Config naming them bare (built in
    Python) is looked up by the system tuner as the run looks it up (training.build.run_host: the
    host with the config's `[plugins] prefer`), so the sequence length, the launcher and the
    advisor's row are the preferred plugin's, and `bench train`'s child, which reads no config,
    gets the same precedence in DEEPSEEK_PLUGIN_PREFER."""
    import dataclasses

    from _hosts import enterprise_host

    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    host = enterprise_host((_provider({"acme.rows": _BlockRows}, {"acme.s": _Placed}), "deepseek-acme"),
                           (_provider({"acme.rows": _SeqRows}, {"acme.s": _Spread}), "deepseek-other"))
    tuner = SystemTuner(SystemTunerOptions(nproc=2), host=host)

    def trial(prefer: str, data: dict[str, Any]) -> tuple[list[str], str | None, dict[str, Any]]:
        config = config_from_dict({"model": {"name": "tiny"}, "data": {"name": "acme.rows", **data, "batch_size": 8},
                                   "strategy": {"name": "acme.s"}, "plugins": {"prefer": [prefer]}}, host=host)
        assert (config.data.name, config.strategy.name) == (f"{prefer}:acme.rows", f"{prefer}:acme.s")
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, name="acme.rows"),
                                     strategy=dataclasses.replace(config.strategy, name="acme.s"))
        tuner.check_config(config)
        return tuner.bench_args(config, "bench.json"), tuner.fit(config).row, tuner.bench_env(config)

    args, row, env = trial("deepseek-acme", {"block_size": 24})
    assert (args[:2], args[args.index("--seq") + 1], args[args.index("--batch") + 1]) == (["bench", "train"], "24", "8")
    assert row == "single" and env["DEEPSEEK_PLUGIN_PREFER"] == "deepseek-acme"
    args, row, env = trial("deepseek-other", {"seq_len": 40})
    assert (args[:4], args[args.index("--seq") + 1], args[args.index("--batch") + 1]) == (
        ["launch", "-n", "2", "--"], "40", "4")
    assert row == "ddp" and env["DEEPSEEK_PLUGIN_PREFER"] == "deepseek-other"


@dataclass(frozen=True)
class _PlacedOptions:
    placement: str = "host"
    """Where this plugin's strategy computes: its own key, not single's `device`."""


class _Placed(SingleDeviceStrategy):
    Options = _PlacedOptions

    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        return "cpu" if options.placement == "host" else None


@dataclass(frozen=True)
class _CardOptions:
    device: str = "host"
    """This plugin's own `device` key: "host" or an accelerator card's label, not bench's --device."""


class _Card(SingleDeviceStrategy):
    Options = _CardOptions

    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        return "cpu" if options.device == "host" else "cuda"


def test_a_system_trial_benches_on_the_device_its_strategy_declares() -> None:
    """`bench train --device` comes from StrategyRules.device_type, not from a strategy key named
    `device`: a plugin strategy pinned to the CPU by a key of its own gets `--device cpu`, one whose
    `device` key means something else gets it as a --strategy-option; single's device reaches bench
    whole (`cuda:1` too), and bench refuses a --device contradicting it in one line."""
    from _hosts import enterprise_host, registering

    from deepseek.bench._train_config import BenchSettings, bench_config
    from deepseek.config.load import config_from_dict
    from deepseek.errors import UsageError
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    host = enterprise_host((registering("deepseek_register_strategies", {"acme.placed": _Placed, "acme.card": _Card}),
                            "deepseek-acme"))
    tuner = SystemTuner(SystemTunerOptions(), host=host)

    def bench(strategy: dict[str, Any]) -> tuple[str | None, list[str]]:
        config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                                   "strategy": strategy}, host=host)
        args = tuner.bench_args(config, "bench.json")
        return (args[args.index("--device") + 1] if "--device" in args else None,
                [args[i + 1] for i, arg in enumerate(args) if arg == "--strategy-option"])

    assert bench({"name": "acme.placed"}) == ("cpu", ['placement="host"'])
    assert bench({"name": "acme.placed", "placement": "device"}) == (None, ['placement="device"'])
    assert bench({"name": "acme.card"}) == ("cpu", ['device="host"'])
    assert bench({"name": "acme.card", "device": "card0"}) == (None, ['device="card0"'])
    assert bench({"name": "single", "device": "cpu"}) == ("cpu", ['device="cpu"', 'sync_batchnorm=false'])
    assert bench({"name": "single", "device": "cuda:1"}) == (None, ['device="cuda:1"', 'sync_batchnorm=false'])

    def single(device: str, option: str) -> str:
        return bench_config(BenchSettings(device=device, strategy_options=(f"device={option}",)), host).strategy.options.device

    assert (single("cpu", '"cpu"'), single("auto", '"cuda:1"')) == ("cpu", "cuda:1")
    with pytest.raises(UsageError, match=r"^--strategy-option device: 'cuda' contradicts --device cpu; give single's "
                                         r"device once$"):
        single("cpu", '"cuda"')


def test_the_system_tuners_estimate_is_for_the_device_the_strategy_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """StrategyRules.device_type: a strategy pinned to the CPU (single's `device = "cpu"`, or a
    plugin's own key) is estimated for the CPU (fp32 under precision `auto`, the CPU overhead)
    on a machine with a GPU; one that picks at set-up, for the GPU."""
    from _hosts import enterprise_host, registering

    import deepseek.advise.hardware as hardware
    from deepseek.config.load import config_from_dict
    from deepseek.training.single import SingleOptions
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    assert [SingleDeviceStrategy.device_type(SingleOptions(device=d)) for d in ("auto", "cpu", "cuda:1")] == \
        [None, "cpu", "cuda"]
    monkeypatch.setattr(hardware, "detect_devices", lambda **_: hardware.Devices(1, 80 * 1024**3, "GPU", "test"))
    host = enterprise_host((registering("deepseek_register_strategies", {"acme.placed": _Placed},
                                                 {"memory_rows": ["single"]}), "deepseek-acme"))
    tuner = SystemTuner(SystemTunerOptions(), host=host)

    def total(strategy: dict[str, Any]) -> int:
        config = config_from_dict({"model": {"name": "small"}, "data": {"seq_len": 64, "batch_size": 8},
                                   "strategy": strategy}, host=host)
        return tuner.fit(config).total

    on_cpu = total({"name": "single", "device": "cpu"})
    assert total({"name": "acme.placed"}) == on_cpu
    assert total({"name": "acme.placed", "placement": "device"}) == total({"name": "single"}) != on_cpu


def test_the_system_tuner_estimates_a_pro_strategy_on_the_device_its_backend_picks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pro's strategies declare their device from ``strategy.backend``: gloo's ranks compute on
    the CPU, so on a machine with a GPU a ddp trial with backend gloo is estimated as one with
    backend auto on a machine without (fp32 under precision `auto`, the CPU overhead); nccl's as
    auto's on the GPU."""
    from _hosts import enterprise_host

    import deepseek.advise.hardware as hardware
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    host = enterprise_host()
    tuner = SystemTuner(SystemTunerOptions(), host=host)

    def total(gpus: int, backend: str) -> int:
        monkeypatch.setattr(hardware, "detect_devices", lambda **_: hardware.Devices(gpus, 80 * 1024**3, "GPU", "t"))
        config = config_from_dict({"model": {"name": "small"}, "data": {"seq_len": 64, "batch_size": 8},
                                   "strategy": {"name": "ddp", "backend": backend}}, host=host)
        return tuner.fit(config).total

    on_cpu = total(0, "auto")
    assert total(1, "gloo") == on_cpu
    assert total(1, "nccl") == total(1, "auto") != on_cpu


class _Unplaced(SingleDeviceStrategy):
    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        raise RuntimeError("placement unknown")


class _Unrowed(SingleDeviceStrategy):
    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        raise KeyError("rows")


class _Misplaced(SingleDeviceStrategy):
    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        return "gpu"  # type: ignore[return-value]  # no device type: the plugin's bug


def test_a_plugin_strategys_device_type_or_memory_row_that_raises_names_the_plugin(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """What a plugin strategy's class-side answers to the system tuner raise (``device_type``,
    ``memory_row``) is one line naming the strategy and its distribution, the plugin's bug: the
    trial fails with it as its note, and a study with no other trial exits 1."""
    import json
    import re

    from _hosts import enterprise_host, registering

    import deepseek.advise.hardware as hardware
    from deepseek.cli.main import main
    from deepseek.config.load import config_from_dict
    from deepseek.errors import PluginError
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    monkeypatch.setattr(hardware, "detect_devices", lambda **_: hardware.Devices(1, 80 * 1024**3, "GPU", "test"))
    host = enterprise_host((registering("deepseek_register_strategies", {
        "acme.unplaced": _Unplaced, "acme.unrowed": _Unrowed, "acme.misplaced": _Misplaced, "acme.undeclared": _Spread},
        {"memory_rows": ["single"]}), "deepseek-acme"))

    def fit(name: str) -> Any:
        config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                                   "strategy": {"name": name}}, host=host)
        return SystemTuner(SystemTunerOptions(), host=host).fit(config)

    with pytest.raises(PluginError, match=r"^strategy 'acme\.unrowed' \(deepseek-acme 1\.0, registered by .*\): "
                                          r"memory_row raised KeyError: 'rows'; a bug in the plugin"):
        fit("acme.unrowed")
    # The answers are read through core's checks (checked_device_type / checked_memory_row): a
    # device type that is no device, or a row it did not declare, is the plugin's bug, never used.
    with pytest.raises(PluginError, match=r"^strategy 'acme\.misplaced' \(deepseek-acme 1\.0, .*\): "
                                          r"device_type\(\) returned 'gpu'; it must return 'cpu' or 'cuda'"):
        fit("acme.misplaced")
    with pytest.raises(PluginError, match=r"^strategy 'acme\.undeclared' \(deepseek-acme 1\.0, .*\): "
                                          r"memory_row\(\) returned 'ddp'; it must return one of the memory_rows it "
                                          r"declares at registration that the advisor models \(declared: 'single'\)"):
        fit("acme.undeclared")

    (tmp_path / "base.toml").write_text('[model]\nname = "tiny"\n[data]\nseq_len = 32\nbatch_size = 8\n'
                                        '[strategy]\nname = "acme.unplaced"\n')
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { choices = [0.002] }\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["tune", "base.toml", "--space", "space.toml", "--objective", "tokens_per_s", "--trials", "1",
              "--study", "s", "--out", "st"], host=host)
    assert exited.value.code == 1
    [note] = [t["note"] for t in json.loads((tmp_path / "st" / "trials.json").read_text())["trials"]]
    assert re.match(r"^strategy 'acme\.unplaced' \(deepseek-acme 1\.0, registered by .*\): device_type raised "
                    r"RuntimeError: placement unknown; a bug in the plugin", note), note
    assert f"fail: {note}" in capsys.readouterr().out


@pytest.mark.parametrize(("row", "dp", "said"), [
    ({"tokens_per_s": float("nan")}, 1, "tokens_per_s nan is not a number from 0 to 10^11 (per rank)"),
    ({"tokens_per_s": -5.0}, 1, "tokens_per_s -5.0 is not a number from 0 to 10^11 (per rank)"),
    # a throughput, an MFU or a rank count no run reaches was the objective as it came
    ({"tokens_per_s": 1e11 + 1e5}, 1, "tokens_per_s 100000100000.0 is not a number from 0 to 10^11 (per rank)"),
    ({"peak_memory_bytes": 2**50 + 1}, 1, f"peak_memory_bytes {2**50 + 1} is not a whole number from 0 to 2^50"),
    ({"peak_memory_bytes": -1}, 1, "peak_memory_bytes -1 is not a whole number from 0 to 2^50"),
    ({"mfu": float("inf")}, 1, "mfu inf is not a number from 0 to 10 (above 1 only where the peak table is wrong)"),
    ({"mfu": 10.5}, 1, "mfu 10.5 is not a number from 0 to 10 (above 1 only where the peak table is wrong)"),
    ({}, 0, "device.dp_size 0 is not a whole number from 1 to 2^20"),
    ({}, 2**20 + 1, f"device.dp_size {2**20 + 1} is not a whole number from 1 to 2^20"),
    ({"tokens_per_s": "fast"}, 1, "tokens_per_s 'fast' is not a number from 0 to 10^11 (per rank)"),
])
def test_a_bench_result_no_bench_gives_fails_the_trial_naming_the_field(tmp_path: Any, row: dict[str, Any], dp: int,
                                                                        said: str) -> None:
    """A system trial read bench train's numbers as they came: a NaN or negative throughput became
    the trial's objective, a peak of 10^30 bytes its peak_gib. Each now fails the trial in one line
    naming the file and the field; a good result gives the summed throughput and the figures."""
    import json

    from deepseek_enterprise.tune.system import read_bench
    from deepseek_enterprise.tune.tuner import TrialFailed

    good = {"tokens_per_s": 1000.0, "peak_memory_bytes": 3 * 2**30, "mfu": 0.25}
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"rows": [good], "device": {"dp_size": 2}}))
    attrs: dict[str, Any] = {}
    assert read_bench(out, attrs) == 2000.0 and attrs == {"peak_gib": 3.0, "mfu": 0.25}
    out.write_text(json.dumps({"rows": [{**good, "tokens_per_s": 1e11, "mfu": 10}], "device": {"dp_size": 2**20}}))
    assert read_bench(out, attrs) == 1e11 * 2**20 and attrs["mfu"] == 10  # the bounds themselves are taken
    out.write_text(json.dumps({"rows": [{**good, **row}], "device": {"dp_size": dp}}))
    with pytest.raises(TrialFailed) as failed:
        read_bench(out, {})
    assert str(failed.value) == f"{out}: no readable bench result ({said})"
