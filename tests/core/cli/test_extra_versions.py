"""A library an optional extra declares, installed at a version outside the declared range, is
refused where a feature imports it, in one line (:mod:`deepseek.extras`); the range is read from
deepseek-core's installed metadata. Versions are faked with a ``*.dist-info`` folder put first on
``sys.path``, which ``importlib.metadata`` finds before the real one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepseek import extras
from deepseek.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[3] / "packages" / "deepseek-core" / "pyproject.toml"


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    """Verdicts are kept per process: each test reaches its own."""
    extras.forget()
    yield
    extras.forget()


def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str, *, module: str = "") -> None:
    """Distribution ``dist`` at ``version`` first on ``sys.path`` (and an empty ``module`` there,
    for a feature that looks the module up before it checks)."""
    info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    if module:
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_ranges_are_those_pyproject_declares() -> None:
    declared = extras.declared("deepseek-core")
    if not declared:
        pytest.skip("deepseek-core's metadata is not installed (sources on sys.path only)")
    optional = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for extra, lines in optional.items():
        for line in lines:
            name, spec = line.split(">=")
            assert declared[name] == extras.Declared(name, f">={spec}", extra, line), line


def test_a_tokenizers_older_than_the_hf_extra_is_refused_in_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """It was imported as it was: an old tokenizers lacks what the BPE code calls, and failed
    with its own AttributeError (or, where it is not installed, said 'not installed')."""
    from deepseek.data.bpe import require_tokenizers
    from deepseek.plugins.install import installer

    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed")
    fake(tmp_path, monkeypatch, "tokenizers", "0.13.3")
    with pytest.raises(UsageError) as info:
        require_tokenizers("data.tokenizer")
    assert str(info.value) == ("data.tokenizer: tokenizers 0.13.3 is installed, but deepseek-core[hf] needs "
                               f"tokenizers>=0.20; install a version that fits with: {installer()} 'tokenizers>=0.20'")


@pytest.mark.parametrize("version", ["0.20.0", "0.21.0rc1", "1.0"])
def test_a_version_in_range_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    fake(tmp_path, monkeypatch, "tokenizers", version)
    extras.check_version("tokenizers", where="data.tokenizer")


def test_a_version_that_is_no_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed")
    fake(tmp_path, monkeypatch, "datasets", "nightly")
    with pytest.raises(UsageError, match=r"^data\.name: the 'hf' dataset: datasets nightly is installed, but "
                                         r"deepseek-core\[hf\] needs datasets>=3\.0; install"):
        extras.check_version("datasets", where="data.name: the 'hf' dataset")


def test_a_tracker_library_out_of_range_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the tracker's check, before the run folder is written (it was found when the
    tracker started, by wandb's own error)."""
    from deepseek.tracking import require_library

    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed")
    fake(tmp_path, monkeypatch, "wandb", "0.15.12", module="wandb")
    with pytest.raises(ConfigError, match=r"^logging\.trackers: the 'wandb' tracker: wandb 0\.15\.12 is installed, "
                                          r"but deepseek-core\[wandb\] needs wandb>=0\.18; install a version that fits "
                                          r"with: .*'wandb>=0\.18'$"):
        require_library("wandb", "wandb", tracker="wandb")


def test_onnx_export_checks_every_library_of_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``deepseek export --format onnx`` with an onnxscript older than the onnx extra: one line,
    exit 2, before the checkpoint is read."""
    from hostile_cli import assert_refused, invoke

    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed")
    fake(tmp_path, monkeypatch, "onnx", "1.17.0", module="onnx")
    fake(tmp_path, monkeypatch, "onnxscript", "0.1.0", module="onnxscript")
    outcome = invoke(["export", "--checkpoint", str(tmp_path / "no-run"), "--format", "onnx"],
                     PluginHost(PluginSettings(autoload=False)))
    assert_refused(outcome, ["error: export --format onnx: onnxscript 0.1.0 is installed, but deepseek-core[onnx] "
                             "needs onnxscript>=0.2"])


def test_without_the_editions_metadata_nothing_is_checked_and_an_undeclared_name_is_a_bug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(tmp_path, monkeypatch, "tokenizers", "0.1")
    extras.check_version("tokenizers", where="x", edition="deepseek-no-such-edition")
    if extras.declared("deepseek-core"):
        with pytest.raises(LookupError, match="deepseek-core declares no requirement on 'optuna'"):
            extras.check_version("optuna", where="x")
