"""Hostile numbers and option values, every command of core: non-finite and out-of-range numbers,
wrong types, empty name lists, devices this machine lacks. Each is refused with one line, exit 2,
nothing written (:func:`hostile_cli.assert_refused`). ``RUN`` stands for the trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile

NON_FINITE = ["nan", "inf", "-inf", "NaN", "1e999"]

CASES: list[tuple[str, list[str], list[str]]] = [
    # generate
    *[(f"generate temperature {v}", ["generate", "--checkpoint", "RUN", "--temperature", v, "x"],
       ["--temperature", "finite"]) for v in NON_FINITE],
    ("generate temperature negative", ["generate", "--checkpoint", "RUN", "--temperature", "-0.5"], ["--temperature"]),
    ("generate temperature word", ["generate", "--checkpoint", "RUN", "--temperature", "hot"], ["--temperature", "expected a number, got 'hot'"]),
    ("generate top-k zero", ["generate", "--checkpoint", "RUN", "--top-k", "0"], ["--top-k"]),
    ("generate top-k float", ["generate", "--checkpoint", "RUN", "--top-k", "2.5"], ["--top-k"]),
    # a whole-number option names the kind it wants, not click's "integer range"
    ("generate tokens float", ["generate", "--checkpoint", "RUN", "--max-new-tokens", "1.5"],
     ["--max-new-tokens", "'1.5' is not a valid integer."]),
    ("generate top-k nan", ["generate", "--checkpoint", "RUN", "--top-k", "nan"], ["--top-k"]),
    ("generate tokens negative", ["generate", "--checkpoint", "RUN", "--max-new-tokens", "-1"], ["--max-new-tokens"]),
    ("generate tokens past a million", ["generate", "--checkpoint", "RUN", "--max-new-tokens", "99999999999999"],
     ["--max-new-tokens", "<=1000000"]),  # ran until killed
    ("generate seed negative", ["generate", "--checkpoint", "RUN", "--seed", "-1"], ["--seed"]),
    ("generate seed huge", ["generate", "--checkpoint", "RUN", "--seed", str(2**64)], ["--seed"]),
    ("generate seed float", ["generate", "--checkpoint", "RUN", "--seed", "1.5"], ["--seed", "not a valid integer."]),
    ("generate device absent", ["generate", "--checkpoint", "RUN", "--device", "cuda:3"], ["--device", "cuda:3"]),
    ("generate device typo", ["generate", "--checkpoint", "RUN", "--device", "gpu"], ["--device", "'gpu'"]),
    # eval
    ("eval batches zero", ["eval", "--checkpoint", "RUN", "--batches", "0"], ["--batches"]),
    ("eval batches nan", ["eval", "--checkpoint", "RUN", "--batches", "nan"], ["--batches"]),
    # the memory check named data.eval_batches, a key the user never gave
    ("eval batches past memory", ["eval", "--checkpoint", "RUN", "--batches", str(10**20)],
     [f"--batches {10**20} x data.batch_size", "GiB of memory; lower them"]),
    ("eval device absent", ["eval", "--checkpoint", "RUN", "--device", "cuda"], ["--device"]),
    ("eval device index typo", ["eval", "--checkpoint", "RUN", "--device", "cuda:-1"], ["--device"]),
    # optimize
    ("optimize device absent", ["optimize", "--checkpoint", "RUN", "--device", "cuda:3"], ["--device", "cuda:3"]),
    # the example's token ids past int64 were an overflow inside torch (internal error, exit 1)
    ("optimize batch huge", ["optimize", "--checkpoint", "RUN", "--batch", str(10**30)],
     [f"--batch {10**30} x --seq", "GiB of memory; lower them"]),
    ("export batch huge", ["export", "--checkpoint", "RUN", "--batch", str(10**30), "--out", "m.pt2"],
     [f"--batch {10**30} x --seq 16", "GiB of memory; lower them"]),
    ("optimize device auto", ["optimize", "--checkpoint", "RUN", "--device", "auto"], ["--device"]),
    ("optimize passes commas", ["optimize", "--checkpoint", "RUN", "--passes", ",,"], ["--passes", "empty name"]),
    ("optimize passes hole", ["optimize", "--checkpoint", "RUN", "--passes", "fuse-linear,,attention-sdpa"],
     ["--passes", "empty name"]),
    ("optimize passes blank", ["optimize", "--checkpoint", "RUN", "--passes", " "], ["--passes"]),
    ("optimize batch zero", ["optimize", "--checkpoint", "RUN", "--batch", "0"], ["--batch"]),
    ("optimize seq nan", ["optimize", "--checkpoint", "RUN", "--seq", "nan"], ["--seq"]),
    ("optimize seq too long", ["optimize", "--checkpoint", "RUN", "--seq", "100000"], ["--seq 100000", "max_seq_len"]),
    ("optimize precision", ["optimize", "--checkpoint", "RUN", "--precision", "fp8"], ["--precision"]),
    # export
    ("export batch negative", ["export", "--checkpoint", "RUN", "--batch", "-2", "--out", "m.pt2"], ["--batch"]),
    ("export seq zero", ["export", "--checkpoint", "RUN", "--seq", "0", "--out", "m.pt2"], ["--seq"]),
    ("export seq too long", ["export", "--checkpoint", "RUN", "--seq", "4096", "--out", "m.pt2"], ["max_seq_len"]),
    ("export format", ["export", "--checkpoint", "RUN", "--format", "tflite", "--out", "m.pt2"], ["--format"]),
    # train: options of the command line (config values are validated by the config's own rules)
    ("train max-steps nan", ["train", *TINY, "--max-steps", "nan"], ["--max-steps"]),
    ("train max-steps inf", ["train", *TINY, "--max-steps", "inf"], ["--max-steps"]),
    ("train max-steps negative", ["train", *TINY, "--max-steps", "-3"], ["train.max_steps"]),
    ("train max-steps float", ["train", *TINY, "--max-steps", "2.5"], ["--max-steps"]),
    ("train device absent", ["train", *TINY, "--set", "strategy.device=\"cuda:5\""], ["strategy.device", "cuda:5"]),
    ("train device typo", ["train", *TINY, "--set", "strategy.device=\"tpu\""], ["strategy.device"]),
    # a device name ending in a line break got past the pattern's '$' (torch then refused it: an internal error)
    ("train device with a line break", ["train", *TINY, "--set", "strategy.device=\"cpu\\n\""],
     ["strategy.device: is not allowed; allowed values: 'auto', 'cpu', 'cuda', 'cuda:N', got 'cpu\\n' (str)"]),
    ("eval device with a line break", ["eval", "--checkpoint", "RUN", "--device", "cpu\n"],
     ["--device", "'cpu\\n' is not allowed"]),
    ("train unknown precision", ["train", *TINY, "--precision", "fp4"], ["precision.dtype"]),
    *[(f"train seed {v}", ["train", *TINY, "--set", f"train.seed={v}"], ["train.seed", "from 0 to 4294967295"])
      for v in ("-1", str(2**32), str(2**63 - 1))],  # 2**63 - 1 was an overflow in the data order, exit 1
    # sizes a batch cannot have: past TOML's 64-bit integers, or more memory than the machine has
    # (each was a process killed for memory, exit 137)
    ("train batch past int64", ["train", *TINY, "--set", f"data.batch_size={10**20}"],
     ["data.batch_size", "64-bit integer range"]),
    ("train batch past memory", ["train", *TINY, "--set", f"data.batch_size={10**12}"],
     ["data.batch_size 1000000000000 x data.seq_len", "GiB of memory; lower them"]),
    ("train eval batches past memory", ["train", *TINY, "--set", f"data.eval_batches={10**9}"],
     ["data.eval_batches 1000000000 x data.batch_size", "GiB of memory"]),
    ("train shuffle buffer past memory", ["train", *TINY, "--set", f"data.shuffle_buffer={10**12}"],
     ["data.shuffle_buffer 1000000000000 x data.seq_len"]),
    # bench latency
    ("latency batch zero", ["bench", "latency", "--model", "tiny", "--batch", "0"], ["--batch"]),
    ("latency seq nan", ["bench", "latency", "--model", "tiny", "--seq", "nan"], ["--seq"]),
    ("latency runs too few", ["bench", "latency", "--model", "tiny", "--runs", "3"], ["--runs"]),
    ("latency warmup zero", ["bench", "latency", "--model", "tiny", "--warmup", "0"], ["--warmup"]),
    ("latency threads zero", ["bench", "latency", "--model", "tiny", "--threads", "0"], ["--threads"]),
    ("latency device absent", ["bench", "latency", "--model", "tiny", "--device", "cuda:1"], ["--device"]),
    ("latency only commas", ["bench", "latency", "--model", "tiny", "--only", ","], ["--only", "empty name"]),
    ("latency dtype", ["bench", "latency", "--model", "tiny", "--dtype", "float8"], ["--dtype"]),
    ("latency seq too long", ["bench", "latency", "--model", "tiny", "--seq", "99999"], ["--seq 99999"]),
    # each ran until killed (runs, warm-up), or was an internal error (threads: an overflow in torch;
    # batch: a failed allocation, exit 1 with torch's C++ stack)
    ("latency runs huge", ["bench", "latency", "--model", "tiny", "--runs", str(10**30)], ["--runs", "<=1000000"]),
    ("latency warmup huge", ["bench", "latency", "--model", "tiny", "--warmup", str(10**30)], ["--warmup", "<=1000000"]),
    ("latency threads huge", ["bench", "latency", "--model", "tiny", "--threads", str(10**30)], ["--threads", "<=4096"]),
    ("latency batch huge", ["bench", "latency", "--model", "tiny", "--batch", str(10**30)],
     [f"--batch {10**30} x --seq 128", "GiB of memory; lower them"]),
    ("latency batch past memory", ["bench", "latency", "--model", "tiny", "--batch", str(10**11), "--seq", "16"],
     [f"--batch {10**11} x --seq 16 = 1,600,000,000,000 tokens", "GiB of memory"]),
    # bench train
    ("bench train lr nan", ["bench", "train", "--model", "tiny", "--lr", "nan"], ["--lr", "finite"]),
    ("bench train lr inf", ["bench", "train", "--model", "tiny", "--lr", "inf"], ["--lr", "finite"]),
    ("bench train lr zero", ["bench", "train", "--model", "tiny", "--lr", "0"], ["--lr"]),
    ("bench train peak nan", ["bench", "train", "--model", "tiny", "--peak-tflops", "nan"], ["--peak-tflops"]),
    ("bench train peak negative", ["bench", "train", "--model", "tiny", "--peak-tflops", "-1"], ["--peak-tflops"]),
    ("bench train batch zero", ["bench", "train", "--model", "tiny", "--batch", "0"], ["--batch"]),
    ("bench train steps nan", ["bench", "train", "--model", "tiny", "--steps", "nan"], ["--steps"]),
    ("bench train steps huge", ["bench", "train", "--model", "tiny", "--steps", str(10**30)],  # ran until killed
     ["--steps", "<=1000000"]),
    ("bench train warmup huge", ["bench", "train", "--model", "tiny", "--warmup", str(10**30)], ["--warmup", "<=1000000"]),
    ("bench train warmup negative", ["bench", "train", "--model", "tiny", "--warmup", "-1"], ["--warmup"]),
    ("bench train seed negative", ["bench", "train", "--model", "tiny", "--seed", "-5"], ["--seed"]),
    ("bench train device absent", ["bench", "train", "--model", "tiny", "--device", "cuda:2"], ["--device"]),
    ("bench train variants", ["bench", "train", "--model", "tiny", "--baseline-variants", "eager,,"],
     ["--baseline-variants"]),
    ("bench train variants unknown", ["bench", "train", "--model", "tiny", "--baseline-variants", "jit"],
     ["--baseline-variants"]),
    # advise
    *[(f"advise params {v}", ["advise", "--params", v], ["--params"]) for v in ["nan", "inf", "1e999", "-5", "0", "lots"]],
    *[(f"advise headroom {v}", ["advise", "--model", "tiny", "--headroom", v], ["--headroom"])
      for v in ["nan", "inf", "1", "-0.1", "x"]],
    ("advise gpus negative", ["advise", "--model", "tiny", "--gpus", "-1"], ["--gpus"]),
    ("advise gpus float", ["advise", "--model", "tiny", "--gpus", "1.5"], ["--gpus"]),
    *[(f"advise grad-accum {v}", ["advise", "--model", "tiny", "--grad-accum", v], ["--grad-accum"])
      for v in ["0", "-2", "1.5"]],
    ("advise seq zero", ["advise", "--model", "tiny", "--seq", "0"], ["--seq"]),
    ("advise batch negative", ["advise", "--model", "tiny", "--batch", "-8"], ["--batch"]),
    # past these, every figure was 16 digits of GiB with exit 0
    ("advise batch huge", ["advise", "--model", "1.3b", "--batch", "999999999999999"], ["--batch", "<=1048576"]),
    # a shape holding far more than --params was estimated as if it held them
    *[(f"advise {opt} huge", ["advise", "--params", "1e9", "--gpus", "1", "--gpu-memory", "80GiB", opt, str(10**30)],
       ["more than 10x --params 1e+09", "give a shape that fits --params"]) for opt in ("--layers", "--hidden", "--vocab")],
    ("advise seq huge", ["advise", "--model", "1.3b", "--seq", "99999999999"], ["--seq", "<=16777216"]),
    ("advise grad-accum huge", ["advise", "--model", "1.3b", "--grad-accum", "10000000"], ["--grad-accum"]),
    ("advise vocab zero", ["advise", "--params", "1e6", "--vocab", "0"], ["--vocab"]),
    ("advise layers zero", ["advise", "--params", "1e6", "--layers", "0"], ["--layers"]),
    ("advise gpu memory huge", ["advise", "--params", "1e6", "--gpus", "1", "--gpu-memory", "1e999GiB"], ["--gpu-memory"]),
    ("advise params too many", ["advise", "--params", "1e300"], ["--params", "beyond what the advisor models"]),
    ("advise gpu memory word", ["advise", "--params", "1e6", "--gpus", "1", "--gpu-memory", "lots"], ["--gpu-memory"]),
    ("advise host memory negative", ["advise", "--model", "tiny", "--host-memory", "-1GiB"], ["--host-memory"]),
    ("advise overhead huge", ["advise", "--model", "tiny", "--overhead", "9e999"], ["--overhead"]),
    *[(f"advise cost {v}", ["advise", "--model", "tiny", "--cost", f"pro.labor={v}"], ["tco.pro.labor"])
      for v in ["nan", "inf", "-inf", "-1"]],
    ("advise cost years inf", ["advise", "--model", "tiny", "--cost", "years=inf"], ["tco.years"]),
    # past these, the table's totals were inf and --json printed Infinity (not JSON), exit 0
    ("advise cost huge", ["advise", "--model", "tiny", "--cost", "pro.labor=1e308", "--json"],
     ["tco.pro.labor: must be at most 1e+15"]),
    ("advise upgrade factor huge", ["advise", "--model", "tiny", "--cost", "upgrade_factor=1e300", "--json"],
     ["tco.upgrade_factor: must be at most 1000"]),
    ("advise modalities commas", ["advise", "--model", "tiny", "--modalities", "text,,vision"], ["--modalities"]),
    ("advise modalities empty", ["advise", "--model", "tiny", "--modalities", ""], ["--modalities"]),
    # tokenizer train: the BPE trainer sizes its tables by --vocab-size up front (a Rust abort, exit 134)
    ("tokenizer vocab past the trainer's tables", ["tokenizer", "train", "--vocab-size", "99999999999", "--out", "t.json"],
     ["--vocab-size", "257<=x<=16777216"]),
    # plugins and the root options
    ("root plugins commas", ["--plugins", ",,", "plugins", "list"], ["--plugins", "empty name"]),
    ("root disable commas", ["--disable-plugins", "pro,", "plugins", "list"], ["--disable-plugins"]),
    ("which unknown kind", ["plugins", "which", "gadget", "x"], ["gadget"]),
    ("which unknown model", ["plugins", "which", "model", "X"], ["'X'"]),
    ("new bad name", ["plugins", "new", "Bad_Name"], ["invalid plugin name"]),
    # the name was stripped: "acme\n" scaffolded deepseek-acme as if "acme" had been given
    *[(f"new name with {what}", ["plugins", "new", name],
       [f"invalid plugin name {name!r} (it begins or ends with a space or a control character)"])
      for what, name in (("a line break", "acme\n"), ("a leading space", " acme"), ("a tab", "deepseek-acme\t"))],
    ("new reserved name", ["plugins", "new", "pro"], ["first-party edition"]),
]


@pytest.mark.parametrize(("what", "argv", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_value_is_refused(hostile: Hostile, trained_run: Path, what: str, argv: list[str],
                                  expect: list[str]) -> None:
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    if argv[:2] == ["--plugins", ",,"] or argv[:1] == ["--disable-plugins"]:
        hostile.host = None  # root plugin options need the host they choose
    hostile.refused(*argv, expect=expect)


def test_finite_float_accepts_plain_numbers() -> None:
    import click

    from deepseek.cli.params import FiniteFloat

    assert FiniteFloat(min=0).convert("0.8", None, None) == 0.8
    assert FiniteFloat(min=0).convert("0", None, None) == 0.0
    with pytest.raises(click.BadParameter, match="finite number > 0"):
        FiniteFloat(min=0, min_open=True).convert("0", None, None)


@pytest.mark.parametrize("setting", [f"train.lr='{'a' * 100_000}'", f"logging.trackers={'[' * 3000}{']' * 3000}",
                                     f"logging.name='{'n' * 100_000}'"], ids=["string", "nested lists", "run name"])
def test_a_huge_value_is_quoted_by_its_ends(hostile: Hostile, setting: str) -> None:
    line = hostile.refused("train", *TINY, "--set", setting)  # the whole value was quoted: a 100 KB line
    assert len(line) < 400 and "..." in line and " characters)" in line, line[:500]


LONG = "k" * 100_000


@pytest.mark.parametrize("argv", [
    ["--set", f"data.{LONG}=1"],  # an unknown key
    ["--set", f"model.name={LONG}"],  # an unknown component name
    ["--strategy", LONG],
    ["--set", f"{LONG}.a=1"],  # an unknown section
    ["--set", f"train.lr.{LONG}=1"],  # a table's keys
    [f"--{LONG}"],  # click's own line
], ids=["key", "model name", "strategy", "section", "table key", "option"])
def test_a_huge_key_or_name_is_quoted_by_its_ends(hostile: Hostile, argv: list[str]) -> None:
    line = hostile.refused("train", *TINY, *argv)  # each was echoed whole: a 100 KB line
    assert len(line) < 400 and "k" * 18 + "..." + "k" * 18 in line and "k" * 61 not in line, line[:500]


def test_an_unknown_toml_section_of_any_length_is_quoted_by_its_ends(hostile: Hostile) -> None:
    (hostile.work / "long.toml").write_text(f"[{LONG}]\na = 1\n")
    line = hostile.refused("train", "long.toml")
    assert line == f"error: {'k' * 60}...{'k' * 19}: unknown config section; allowed sections: model, data, train, " \
        "precision, optimizer, lr_schedule, strategy, checkpoint, logging, plugins, trackers"


def test_an_error_message_keeps_paths_and_clips_only_huge_words() -> None:
    from deepseek.errors import ConfigError

    path = "/" + "/".join(["folder"] * 28)  # 196 characters: kept whole
    assert str(ConfigError(f"{path}: is a folder")) == f"{path}: is a folder"
    assert str(ConfigError(f"x.{LONG}: unknown key")) == f"x.{'k' * 58}...{'k' * 19}: unknown key"
