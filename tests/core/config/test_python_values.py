"""Config mappings from Python (``config_from_dict``, ``deepseek.fit(config=...)``) with values
no TOML file can hold: keys that are not strings, integers past a float's or a 64-bit range,
and ``load_config`` of something that is not a path. Each is one ``ConfigError`` line naming
the key, never an ``OverflowError``, ``ValueError`` or ``TypeError``."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, UsageError


@pytest.mark.parametrize("data", [{5: {}}, {"train": {5: 1}}, {"train": {None: 1}}])
def test_a_config_mapping_with_a_key_that_is_not_a_string_is_an_unknown_key(data: dict[Any, Any]) -> None:
    with pytest.raises(ConfigError, match=r"(^5|train\.5|train\.None): unknown (config section|key)"):
        config_from_dict(data)


@pytest.mark.parametrize(("value", "shown"), [(10**400, "an integer of 1329 bits"), (2**64, "an integer of 65 bits")])
def test_a_float_setting_given_an_integer_too_large_for_a_float_is_one_line(value: int, shown: str) -> None:
    with pytest.raises(ConfigError, match=rf"^train\.lr: {shown} is outside TOML's 64-bit integer range"):
        config_from_dict({"train": {"lr": value}})  # was an OverflowError from float()


def test_an_integer_setting_with_more_digits_than_str_takes_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^train\.max_steps: an integer of 16610 bits is outside"):
        config_from_dict({"train": {"max_steps": 10**5000}})  # was a ValueError from str() of 5001 digits


def test_load_config_of_a_path_that_is_not_one_is_one_line() -> None:
    from deepseek.config.load import load_config

    with pytest.raises(UsageError, match=r"^config path: expected a path \(a str or pathlib.Path\), got 5 \(int\)$"):
        load_config(5)
