"""A run's config.toml edited by hand, then ``deepseek train --resume RUN``: the resume runs the
checkpoint's config (as documented), and the edited file was replaced by the resolved config
without a word. Now it is kept as config.edited.toml and one warning line names the values not
applied and the command that applies them. (``deepseek train`` runs in this process: what is
checked is what it prints and writes.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CONFIG = ('[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 2\nmax_seq_len = 32\n'
          '[data]\nbatch_size = 8\nseq_len = 32\neval_batches = 2\n'
          '[train]\neval_interval = 0\nmax_steps = 4\n[strategy]\ndevice = "cpu"\n')

DeepseekHere = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, deepseek_here: DeepseekHere) -> Path:
    root = tmp_path_factory.mktemp("edited")
    (root / "c.toml").write_text(CONFIG)
    proc = deepseek_here("train", "c.toml", "--run-dir", "r", "--quiet", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "r"


@pytest.fixture
def train(deepseek_here: DeepseekHere) -> DeepseekHere:
    """``deepseek train ARGS`` in this process (conftest's ``deepseek_here``): what these tests
    check is what the command prints and writes."""
    return lambda *args, cwd: deepseek_here("train", *args, cwd=cwd)


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "r")
    return tmp_path / "r"


def _edit(run: Path) -> str:
    text = (run / "config.toml").read_text()
    assert "\nlr = 0.002\n" in text and "\nmax_steps = 4\n" in text
    edited = text.replace("\nlr = 0.002\n", "\nlr = 0.0005\n").replace("\nmax_steps = 4\n", "\nmax_steps = 8\n")
    (run / "config.toml").write_text(edited)
    return edited


def _recorded(run: Path, step: int) -> dict:
    return json.loads((run / "checkpoints" / f"step-{step}" / "trainer.json").read_text())["config"]["train"]


def test_an_edited_config_is_kept_and_named_on_resume(run: Path, train: DeepseekHere) -> None:
    edited = _edit(run)
    proc = train("--resume", "r", "--max-steps", "6", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    kept = run / "config.edited.toml"
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warning == [
        f"warning: {run}/config.toml was edited since the run wrote it, and a resume does not read it: this run "
        "trains from r/checkpoints/step-4 with the checkpoint's config and this command's options, so it uses "
        "train.lr = 0.002 (the file says 0.0005); train.max_steps = 6 (the file says 8); the file is kept as "
        f"{kept} and config.toml now records what runs; to train with the edit instead, stop this run (Ctrl-C) and "
        f"resume from the run's newest checkpoint with the file as the config: deepseek train {kept} --resume {run}"
    ], proc.stderr
    assert "resumed from r/checkpoints/step-4 at step 4, with config changes: train.max_steps 4 -> 6\n" in proc.stderr
    # what ran: the checkpoint's lr, --max-steps' 6 steps; config.toml says so, the edit is kept as it was
    assert _recorded(run, 6)["lr"] == 0.002 and _recorded(run, 6)["max_steps"] == 6
    assert not (run / "checkpoints" / "step-8").exists()
    written = (run / "config.toml").read_text()
    assert "\nlr = 0.002\n" in written and "\nmax_steps = 6\n" in written
    assert kept.read_text() == edited
    # the command the line gives applies the edit
    proc = train(str(kept), "--resume", str(run), "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert ("at step 6, with config changes: train.lr 0.002 -> 0.0005; train.max_steps 6 -> 8\n" in proc.stderr)
    assert _recorded(run, 8)["lr"] == 0.0005 and _recorded(run, 8)["max_steps"] == 8
    assert "\nlr = 0.0005\n" in (run / "config.toml").read_text()
    assert sorted(p.name for p in run.glob("config*")) == ["config.edited.toml", "config.toml"]


def test_the_edited_config_toml_itself_given_as_the_config_applies_without_a_warning(run: Path, train: DeepseekHere) -> None:
    _edit(run)
    proc = train("r/config.toml", "--resume", "r", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert ("resumed from r/checkpoints/step-4 at step 4, with config changes: train.lr 0.002 -> 0.0005; "
            "train.max_steps 4 -> 8\n") in proc.stderr
    assert _recorded(run, 8)["lr"] == 0.0005
    assert sorted(p.name for p in run.glob("config*")) == ["config.toml"]


def test_an_unedited_config_and_options_given_on_resume_warn_nothing(run: Path, train: DeepseekHere) -> None:
    proc = train("--resume", "r", "--max-steps", "6", "--set", "train.lr=0.001", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in run.glob("config*")) == ["config.toml"]
    assert "\nlr = 0.001\n" in (run / "config.toml").read_text()


def test_a_config_toml_broken_by_an_edit_is_kept_too(run: Path, train: DeepseekHere) -> None:
    (run / "config.toml").write_text("[train\nmax_steps = 8\n")
    proc = train("--resume", "r", "--max-steps", "5", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warning.startswith(f"warning: {run}/config.toml is not valid TOML ("), warning
    # what the file as the config would undo (this command's --max-steps) comes along as a --set
    assert warning.endswith("and a resume does not read it: this run trains from r/checkpoints/step-4 with the "
                            "checkpoint's config and this command's options; the file is kept as "
                            f"{run}/config.edited.toml and config.toml now records what runs; to train with the edit "
                            "instead, stop this run (Ctrl-C), fix the file and resume from the run's newest "
                            f"checkpoint with the file as the config: deepseek train {run}/config.edited.toml "
                            f"--resume {run} --set train.max_steps=5"), warning
    assert (run / "config.edited.toml").read_text() == "[train\nmax_steps = 8\n"
    assert "\nmax_steps = 5\n" in (run / "config.toml").read_text()


def test_the_command_given_keeps_this_commands_options_and_applies_the_edit(run: Path, train: DeepseekHere, tmp_path: Path) -> None:
    """Only ``train.lr`` edited, resumed with ``--max-steps 6``: the line says what runs (lr 0.002)
    and its command carries ``--set train.max_steps=6``; without it the file's recorded
    ``max_steps = 4`` came back and that command found the run complete at step 4, training nothing.
    Stopped before its first step (a copy of the folder as it was), the command trains to step 6
    with the edited lr."""
    before = tmp_path / "before"
    shutil.copytree(run, before)
    text = (run / "config.toml").read_text().replace("\nlr = 0.002\n", "\nlr = 0.0005\n")
    (run / "config.toml").write_text(text)
    (before / "config.toml").write_text(text)
    proc = train("--resume", "r", "--max-steps", "6", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert "so it uses train.lr = 0.002 (the file says 0.0005); the file is kept as" in warning, warning
    assert warning.endswith(f"deepseek train {run}/config.edited.toml --resume {run} --set train.max_steps=6"), warning
    assert _recorded(run, 6)["lr"] == 0.002
    # the same command in the folder as this run found it (the run stopped before its first step)
    command = warning.partition(": deepseek ")[2].replace(str(run), str(before)).split()
    assert command[:2] == ["train", str(before / "config.edited.toml")], command
    (before / "config.toml").rename(before / "config.edited.toml")
    proc = train(*command[1:], "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "at step 4, with config changes: train.lr 0.002 -> 0.0005; train.max_steps 4 -> 6\n" in proc.stderr
    assert _recorded(before, 6)["lr"] == 0.0005 and _recorded(before, 6)["max_steps"] == 6


def test_a_complete_run_names_an_edited_max_steps(run: Path, train: DeepseekHere) -> None:
    """``--resume RUN`` of a finished run whose config.toml now says ``max_steps = 8``: the run
    stays complete (the checkpoint's config runs), exit 0, and the line names the edit and the
    command that applies it; nothing in the folder changes. With that command it trains on."""
    edited = _edit(run)
    proc = train("--resume", "r", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "the run is complete, its checkpoint is at step 4 and train.max_steps is 4" in line, line
    assert line.endswith(f"; {Path('r') / 'config.toml'} sets train.max_steps = 8, which a resume does not read (it "
                         f"runs the checkpoint's config): to apply it, deepseek train {Path('r') / 'config.toml'} "
                         "--resume r"), line
    assert (run / "config.toml").read_text() == edited and not (run / "config.edited.toml").exists()
    # a command that named its --run-dir: the command that applies the edit names it too (without it,
    # a resume of a checkpoint folder continues in that checkpoint's run folder, not in this one)
    proc = train("--resume", "r", "--run-dir", "r", "--quiet", cwd=run.parent)
    assert proc.returncode == 0 and proc.stderr.rstrip().endswith(" --resume r --run-dir r"), proc.stderr
    # the length asked for on the command line (4, the checkpoint's): what the user chose, no note
    for option in (["--max-steps", "4"], ["--set", "train.max_steps=4"]):
        proc = train("--resume", "r", *option, "--quiet", cwd=run.parent)
        assert proc.returncode == 0 and "the run is complete" in proc.stderr, proc.stderr
        assert "sets train.max_steps" not in proc.stderr, proc.stderr
    proc = train("r/config.toml", "--resume", "r", "--quiet", cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    assert _recorded(run, 8)["max_steps"] == 8


def test_resumed_from_python_the_line_names_the_calls_arguments(run: Path, core_host: Any) -> None:
    """The same resume by ``Trainer(config, resume=RUN)`` from Python (no command typed): the line
    named 'this command's options' and 'deepseek train ... --set train.max_steps=6'; it names the
    call's arguments: the kept file as ``config=``, ``resume=``, and the value the file must set too."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.run_folder import EditedConfigWarning
    from deepseek.training.trainer import Trainer

    text = (run / "config.toml").read_text().replace("\nlr = 0.002\n", "\nlr = 0.0005\n")
    (run / "config.toml").write_text(text)
    table = json.loads((run / "checkpoints" / "step-4" / "trainer.json").read_text())["config"]
    table["train"]["max_steps"] = 6
    with pytest.warns(EditedConfigWarning) as caught:
        Trainer(config_from_dict(table, host=core_host), resume=run, quiet=True, host=core_host).fit()
    (warning,) = [str(w.message) for w in caught if w.category is EditedConfigWarning]
    kept = run / "config.edited.toml"
    assert warning == (
        f"{run}/config.toml was edited since the run wrote it, and a resume does not read it: this run trains from "
        f"{run}/checkpoints/step-4 with the checkpoint's config and this call's arguments, so it uses train.lr = "
        f"0.002 (the file says 0.0005); the file is kept as {kept} and config.toml now records what runs; to train "
        "with the edit instead, stop this run (Ctrl-C) and resume from the run's newest checkpoint with the file as "
        f"the config: config={str(kept)!r}, resume={str(run)!r}, the file also setting train.max_steps = 6")
    assert _recorded(run, 6)["lr"] == 0.002 and kept.read_text() == text


def test_resume_dot_from_inside_a_checkpoint_continues_its_run(run: Path, train: DeepseekHere) -> None:
    """``deepseek train --resume .`` in ``RUN/checkpoints/step-4``: the run folder was read from the
    name as given ('.', no 'checkpoints' above it), so the resume wanted a new folder under
    logging.runs_dir, inside the run, and was refused; it continues the checkpoint's own run."""
    proc = train("--resume", ".", "--max-steps", "6", "--quiet", cwd=run / "checkpoints" / "step-4")
    assert proc.returncode == 0, proc.stderr
    assert _recorded(run, 6)["max_steps"] == 6
    assert not (run / "checkpoints" / "step-4" / "runs").exists()  # no run folder made inside the checkpoint


def test_fit_resuming_a_complete_run_names_an_edited_max_steps(tmp_path: Path, core_host: Any) -> None:
    """``deepseek.fit(resume=RUN)`` of a finished run whose config.toml now says ``max_steps = 5``:
    ``deepseek train --resume`` named the edit and how to apply it, fit warned only that the run is
    complete. Its warning names the edit in the call's words; the config it names trains on."""
    import torch
    from torch import nn

    import deepseek
    from deepseek.training.script import RunCompleteWarning

    class Line(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": nn.functional.cross_entropy(self.w(x), y)}

    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    config = {"train": {"max_steps": 2, "eval_interval": 0}, "data": {"eval_batches": 1},
              "logging": {"progress": False, "plot": False}}
    run = tmp_path / "run"

    def fit(**kwargs: Any) -> Any:
        return deepseek.fit(Line, data, names=("x", "y"), batch_size=8, quiet=True, host=core_host, **kwargs)

    fit(config=config, run_dir=run)
    text = (run / "config.toml").read_text()
    assert "\nmax_steps = 2\n" in text
    (run / "config.toml").write_text(text.replace("\nmax_steps = 2\n", "\nmax_steps = 5\n"))
    with pytest.warns(RunCompleteWarning) as caught:
        again = fit(config=config, resume=run)
    (line,) = [str(w.message) for w in caught if w.category is RunCompleteWarning]
    assert again.step == 2 and line.startswith(f"resume={str(run / 'checkpoints' / 'step-2')!r}: the run is complete")
    assert line.endswith(f"; {run / 'config.toml'} sets train.max_steps = 5, which a resume does not read (it runs "
                         "this call's config): to apply it, set train.max_steps = 5 in the config of the call "
                         "(config=)"), line
    longer = fit(config={**config, "train": {**config["train"], "max_steps": 5}}, resume=run)
    assert (longer.resumed_at, longer.step) == (2, 5)
