"""A plugin with lifecycle hooks only declares the files they write into ``trainer.run_dir``
(``deepseek_declare_run_files``, docs/plugins.md section 6): they are then the run's own in every
run folder, as a command's ``run_files`` are, so no command's output option replaces them (the
``deepseek plugins new`` scaffold's ``{short}-loss-ema.jsonl`` was taken by ``bench latency --json``).
The list is checked as a command's is, and the declaration is part of the plugin's registration
transaction."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.errors import PluginError, UsageError
from deepseek.paths import check_output
from deepseek.plugins.host import PluginHost
from deepseek.plugins.records import PluginRecord
from deepseek.plugins.scaffold import scaffold
from deepseek.plugins.settings import PluginSettings


def _register(plugin: object) -> tuple[PluginHost, PluginRecord]:
    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a refused plugin is a PluginWarning: its record says why
        record = host.register_plugin(plugin, dist="deepseek-acme", version="0.1.0")
    return host, record


def _run_folder(folder: Path) -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.toml").write_text('[model]\nname = "gpt"\n')
    return folder


def test_the_scaffolds_callback_file_is_refused_as_another_commands_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, _ = scaffold("emaw", tmp_path)
    spec = importlib.util.spec_from_file_location("deepseek_emaw_plugin", project / "src/deepseek_emaw/plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    host, record = _register(module)
    assert record.status == "ok", record.reason
    assert record.run_files == ["emaw-loss-ema.jsonl"] == [module.STATE_FILE]
    assert record.as_dict()["run_files"] == ["emaw-loss-ema.jsonl"]
    run = _run_folder(tmp_path / "run")
    state = run / module.STATE_FILE
    with pytest.raises(UsageError, match=f"^--out: {state} is a place of the run folder {run}'s own files"):
        check_output(state, where="--out", folder=True, host=host)  # a folder in its place too
    state.write_text('{"step": 2, "ema": 1.5}\n')
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "latency", "--model", "tiny", "--json", str(state)], host=host)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --json: {state} is a file of the run folder {run} (written by its training or the command that "
        f"made it); give another path, e.g. {run / 'latency.json'}"]
    assert state.read_text() == '{"step": 2, "ema": 1.5}\n'
    bare, _ = _register(object())  # without the plugin the file is any other file of the folder
    assert check_output(state, where="--json", folder=False, host=bare) == []


@pytest.mark.parametrize("names", [["../ema.jsonl"], ["logs/ema.jsonl"], "ema.jsonl", [""], [3], ["logs/ema/"],
                                   ["/"], ["../"], ["logs//"]])
def test_a_declaration_that_is_not_a_list_of_plain_file_names_drops_the_plugin(names: Any) -> None:
    """Checked as a command's ``run_files``; what the plugin registered before is not kept."""

    class Plugin:
        @hookimpl
        def deepseek_register_passes(self, register: Any) -> None:
            register("acme.pass", "deepseek_acme.passes:Pass")

        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            declare(names)

    host, record = _register(Plugin())
    assert record.status == "failed"
    shown = list(names) if isinstance(names, list) else names
    assert ("deepseek-acme 0.1.0 (deepseek-acme:Plugin, deepseek_declare_run_files): declare(...) must be a list of "
            f"file names in the run folder (no '/'; a folder's name ends in one: 'acme-plots/'), got {shown!r}"
            ) in record.reason, record.reason
    assert "acme.pass" not in host.names("pass") and record.run_files == [] and record.components == {}


def test_a_declaring_hook_that_raises_or_keeps_declare_for_later_keeps_nothing() -> None:
    kept: list[Any] = []

    class Raises:
        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            declare(["acme-a.jsonl"])
            raise RuntimeError("boom")

    class Late:
        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            kept.append(declare)

    _, record = _register(Raises())
    assert record.status == "failed" and record.run_files == []
    assert "raised in deepseek_declare_run_files: RuntimeError: boom" in record.reason
    _, record = _register(Late())
    assert record.status == "ok" and record.run_files == []
    with pytest.raises(PluginError, match=r"declare\(\['x.jsonl'\]\) called after the hook returned"):
        kept[0](["x.jsonl"])


