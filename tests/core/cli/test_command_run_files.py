"""A command declares the files it writes directly in the run folders it makes
(``register(..., declares={"run_files": [...]})``, docs/plugins.md section 15): they are the run's
own in every run folder, as its ``config.toml`` is, so no command's output option replaces them
(enterprise's compress declares its ``compression.json``; ``compare --json RUN/compression.json``
replaced it). A folder output is refused inside a run's ``checkpoints/`` (``compress --out
RUN/checkpoints/new`` was taken), and a folder its command fills with files of its own is refused
when it is a run folder (``not_a_run``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
import pytest

from deepseek import hookimpl
from deepseek.builtins.commands import export_run_file
from deepseek.cli.context import running_command
from deepseek.cli.main import main
from deepseek.errors import PluginError, UsageError
from deepseek.paths import check_output
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.run_files import OwnRunFile


def _host(run_files: Any) -> tuple[PluginHost, Any]:
    """A core host with a plugin whose command ``acme-pack`` declares ``run_files``."""

    class Plugin:
        @hookimpl
        def deepseek_register_commands(self, register: Any) -> None:
            register("acme-pack", "deepseek_acme.cli:pack", description="pack a run",
                     declares={"run_files": run_files})

    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a refused registration is a PluginWarning: its record says why
        record = host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0")
    return host, record


def _run_folder(folder: Path) -> Path:
    """What makes a folder a run's: its config.toml and checkpoints/."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.toml").write_text('[model]\nname = "gpt"\n')
    return folder


def test_a_file_a_command_declares_it_writes_in_its_runs_is_refused_as_an_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host, record = _host(["pack.json"])
    assert record.status == "ok", record.reason
    run = _run_folder(tmp_path / "run")
    with pytest.raises(UsageError, match=f"^--json: {run / 'pack.json'} is a place of the run folder {run}'s own "
                       "files \\(its training or the command that made it writes it there\\); give another path, e.g. "
                       f"{run / 'NAME'}$"):  # not written yet: no checkpoint is pruned with it
        check_output(run / "pack.json", where="--json", folder=False, host=host)
    (run / "pack.json").write_text("{}")
    before = (run / "pack.json").read_bytes()
    with pytest.raises(SystemExit) as exit_:  # through a command of core's, refused before its work
        main(["bench", "latency", "--model", "tiny", "--json", str(run / "pack.json")], host=host)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --json: {run / 'pack.json'} is a file of the run folder {run} (written by its training or the "
        f"command that made it); give another path, e.g. {run / 'latency.json'}"]
    assert (run / "pack.json").read_bytes() == before
    # another file of the run folder, a pack.json outside a run, and a host without the command: the command's
    (run / "mine.json").write_text("{}")
    (tmp_path / "pack.json").write_text("{}")
    assert check_output(run / "mine.json", where="--json", folder=False, host=host) == []
    assert check_output(tmp_path / "pack.json", where="--json", folder=False, host=host) == []
    bare = PluginHost(PluginSettings(autoload=False))
    assert check_output(run / "pack.json", where="--json", folder=False, host=bare) == []


@pytest.mark.parametrize("run_files", [["../pack.json"], ["reports/pack.json"], "pack.json", [""], [3]])
def test_a_declaration_that_is_not_a_list_of_plain_file_names_is_refused_at_registration(run_files: Any) -> None:
    """Checked when the command is registered: the plugin is skipped with one line naming it (a
    string was taken letter by letter)."""
    host, record = _host(run_files)
    assert record.status == "failed"
    shown = list(run_files) if isinstance(run_files, list) else run_files
    assert f"command 'acme-pack': declares['run_files'] must be a list of file names in the run folder (no '/'; a " \
           f"folder's name ends in one: 'acme-plots/'), got {shown!r}" in record.reason, record.reason
    assert not any(c.dist == "deepseek-acme" for c in host.components("command"))


def test_a_folder_output_inside_a_runs_checkpoints_is_refused(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_folder(tmp_path / "run")
    (run / "checkpoints" / "step-2").mkdir()
    host = PluginHost(PluginSettings(autoload=False))
    deep = run / "checkpoints" / "step-2" / "a" / "b" / "c"  # any depth: it was looked for 4 folders up only
    for target in (run / "checkpoints" / "new", run / "checkpoints", run / "checkpoints" / "step-2" / "x",
                   run / "metrics.jsonl", deep, deep / "d"):
        why = ("its training or the command that made it writes it there" if target.name == "metrics.jsonl" else
               "its training writes them, and deletes a pruned checkpoint's folder")
        with pytest.raises(UsageError) as refused:
            check_output(target, where="--out", folder=True)
        assert str(refused.value) == (f"--out: {target} is a place of the run folder {run}'s own files ({why}); give a "
                                      f"folder outside the run, e.g. {tmp_path / ('run-' + target.name)}")
    with pytest.raises(SystemExit) as exit_:  # the trainer's run folder too, before any model is built
        main(["train", "--run-dir", str(run / "checkpoints" / "new"), "--max-steps", "1"], host=host)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: --run-dir: {run / 'checkpoints' / 'new'} is a place "
                                                      f"of the run folder {run}'s own files")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]
    with pytest.raises(UsageError, match=f"^--json: {deep / 'r.json'} is a place of the run folder {run}'s own"):
        check_output(deep / "r.json", where="--json", folder=False, host=host)  # a file output likewise
    assert list((run / "checkpoints" / "step-2").iterdir()) == []
    # the run folder itself (a resumed run writes there) and a folder beside its files stay outputs
    assert check_output(run, where="--run-dir", folder=True) == []
    assert check_output(run / "exports", where="--out", folder=True) == [run / "exports"]


