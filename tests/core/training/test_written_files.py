"""A dataset's or model's ``written_files`` (docs/plugins.md sections 10 and 11) are names in the
run folder of one distribution, as a command's ``run_files`` are: they could not name a folder,
and a core file (``metrics.jsonl``), another distribution's command or hooks' file, or a name the
run's other component of another distribution declares too was taken, so two writers shared
``RUN/<name>``. Each is refused in one :class:`PluginError` naming the class and its
distribution, before the run folder is made, and :func:`written_files_problems` (the contract
suite's check) finds them on a host."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.data.text import TextDataset
from deepseek.errors import PluginError, UsageError
from deepseek.models.gpt import GPT
from deepseek.paths import check_output
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.run_files import written_files_problems
from deepseek.training.trainer import Trainer


class Metrics(TextDataset):
    written_files = ("metrics.jsonl",)


class Checkpoints(TextDataset):
    written_files = ("checkpoints/",)


class Reports(TextDataset):
    written_files = ("acme-reports/", "acme-summary.json")


class Summarizing(GPT):
    written_files = ("acme-summary.json",)  # the dataset of deepseek-acme declares it too


class Packing(GPT):
    written_files = ("model.pt2",)  # deepseek export's file


class Acme:
    """Registers its classes lazily (``'module:Class'``, not imported at registration), so the
    checks where a run or an output reads them are what these tests see (a class registered as a
    class is checked when registered too: :func:`test_a_class_registered_as_a_class_is_checked_when_registered`)."""

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.metrics", f"{__name__}:Metrics", description="declares core's metrics.jsonl")
        register("acme.checkpoints", f"{__name__}:Checkpoints", description="declares core's checkpoints/")
        register("acme.reports", f"{__name__}:Reports", description="declares a folder and a file")


class Beta:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("beta.summarizing", Summarizing, description="declares acme's acme-summary.json")
        register("beta.packing", f"{__name__}:Packing", description="declares export's model.pt2")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # registered: lazy classes are checked when a run (or output) reads them
        host.register_plugin(Acme(), dist="deepseek-acme", version="0.1.0")
        host.register_plugin(Beta(), dist="deepseek-beta", version="0.2.0")
    return host


def test_a_core_name_or_another_distributions_is_refused_before_the_run_folder(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    here = "test_written_files"
    core = "which deepseek-core's trainer writes in every run folder: both would write RUN/"
    cases = {("acme.metrics", "tiny"): f"dataset {here}.Metrics (deepseek-acme 0.1.0, registered as 'acme.metrics'): "
                                       f"written_files names 'metrics.jsonl', {core}metrics.jsonl;",
             ("acme.checkpoints", "tiny"): f"dataset {here}.Checkpoints (deepseek-acme 0.1.0, registered as "
                                           f"'acme.checkpoints'): written_files names 'checkpoints/', {core}checkpoints/;",
             ("text", "beta.packing"): f"model {here}.Packing (deepseek-beta 0.2.0, registered as 'beta.packing'): "
                                       "written_files names 'model.pt2', which deepseek-core 0.1.0 (its command "
                                       "'export') declared first: both would write RUN/model.pt2;",
             ("acme.reports", "beta.summarizing"): "model 'beta.summarizing' (deepseek-beta 0.2.0, registered by "
                                                   f"{here}): written_files names 'acme-summary.json', which dataset "
                                                   f"'acme.reports' (deepseek-acme 0.1.0, registered by {here}) "
                                                   "declares too: both would write RUN/acme-summary.json;"}
    for (data, model), line in cases.items():
        run = tmp_path / f"{data}-{model}"
        with pytest.raises(PluginError) as refused:
            Trainer(tiny_config_on(host, data={"name": data}, model={"name": model}), run_dir=run, quiet=True,
                    host=host).fit()
        assert str(refused.value).startswith(line), str(refused.value)
        assert str(refused.value).endswith("give your file a name of your own, starting with your plugin's name")
        assert not run.exists()
    problems = written_files_problems(host)
    assert [p.split(":")[0] for p in problems] == [
        f"dataset {here}.Checkpoints (deepseek-acme 0.1.0, registered as 'acme.checkpoints')",
        f"dataset {here}.Metrics (deepseek-acme 0.1.0, registered as 'acme.metrics')",
        f"model {here}.Packing (deepseek-beta 0.2.0, registered as 'beta.packing')",
        "model 'beta.summarizing' (deepseek-beta 0.2.0, registered by test_written_files)"], problems
    # one component's lines (the contract suite's test per component, selected by `-k "DIST:"`):
    # its own list, and a name it shares, whichever of the two distributions declared it first
    assert written_files_problems(host, of=host.resolve("dataset", "acme.metrics")) == [problems[1]]
    assert written_files_problems(host, of=host.resolve("dataset", "acme.reports")) == [problems[3]]
    assert written_files_problems(host, of=host.resolve("model", "beta.summarizing")) == [problems[3]]
    assert written_files_problems(PluginHost(PluginSettings(autoload=False))) == []  # core's own: none


def test_a_declared_folder_is_the_runs_with_everything_in_it(host: PluginHost, tmp_path: Path) -> None:
    """A name ending in ``/`` declares a folder, as a command's ``run_files`` do: every path in it
    is the run's, and the trainer refuses a file in its place."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('[data]\nname = "acme.reports"\n')
    reports = run / "acme-reports"
    itself, inside = "its training or the command that made it writes it there", (
        "everything in its folder acme-reports/ is the run's, declared by its dataset, model, a command or a plugin's hooks")
    pruned = "its training writes them, and deletes a pruned checkpoint's folder"
    for target, folder, why in ((reports, True, itself), (reports, False, itself), (reports / "val.json", False, inside),
                                (reports / "a", True, inside), (run / "acme-summary.json", False, itself),
                                (run / "checkpoints" / "a.json", False, pruned)):
        with pytest.raises(UsageError) as refused:
            check_output(target, where="--out", folder=folder, host=host)
        assert str(refused.value).startswith(f"--out: {target} is a place of the run folder {run}'s own files ({why}); ")
    assert check_output(run / "acme-reports.json", where="--out", folder=False, host=host) == []  # beside it: any file
    from deepseek.run_files import run_written_files

    assert run_written_files(host, (("dataset", Reports, host.resolve("dataset", "acme.reports")),)) == (
        "acme-reports/", "acme-summary.json")
    from deepseek.config.load import config_from_dict

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "acme-reports").write_text("mine")  # a file where the run writes its folder
    config = config_from_dict({"model": {"name": "tiny", "d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 8},
                               "data": {"name": "acme.reports", "seq_len": 8, "batch_size": 2},
                               "train": {"max_steps": 1}}, host=host)
    with pytest.raises(UsageError, match=f"^{fresh / 'acme-reports'}: is a file where the run writes its folder "
                                         "acme-reports/"):
        Trainer(config, run_dir=fresh, quiet=True, host=host).fit()
    assert sorted(p.name for p in fresh.iterdir()) == ["acme-reports"]


class Noting(GPT):
    written_files = ("acme-notes.json",)


def made_noting(options: Any) -> Noting:
    """A factory function making a :class:`Noting`."""
    return Noting(options)


made_noting.Options = GPT.Options  # type: ignore[attr-defined]


def test_a_factory_made_model_declares_nothing_for_the_run_as_for_an_output_check(
        tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    """``written_files`` are read from the class registered as the model, by the run's start and by
    an output check alike. The start read the built model's own class, so a model made by a
    factory function declared its class's names there (a folder in the place of one refused the
    run) while every output check reading the run's ``config.toml`` found none (a command's file
    output over it let through): two answers for one run."""

    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.noting", Noting, description="a GPT whose runs write acme-notes.json")
            register("acme.made", made_noting, description="the same, made by a factory function")

    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0")
    for model, declared in (("acme.noting", True), ("acme.made", False)):
        run = tmp_path / model
        (run / "acme-notes.json").mkdir(parents=True)  # a folder where a declared file is written
        config = tiny_config_on(host, model={"name": model}, train={"max_steps": 1, "warmup_steps": 0})
        if declared:
            with pytest.raises(UsageError, match=f"^{run / 'acme-notes.json'}: is a folder where the run writes its "
                                                 "acme-notes.json;"):
                Trainer(config, run_dir=run, quiet=True, host=host).fit()
            assert os.listdir(run) == ["acme-notes.json"]
            (run / "checkpoints").mkdir()
            (run / "config.toml").write_text(f'[model]\nname = "{model}"\n')
        else:
            assert Trainer(config, run_dir=run, quiet=True, host=host).fit().step == 1
        (run / "acme-notes.json").rmdir()
        target = run / "acme-notes.json"
        if declared:
            with pytest.raises(UsageError, match=f"^--out: {target} is a place of the run folder {run}'s own files"):
                check_output(target, where="--out", folder=False, host=host)
        else:
            assert check_output(target, where="--out", folder=False, host=host) == []


class Absolute(TextDataset):
    written_files = ("/tmp/acme-report.json",)


class Upward(TextDataset):
    written_files = ("../acme-report.json",)


class Plain(TextDataset):
    written_files = ("acme-report.json",)


def _registering(kind: str, cls: type) -> object:
    """A plugin registering the sound dataset ``Plain``, then ``cls`` as the ``kind`` ``acme.wrong``."""

    class Plugin:
        @hookimpl
        def deepseek_register_datasets(self, register: Any) -> None:
            register("acme.plain", Plain)
            if kind == "dataset":
                register("acme.wrong", cls)

        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            if kind == "model":
                register("acme.wrong", cls)

    return Plugin()


def test_a_class_registered_as_a_class_is_checked_when_registered() -> None:
    """A dataset or model registered as a class (imported: nothing to import for the check)
    declaring an absolute path, a ``..`` name, core's file or another distribution's command's
    file was registered, and refused only when a run or an output check read it. It is refused
    when registered, as a command's ``run_files`` are: the plugin dropped with what it had
    registered (its sound classes too), one line naming distribution, plugin, hook, component and
    class. The same rule still holds where the class is read: its attribute may change since."""
    wrong = {
        Absolute: f"written_files must be a tuple of names in the run folder (no '/'; a folder's name ends in one: "
                  f"'acme-plots/'), got {Absolute.written_files!r}; fix the class attribute",
        Upward: f"written_files must be a tuple of names in the run folder (no '/'; a folder's name ends in one: "
                f"'acme-plots/'), got {Upward.written_files!r}; fix the class attribute",
        Metrics: "written_files names 'metrics.jsonl', which deepseek-core's trainer writes in every run folder: "
                 "both would write RUN/metrics.jsonl; give your file a name of your own, starting with your plugin's name",
        Packing: "written_files names 'model.pt2', which deepseek-core 0.1.0 (its command 'export') declared first: "
                 "both would write RUN/model.pt2; give your file a name of your own, starting with your plugin's name",
    }
    for cls, problem in wrong.items():
        kind = "model" if cls is Packing else "dataset"
        host = PluginHost(PluginSettings(autoload=False, strict=False))
        with pytest.warns(Warning) as said:
            record = host.register_plugin(_registering(kind, cls), dist="deepseek-acme", version="0.1.0", name="acme")
        assert record.status == "failed" and record.components == {}, (cls, record)
        assert {c.dist for c in host.components("dataset")} == {"deepseek-core"}  # acme.plain not kept either
        hook = f"deepseek_register_{kind}s"
        assert record.reason == (f"deepseek-acme 0.1.0 (deepseek-acme:acme, {hook}): {kind} 'acme.wrong' "
                                 f"({__name__}.{cls.__qualname__}): {problem}; fix the plugin or skip it with "
                                 "DEEPSEEK_DISABLE_PLUGINS=deepseek-acme"), record.reason
        assert [str(w.message) for w in said] == [record.reason]
    host = PluginHost(PluginSettings(autoload=False))

    class Sound:
        @hookimpl
        def deepseek_register_datasets(self, register: Any) -> None:
            register("acme.plain", Plain)

    assert host.register_plugin(Sound(), dist="deepseek-acme", version="0.1.0").status == "ok"
    Plain.written_files = ("metrics.jsonl",)  # changed since it was registered: refused where it is read
    try:
        assert written_files_problems(host) == [
            f"dataset {__name__}.Plain (deepseek-acme 0.1.0, registered as 'acme.plain'): {wrong[Metrics]}"]
    finally:
        Plain.written_files = ("acme-report.json",)