class _Callbacks:
    """A plugin with lifecycle hooks only, writing ``acme-state.jsonl`` into each run folder."""

    @hookimpl
    def deepseek_declare_run_files(self, declare: Any) -> None:
        declare(["acme-state.jsonl"])


def test_folder_outputs_are_checked_with_the_commands_host(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``plugins new --dir``, ``import-hf --out``, ``train --run-dir`` and the trainer's run folder
    were checked without a host, against core's run files only: a folder was made where a plugin's
    hooks write their file."""
    host, record = _register(_Callbacks())
    assert record.status == "ok", record.reason
    run = _run_folder(tmp_path / "run")
    place = run / "acme-state.jsonl"
    for argv in (["plugins", "new", "zed", "--dir", str(place)], ["import-hf", str(tmp_path / "gpt2"), "--out", str(place)],
                 ["train", "--run-dir", str(place), "--max-steps", "1"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv, host=host)
        assert exit_.value.code == 2, argv
        assert f"{place} is a place of the run folder {run}'s own files" in capsys.readouterr().err, argv
        assert not place.exists()
    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    fresh = tmp_path / "fresh"
    (fresh / "acme-state.jsonl").mkdir(parents=True)  # the trainer refuses a folder where the hooks write a file
    config = config_from_dict({"model": {"name": "tiny", "d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 8},
                               "data": {"seq_len": 8, "batch_size": 2}, "train": {"max_steps": 1}}, host=host)
    with pytest.raises(UsageError, match=f"^{fresh / 'acme-state.jsonl'}: is a folder where the run writes its "
                                         "acme-state.jsonl"):
        Trainer(config, run_dir=fresh, quiet=True, host=host).fit()
    assert sorted(p.name for p in fresh.iterdir()) == ["acme-state.jsonl"]


def _declaring(names: list[str], command_files: list[str] | None = None) -> object:
    """A plugin whose hooks declare ``names`` and which registers a pass (and, with
    ``command_files``, a command declaring them as its ``run_files``)."""

    class Plugin:
        @hookimpl
        def deepseek_register_passes(self, register: Any) -> None:
            register("beta.pass", "deepseek_beta.passes:Pass")

        @hookimpl
        def deepseek_register_commands(self, register: Any) -> None:
            if command_files is not None:
                register("beta-pack", "deepseek_beta.cli:pack", declares={"run_files": command_files})

        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            declare(names)

    return Plugin()


def test_a_run_file_another_distribution_or_core_declared_first_drops_the_second_plugin(tmp_path: Path) -> None:
    """Two plugins declaring one file would both write RUN/<name>: the second one's registration
    is refused as a whole, naming both distributions and the file; the first keeps its file."""
    host, first = _register(_Callbacks())
    assert first.status == "ok" and first.run_files == ["acme-state.jsonl"]
    tail = ("acme-state.jsonl', which deepseek-acme 0.1.0 (its lifecycle hooks, deepseek_declare_run_files) declared "
            "first: both would write RUN/acme-state.jsonl; give your file a name of your own, starting with your "
            "plugin's name")
    cases = {"deepseek-beta": (_declaring(["beta.jsonl", "acme-state.jsonl"]),
                               "deepseek-beta 0.2.0 (deepseek-beta:Plugin, deepseek_declare_run_files): declare(...) "
                               f"names '{tail}"),
             "deepseek-gamma": (_declaring([], command_files=["acme-state.jsonl"]),
                                "deepseek-gamma 0.2.0 (deepseek-gamma:Plugin, deepseek_register_commands): command "
                                f"'beta-pack': declares['run_files'] names '{tail}")}
    for dist, (plugin, reason) in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            second = host.register_plugin(plugin, dist=dist, version="0.2.0")
        assert second.status == "failed" and reason in second.reason, second.reason
        assert second.run_files == [] and second.components == {}
    assert "beta.pass" not in host.names("pass") and "beta-pack" not in host.names("command")
    assert host.records["deepseek-acme"].run_files == ["acme-state.jsonl"]
    strict = PluginHost(PluginSettings(autoload=False, strict=True))
    strict.register_plugin(_Callbacks(), dist="deepseek-acme", version="0.1.0")
    with pytest.raises(PluginError, match="^deepseek-beta 0.2.0 .*names 'acme-state.jsonl', which deepseek-acme 0.1.0"):
        strict.register_plugin(cases["deepseek-beta"][0], dist="deepseek-beta", version="0.2.0")
    _, record = _register(_declaring(["delta.jsonl"], command_files=["delta.jsonl"]))  # its command's and hooks' file
    assert record.status == "ok" and record.run_files == ["delta.jsonl"], record.reason
    _, core = _register(_declaring(["metrics.jsonl"]))
    assert core.status == "failed" and ("declare(...) names 'metrics.jsonl', which deepseek-core's trainer writes in "
                                        "every run folder: both would write RUN/metrics.jsonl") in core.reason


def test_plugins_list_shows_the_declared_run_files(capsys: pytest.CaptureFixture[str]) -> None:
    """Only ``--json`` showed them; the table gives them one line under the plugin's components."""
    host, record = _register(_declaring(["beta-state.jsonl", "beta-log.txt"]))
    assert record.status == "ok", record.reason
    with pytest.raises(SystemExit) as exit_:
        main(["plugins", "list"], host=host)
    assert exit_.value.code == 0
    rows = capsys.readouterr().out.splitlines()
    at = next(n for n, line in enumerate(rows) if "deepseek-acme" in line)
    assert "pass: beta.pass" in rows[at] and "run files: beta-state.jsonl, beta-log.txt" in rows[at + 1], rows[at:]
    assert sum("run files:" in line for line in rows) == 1  # core's hooks declare none


def test_a_declared_folder_is_the_runs_with_everything_in_it(tmp_path: Path) -> None:
    """Declared run files were plain files directly in the run folder: a folder a plugin's hooks
    (or a command: export's ``hf/``) fill was any folder, which another command wrote into. A
    name ending in ``/`` declares a folder: every path in it is the run's, the trainer refuses a
    file in its place, and its name is one distribution's as a file's is (``hf`` is export's)."""

    class Plots:
        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            declare(["acme-plots/"])

    host, record = _register(Plots())
    assert record.status == "ok" and record.run_files == ["acme-plots/"], record.reason
    run = _run_folder(tmp_path / "run")
    plots = run / "acme-plots"
    for target, folder in ((plots, True), (plots, False), (plots / "loss.png", False), (plots / "a" / "b", True)):
        with pytest.raises(UsageError, match=f"^--out: {target} is a place of the run folder {run}'s own files"):
            check_output(target, where="--out", folder=folder, host=host)
    plots.mkdir()
    (plots / "loss.png").write_bytes(b"png")
    with pytest.raises(UsageError, match=f"^--json: {plots / 'loss.png'} is a file of the run folder {run} "):
        check_output(plots / "loss.png", where="--json", folder=False, host=host)
    assert check_output(run / "acme-plots.png", where="--json", folder=False, host=host) == []  # beside it: any file
    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "acme-plots").write_text("mine")  # the trainer refuses a file where the hooks write their folder
    config = config_from_dict({"model": {"name": "tiny", "d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 8},
                               "data": {"seq_len": 8, "batch_size": 2}, "train": {"max_steps": 1}}, host=host)
    with pytest.raises(UsageError, match=f"^{fresh / 'acme-plots'}: is a file where the run writes its folder "
                                         "acme-plots/"):
        Trainer(config, run_dir=fresh, quiet=True, host=host).fit()
    assert sorted(p.name for p in fresh.iterdir()) == ["acme-plots"]
    for names, owner in ((["hf"], "deepseek-core [^ ]+ \\(its command 'export'\\)"),
                         (["beta-plots/", "hf/"], "deepseek-core [^ ]+ \\(its command 'export'\\)"),
                         (["acme-plots"], "deepseek-acme 0.1.0 \\(its lifecycle hooks, deepseek_declare_run_files\\)")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            second = host.register_plugin(_declaring(names), dist=f"deepseek-beta{len(names)}{names[0][0]}",
                                          version="0.2.0")
        assert second.status == "failed" and re.search(
            f"declare\\(...\\) names '{names[-1]}', which {owner} declared first: both would write "
            f"RUN/{names[-1]};", second.reason), second.reason
    _, core = _register(_declaring(["checkpoints/"]))
    assert core.status == "failed" and ("declare(...) names 'checkpoints/', which deepseek-core's trainer writes in "
                                        "every run folder: both would write RUN/checkpoints/") in core.reason
