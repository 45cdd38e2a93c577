"""Experiment trackers as plugins, with the real trainer (a tiny GPT on CPU): a tracker registered
through ``deepseek_register_trackers`` in-process receives the params, every metrics row, the
artefacts and the end status; a tracker failing mid-run is disabled and training goes on; one
that cannot start stops the run before its first step; config errors are one line. The built-in
trackers' libraries are absent in the core-only session: asking for one names the extra."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from plugin_testing import base_env, run_cli

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, PluginError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.tracking import RunInfo, Tracker, TrackerWarning
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 4, "warmup_steps": 1, "eval_interval": 2, "lr": 3e-3},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0, "keep_last": 1},
    "logging": {"progress": False, "plot": True, "trackers": ["rec.memory"]},
}


@dataclasses.dataclass(frozen=True)
class MemoryOptions:
    label: str = "run"
    fail_at: int = -1
    """Raise in log_metrics at this step (-1: never)."""
    fail_start: bool = False
    fail_init: bool = False


class MemoryTracker(Tracker):
    """Records every call in ``CALLS`` (a third-party tracker as docs/tracking.md shows)."""

    Options = MemoryOptions
    CALLS: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, options: MemoryOptions) -> None:
        if options.fail_init:
            raise ValueError("bad label")
        super().__init__(options)

    def start(self, run: RunInfo) -> None:
        if self.options.fail_start:
            raise RuntimeError("no server at example.invalid")
        self.CALLS.append(("start", run))

    def log_metrics(self, step: int, metrics: Any) -> None:
        if step == self.options.fail_at:
            raise RuntimeError("connection reset")
        self.CALLS.append(("metrics", step, dict(metrics)))

    def log_artifact(self, path: Path, kind: str) -> None:
        self.CALLS.append(("artifact", kind, path.name, path.read_bytes()))

    def finish(self, status: str) -> None:
        self.CALLS.append(("finish", status))


class RecPlugin:
    fail_step = 0
    """A lifecycle hook stops training with an error at this step (0: never)."""

    @hookimpl
    def deepseek_register_trackers(self, register):  # noqa: ANN001, ANN201
        register("rec.memory", MemoryTracker, description="keeps every call in memory")

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):  # noqa: ANN001, ANN201
        if step == self.fail_step:
            raise RuntimeError(f"the run breaks at step {step}")


@pytest.fixture
def plugin() -> RecPlugin:
    MemoryTracker.CALLS.clear()
    return RecPlugin()


@pytest.fixture
def host(plugin: RecPlugin) -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(plugin, dist="deepseek-rec").status == "ok"
    return host


def _config(host: PluginHost, **options: Any) -> Any:
    return config_from_dict({**TINY, "trackers": {"rec.memory": options}}, host=host)


def test_a_plugin_tracker_gets_params_every_row_and_the_artefacts(host: PluginHost, tmp_path: Path) -> None:
    config = _config(host, label="x")
    assert config.trackers.options["rec.memory"] == MemoryOptions(label="x")
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    calls = MemoryTracker.CALLS
    assert calls[0][0] == "start" and calls[-1] == ("finish", "succeeded")
    run = calls[0][1]
    assert (run.run_dir, run.run_name, run.start_step) == (tmp_path / "run", "run", 0)
    assert run.params["train.lr"] == 3e-3 and run.params["model.d_model"] == 32
    assert run.params["logging.trackers"] == '["rec.memory"]' and run.params["trackers.rec.memory.label"] == "x"
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    logged = [c for c in calls if c[0] == "metrics"]
    assert [(c[1], c[2]) for c in logged] == [
        (r["step"], {k: v for k, v in r.items() if k != "step"}) for r in rows
    ]
    assert [c[1] for c in logged if "val_loss" in c[2]] == [0, 2, 4]
    assert [c[1] for c in logged if "loss" in c[2]] == [1, 2, 3, 4]
    artifacts = {c[1]: c[2:] for c in calls if c[0] == "artifact"}
    assert set(artifacts) == {"plot", "config", "checkpoint"}
    assert artifacts["plot"][0] == "loss.png" and artifacts["plot"][1][:8] == b"\x89PNG\r\n\x1a\n"
    assert artifacts["config"][1] == (tmp_path / "run" / "config.toml").read_bytes()
    pointer = json.loads(artifacts["checkpoint"][1])
    assert pointer == {"path": str(result.checkpoint.resolve()), "relative_path": "checkpoints/step-4", "step": 4}


def test_a_tracker_failing_mid_run_is_disabled_and_training_goes_on(host: PluginHost, tmp_path: Path) -> None:
    with pytest.warns(TrackerWarning, match=r"tracker 'rec.memory' \(deepseek-rec 0.0.0, registered by [\w.]+\): log_metrics at step 2 failed "
                      r"\(RuntimeError: connection reset\); it is disabled") as caught:
        result = Trainer(_config(host, fail_at=2), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert len([w for w in caught if issubclass(w.category, TrackerWarning)]) == 1
    assert result.step == 4 and (tmp_path / "run" / "checkpoints" / "step-4").is_dir()
    assert len([r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]) == 4
    kinds = [c[0] if c[0] != "metrics" else c[1] for c in MemoryTracker.CALLS]
    assert kinds == ["start", 0, 1, "finish"] and MemoryTracker.CALLS[-1] == ("finish", "failed")


def test_a_failed_run_finishes_its_trackers_as_failed_without_artefacts(
    plugin: RecPlugin, host: PluginHost, tmp_path: Path
) -> None:
    plugin.fail_step = 3
    with pytest.raises(PluginError, match="raised in deepseek_train_step_end: RuntimeError: the run breaks at step 3"):
        Trainer(_config(host), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    calls = MemoryTracker.CALLS
    assert [c[1] for c in calls if c[0] == "metrics"] == [0, 1, 2, 2]  # steps 1-2, evaluations 0 and 2
    assert not [c for c in calls if c[0] == "artifact"] and calls[-1] == ("finish", "failed")
    assert not (tmp_path / "run" / "final_checkpoint.json").exists()


def test_a_tracker_that_cannot_start_stops_the_run_before_its_first_step(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        Trainer(_config(host, fail_start=True), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert str(caught.value) == (
        "trackers.\"rec.memory\": the 'rec.memory' tracker (deepseek-rec 0.0.0) could not start (RuntimeError: no server at "
        "example.invalid); check [trackers.\"rec.memory\"] (docs/tracking.md) or remove 'rec.memory' from "
        "logging.trackers"
    )
    assert MemoryTracker.CALLS == [("finish", "failed")]
    assert read_metrics(tmp_path / "run" / "metrics.jsonl") == []
    assert not (tmp_path / "run" / "checkpoints" / "step-1").exists()


def test_a_tracker_whose_init_raises_is_its_plugins_bug_named_in_one_line(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(PluginError) as caught:  # was "internal error: ValueError: bad label"
        Trainer(_config(host, fail_init=True), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert str(caught.value).startswith(
        "tracker 'rec.memory' (deepseek-rec 0.0.0, registered by ") and "__init__ raised ValueError: bad label; a bug in the plugin" in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("data", "message"), [
    ({"logging": {"trackers": ["rec.memroy"]}},
     "logging.trackers: unknown tracker 'rec.memroy'; did you mean 'rec.memory'?"),
    ({"logging": {"trackers": ["rec.memory", "rec.memory"]}},
     "logging.trackers: 'rec.memory' is listed twice; list each tracker once"),
    ({"logging": {"trackers": ["", ""]}},  # was reported as '' listed twice
     "logging.trackers: entry 0 is an empty name; list registered trackers, e.g. [\"tensorboard\"]"),
    ({"trackers": {"rec.memroy": {}}},
     "trackers.\"rec.memroy\": options of a tracker that logging.trackers does not list (did you mean "
     "'rec.memory'?); add 'rec.memroy' to logging.trackers or remove [trackers.\"rec.memroy\"]"),
    # [trackers.rec.memory] in a TOML file is table memory inside table rec: the name needs quotes
    ({"trackers": {"rec": {"memory": {"label": "x"}}}},
     "trackers.rec: options of a tracker that logging.trackers does not list; for the tracker 'rec.memory' "
     "quote its name: [trackers.\"rec.memory\"]"),
    ({"trackers": {"rec.memory": {"lable": "x"}}},
     "trackers.\"rec.memory\".lable: unknown key (did you mean 'label'?)"),
    ({"trackers": {"rec.memory": {"fail_at": "two"}}}, "trackers.\"rec.memory\".fail_at: "),
    ({"trackers": {"rec.memory": 3}}, "trackers.\"rec.memory\": expected a table"),
    ({"logging": {"trackers": "rec.memory"}}, "logging.trackers: "),
])
def test_tracker_config_errors_are_one_line_with_the_field(host: PluginHost, data: dict, message: str) -> None:
    merged = {**TINY, "logging": {**TINY["logging"], **data.get("logging", {})}, "trackers": data.get("trackers", {})}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(merged, host=host)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_set_reaches_a_dotted_tracker_name_through_a_quoted_key(host: PluginHost) -> None:
    from deepseek.config.load import load_config

    config = load_config(base=TINY, overrides=['trackers."rec.memory".label=from-set'], host=host)
    assert config.trackers.options["rec.memory"] == MemoryOptions(label="from-set")
    with pytest.raises(ConfigError, match=r"^trackers.rec: options of a tracker .* quote its name"):
        load_config(base=TINY, overrides=["trackers.rec.memory.label=x"], host=host)


@pytest.mark.parametrize(("tracker", "module"), [("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "tensorboard")])
def test_a_builtin_tracker_without_its_library_names_the_extra(tracker: str, module: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here; the core-only session checks this")
    line = (f"logging.trackers: the {tracker!r} tracker needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'deepseek-core[{tracker}]'")
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"logging": {"trackers": [tracker]}})
    assert str(caught.value) == line
    proc = run_cli("train", "--tracker", tracker, "--run-dir", str(tmp_path / "run"), env=base_env())
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (2, [f"error: {line}"])
    assert not (tmp_path / "run").exists()
