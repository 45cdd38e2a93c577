"""``deepseek checkpoint export`` and the files a plugin strategy adds to its checkpoints, as
docs/plugins.md section 12 says: the export copies the canonical files and the per-rank random
state only, so a strategy's own file is not in the copy (its ``load_checkpoint`` starts from the
canonical state there), while the source keeps it, listed in its commit record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer
from deepseek_pro.checkpoint import export_checkpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
NOTE = "acme-note.json"


class Noting(SingleDeviceStrategy):
    """``single``, writing a file of its own into each checkpoint."""

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        super().save_checkpoint(directory, trainer_state)
        (Path(directory) / NOTE).write_text(json.dumps(trainer_state["step"]))


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.noting", Noting, description="single, with a file of its own",
                 declares={"memory_rows": ["single"]})


def test_export_leaves_a_strategys_own_file_out(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    tables = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16},
              "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1}, "train": {"max_steps": 2, "eval_interval": 0},
              "strategy": {"name": "acme.noting", "device": "cpu"}, "precision": {"dtype": "fp32"},
              "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path)}}
    done = Trainer(config_from_dict(tables, host=host), run_dir=tmp_path / "run", host=host, quiet=True).fit()
    source = done.run_dir / "checkpoints" / "step-2"
    assert json.loads((source / NOTE).read_text()) == 2
    assert NOTE in json.loads((source / "commit.json").read_text())["files"]

    out = export_checkpoint(done.run_dir, tmp_path / "exported", host=host)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "optimizer.safetensors",
                                                     "rng-0.safetensors", "trainer.json"]
    page = " ".join(DOC.read_text(encoding="utf-8").split())
    assert ("`deepseek checkpoint export` (deepseek-pro) copies the canonical files and the per-rank random state "
            "only, so `load_checkpoint` must accept a folder without them") in page
