"""The ecosystem libraries as installed here against the ranges deepseek-core's extras declare
(:mod:`deepseek.extras`, read from the installed metadata): the transformers these tests run is
the hf extra's (it was declared by no extra), and the full ``mlflow`` distribution is held to the
mlflow extra's ``mlflow-skinny`` range (it was not checked at all). Versions are faked with a
``*.dist-info`` folder put first on ``sys.path``, which ``importlib.metadata`` finds first."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from deepseek import extras
from deepseek.errors import ConfigError, UsageError
from deepseek.plugins.install import installer

pytest.importorskip("mlflow")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    extras.forget()
    yield
    extras.forget()


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str) -> None:
    info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_transformers_these_tests_run_is_the_hf_extras() -> None:
    hf = extras.declared("deepseek-core")["transformers"]
    assert (hf.extra, hf.specifier) == ("hf", ">=5.25")
    extras.check_extra("hf", where="hf")  # tokenizers, datasets and transformers as installed here fit
    assert metadata.version("transformers").startswith("5.")


def test_a_transformers_older_than_the_hf_extra_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, monkeypatch, "transformers", "4.45.0")
    with pytest.raises(UsageError) as info:
        extras.check_extra("hf", where="export --format hf")
    assert str(info.value) == ("export --format hf: transformers 4.45.0 is installed, but deepseek-core[hf] needs "
                               f"transformers>=5.25; install a version that fits with: {installer()} 'transformers>=5.25'")


def test_the_full_mlflow_distribution_is_held_to_the_mlflow_extras_range(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow-skinny as installed here fits; a full ``mlflow`` older than the range beside it (or
    instead of it) is refused where the tracker is chosen: the config does not load."""
    from deepseek.config.load import config_from_dict

    config_from_dict({"logging": {"trackers": ["mlflow"]}})
    _fake(tmp_path, monkeypatch, "mlflow", "2.10.0")
    extras.forget()  # a verdict is kept per process: as if the full distribution had been there first
    with pytest.raises(ConfigError) as info:
        config_from_dict({"logging": {"trackers": ["mlflow"]}})
    assert str(info.value) == (
        "logging.trackers: the 'mlflow' tracker: mlflow 2.10.0 is installed, but deepseek-core[mlflow] needs "
        f"mlflow-skinny>=2.16 (or mlflow>=2.16); install a version that fits with: {installer()} 'mlflow>=2.16'")


@pytest.mark.parametrize("version", ["2.16.0", "3.18.0"])
def test_a_full_mlflow_in_range_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    _fake(tmp_path, monkeypatch, "mlflow", version)
    extras.check_extra("mlflow", where="logging.trackers")
