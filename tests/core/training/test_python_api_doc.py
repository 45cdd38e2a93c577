"""Every Python block of docs/python-api.md runs as the page gives it (each is marked
``<!-- test: NAME -->``), in an empty working folder, in the page's order where a block uses what
an earlier one made: ``deepseek.fit`` and ``deepseek.evaluate`` on the page's ``Net``, the callback
of "Settings, run folder, resume", ``load_model`` and ``optimize`` of a quick-cpu run, and the
``Trainer`` section (a config as data, a resume equal to a straight run bit for bit, an
in-process model and dataset on a host of its own, evaluated on a test split and loaded back, the
commands through ``main(host=)``, ``deepseek.export`` of that run, its program checked against the
model). The section did not exist: nothing on the page said how to
train a registered model (the ``tiny`` GPT, a plugin's) from Python."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "python-api.md"
BLOCK = re.compile(r"^( *)<!-- test: ([\w-]+) -->\n\1```python\n(.*?)\n\1```", re.S | re.M)


def blocks() -> dict[str, str]:
    return {name: textwrap.dedent(code) for _, name, code in BLOCK.findall(PAGE.read_text())}


def run_blocks(names: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Runs the page's blocks ``names`` in one namespace (a module of their own), in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("python_api_page")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    page = blocks()
    for name in names:
        exec(compile(page[name], f"docs/python-api.md:{name}", "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


def printed(out: str) -> list[Any]:
    """The lines the blocks printed that are Python literals (dicts, lists), read back."""
    values = []
    for line in out.splitlines():
        try:
            values.append(ast.literal_eval(line))
        except (ValueError, SyntaxError):
            continue
    return values


def eval_json(run: Path) -> dict[str, Any]:
    """``deepseek eval --checkpoint RUN --json``'s object."""
    import contextlib
    import io
    import json

    from deepseek.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["eval", "--checkpoint", str(run), "--json", "--device", "cpu"])
    assert done.value.code == 0
    return json.loads(out.getvalue())


def test_every_block_is_marked_and_known() -> None:
    text = PAGE.read_text()
    assert len(re.findall(r"^ *```python", text, re.M)) == len(blocks()) == 8
    assert list(blocks()) == ["fit-example", "fit-stopped", "fit-callbacks", "load-optimize", "trainer-resume",
                              "trainer-plugin", "trainer-commands", "export"]


def test_fit_and_its_callbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    run_blocks(["fit-example", "fit-callbacks"], monkeypatch, tmp_path)
    out = capsys.readouterr().out
    fitted, evaluated = [v for v in printed(out) if isinstance(v, dict)]
    assert fitted == evaluated and set(fitted) == {"val_loss", "val_accuracy"} and fitted["val_accuracy"] > 0.9
    steps = [int(line.split()[0]) for line in out.splitlines() if re.fullmatch(r"\d+ \d+\.\d+", line)]
    assert steps == [100, 200, 300, 400, 500, 600]                     # PrintLoss, every 100 steps of 600
    assert (tmp_path / "runs" / "mine" / "metrics.jsonl").is_file() and (tmp_path / "runs" / "cb").is_dir()


def test_load_model_and_optimize(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deepseek.cli.main import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:   # the run the block names, shortened
        main(["train", str(ROOT / "examples" / "configs" / "quick-cpu.toml"), "--max-steps", "2", "--quiet"])
    assert done.value.code == 0 and (tmp_path / "runs" / "quick-cpu").is_dir()
    space = run_blocks(["load-optimize"], monkeypatch, tmp_path)
    x = torch.randint(0, 256, (1, 64))
    with torch.no_grad():
        torch.testing.assert_close(space["fast"](x), space["model"](x), rtol=1e-4, atol=1e-4)
    assert not space["model"].training


def test_the_trainer_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    space = run_blocks(["trainer-resume", "trainer-plugin", "trainer-commands", "export"], monkeypatch, tmp_path)
    out = capsys.readouterr().out
    evaluations, fitted, tested, run_values, mlp_values, hf_files = [
        v for v in printed(out) if isinstance(v, (list, dict))]
    predicted, labels = (ast.literal_eval(part) for part in re.findall(r"^(\[.*\]) (\[.*\])$", out, re.M)[0])
    assert [step for step, _ in evaluations] == [0, 10, 20, 30, 40]
    assert space["resumed"].losses == space["straight"].losses[20:] and len(space["straight"].losses) == 40
    assert fitted == space["result"].val_metrics and fitted["val_accuracy"] > 0.9 and tested["val_accuracy"] > 0.9
    assert len(predicted) == 5 and sum(p == t for p, t in zip(predicted, labels, strict=True)) >= 4
    assert "complete at step 40" in out                                       # RunComplete's step
    assert "val_loss " in out and "(step 40, model tiny)" in out               # deepseek eval's line
    # deepseek.evaluate(checkpoint=): the command's values (its --json), and the run's own last evaluation
    assert set(run_values) == {"val_loss", "val_perplexity", "val_bits_per_byte"}
    assert run_values == {k: v for k, v in eval_json(tmp_path / "runs" / "straight").items() if k.startswith("val_")}
    assert run_values["val_loss"] == pytest.approx(space["straight"].val_metrics["val_loss"], rel=1e-6)
    assert mlp_values == pytest.approx(fitted, rel=1e-6)
    assert "torch.Size([3, 20, 256]) [{'shape': [2, 16], 'dtype': 'torch.int64'}]" in out   # deepseek.export's
    assert space["path"] == Path("runs/straight/model.pt2") and (tmp_path / space["path"]).is_file()   # as given
    assert hf_files == ["config.json", "model.safetensors"] and space["hf"] == Path("runs/straight-hf")