def test_a_folder_filled_with_a_commands_own_files_is_refused_when_it_is_a_run_folder(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    with pytest.raises(UsageError, match=f"^--out: {run} is a run folder \\(its config.toml and checkpoints/ are a "
                       f"run's\\); give a folder of its own, e.g. {tmp_path / 'run-study'}$"):
        check_output(run, where="--out", folder=True, file_name="study", not_a_run=True)
    (tmp_path / "study").mkdir()
    assert check_output(tmp_path / "study", where="--out", folder=True, not_a_run=True) == []


def test_the_files_the_trainer_writes_beside_its_config_are_the_runs_own(tmp_path: Path) -> None:
    """``final_checkpoint.json`` (a tracked run's end) and the configs a resume keeps
    (``config.edited.toml``, ``config.edited-2.toml``, ...) are the run's, as its ``config.toml``
    is: a command's --json in their place was taken and replaced them."""
    from deepseek.training.run_folder import keep_edited_config

    run = _run_folder(tmp_path / "run")
    host = PluginHost(PluginSettings(autoload=False))
    recorded = {"train": {"lr": 0.001}}
    kept = []
    for lr in (0.002, 0.003):  # two resumes of a hand-edited config.toml: each edit is kept, the second beside
        (run / "config.toml").write_text(f"[train]\nlr = {lr}\n")
        line = keep_edited_config(run, recorded, recorded, resume=run / "checkpoints" / "step-1")
        assert line is not None
        (run / "config.toml").write_text("[train]\nlr = 0.001\n")  # what the resume writes there next
        kept.append(sorted(p.name for p in run.glob("config.edited*")))
    assert kept == [["config.edited.toml"], ["config.edited-2.toml", "config.edited.toml"]]
    (run / "final_checkpoint.json").write_text("{}")
    for name in ("final_checkpoint.json", "config.edited.toml", "config.edited-2.toml", "config.edited-3.toml"):
        with pytest.raises(UsageError, match=f"^--json: {run / name} is a (file|place) of the run folder {run}"):
            check_output(run / name, where="--json", folder=False, host=host)
    for name in ("config.edited-x.toml", "config.edited.toml.bak", "final_checkpoint-2.json"):  # a user's own
        assert check_output(run / name, where="--json", folder=False, host=host) == []


def test_replaces_is_the_commands_own_declared_file_not_the_runs_dataset_s(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``replaces=`` skipped the run's declared files as a whole: ``deepseek export`` (its default
    ``RUN/model.pt2`` or ``--out RUN/model.pt2``) replaced a ``model.pt2`` that the run's dataset
    declares in ``written_files``. It now leaves out the name from the commands' declarations only:
    the run's dataset or model declaring it too (its own distribution's command's file) keeps it,
    and a name no command declares (a plugin's hooks' file) is no command's to replace. A dataset
    declaring another distribution's file (export's ``model.pt2``) is refused as a whole."""
    from deepseek.data.text import TextDataset

    class Exporting(TextDataset):
        written_files = ("acme-export.json",)  # export's model.pt2 once registered (below)

    class Packing(TextDataset):
        written_files = ("pack.json",)

    class Plugin:
        @hookimpl
        def deepseek_register_datasets(self, register: Any) -> None:
            register("acme.text", Exporting, description="text whose runs write model.pt2")
            register("acme.packed", Packing, description="text whose runs write pack.json")

        @hookimpl
        def deepseek_register_commands(self, register: Any) -> None:
            register("acme-pack", "deepseek_acme.cli:pack", description="pack a run", declares={"run_files": ["pack.json"]})

        @hookimpl
        def deepseek_declare_run_files(self, declare: Any) -> None:
            declare(["acme-state.jsonl"])

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0").status == "ok"
    # declared as registered, model.pt2 refused the plugin (test_written_files.py); a class
    # attribute changed since is refused where the run's dataset is read
    Exporting.written_files = ("model.pt2",)
    run = _run_folder(tmp_path / "run")
    (run / "config.toml").write_text('[data]\nname = "acme.text"\n')
    (run / "model.pt2").write_bytes(b"the dataset's")
    for out in ([], ["--out", str(run / "model.pt2")]):  # refused before the checkpoint is read
        with pytest.raises(SystemExit) as exit_:
            main(["export", "--checkpoint", str(run), *out], host=host)
        assert exit_.value.code == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: dataset {__name__}.{Exporting.__qualname__} (deepseek-acme 0.1.0, registered as 'acme.text'): "
            "written_files names 'model.pt2', which deepseek-core 0.1.0 (its command 'export') declared first: both "
            "would write RUN/model.pt2; give your file a name of your own, starting with your plugin's name"]
    assert (run / "model.pt2").read_bytes() == b"the dataset's"
    (run / "config.toml").write_text('[data]\nname = "acme.packed"\n')
    (run / "pack.json").write_bytes(b"the dataset's")
    pack = OwnRunFile(host.resolve("command", "acme-pack"), "pack.json")
    with pytest.raises(UsageError, match=f"^--out: {run / 'pack.json'} is a file of the run folder {run} "):
        check_output(run / "pack.json", where="--out", folder=False, host=host, replaces=pack)
    with pytest.raises(PluginError, match="command 'export' .*: cannot replace 'acme-state.jsonl' as its own run file"):
        export_run_file(host, "acme-state.jsonl")  # the hooks' file is no command's to replace
    (run / "config.toml").write_text('[data]\nname = "text"\n')  # a run of a dataset declaring none: the command's own
    assert check_output(run / "model.pt2", where="--out", folder=False, host=host,
                        replaces=export_run_file(host, "model.pt2")) == []
    assert check_output(run / "pack.json", where="--out", folder=False, host=host, replaces=pack) == []


def test_a_command_replaces_only_a_file_it_declares_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``replaces=`` was a bare name any command could give: a plugin's command passing
    ``replaces=("model.pt2",)`` (export's declared file) wrote over the run's exported program. A
    command names its own file through its registration (:class:`OwnRunFile`, made from
    ``running_command()``), which is refused for a name it does not declare, and check_output
    refuses a bare name and a registration that is not the one its host holds."""
    import dataclasses

    run = _run_folder(tmp_path / "run")
    for name in ("model.pt2", "pack.json"):
        (run / name).write_bytes(b"kept")

    @click.command("acme-pack")
    @click.argument("name")
    def pack(name: str) -> None:
        from deepseek.cli.context import command_host

        host = command_host()
        check_output(run / name, where="--out", folder=False, host=host, replaces=OwnRunFile(running_command(), name))
        (run / name).write_bytes(b"packed")

    @click.command("acme-bare")
    def bare() -> None:
        from deepseek.cli.context import command_host

        check_output(run / "model.pt2", where="--out", folder=False, host=command_host(), replaces=("model.pt2",))

    class Plugin:
        @hookimpl
        def deepseek_register_commands(self, register: Any) -> None:
            register("acme-pack", pack, description="pack a run", declares={"run_files": ["pack.json"]})
            register("acme-bare", bare, description="replace by a bare name")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0").status == "ok"
    with pytest.raises(SystemExit) as exit_:
        main(["acme-pack", "model.pt2"], host=host)
    assert exit_.value.code == 1 and "error: command 'acme-pack' (deepseek-acme 0.1.0, registered by " \
        "test_command_run_files): cannot replace 'model.pt2' as its own run file: it declares ['pack.json'] in " \
        "declares['run_files']; a command replaces only what it declares when it registers" in capsys.readouterr().err
    assert (run / "model.pt2").read_bytes() == b"kept"
    with pytest.raises(SystemExit) as exit_:  # its own declared file: written again
        main(["acme-pack", "pack.json"], host=host)
    assert exit_.value.code == 0 and (run / "pack.json").read_bytes() == b"packed"
    with pytest.raises(SystemExit) as exit_:  # a bare name from a command: its line names the command
        main(["acme-bare"], host=host)
    assert exit_.value.code == 1 and "error: command 'acme-bare' (deepseek-acme 0.1.0, registered by " \
        "test_command_run_files): replaces=('model.pt2',): give a deepseek.run_files.OwnRunFile" in capsys.readouterr().err
    assert (run / "model.pt2").read_bytes() == b"kept"
    for replaces in (("model.pt2",), "model.pt2"):  # a bare name: any command could give it
        with pytest.raises(PluginError, match=r"^replaces=.*: give a deepseek.run_files.OwnRunFile"):
            check_output(run / "model.pt2", where="--out", folder=False, host=host, replaces=replaces)  # type: ignore[arg-type]
    export = export_run_file(host, "model.pt2")
    forged = OwnRunFile(dataclasses.replace(export.command), "model.pt2")  # equal, but not the host's registration
    other = export_run_file(PluginHost(PluginSettings(autoload=False)), "model.pt2")  # another host's
    for claim in (forged, other):
        with pytest.raises(PluginError, match="replaces 'model.pt2' through a registration that is not the command's"):
            check_output(run / "model.pt2", where="--out", folder=False, host=host, replaces=claim)
    assert check_output(run / "model.pt2", where="--out", folder=False, host=host, replaces=export) == []
    assert (run / "model.pt2").read_bytes() == b"kept"
