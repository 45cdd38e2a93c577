"""The fp16 loss scaler's state a checkpoint's ``trainer.json`` saves (``precision.scaler``: torch's
``GradScaler.state_dict()``), read back like user input: the run ``ddp_fp16prec`` of the shared
two-rank runs (``pro_runs``; ddp, ``precision.dtype = "fp16"``) resumed under ``single`` in this
process with one field edited (its commit record rewritten to match). torch's ``load_state_dict``
takes any number: each of these resumed, and the first ones trained on with the value and saved it
again (a negative scale), or failed at the first step (an internal error for a scale past float32,
a NaN gradient norm blamed on the data for a scale of 0)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import rerecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
from hostile_cli import Hostile  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402

STEP = Path("run", "checkpoints", "step-5")
EXPECTED = {"scale": "a number > 0 and at most the largest float32", "growth_factor": "a finite number > 1",
            "backoff_factor": "a number > 0 and < 1", "growth_interval": "a whole number from 1 to 2147483647",
            "_growth_tracker": "a whole number from 0 to 1999 (below growth_interval)"}


@pytest.mark.parametrize(("field", "value"), [
    ("scale", -1.0), ("scale", 0.0), ("scale", 1e39), ("growth_factor", 0.5), ("backoff_factor", 2.0),
    ("growth_interval", 0), ("growth_interval", 2**31), ("_growth_tracker", -5), ("_growth_tracker", 1.5), ("surprise", 1),
])
def test_a_tampered_loss_scaler_state_is_refused(pro_runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 field: str, value: Any) -> None:
    shutil.copytree(pro_runs["dir"] / "ddp_fp16prec", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    body = json.loads((STEP / "trainer.json").read_text(encoding="utf-8"))
    scaler = body["precision"]["scaler"]
    assert sorted(scaler) == sorted(EXPECTED)  # what torch's GradScaler saves
    scaler[field] = value
    (STEP / "trainer.json").write_text(json.dumps(body), encoding="utf-8")
    rerecord(STEP, "trainer.json")
    hostile = Hostile(PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"}))), tmp_path,
                      [tmp_path / "run"])
    where = f"error: {STEP}/trainer.json: precision.scaler"
    words = ([f"{where} is an object ("] if field == "surprise" else
             [f"{where}.{field} is a number ({value!r}), expected {EXPECTED[field]}; the file is corrupt or was edited"])
    hostile.refused("train", "--resume", str(STEP), "--strategy", "single", "--set", 'strategy.device="cpu"',
                    "--max-steps", "7", "--run-dir", "new", "--quiet", expect=words)
    assert not (tmp_path / "new").exists()
