"""A plugin's hook that raises is named in one line: distribution, version, plugin (entry point and
module) and hook, for registration hooks (the plugin is skipped) and for the hooks the framework
calls later (lifecycle, validation: a PluginError in place of the bare exception)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from plugin_testing import DistFactory, host_for

from deepseek.errors import ConfigError, PluginError

PLUGIN = """
from deepseek import hookimpl
from deepseek.errors import ConfigError


@hookimpl
def deepseek_register_passes(register):
    register("named.pass", "named_hooks:x", description="a pass")


@hookimpl
def deepseek_train_start(trainer):
    raise ValueError("boom\\nin start")


@hookimpl
def deepseek_validate_config(config):
    raise ConfigError("train.max_steps: named refuses it; use another")


@hookimpl
def deepseek_checkpoint_saved(trainer, path, step):
    raise MemoryError("10 TiB")


@hookimpl(hookwrapper=True)
def deepseek_evaluate(trainer, step, metrics):
    yield
"""


def test_a_lifecycle_hook_that_raises_names_distribution_plugin_and_hook(make_dist: DistFactory) -> None:
    make_dist("deepseek-named", {"named_hooks": PLUGIN}, entry_points={"named": "named_hooks"}, version="0.2")
    host = host_for("deepseek-named")
    assert host.records["deepseek-named"].status == "ok", host.records["deepseek-named"].reason
    trainer = SimpleNamespace(run_dir=None, is_global_zero=True, step=0)
    with pytest.raises(PluginError) as caught:
        host.hook.deepseek_train_start(trainer=trainer)
    assert str(caught.value) == (
        "deepseek-named 0.2: plugin 'named' (named_hooks) raised in deepseek_train_start: "
        "ValueError: boom in start; a bug in the plugin: fix it, or skip it with "
        "DEEPSEEK_DISABLE_PLUGINS=deepseek-named"
    )
    assert isinstance(caught.value.__cause__, ValueError)
    # deepseek's own one-line errors pass as they are; a wrapper still runs around the call
    with pytest.raises(ConfigError, match=r"^train\.max_steps: named refuses it; use another$"):
        host.hook.deepseek_validate_config(config=None, host=host)
    assert host.hook.deepseek_evaluate(trainer=trainer, step=0, metrics={}) == []
    with pytest.raises(MemoryError, match="10 TiB"):  # out of memory is the CLI's own line, not a bug
        host.hook.deepseek_checkpoint_saved(trainer=trainer, path=None, step=1)


def test_a_registration_hook_that_raises_names_the_entry_point_among_several(make_dist: DistFactory) -> None:
    make_dist(
        "deepseek-twoeps",
        {"twoeps_good": PLUGIN.replace("named.pass", "good.pass"), "twoeps_bad": """
            from deepseek import hookimpl

            @hookimpl
            def deepseek_register_models(register):
                raise RuntimeError("no models today")
            """},
        entry_points={"good": "twoeps_good", "bad": "twoeps_bad"},
    )
    host = host_for("deepseek-twoeps")
    record = host.records["deepseek-twoeps"]
    assert record.status == "failed"
    assert record.reason.startswith(
        "deepseek-twoeps 0.1.0: plugin 'bad' (twoeps_bad) raised in deepseek_register_models: "
        "RuntimeError: no models today"
    )


METRICS_PLUGIN = """
import os
import torch
from deepseek import hookimpl


@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    what = os.environ["METRICS_BUG"]
    if what == "tensor":
        metrics["acme_t"] = torch.ones(3)
    elif what == "lr":
        metrics["lr"] = -1.0
    elif what == "drop":
        del metrics["loss"]
    elif what == "return":
        return {"acme_f1": 0.5}
    else:
        metrics["acme_ok"] = torch.tensor(2.0)
        metrics["acme_note"] = "fine"
