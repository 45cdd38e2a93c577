"""A component's ``Options`` defaults are held to the same type and check as a value a user
gives (``deepseek.config.validate``): a default that breaks its own rule is refused in one line
naming the key, the default and the class, not trained on or failed in torch much later."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from deepseek.config.validate import build_dataclass, positive
from deepseek.errors import ConfigError


@dataclass(frozen=True)
class BadCheck:
    hidden: int = field(default=0, metadata={"check": positive})


@dataclass(frozen=True)
class BadType:
    noise: float = "high"  # type: ignore[assignment]


@dataclass(frozen=True)
class Fine:
    hidden: int = field(default=64, metadata={"check": positive})
    scale: float = 1  # an int where a float belongs converts, as a user's would
    note: str | None = None


def test_a_default_that_breaks_its_check_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        build_dataclass(BadCheck, {}, path="model.fusion_options")
    assert str(info.value) == (
        f"model.fusion_options.hidden: the default 0 (int) of {__name__}.BadCheck breaks its own rule (must be > 0); "
        "fix the default there, or set model.fusion_options.hidden meanwhile")
    assert build_dataclass(BadCheck, {"hidden": 3}, path="model.fusion_options").hidden == 3  # a value given: fine


def test_a_default_of_the_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^data\.noise: the default 'high' \(str\) of .*BadType breaks its own rule "
                                          r"\(expected a number, got 'high' \(str\)\)"):
        build_dataclass(BadType, {}, path="data")


def test_good_defaults_pass() -> None:
    assert build_dataclass(Fine, {}, path="model") == Fine()
