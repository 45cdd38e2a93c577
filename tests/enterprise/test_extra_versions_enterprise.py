"""Enterprise's libraries that one feature imports (optuna, torchao, the postgres extra's
psycopg), installed at a version outside the range deepseek-enterprise declares, are refused in
one line where the feature imports them (:mod:`deepseek.extras`; core's extras: tests/core/cli/
test_extra_versions.py). Versions are faked with a ``*.dist-info`` folder first on ``sys.path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _inprocess import deepseek_here
from _tune_common import write

from deepseek import extras
from deepseek.errors import UsageError

pytestmark = pytest.mark.skipif(not extras.declared("deepseek-enterprise"),
                                reason="deepseek-enterprise's metadata is not installed")


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    extras.forget()
    yield
    extras.forget()


def fake(folder: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str) -> None:
    """Distribution ``dist`` at ``version`` first on ``sys.path``."""
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(folder))


def test_tune_with_an_optuna_older_than_declared_is_refused_before_the_study(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """It ran into Optuna's own errors (a missing storage class, another keyword) mid-study."""
    fake(tmp_path / "site", monkeypatch, "optuna", "3.6.1")
    write(tmp_path)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: deepseek tune: optuna 3.6.1 is installed, but deepseek-enterprise needs "
                          "optuna>=4.5; install a version that fits with: "), err
    assert err.endswith(" 'optuna>=4.5'") and not (tmp_path / "st").exists()


def test_quantizing_with_an_old_torchao_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek_enterprise.compress.quantize import torchao_config

    fake(tmp_path, monkeypatch, "torchao", "0.10.0")
    with pytest.raises(UsageError, match=r"^quantization scheme 'int8': torchao 0\.10\.0 is installed, but "
                                         r"deepseek-enterprise needs torchao>=0\.18; install"):
        torchao_config("int8", 128)


def test_a_postgres_database_with_a_psycopg_older_than_the_extra_is_refused(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek_enterprise.service.store import Store

    fake(tmp_path, monkeypatch, "psycopg", "3.0.18")
    with pytest.raises(UsageError, match=r"^--db: psycopg 3\.0\.18 is installed, but deepseek-enterprise\[postgres\] "
                                         r"needs psycopg>=3\.1; install a version that fits with: .*'psycopg\[binary\]>=3\.1'$"):
        Store("postgresql+psycopg://nobody@127.0.0.1:9/none")
