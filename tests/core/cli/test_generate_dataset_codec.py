"""A plugin dataset with tokens of its own (UTF-8 bytes plus a separator id 256: vocabulary 257)
declares how they map to text (``Dataset.text_codec``): ``deepseek generate`` on its run decodes
with that codec, found from the run's recorded dataset name and options; a codec that answers
with something else is one line naming the plugin, when the run starts and when generate reads
the run; without the plugin installed, generate says to install it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hostile_cli import TINY, Outcome, assert_refused, invoke

from deepseek import hookimpl
from deepseek.data.codec import dataset_codec, round_trip_problem
from deepseek.data.dataset import Dataset
from deepseek.data.tokenizer import Tokenizer
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

SEP = 256
DOCS = ["def add(a, b):\n    return a + b\n", "héllo wörld, bytes and more bytes", "x = [1, 2, 3]\n"]


class SepCodec(Tokenizer):
    """UTF-8 bytes, and id 256 between documents (no text)."""

    vocab_size, separator, identity = 257, SEP, "sepbytes"
    decoded: list[list[int]] = []

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Any) -> Any:
        type(self).decoded.append(list(ids))
        return bytes(i for i in ids if i != SEP).decode("utf-8", errors="replace")


class BytesCodec(SepCodec):
    """Returns bytes from decode: the plugin bug the checks name."""

    def decode(self, ids: Any) -> Any:
        return bytes(i for i in ids if i != SEP)


class Lossy(SepCodec):
    """Encodes upper case: text does not come back."""

    def encode(self, text: str) -> list[int]:
        return list(text.upper().encode("utf-8"))


@dataclass(frozen=True)
class SepOptions:
    seq_len: int = 16
    codec: str = "good"


class SepBytes(Dataset):
    """The documents of :data:`DOCS` as one stream of bytes with 256 between them."""

    Options = SepOptions
    vocab_size = 257

    def __init__(self, options: SepOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        stream = [i for doc in DOCS for i in [*doc.encode("utf-8"), SEP]]
        self.stream, self.step = torch.tensor(stream * 4), 0

    def _batch(self, start: int) -> dict[str, torch.Tensor]:
        n = self.options.seq_len
        starts = [(start + r * 7) % (len(self.stream) - n - 1) for r in range(self.batch_size)]
        rows = torch.stack([self.stream[s:s + n + 1] for s in starts])
        return {"input_ids": rows[:, :-1].clone(), "targets": rows[:, 1:].clone()}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.step += 1
        return self._batch(self.step * 3)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(1000 + i) for i in range(limit)]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]

    def count_tokens(self, batch: Any) -> int:
        return int(batch["input_ids"].numel())

    @classmethod
    def model_vocab_size(cls, options: SepOptions) -> int:
        return 257

    @classmethod
    def text_codec(cls, options: SepOptions) -> Tokenizer:
        return {"good": SepCodec, "bytes": BytesCodec, "lossy": Lossy}[options.codec]()


XOR, XOR_SEP = 0x80, 0xFF ^ 0x80
""":class:`XorBytes`'s ids: each UTF-8 byte XOR 0x80, and 0x7F (what the byte 0xFF, never in
UTF-8, would be) between documents: 256 ids, as many as bytes, which read them wrong."""


class XorCodec(SepCodec):
    vocab_size, separator, identity = 256, XOR_SEP, "xorbytes"

    def encode(self, text: str) -> list[int]:
        return [b ^ XOR for b in text.encode("utf-8")]

    def decode(self, ids: Any) -> Any:
        return bytes(i ^ XOR for i in ids if i != XOR_SEP).decode("utf-8", errors="replace")


class XorBytes(SepBytes):
    """:data:`DOCS` in :class:`XorCodec`'s 256 ids: a model of byte size, whose ids are not bytes."""

    vocab_size = 256

    def __init__(self, options: SepOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        stream = [i for doc in DOCS for i in [*XorCodec().encode(doc), XOR_SEP]]
        self.stream = torch.tensor(stream * 4)

    @classmethod
    def model_vocab_size(cls, options: SepOptions) -> int:
        return 256

    @classmethod
    def text_codec(cls, options: SepOptions) -> Tokenizer:
        return XorCodec()


class Plugin:
    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("sepbytes", SepBytes, description="bytes with a separator token of their own")
        register("xorbytes", XorBytes, description="bytes XOR 0x80, 256 ids")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-sepbytes", version="0.3").status == "ok"
    return host


def plugin_bug(outcome: Outcome, expected: list[str]) -> str:
    """A plugin's bug: exit code 1, one line on stderr (no traceback) with the expected words."""
    lines = outcome.stderr.strip().splitlines()
    assert (outcome.code, len(lines)) == (1, 1) and lines[0].startswith("error: "), outcome
    assert "Traceback" not in outcome.stderr and all(text in lines[0] for text in expected), (expected, lines[0])
    return lines[0]


def train(run: Path, host: PluginHost, codec: str = "good") -> Any:
    return invoke(["train", *TINY, "--max-steps", "2", "--set", "data.name=sepbytes",
                   "--set", f'data.codec="{codec}"', "--run-dir", str(run)], host)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, host: PluginHost, one_thread: None) -> Path:
    run = tmp_path_factory.mktemp("codec") / "run"
    trained = train(run, host)
    assert trained.code == 0, trained.stderr
    return run


