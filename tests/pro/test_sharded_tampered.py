"""A sharded checkpoint's companion files tampered with, read back like user input: ``sharded.json``
(parameter groups, non-tensor optimizer state, tied names, shard list) and the DCP sharding info in
each shard's safetensors header (the pieces' offsets: torch's safetensors layout writes no
``.metadata`` file), each edit with its commit record rewritten to match, so that what is tested is
the content check, not the checksum. Every reader (``train --resume`` under ``single`` and under
``fsdp``, ``checkpoint info``, ``checkpoint export``) refuses it in one line, exit 2, with the run
folder byte for byte as it was and nothing written. One shared run (``pro_runs``' ``fsdp_sharded``,
two ranks) is copied for each case; every reader runs in this process (``fsdp`` as a one-rank group).
Each rank's ``rng-<rank>.safetensors`` (random generator states: JSON metadata and state words) is
tampered with the same way, and refused by a resume.

(The ``deepspeed`` strategy writes the canonical full layout, not DeepSpeed's own checkpoint folder:
it has no ``latest`` tag file or ``zero_pp_rank_*`` / ``mp_rank_*`` files to tamper with; the run's
own ``checkpoints/latest`` pointer is the last test here.)"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import one_rank_group, rerecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
from hostile_cli import Hostile  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402

STEP = Path("run", "checkpoints", "step-4")
SHARD = "model/shard-00002-model-00001-of-00001.safetensors"
OPT_SHARD = "optimizer/shard-00002-model-00001-of-00001.safetensors"
SINGLE = ["--strategy", "single", "--set", 'strategy.device="cpu"']


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pro_runs: dict) -> Hostile:
    """A copy of the shared two-rank ``fsdp_sharded`` run in ``tmp_path/run`` (checkpoints at steps
    4 and 5), the working folder; the run folder is watched."""
    shutil.copytree(pro_runs["dir"] / "fsdp_sharded", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    return Hostile(PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"}))), tmp_path,
                   [tmp_path / "run"])


def _meta(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def tamper(step: Path) -> None:
        body = json.loads((step / "sharded.json").read_text(encoding="utf-8"))
        out = edit(body)
        (step / "sharded.json").write_text(out if isinstance(out, str) else json.dumps(out), encoding="utf-8")
        rerecord(step, "sharded.json")
    return tamper


def _group0(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        body["param_groups"][0] = {k: v for k, v in {**body["param_groups"][0], **values}.items() if v is not None}
        return body
    return edit


def _offsets(name: str, value: Any) -> Callable[[Path], None]:
    """The DCP sharding info in ``SHARD``'s header with tensor ``name``'s entry set to ``value``
    (``None``: the entry left out); ``name`` ``"*"``: the whole info replaced by ``value``."""
    def tamper(step: Path) -> None:
        raw = (step / SHARD).read_bytes()
        size = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + size])
        info = json.loads(header["__metadata__"]["DCP_SHARDING_INFO"])
        info = value if name == "*" else {**{k: v for k, v in info.items() if k != name},
                                          **({name: value} if value is not None else {})}
        header["__metadata__"]["DCP_SHARDING_INFO"] = info if isinstance(info, str) else json.dumps(info)
        encoded = json.dumps(header).encode()
        encoded += b" " * (-len(encoded) % 8)
        (step / SHARD).write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size:])
        rerecord(step, SHARD)
    return tamper


def _cut(name: str, keep: float) -> Callable[[Path], None]:
    def tamper(step: Path) -> None:
        raw = (step / name).read_bytes()
        (step / name).write_bytes(raw[:int(len(raw) * keep)])
        rerecord(step, name)
    return tamper


META = "sharded.json: sharded checkpoint metadata is missing or corrupt ("
DAMAGED = "; the checkpoint is damaged, use an earlier checkpoint of the run"
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("meta not JSON", _meta(lambda b: '{"param_groups": ['), META + "Expecting value"),
    ("meta empty", _cut("sharded.json", 0), META + "Expecting value: line 1 column 1"),
    ("meta half", _cut("sharded.json", 0.5), META),
    ("meta a list", _meta(lambda b: [b]), META + "a JSON list where an object belongs)"),
    ("meta without groups", _meta(lambda b: {k: v for k, v in b.items() if k != "param_groups"}),
     META + "'param_groups')"),
    ("groups a string", _meta(lambda b: {**b, "param_groups": "all"}), META + "'param_groups' is not a list of objects)"),
    # an extra group holding group 0's parameters again (resume alone said "3 parameter groups, this run's 2")
    ("extra group", _meta(lambda b: {**b, "param_groups": [*b["param_groups"], b["param_groups"][0]]}),
     "sharded.json: parameter 'wte.weight' is in optimizer groups 0 and 2" + DAMAGED),
    ("group without params", _meta(_group0(params=None)),
     "sharded.json: optimizer group 0 params is not a list of parameter names" + DAMAGED),
    ("group lr a string", _meta(_group0(lr="fast")),
     "sharded.json: optimizer group 0 lr is 'fast', where a finite number belongs" + DAMAGED),
    # resumed with the live optimizer's lr (and its group's weight_decay), silently
    ("group without lr", _meta(_group0(lr=None)),
     "sharded.json: optimizer group 0 has no 'lr' (every group holds lr and weight_decay)" + DAMAGED),
    ("group weight_decay true", _meta(_group0(weight_decay=True)),
     "sharded.json: optimizer group 0 weight_decay is True, where a finite number belongs" + DAMAGED),
    # passed checkpoint info and export (only a resume, against the live optimizer, refused it): adamw
    # declares betas two numbers (OptimizerBuilder.hyper_parameters)
    ("group betas a string", _meta(_group0(betas="x")),
     "sharded.json: optimizer group 0 betas is 'x', where 2 finite numbers belong" + DAMAGED),
    # these three were an internal error (TypeError) of every reader but fsdp's, which resumed the last
    ("scalars a list", _meta(lambda b: {**b, "scalars": [["wte.weight", 1]]}),
     META + "'scalars' is [['wte.weight', 1]], not a map of names to objects)"),
    ("scalars of a number", _meta(lambda b: {**b, "scalars": {"wte.weight": 5}}),
     META + "'scalars' is {'wte.weight': 5}, not a map of names to objects)"),
    ("alias to a list", _meta(lambda b: {**b, "aliases": {"lm_head.weight": ["wte.weight"]}}),
     META + "'aliases' is {'lm_head.weight': ['wte.weight']}, not a map of tied names to stored names)"),
    # a stored weight named tied: 'single' resumed with block 1's qkv weight in block 0's place
    ("alias of a stored weight", _meta(lambda b: {**b, "aliases": {**b["aliases"],
                                                                   "blocks.0.attn.qkv.weight": "blocks.1.attn.qkv.weight"}}),
     "sharded.json: tied weight 'blocks.0.attn.qkv.weight' is also stored in model/ (it names "
     "'blocks.1.attn.qkv.weight' as its partner)" + DAMAGED),
    ("alias to nothing", _meta(lambda b: {**b, "aliases": {"lm_head.weight": "nope"}}),
     "sharded.json: tied weight 'lm_head.weight' points at 'nope', which model/ does not hold" + DAMAGED),
    ("files of another checkpoint", _meta(lambda b: {**b, "files": {**b["files"], "model": ["a.safetensors"]}}),
     "model: shard file a.safetensors is missing (1 of the 1 files sharded.json lists)"),
    ("shard empty", _cut(SHARD, 0), "model: sharded checkpoint is corrupt or incomplete (SafetensorError"),
    ("shard half", _cut(SHARD, 0.5), "model: sharded checkpoint is corrupt or incomplete (SafetensorError"),
    ("optimizer shard half", _cut(OPT_SHARD, 0.5), "optimizer: sharded checkpoint is corrupt or incomplete (Safetensor"),
    ("sharding info not JSON", _offsets("*", "{"), "model: sharded checkpoint is corrupt or incomplete (JSONDecodeError"),
    ("sharding info a list", _offsets("*", [1]), "model: sharded checkpoint is corrupt or incomplete (TypeError"),
    ("sharding info without a tensor", _offsets("wte.weight", None),
     "model: sharded checkpoint is corrupt or incomplete (KeyError: 'wte.weight')"),
    ("offsets a string", _offsets("wte.weight", {"saved_offsets": "ab"}), "model: sharded checkpoint is corrupt"),
    ("offsets fractional", _offsets("wte.weight", {"saved_offsets": [128.5, 0]}), "model: sharded checkpoint is corrupt"),
    # the next three were "stored more than once ...: a shard file was copied in; move the copy out"
    ("offsets too few", _offsets("wte.weight", {"saved_offsets": [128]}),
     "model: tensor 'wte.weight' has a piece at offsets [128] for 2 dimension(s) (its shard's sharding info is "
     "damaged)" + DAMAGED),
    ("offsets negative", _offsets("wte.weight", {"saved_offsets": [-128, 0]}),
     "model: tensor 'wte.weight' has a piece at offsets [-128, 0] for 2 dimension(s)"),
    ("offsets overlapping", _offsets("wte.weight", {"saved_offsets": [127, 1]}),
     "model: tensor 'wte.weight' has overlapping pieces (at [0, 0] and [127, 1]; a shard's sharding info is "
     "damaged)" + DAMAGED),
    ("offsets of the other piece", _offsets("wte.weight", {"saved_offsets": [0, 0]}),
     "model: tensor 'wte.weight' is stored more than once (the piece at [0, 0] twice)"),
    ("offsets leaving a gap", _offsets("wte.weight", {"saved_offsets": [130, 0]}),
     "model: tensor 'wte.weight' is only partly stored (16384 of 16512 values)"),
]


@pytest.mark.parametrize(("what", "tamper", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_tampered_companion_file_is_refused_by_every_reader(hostile: Hostile, what: str,
                                                             tamper: Callable[[Path], None], words: str) -> None:
    tamper(hostile.work / STEP)
    for argv in (["checkpoint", "info", str(STEP)],
                 ["train", "--resume", str(STEP), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet"]):
        line = hostile.refused(*argv, expect=[f"error: {STEP}/{words}"])
        assert line.startswith(f"error: {STEP}/"), line
    assert not (hostile.work / "new").exists()


@pytest.mark.parametrize("what", ["extra group", "group lr a string", "group betas a string", "scalars a list",
                                  "alias of a stored weight", "offsets overlapping"])
def test_export_writes_nothing_from_a_tampered_checkpoint(hostile: Hostile, what: str) -> None:
    """``checkpoint export`` wrote the first two (a resume from the export was then refused)."""
    _, tamper, words = next(c for c in CASES if c[0] == what)
    tamper(hostile.work / STEP)
    hostile.refused("checkpoint", "export", str(STEP), "out", expect=[f"error: {STEP}/{words}"])
    assert not (hostile.work / "out").exists() and not list(hostile.work.glob(".out.tmp-*"))


def test_fsdp_refuses_tampered_companion_files(hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    """pro's own sharded loader (DCP resharding), under ``fsdp`` on one rank in this process: a
    stored weight named tied was left unread (its live values kept), the others were "does not fit
    this model or is damaged (TypeError ...)" or resumed. The run folder is restored between cases."""
    one_rank_group(monkeypatch)
    pristine = hostile.work / "pristine"
    shutil.copytree(hostile.work / STEP, pristine)
    for what in ("alias of a stored weight", "alias to a list", "scalars a list", "group without params",
                 "offsets negative"):
        _, tamper, words = next(c for c in CASES if c[0] == what)
        tamper(hostile.work / STEP)
        hostile.refused("train", "--resume", str(STEP), "--max-steps", "6", "--run-dir", "new", "--quiet",
                        expect=[f"error: {STEP}/{words}"])
        shutil.rmtree(hostile.work / STEP)
        shutil.copytree(pristine, hostile.work / STEP)
    assert not (hostile.work / "new").exists()
    done = hostile.run("train", "--resume", str(STEP), "--max-steps", "5", "--run-dir", "new", "--quiet")
    assert done.code == 0, done.stderr  # the untouched copy resumes: the refusals were the edits'
    import torch.distributed as dist

    assert not dist.is_initialized()  # each run's one-rank group is gone with it: later tests start clean


