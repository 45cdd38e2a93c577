"""docs/plugins.md section 15's command (``deepseek acme-peek RUN``), installed as a plugin exactly
as the page shows it: it reads a run folder that ``deepseek train`` wrote, from the command line
and through ``main(host=)``, refuses bad folders in one line with exit code 2, and leaves
``deepseek --help`` free of torch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from plugin_testing import DistFactory, host_for, run_cli

from deepseek.training.metrics import read_metrics

REPO = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)\n```", re.S)

TINY = """
[model]
name = "tiny"
d_model = 32
n_heads = 2
n_layers = 1
max_seq_len = 16

[data]
seq_len = 16
batch_size = 2
eval_batches = 1

[train]
max_steps = 3
warmup_steps = 1
eval_interval = 3

[optimizer]
name = "sgd"

[strategy]
name = "single"
device = "cpu"

[logging]
progress = false
plot = false
"""


@pytest.fixture(scope="module")
def pages_blocks() -> dict[str, str]:
    return dict(BLOCK.findall((REPO / "docs" / "plugins.md").read_text(encoding="utf-8")))


@pytest.fixture
def acme(make_dist: DistFactory, pages_blocks: dict[str, str]) -> DistFactory:
    make_dist("deepseek-acme", {"deepseek_acme.plugin": pages_blocks["command-plugin-hooks"],
                                "deepseek_acme.commands": pages_blocks["command-plugin"]},
              entry_points={"acme": "deepseek_acme.plugin"})
    return make_dist


def _last_loss(run: Path) -> tuple[int, float]:
    rows = read_metrics(run / "metrics.jsonl")
    last = [r for r in rows if "loss" in r][-1]
    return last["step"], last["loss"]


def test_the_pages_command_reads_a_trained_run(acme: DistFactory, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    run = tmp_path / "run"
    trained = run_cli("train", str(tmp_path / "tiny.toml"), "--run-dir", str(run), env=acme.env())
    assert trained.returncode == 0, trained.stderr
    step, loss = _last_loss(run)
    line = f"{run}: model tiny, optimizer sgd, step {step}, loss {loss:.4f}\n"
    assert step == 3

    out = run_cli("acme-peek", str(run), env=acme.env())
    assert (out.returncode, out.stdout, out.stderr) == (0, line, "")

    from deepseek.cli.main import main

    with pytest.raises(SystemExit) as exit_:  # section 9's way: the test's own host
        main(["acme-peek", str(run)], host=host_for("deepseek-acme"))
    assert exit_.value.code == 0
    assert capsys.readouterr().out == line

    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + "{oops\n")
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    out = run_cli("acme-peek", str(run), env=acme.env())
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.splitlines() == [
        f"error: {run / 'metrics.jsonl'}:{lines}: not a JSON line ('{{oops'); repair or delete it"]


def test_a_folder_without_a_run_is_one_line(acme: DistFactory, tmp_path: Path) -> None:
    out = run_cli("acme-peek", str(tmp_path), env=acme.env())
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.splitlines() == [
        f"error: {tmp_path}: no config.toml here; give a run folder that deepseek train wrote (runs/<name>)"]


HELP = """
import json, sys

from deepseek.cli.main import main

try:
    main(["--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(json.dumps({m: m in sys.modules for m in sys.argv[1:]}), file=sys.stderr)
"""


def test_help_lists_it_without_importing_its_module_or_torch(acme: DistFactory) -> None:
    import subprocess
    import sys

    modules = ["deepseek_acme.plugin", "deepseek_acme.commands", "deepseek.config.load", "torch"]
    out = subprocess.run([sys.executable, "-c", HELP, *modules], capture_output=True, text=True, env=acme.env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\s+acme-peek\s+show a run folder's model and last loss$", out.stdout, re.M), out.stdout
    assert json.loads(out.stderr.splitlines()[-1]) == {"deepseek_acme.plugin": True, "deepseek_acme.commands": False,
                                                       "deepseek.config.load": False, "torch": False}