def test_generate_decodes_with_the_datasets_codec(run: Path, host: PluginHost) -> None:
    SepCodec.decoded = []
    out = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "6", "--seed", "1", "def "], host)
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("def ") and out.stdout.endswith("\n")
    assert SepCodec.decoded  # the codec decoded the sample: bytes alone cannot (257 token ids)
    whole = SepCodec.decoded[-1]  # the prompt's ids and the sampled ones, decoded as one sequence
    assert whole[:4] == list(b"def ") and len(whole) <= 4 + 6 and all(0 <= i < 257 for i in whole)
    assert out.stdout == bytes(whole).decode("utf-8", errors="replace") + "\n"  # the separator ends the sample


def test_a_run_whose_codec_decodes_to_bytes_is_refused_before_training(tmp_path: Path, host: PluginHost,
                                                                        one_thread: None) -> None:
    refused = train(tmp_path / "bad", host, codec="bytes")
    plugin_bug(refused, ["dataset 'sepbytes'", "deepseek-sepbytes 0.3", "text_codec() decode(",
                         "returned bytes", "return the text, a str"])
    assert not (tmp_path / "bad").exists()


def test_a_codec_that_turns_bad_after_the_run_is_one_line_at_generate(
        run: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SepCodec, "decode", BytesCodec.decode)  # the plugin upgraded since the run
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], host)
    plugin_bug(refused, ["dataset 'sepbytes'", "deepseek-sepbytes", "returned bytes", "a str"])


def test_generate_without_the_dataset_plugin_says_what_to_install(run: Path, core_host: PluginHost) -> None:
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], core_host)
    assert_refused(refused, ["trainer.json: the run's dataset 'sepbytes' gave the text codec of its token ids "
                             "(Dataset.text_codec)", "from deepseek-sepbytes 0.3, which is not available here",
                             "pip install deepseek-sepbytes"])


def test_a_codec_of_byte_size_is_never_read_as_bytes(tmp_path: Path, host: PluginHost, core_host: PluginHost,
                                                     one_thread: None) -> None:
    """A run of 256 ids from its dataset's codec, generated from without that dataset's plugin,
    was decoded as bytes (nothing said its ids were the codec's): its checkpoint records that
    the dataset gave a codec, and generate refuses, naming the distribution to install."""
    import json

    from deepseek.training.checkpoint import resolve_checkpoint
    from deepseek.training.inference import trained_tokenizer

    run = tmp_path / "xor"
    trained = invoke(["train", *TINY, "--max-steps", "2", "--set", "data.name=xorbytes", "--run-dir", str(run)], host)
    assert trained.code == 0, trained.stderr
    assert json.loads((resolve_checkpoint(run) / "trainer.json").read_text())["text_codec"] is True
    assert trained_tokenizer(run, host=host).decode(XorCodec().encode("héllo")) == "héllo"
    out = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], host)
    assert out.code == 0 and out.stdout.startswith("def "), out.stderr
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], core_host)
    assert_refused(refused, ["trainer.json: the run's dataset 'xorbytes' gave the text codec of its token ids",
                             "from deepseek-sepbytes 0.3, which is not available here", "pip install deepseek-sepbytes"])


def test_a_recorded_text_codec_field_is_checked_like_user_input(run: Path) -> None:
    """``text_codec`` is written only as ``true``: any other value read back is the file's damage."""
    import json

    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint import resolve_checkpoint
    from deepseek.training.checkpoint_state import check_trainer_state

    path = resolve_checkpoint(run) / "trainer.json"
    state = json.loads(path.read_text())
    assert check_trainer_state(state, path)["text_codec"] is True
    for value in ("yes", False, 1):
        with pytest.raises(CheckpointError, match=r"trainer\.json: text_codec is .*, expected true \(or no field\)"):
            check_trainer_state({**state, "text_codec": value}, path)


@dataclass(frozen=True)
class NoCodecKey:
    seq_len: int = 16


