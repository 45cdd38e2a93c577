"""A strategy's declared answers read before any process starts (``StrategyRules.device_type``,
``StrategyRules.memory_row``) are checked where they are read, as ``checked_sequence_length``
checks a dataset's: ``checked_device_type`` and ``checked_memory_row``. An answer outside the
contract is one line naming the strategy and its distribution (PluginError, exit 1), never read
as a device ("gpu" as the GPU) or a row it is not."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.validate import build_dataclass
from deepseek.errors import PluginError
from deepseek.plugins.calls import class_calls
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.strategy_rules import checked_device_type, checked_memory_row


class Answers(SingleDeviceStrategy):
    """Answers what the test sets on the class."""

    device: Any = None
    row: Any = "single"

    @classmethod
    def device_type(cls, options: Any) -> Any:
        return cls.device

    @classmethod
    def memory_row(cls, options: Any) -> Any:
        if isinstance(cls.row, Exception):
            raise cls.row
        return cls.row


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.answers", Answers, declares={"memory_rows": ["single", "ddp+nvme"]})


@pytest.fixture
def component(monkeypatch: pytest.MonkeyPatch) -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-answers").status == "ok"
    return host.resolve("strategy", "acme.answers")


def _device(component: Any) -> Any:
    cls = component.load()
    with class_calls(component, "device_type"):
        return checked_device_type(cls, build_dataclass(cls.Options, {}, path="strategy"))


@pytest.mark.parametrize("answer", [None, "cpu", "cuda"])
def test_cpu_cuda_and_none_are_device_types(component: Any, answer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Answers, "device", answer)
    assert _device(component) == answer


@pytest.mark.parametrize("answer", ["gpu", "cuda:0", "CPU", True, 0])
def test_any_other_device_type_is_the_plugins_bug(component: Any, answer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Answers, "device", answer)
    with pytest.raises(PluginError) as info:
        _device(component)
    line = str(info.value)
    assert line.startswith("strategy 'acme.answers' (acme-answers") and "\n" not in line
    assert (f": device_type() returned {answer!r}; it must return 'cpu' or 'cuda' where the options fix the device, "
            "or None where the strategy picks it at set-up (docs/plugins.md section 12); a bug in the plugin") in line


def test_a_memory_row_is_one_it_declares_that_the_advisor_models(component: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    options = build_dataclass(Answers.Options, {}, path="strategy")
    assert checked_memory_row(component, options) == "single"
    monkeypatch.setattr(Answers, "row", None)
    assert checked_memory_row(component, options) is None
    for row in ("zero3", "ddp+nvme", ["single"]):  # not declared; declared but no advisor row; not a name
        monkeypatch.setattr(Answers, "row", row)
        with pytest.raises(PluginError) as info:
            checked_memory_row(component, options)
        line = str(info.value)
        assert line.startswith("strategy 'acme.answers' (acme-answers") and "\n" not in line
        assert (f": memory_row() returned {row!r}; it must return one of the memory_rows it declares at "
                "registration that the advisor models (declared: 'single', 'ddp+nvme'), or None where no row "
                "models it (docs/plugins.md section 12); a bug in the plugin") in line
    monkeypatch.setattr(Answers, "row", KeyError("backend"))
    with pytest.raises(PluginError, match=r"^strategy 'acme\.answers' \(acme-answers.*: memory_row raised KeyError"):
        checked_memory_row(component, options)