def test_optimizer_state_of_no_parameter_is_refused(hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-tensor optimizer state in ``sharded.json`` for a parameter the model does not have: every
    resume dropped it unread and trained on (exit 0), and export copied it. (``checkpoint info``
    knows no model: it passes.)"""
    _meta(lambda b: {**b, "scalars": {"blocks.9.mlp.fc.weight": {"step": 3}}})(hostile.work / STEP)
    words = [f"error: {STEP}", ": optimizer state blocks.9.mlp.fc.weight is for a parameter this model does not "
             "have" + DAMAGED]
    hostile.refused("train", "--resume", str(STEP), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet",
                    expect=words)
    hostile.refused("checkpoint", "export", str(STEP), "out", expect=words)
    one_rank_group(monkeypatch)
    hostile.refused("train", "--resume", str(STEP), "--max-steps", "6", "--run-dir", "new", "--quiet", expect=words)
    assert not (hostile.work / "new").exists() and not (hostile.work / "out").exists()


@pytest.mark.parametrize(("what", "words"), [
    ("state of no parameter", "optimizer.safetensors: optimizer state blocks.9.mlp.fc.weight is for a parameter this "
                              "model does not have" + DAMAGED),
    ("optimizer half", "optimizer.safetensors: optimizer state file is corrupt or truncated"),
    ("trainer empty", "trainer.json: trainer state is corrupt or truncated"),
    # a non-tensor value beside the tensor of the same key: the tensor replaced it unread (exit 0)
    ("state stored twice", "optimizer.safetensors: optimizer state wte.weight/step is stored twice, as a tensor and "
                           "among the non-tensor values (scalars)" + DAMAGED),
])
def test_a_tampered_deepspeed_checkpoint_is_refused(pro_runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    what: str, words: str) -> None:
    """The ``deepspeed`` strategy's checkpoint (ZeRO-1, two ranks: the canonical full layout),
    tampered with and its commit record rewritten: resumed under ``single`` and exported, one
    line, exit 2, the run folder unchanged. State for a parameter the model lacks was resumed
    and exported (exit 0)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(pro_runs["dir"] / "ds1", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    step = Path("run", "checkpoints", "step-5")
    if what in ("state of no parameter", "state stored twice"):
        with safe_open(step / "optimizer.safetensors", framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
        if what == "state stored twice":
            assert "state/wte.weight/step" in tensors
            meta = {**meta, "scalars": json.dumps({"wte.weight": {"step": 3}})}
        else:
            tensors["state/blocks.9.mlp.fc.weight/exp_avg"] = torch.zeros(4)
        save_file(tensors, step / "optimizer.safetensors", metadata=meta)
        rerecord(step, "optimizer.safetensors")
    else:
        _cut(*(("optimizer.safetensors", 0.5) if what == "optimizer half" else ("trainer.json", 0)))(step)
    hostile = Hostile(PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"}))), tmp_path,
                      [tmp_path / "run"])
    hostile.refused("train", "--resume", str(step), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet",
                    expect=[f"error: {step}/{words}"])
    hostile.refused("checkpoint", "export", str(step), "out", expect=[f"error: {step}/{words}"])
    assert not (tmp_path / "new").exists() and not (tmp_path / "out").exists()


def test_optimizer_state_stored_twice_in_a_sharded_checkpoint_is_refused(hostile: Hostile,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-tensor value in ``sharded.json``'s scalars for a key ``optimizer/`` stores as a tensor
    (AdamW's ``step``): the tensor replaced it unread, and every resume and export went on (exit 0)."""
    _meta(lambda b: {**b, "scalars": {"wte.weight": {"step": "x"}}})(hostile.work / STEP)
    words = [f"error: {STEP}/sharded.json: optimizer state wte.weight/step is stored twice, as a tensor and among "
             "the non-tensor values (scalars)" + DAMAGED]
    hostile.refused("train", "--resume", str(STEP), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet",
                    expect=words)
    hostile.refused("checkpoint", "export", str(STEP), "out", expect=words)
    one_rank_group(monkeypatch)  # fsdp: pro's own loader, from the shards' headers
    hostile.refused("train", "--resume", str(STEP), "--max-steps", "6", "--run-dir", "new", "--quiet", expect=words)
    assert not (hostile.work / "new").exists() and not (hostile.work / "out").exists()


@pytest.mark.parametrize("pointer", ["step-99\n", "../../escape\n", "/elsewhere/step-4\n", ""])
def test_a_latest_pointer_naming_no_checkpoint_of_the_run_is_passed_over(hostile: Hostile, pointer: str) -> None:
    """``checkpoints/latest`` naming a checkpoint that does not exist, or a path out of the run: a
    hint only, never followed; the run folder resolves to its newest complete checkpoint, step 5,
    and nothing is written."""
    from hostile_cli import snapshot

    (hostile.work / "run" / "checkpoints" / "latest").write_text(pointer)
    before = snapshot([hostile.work / "run"])
    done = hostile.run("checkpoint", "info", "run", "--json")
    assert done.code == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["step"], Path(row["path"]).name) == (5, "step-5")
    assert snapshot([hostile.work / "run"]) == before


def _rng(field: str, value: Any) -> Callable[[Path], None]:
    """``rng-0.safetensors`` (rank 0's random generator states) with metadata ``field`` set to the
    string ``value``, or tensor ``field`` replaced by the tensor ``value``; its record rewritten."""
    def tamper(step: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = step / "rng-0.safetensors"
        with safe_open(path, framework="pt") as fh:
            meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        (meta if isinstance(value, str) else tensors)[field] = value
        save_file(tensors, path, metadata=meta)
        rerecord(step, path.name)
    return tamper


def _words(field: str, index: int, value: int) -> Callable[[Path], None]:
    """``_rng`` of tensor ``field`` with its word ``index`` set to ``value``."""
    def tamper(step: Path) -> None:
        from safetensors import safe_open

        with safe_open(step / "rng-0.safetensors", framework="pt") as fh:
            words = fh.get_tensor(field).clone()
        words[index] = value
        _rng(field, words)(step)
    return tamper


RNG = "rng-0.safetensors: random generator state is corrupt ("


RNG_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    # numpy took each of these and drew from it (a position past its 624 words reads past its key array)
    ("numpy position past its words", _rng("numpy", '["MT19937", 1000000, 0, 0.0]'),
     'numpy ["MT19937", 1000000, 0, 0.0] is not a random generator\'s state (MT19937, a position of 0 to 624'),
    ("numpy Gaussian flag 7", _rng("numpy", '["MT19937", 624, 7, 0.0]'), "numpy [\"MT19937\", 624, 7, 0.0] is not"),
    ("numpy Gaussian NaN", _rng("numpy", '["MT19937", 624, 1, NaN]'), "numpy [\"MT19937\", 624, 1, NaN] is not"),
    ("numpy word negative", _words("numpy", 3, -1), "numpy holds a value out of 0 to 2**32 - 1"),
    # python's random.gauss() returned the string, or NaN; version 2 is Python 2's state
    ("python Gaussian a string", _rng("python", '[3, "x"]'), "python cached Gaussian is 'x', not a finite number"),
    ("python Gaussian NaN", _rng("python", "[3, NaN]"), "python cached Gaussian is nan"),
    ("python version 2", _rng("python", "[2, null]"), "python version is 2, not 3"),
    ("python position past its words", _words("python", 624, 700), "python position is 700, not 0 to 624"),
    ("format of another file", _rng("format", "deepseek-powersgd"), "format is 'deepseek-powersgd', not 'deepseek-rng'"),
]


@pytest.mark.parametrize(("what", "tamper", "words"), RNG_CASES, ids=[c[0] for c in RNG_CASES])
def test_a_tampered_random_generator_state_is_refused(hostile: Hostile, what: str, tamper: Callable[[Path], None],
                                                      words: str) -> None:
    """Every rank's ``rng-<rank>.safetensors`` (its JSON metadata and state words) read back like
    user input: each of these resumed (exit 0), its generator drawing from the damaged state."""
    tamper(hostile.work / STEP)
    hostile.refused("train", "--resume", str(STEP), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet",
                    expect=[f"error: {STEP}/{RNG}{words}"])
    assert not (hostile.work / "new").exists()


def test_a_refused_random_generator_state_sets_no_generator(hostile: Hostile) -> None:
    """A file whose numpy state numpy refuses (another generator's) had torch's and python's
    generators set from it first: the process went on with half the checkpoint's states. Now every
    field is checked before any generator is set."""
    import random

    import numpy as np
    import torch

    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint_rng import load_rng_state

    _rng("numpy", '["PCG64", 624, 0, 0.0]')(hostile.work / STEP)
    torch.manual_seed(11), random.seed(11), np.random.seed(11)
    before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    with pytest.raises(CheckpointError, match=r"rng-0.safetensors: random generator state is corrupt \(numpy "):
        load_rng_state(hostile.work / STEP, 0, 2)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert (np.random.get_state()[1] == before[2]).all()
