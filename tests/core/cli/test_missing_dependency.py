"""A library an installed edition requires but that is missing (``pip install --no-deps``, or
removed since) is one line naming it, the edition's range and the install command, exit 2: it was
``internal error: ModuleNotFoundError: No module named 'rich' (run with --debug ...)``, which
named no fix (found installing deepseek-core with --no-deps into a fresh environment, h310)."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

from deepseek import extras
from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost
from deepseek.plugins.install import installer
from deepseek.plugins.settings import PluginSettings


@pytest.fixture
def without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rich.console`` fails to import and no ``rich`` distribution is installed."""
    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed (sources on the path only)")

    def version(name: str) -> str:
        if name == "rich":
            raise metadata.PackageNotFoundError(name)
        return metadata.version(name)

    shim = types.SimpleNamespace(**{k: getattr(metadata, k) for k in ("requires", "metadata", "PackageNotFoundError")})
    shim.version = version
    monkeypatch.setattr(extras, "metadata", shim)
    monkeypatch.setitem(sys.modules, "rich.console", None)


def test_a_missing_required_library_is_one_line_with_the_install_command(
        without_rich: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plugins", "list"], host=PluginHost(PluginSettings(autoload=False)))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    wanted = extras.declared("deepseek-core")["rich"].pip  # the range read from the installed metadata
    assert err.splitlines() == [f"error: rich is not installed, but deepseek-core needs {wanted} (an install with "
                                f"--no-deps leaves it out); install it with: {installer()} '{wanted}'"]


def test_other_import_errors_are_not_taken_for_a_missing_dependency() -> None:
    assert extras.missing_dependency(ModuleNotFoundError("No module named 'acme_x'", name="acme_x")) is None
    assert extras.missing_dependency(ModuleNotFoundError("No module named 'rich.nope'", name="rich.nope")) is None
    assert extras.missing_dependency(ValueError("rich")) is None