def test_recorded_options_are_read_back_like_user_input(run: Path, host: PluginHost,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded ``[data]`` keys are validated by the plugin's ``Options`` as it is now (a
    release that dropped ``codec``): one line naming the checkpoint's file and the key."""
    monkeypatch.setattr(SepBytes, "Options", NoCodecKey)
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], host)
    assert_refused(refused, ["trainer.json (the checkpoint's config)", "data.codec"])


def test_round_trip_check_finds_a_codec_that_loses_text() -> None:
    data = SepBytes(SepOptions(), batch_size=4, seed=0)
    batch = data.validation_batches(1)[0]
    assert round_trip_problem(dataset_codec(SepBytes, SepOptions(), None), batch) is None
    lossy = dataset_codec(SepBytes, SepOptions(codec="lossy"), "dataset 'sepbytes'")
    problem = round_trip_problem(lossy, batch)
    assert problem is not None and problem.startswith("row 0: decode gives")


def test_docs_name_every_member_of_the_dataset_contract() -> None:
    """docs/plugins.md section 11 (a plugin author's only source) names every public member the
    ``Dataset`` base class declares, ``text_codec`` with them."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = doc[doc.index("## 11. Datasets"):doc.index("## 12. Strategies")]
    members = [m for m in vars(Dataset) if not m.startswith("_")]
    assert "text_codec" in members
    missing = [m for m in members if f"`{m}" not in section and f"self.{m}`" not in section]
    assert not missing, f"docs/plugins.md section 11 does not name Dataset members {missing}"


class SameName:
    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("sepbytes", XorBytes, description="another dataset of the same name, another codec")


def ambiguous_host() -> PluginHost:
    """``sepbytes`` registered by two distributions: the run's (deepseek-sepbytes) and another."""
    host = PluginHost(PluginSettings(autoload=False))
    for plugin, dist in ((SameName(), "deepseek-other"), (Plugin(), "deepseek-sepbytes")):
        assert host.register_plugin(plugin, dist=dist, version="0.3").status == "ok"
    return host


def test_a_dataset_name_two_plugins_register_is_the_one_the_checkpoint_records(run: Path) -> None:
    """The run's codec came back as None when a second plugin registered its dataset's name (the
    ids then read by the run's byte tokenizer), although its trainer.json records the
    distribution: now that record picks the dataset, as it does the model's."""
    from deepseek.training.inference import trained_tokenizer

    host = ambiguous_host()
    assert trained_tokenizer(run, host=host).decode([*b"ab", SEP, *b"c"]) == "abc"
    SepCodec.decoded = []
    out = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "--seed", "1", "def "], host)
    assert out.code == 0 and out.stdout.startswith("def "), out.stderr
    assert SepCodec.decoded


def test_an_ambiguous_dataset_name_without_a_record_is_refused_naming_both(run: Path, tmp_path: Path) -> None:
    import json
    import shutil
    import zlib

    from deepseek.training.checkpoint import resolve_checkpoint

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = resolve_checkpoint(copy) / "trainer.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in state.items() if k != "components"}))  # a run written before them
    record = json.loads((path.parent / "commit.json").read_text())  # the edit agreed, as if written so
    record["files"]["trainer.json"] = path.stat().st_size
    record["crc32"]["trainer.json"] = f"{zlib.crc32(path.read_bytes()):08x}"
    (path.parent / "commit.json").write_text(json.dumps(record))
    refused = invoke(["generate", "--checkpoint", str(copy), "--max-new-tokens", "4", "def "], ambiguous_host())
    assert_refused(refused, ["trainer.json: the run's dataset 'sepbytes' is registered by several installed plugins "
                             "(deepseek-other 0.3, deepseek-sepbytes 0.3) and the checkpoint does not record which one "
                             "it was trained with; choose one with DEEPSEEK_PLUGIN_PREFER=<distribution>"])


@pytest.mark.parametrize("change", ["no longer declares one", "gives None"])
def test_a_recorded_codec_the_installed_dataset_no_longer_gives_is_refused(
        run: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """The run recorded that its dataset gave a codec (text_codec: true); the plugin installed
    now gives none (an upgrade dropped or changed text_codec): its 257 ids were handed to the
    run's byte tokenizer instead of being refused in one line."""
    if change == "no longer declares one":
        monkeypatch.delattr(SepBytes, "text_codec")
    else:
        monkeypatch.setattr(SepBytes, "text_codec", classmethod(lambda cls, options: None))
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], host)
    assert_refused(refused, ["trainer.json: the run's dataset 'sepbytes' (deepseek-sepbytes 0.3) gave the text codec "
                             "of its token ids (Dataset.text_codec), and the installed one from deepseek-sepbytes 0.3 "
                             "gives none for the run's options; install the version the run was trained with"])
