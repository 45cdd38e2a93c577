"""``sharded.json``'s ``scalars`` (non-tensor optimizer state) read back as they were written: the
writer (deepseek-pro's sharded save) encodes them with ``jsonable_tree``, which tags a tuple; the
reader returned the tag (``{"__tuple__": [...]}``) where the optimizer had kept a tuple, while the
parameter groups beside them were decoded."""

from __future__ import annotations

import json
import math
from pathlib import Path

from deepseek.training.checkpoint_io import jsonable_tree
from deepseek.training.checkpoint_sharded import SHARDED_META, read_sharded_meta


def test_scalars_read_back_as_the_optimizer_kept_them(tmp_path: Path) -> None:
    scalars = {"wte.weight": {"betas_seen": (0.9, 0.95), "nested": {"pair": (1, 2), "n": 3}, "far": math.inf,
                              "steps": [1, (2, 3)], "name": "x"}}
    body = {"param_groups": [{"lr": 0.1, "weight_decay": 0.0, "betas": jsonable_tree((0.9, 0.95)), "params": ["wte.weight"]}],
            "scalars": jsonable_tree(scalars), "aliases": {}, "files": {}}
    (tmp_path / SHARDED_META).write_text(json.dumps(body), encoding="utf-8")
    meta = read_sharded_meta(tmp_path)
    assert meta["scalars"] == scalars
    kept = meta["scalars"]["wte.weight"]
    assert type(kept["betas_seen"]) is tuple and type(kept["nested"]["pair"]) is tuple
    assert type(kept["steps"][1]) is tuple
    assert meta["param_groups"][0]["betas"] == (0.9, 0.95)