"""


@pytest.mark.parametrize(("bug", "words"), [
    ("tensor", "added metrics['acme_t'] = a Tensor of shape (3,), which is not a single number"),
    ("lr", "changed metrics['lr'] (0.001 -> -1.0), a value the trainer logs"),
    ("drop", "removed metrics['loss'], a value the trainer logs"),
    ("return", "returned a dict, which the trainer does not read; add values to metrics in place"),
])
def test_what_a_hook_does_to_the_metrics_is_checked_and_named(make_dist: DistFactory, monkeypatch: pytest.MonkeyPatch,
                                                               bug: str, words: str) -> None:
    """A 3-element tensor failed later in the metrics file as an internal error naming nobody; an
    overwritten lr was logged as -1.0."""
    make_dist("deepseek-metrics", {"metrics_hooks": METRICS_PLUGIN}, entry_points={"m": "metrics_hooks"}, version="0.3")
    host = host_for("deepseek-metrics")
    monkeypatch.setenv("METRICS_BUG", bug)
    record = {"step": 1, "loss": 5.0, "lr": 0.001}
    with pytest.raises(PluginError) as caught:
        host.hook.deepseek_train_step_end(trainer=SimpleNamespace(), step=1, metrics=record)
    assert str(caught.value) == (f"deepseek-metrics 0.3: plugin 'm' (metrics_hooks): deepseek_train_step_end: {words}"
                                 + str(caught.value).split(words, 1)[1]), caught.value
    assert str(caught.value).endswith("a bug in the plugin: fix it, or skip it with "
                                      "DEEPSEEK_DISABLE_PLUGINS=deepseek-metrics")
    monkeypatch.setenv("METRICS_BUG", "none")
    record = {"step": 1, "loss": 5.0, "lr": 0.001}
    host.hook.deepseek_train_step_end(trainer=SimpleNamespace(), step=1, metrics=record)
    assert record["acme_note"] == "fine" and float(record["acme_ok"]) == 2.0


def test_a_hook_asking_for_an_argument_its_hook_does_not_pass_gets_a_did_you_mean() -> None:
    """pluggy's own refusal ("Argument(s) {'metric'} are declared in the hookimpl but can not be
    found in the hookspec") named no fix."""
    from deepseek import hookimpl
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    class Typo:
        @hookimpl
        def deepseek_train_step_end(self, trainer, step, metric):  # type: ignore[no-untyped-def]
            pass

    host = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(UserWarning):
        record = host.register_plugin(Typo(), dist="deepseek-typo", version="0.4")
    assert record.status == "failed"
    assert "deepseek_train_step_end asks for the argument 'metric', which the hook does not pass (did you mean " \
           "'metrics'?); its arguments are trainer, step, metrics (docs/hooks.md)" in record.reason, record.reason


RETURNS_PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_validate_config(config):
    if config == "refuse":
        return "train.lr is too high"


@hookimpl
def deepseek_checkpoint_saved(trainer, path, step):
    return False
"""


def test_a_hook_whose_value_nobody_reads_is_refused_when_it_returns_one(make_dist: DistFactory) -> None:
    """A deepseek_validate_config returning its refusal as a string accepted the config without a
    word; a value returned from another lifecycle hook was dropped the same way."""
    make_dist("deepseek-returns", {"returns_hooks": RETURNS_PLUGIN}, entry_points={"r": "returns_hooks"}, version="0.5")
    host = host_for("deepseek-returns")
    assert host.hook.deepseek_validate_config(config="accept", host=host) == []
    with pytest.raises(PluginError) as caught:
        host.hook.deepseek_validate_config(config="refuse", host=host)
    assert str(caught.value) == (
        "deepseek-returns 0.5: plugin 'r' (returns_hooks): deepseek_validate_config: returned 'train.lr is too "
        "high' (str), which the framework does not read; refuse a config by raising deepseek.errors.ConfigError "
        "with one line, accept it by returning None; a bug in the plugin: fix it, or skip it with "
        "DEEPSEEK_DISABLE_PLUGINS=deepseek-returns")
    with pytest.raises(PluginError, match=r"deepseek_checkpoint_saved: returned False \(bool\), which the framework "
                                          r"does not read; the hook returns None; a bug in the plugin"):
        host.hook.deepseek_checkpoint_saved(trainer=SimpleNamespace(), path=None, step=1)
